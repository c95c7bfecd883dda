//! The polltgt dataplane: reactors, pollers, and the driver that moves data between the TCP stack, the I/O-free
//! iSCSI and SCSI cores, and block devices.

pub mod acl;
pub mod clock;
pub mod reactor;
mod sys;
pub mod driver;
pub mod live;
pub mod nexus;
pub mod placement;
pub mod portals;
pub mod pr_store;
pub mod rangelock;
pub mod registry;
pub mod lifecycle;
pub mod medium;
pub mod rx;
pub mod server;
pub mod isns;
pub mod sessions;
pub mod stats;
