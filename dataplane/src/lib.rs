//! The polltgt dataplane: reactors, pollers, and the driver that moves data between the TCP stack, the I/O-free
//! iSCSI and SCSI cores, and block devices.

pub mod reactor;
pub mod driver;
pub mod rangelock;
pub mod registry;
pub mod lifecycle;
pub mod server;
