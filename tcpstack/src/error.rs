//! The error type shared by every backend of the connection API.

use std::io;
use std::net::SocketAddr;

/// Why a listener or connection operation failed.
///
/// `WouldBlock` is never an error: `accept` answers `Ok(None)`, `recv` answers [`crate::RecvStatus::WouldBlock`] and
/// `flush` answers `Ok(false)`. An orderly close by the peer is [`crate::RecvStatus::Closed`], not an error either.
#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    /// The listening socket could not be created, configured, bound or put into the listening state.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// `accept` failed for a reason that is not about one pending connection (e.g. out of file descriptors).
    #[error("accept on {addr} failed: {source}")]
    Accept {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// A socket option (non-blocking mode, TCP_NODELAY) could not be set on a connection.
    #[error("cannot set {option} on the connection: {source}")]
    SocketOption {
        option: &'static str,
        #[source]
        source: io::Error,
    },
    /// The peer reset the connection (RST), or the connection is gone for writing (EPIPE).
    #[error("connection reset by peer")]
    Reset,
    /// Reading from the connection failed.
    #[error("receive failed: {0}")]
    Recv(#[source] io::Error),
    /// Writing to the connection failed.
    #[error("send failed: {0}")]
    Send(#[source] io::Error),
}

impl TcpError {
    /// Classifies an I/O error from a read or write on an established connection.
    pub(crate) fn from_io(err: io::Error, sending: bool) -> TcpError {
        match err.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted => TcpError::Reset,
            _ if sending => TcpError::Send(err),
            _ => TcpError::Recv(err),
        }
    }
}
