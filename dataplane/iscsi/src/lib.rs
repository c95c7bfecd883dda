//! The I/O-free iSCSI protocol core of polltgt (RFC 7143).
//!
//! Nothing in this crate touches sockets, clocks or threads: the connection state machine takes received bytes,
//! events and the current time as arguments and returns PDUs to transmit, SCSI commands to execute and timers.
#![forbid(unsafe_code)]

pub mod access;
pub mod cdb;
pub mod chap;
pub mod conn;
pub mod isns;
pub mod login;
pub mod negotiate;
pub mod params;
pub mod serial;
pub mod session;
pub mod text;
pub mod wire;

pub use cdb::Cdb;
pub use serial::SerialNumber;
