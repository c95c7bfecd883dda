//! One non-blocking, poll-driven TCP connection API for polltgt, over several backends.
//!
//! The first backend is the kernel's socket layer ([`kernel`]); userspace stacks over a TAP device (CI) and over DPDK
//! (feature `dpdk`) will implement the same traits later. The API is shaped for them:
//!
//! - Nothing blocks. A reactor poller calls [`TcpBackend::accept`], [`TcpConnection::recv`] and
//!   [`TcpConnection::flush`] in its loop and gets `None` / [`RecvStatus::WouldBlock`] / `Ok(false)` when there is
//!   nothing to do.
//! - Transmit is zero-copy by contract: [`TcpConnection::send_chain`] takes a scatter-gather list of refcounted
//!   [`Bytes`] (e.g. READ data straight from a pool buffer) and a caller-chosen tag. The stack keeps the buffers as
//!   long as it needs them and then drops them and reports the tag from [`TcpConnection::poll_send_complete`]. The
//!   kernel backend needs a chain until its bytes are written into the socket (the kernel copies them); a userspace
//!   stack needs it until the peer has ACKed the bytes (retransmissions read from the same buffers). Completion by
//!   tag models both, and dropping the `Bytes` is what returns pool buffers.
//! - Completions are reported in the order the chains were queued.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

mod error;
pub mod kernel;
mod sys;

pub use error::TcpError;
pub use kernel::{KernelBackend, KernelConn, KernelListener};

/// What a non-blocking receive found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvStatus {
    /// This many bytes were copied into the buffer (at least 1, unless the buffer was empty).
    Data(usize),
    /// Nothing to read right now.
    WouldBlock,
    /// The peer closed its sending direction (FIN) and everything it sent has been read.
    Closed,
}

/// A connection a listener accepted, with the two endpoints.
#[derive(Debug)]
pub struct Accepted<C = KernelConn> {
    pub conn: C,
    /// The initiator's address.
    pub peer: SocketAddr,
    /// The portal address the connection arrived on (what a target reports in TargetAddress, RFC 7143 §13.9).
    pub local: SocketAddr,
}

/// Per-connection counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Bytes handed to the network (kernel backend: written into the socket).
    pub bytes_sent: u64,
    /// Bytes received from the peer.
    pub bytes_received: u64,
    /// Chains queued with `send_chain`.
    pub chains_queued: u64,
    /// Chains whose tag has been reported (or is ready to be reported) by `poll_send_complete`.
    pub chains_completed: u64,
    /// Flushes that ended with bytes still queued because the socket/window was full.
    pub send_stalls: u64,
    /// Writes of several small buffers copied into one contiguous buffer first (kernel backend, see
    /// `kernel::GATHER_MAX`); their bytes count in `bytes_copied` too.
    pub gathered_writes: u64,
    /// Bytes sent with MSG_ZEROCOPY (by reference: the kernel pinned the buffers until the peer ACKed them).
    pub bytes_zerocopy: u64,
    /// Bytes sent by copying into the socket (below the zero-copy threshold, or zero-copy off).
    pub bytes_copied: u64,
    /// Zero-copy completion notifications read from the error queue, and those saying the kernel copied anyway.
    pub zerocopy_notifications: u64,
    pub zerocopy_copied: u64,
    /// Zero-copy sends refused for lack of pinned-page budget (ENOBUFS) and copied instead.
    pub zerocopy_fallbacks: u64,
    /// Zero-copy was switched off because the kernel copied every zero-copy send (loopback).
    pub zerocopy_disabled: bool,
}

/// A TCP connection of some backend. See the crate documentation for the transmit contract.
pub trait TcpConnection {
    /// Reads what is available into `buf` without blocking.
    fn recv(&mut self, buf: &mut [u8]) -> Result<RecvStatus, TcpError>;
    /// Reads what is available without blocking into `first`, then up to `rest_max` bytes appended to `rest`
    /// (zero-copy receive: `first` is the rest of a data segment inside the buffer it belongs to). `Data(n)`:
    /// `min(n, first.len())` bytes went to `first`. The default reads into one of the two only.
    fn recv_split(&mut self, first: &mut [u8], rest: &mut BytesMut, rest_max: usize) -> Result<RecvStatus, TcpError> {
        if !first.is_empty() {
            return self.recv(first);
        }
        let old = rest.len();
        rest.resize(old + rest_max, 0);
        let r = self.recv(&mut rest[old..]);
        let got = match r {
            Ok(RecvStatus::Data(n)) => n,
            _ => 0,
        };
        rest.truncate(old + got);
        r
    }
    /// Queues a chain of buffers for transmission, after everything queued before; never blocks and never fails.
    /// `tag` comes back from [`TcpConnection::poll_send_complete`] once the stack no longer needs any buffer of the
    /// chain.
    fn send_chain(&mut self, chain: Vec<Bytes>, tag: u64);
    /// [`TcpConnection::send_chain`] taking the buffers out of `chain` and leaving it empty, with its capacity, for
    /// the caller to reuse (no vector allocated per PDU).
    fn send_from(&mut self, chain: &mut Vec<Bytes>, tag: u64) {
        self.send_chain(std::mem::take(chain), tag)
    }
    /// Pushes queued bytes to the network as far as it takes them without blocking. `Ok(true)` when nothing is
    /// left queued.
    fn flush(&mut self) -> Result<bool, TcpError>;
    /// Appends the tags of the chains completed since the last call to `done`, in queueing order.
    fn poll_send_complete(&mut self, done: &mut Vec<u64>);
    /// Bytes queued and not yet handed to the network.
    fn queued_bytes(&self) -> usize;
    /// Closes both directions now. Queued chains are discarded; their tags complete (their buffers are released).
    fn shutdown(&mut self);
    /// The peer's address.
    fn peer_addr(&self) -> SocketAddr;
    /// The local (portal) address.
    fn local_addr(&self) -> SocketAddr;
    /// Counters of this connection.
    fn stats(&self) -> ConnStats;
}

/// A TCP stack instance that listens on portals and accepts connections.
pub trait TcpBackend {
    type Conn: TcpConnection;
    /// Starts listening on `addr` (port 0 picks a free port); returns the bound address.
    fn listen(&mut self, addr: SocketAddr) -> Result<SocketAddr, TcpError>;
    /// Accepts one pending connection on any of the listening addresses, without blocking.
    fn accept(&mut self) -> Result<Option<Accepted<Self::Conn>>, TcpError>;
}
