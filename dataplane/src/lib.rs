//! The polltgt dataplane: reactors, pollers, and the driver that moves data between the TCP stack, the I/O-free
//! iSCSI and SCSI cores, and block devices.

pub mod clock;
pub mod reactor;
mod sys;
pub mod driver;
pub mod placement;
pub mod registry;
pub mod rx;
pub mod server;
pub mod stats;
