//! The kernel socket backend: std's `TcpListener`/`TcpStream` in non-blocking mode, transmit with writev(2).
//!
//! A chain is complete as soon as all its bytes are written into the socket: the kernel has copied them, so the
//! chain's `Bytes` are dropped at that moment (returning pool buffers) and its tag is reported.
//!
//! With MSG_ZEROCOPY ([`KernelConn::set_zerocopy`]), writes of at least the threshold go out with sendmsg(2)
//! MSG_ZEROCOPY: the kernel pins the pages of the buffers instead of copying them, so the written `Bytes` are kept
//! until the kernel's notification for that send arrives on the socket's error queue (after the peer ACKed the
//! data), and a chain's tag completes only then. Smaller writes are copied (like SPDK's `zerocopy_threshold`):
//! pinning and the notification cost more than copying a few KiB. Where the kernel reports that it copied anyway
//! (SO_EE_CODE_ZEROCOPY_COPIED, e.g. over loopback), zero-copy is switched off for the connection after
//! [`ZEROCOPY_PROBE`] notifications, as the kernel documentation advises.
//!
//! Writes go through `write_vectored` (writev(2)), which unlike send(2) cannot pass `MSG_NOSIGNAL`: a write to a
//! connection the peer has reset raises SIGPIPE. Rust programs ignore SIGPIPE from startup (the standard runtime sets
//! it to `SIG_IGN` before `main`), so the write fails with EPIPE, reported as [`TcpError::Reset`].

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;

use bytes::{Buf, Bytes, BytesMut};

use crate::{sys, Accepted, ConnStats, RecvStatus, TcpBackend, TcpConnection, TcpError};

/// Listen backlog: the kernel caps it at `net.core.somaxconn`.
const BACKLOG: i32 = 1024;

/// Buffers passed to one writev(2). Linux accepts up to 1024 (`UIO_MAXIOV`); 256 (4 KiB of iovecs on the stack)
/// lets one call carry the responses of 128 commands of 4 KiB (a header and a data buffer each), so a reactor
/// answering a deep queue pays one system call for many commands.
const MAX_IOV: usize = 256;

/// Largest write whose buffers are gathered into one contiguous buffer before the system call: below it, several
/// queued buffers (a 48-byte PDU header and the 4 KiB of data of each small READ's Data-In, over a whole batch of
/// responses) are copied into a scratch buffer and written with one write(2), because the kernel's per-segment work
/// for an iovec list of header/data pairs costs more than the copy (measured with `bench/profile.sh read4k`: about
/// 4% less reactor time per 4 KiB READ at QD32, see bench/results.md). Writes at or above the zero-copy threshold
/// are never gathered.
pub const GATHER_MAX: usize = 64 * 1024;

/// Notifications after which a connection whose zero-copy sends were all copied by the kernel stops using them.
pub const ZEROCOPY_PROBE: u64 = 16;

/// MSG_ZEROCOPY state of a connection.
#[derive(Debug, Default)]
struct ZeroCopy {
    /// Writes of at least this many bytes use MSG_ZEROCOPY (None: off).
    threshold: Option<usize>,
    /// The id the kernel gives the next zero-copy send (consecutive from 0).
    next_id: u32,
    /// Every id before this one is complete (serial number order).
    done: u32,
    /// Completed ranges past `done` (notifications out of order).
    ahead: Vec<(u32, u32)>,
    /// Buffers the kernel may still read, per send id.
    held: VecDeque<(u32, Vec<Bytes>)>,
    /// Fully written chains waiting for the notification of their last zero-copy send (or behind one that is).
    awaiting: VecDeque<(u64, Option<u32>)>,
    notifications: u64,
    copied: u64,
}

impl ZeroCopy {
    fn is_done(&self, id: u32) -> bool {
        (id.wrapping_sub(self.done) as i32) < 0
    }

    fn mark(&mut self, lo: u32, hi: u32) {
        if lo == self.done {
            self.done = hi.wrapping_add(1);
            while let Some(pos) = self.ahead.iter().position(|(l, _)| *l == self.done) {
                let (_, h) = self.ahead.swap_remove(pos);
                self.done = h.wrapping_add(1);
            }
        } else if !self.is_done(lo) {
            self.ahead.push((lo, hi));
        }
    }
}

/// A non-blocking listening socket on one portal address.
#[derive(Debug)]
pub struct KernelListener {
    listener: TcpListener,
    local: SocketAddr,
}

impl KernelListener {
    /// Binds and listens on `addr` (IPv4 or IPv6; port 0 picks a free port). The socket is non-blocking, has
    /// `SO_REUSEADDR` set and, for IPv6, `IPV6_V6ONLY`, so IPv4 and IPv6 portals on the same port can coexist.
    pub fn bind(addr: SocketAddr) -> Result<Self, TcpError> {
        let listener = sys::listen_socket(addr, BACKLOG)
            .map_err(|source| TcpError::Listen { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| TcpError::Listen { addr, source })?;
        tracing::debug!(%local, "listening");
        Ok(KernelListener { listener, local })
    }

    /// The bound address (with the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Accepts one pending connection without blocking; `Ok(None)` when none is pending.
    ///
    /// The connection comes back non-blocking with TCP_NODELAY set. A connection that dies between the handshake
    /// and `accept` (ECONNABORTED), or on which the options cannot be set, is skipped and the next one is tried.
    pub fn accept(&mut self) -> Result<Option<Accepted>, TcpError> {
        loop {
            match self.listener.accept() {
                Ok((stream, peer)) => match KernelConn::from_std(stream) {
                    Ok(conn) => {
                        let local = conn.local;
                        tracing::debug!(%peer, %local, "accepted");
                        return Ok(Some(Accepted { conn, peer, local }));
                    }
                    Err(err) => {
                        tracing::debug!(%peer, %err, "dropping accepted connection");
                        continue;
                    }
                },
                Err(err) => match err.kind() {
                    io::ErrorKind::WouldBlock => return Ok(None),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => continue,
                    _ => {
                        return Err(TcpError::Accept {
                            addr: self.local,
                            source: err,
                        })
                    }
                },
            }
        }
    }
}

/// One queued chain. Its buffers are in the connection's flat buffer queue: those numbered (in queueing order)
/// below `end`, back to the end of the chain before it.
#[derive(Debug)]
struct PendingChain {
    end: u64,
    tag: u64,
    /// The last zero-copy send that took bytes of this chain.
    zc_last: Option<u32>,
}

/// An established TCP connection over a kernel socket. `Send`: an acceptor hands it to the reactor that owns it.
#[derive(Debug)]
pub struct KernelConn {
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    /// Buffers not yet fully written, of all chains, in order (the front one possibly advanced past a partial
    /// write): one writev(2) takes buffers of many chains without walking chain by chain.
    bufs: VecDeque<Bytes>,
    /// Number of buffers ever written completely (popped from `bufs`), and ever queued.
    popped: u64,
    pushed: u64,
    queue: VecDeque<PendingChain>,
    queued_bytes: usize,
    /// Tags completed and not yet collected by `poll_send_complete`.
    completed: Vec<u64>,
    stats: ConnStats,
    shut_down: bool,
    zc: ZeroCopy,
    /// Contiguous copy of small buffers for one write (see [`GATHER_MAX`]); kept between writes.
    gather: Vec<u8>,
    /// The last flush stopped on a full socket: until the queue drains, write with writev(2) and do not copy into
    /// `gather` again on every retry.
    stalled: bool,
}

impl KernelConn {
    /// Wraps a connected std stream (accepted or connected by the caller): makes it non-blocking and sets
    /// TCP_NODELAY (PDUs are complete messages; Nagle would delay responses behind unacknowledged data).
    pub fn from_std(stream: TcpStream) -> Result<Self, TcpError> {
        stream
            .set_nonblocking(true)
            .map_err(|source| TcpError::SocketOption {
                option: "O_NONBLOCK",
                source,
            })?;
        stream
            .set_nodelay(true)
            .map_err(|source| TcpError::SocketOption {
                option: "TCP_NODELAY",
                source,
            })?;
        let peer = stream
            .peer_addr()
            .map_err(|source| TcpError::SocketOption {
                option: "peer address",
                source,
            })?;
        let local = stream
            .local_addr()
            .map_err(|source| TcpError::SocketOption {
                option: "local address",
                source,
            })?;
        Ok(KernelConn {
            stream,
            peer,
            local,
            bufs: VecDeque::new(),
            popped: 0,
            pushed: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            completed: Vec::new(),
            stats: ConnStats::default(),
            shut_down: false,
            zc: ZeroCopy::default(),
            gather: Vec::new(),
            stalled: false,
        })
    }

    /// Sends writes of at least `threshold` bytes with MSG_ZEROCOPY (None: never). Returns false when the socket
    /// refuses SO_ZEROCOPY (kernel before 4.14); everything is then copied.
    pub fn set_zerocopy(&mut self, threshold: Option<usize>) -> bool {
        match threshold {
            None => {
                self.zc.threshold = None;
                true
            }
            Some(t) => match sys::enable_zerocopy(self.stream.as_raw_fd()) {
                Ok(()) => {
                    self.zc.threshold = Some(t);
                    true
                }
                Err(err) => {
                    tracing::debug!(peer = %self.peer, %err, "SO_ZEROCOPY refused");
                    false
                }
            },
        }
    }

    /// Whether zero-copy sends are on (they switch off when the kernel copies anyway).
    pub fn zerocopy(&self) -> bool {
        self.zc.threshold.is_some()
    }

    /// Reads what is available into `buf` without blocking.
    ///
    /// `Data(n)` with `n >= 1`, `WouldBlock`, or `Closed` once the peer's FIN has been reached (and after
    /// [`KernelConn::shutdown`]). An empty `buf` answers `Data(0)` without touching the socket.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<RecvStatus, TcpError> {
        if self.shut_down {
            return Ok(RecvStatus::Closed);
        }
        if buf.is_empty() {
            return Ok(RecvStatus::Data(0));
        }
        loop {
            match self.stream.read(buf) {
                Ok(0) => return Ok(RecvStatus::Closed),
                Ok(n) => {
                    self.stats.bytes_received = self.stats.bytes_received.saturating_add(n as u64);
                    return Ok(RecvStatus::Data(n));
                }
                Err(err) => match err.kind() {
                    io::ErrorKind::WouldBlock => return Ok(RecvStatus::WouldBlock),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(TcpError::from_io(err, false)),
                },
            }
        }
    }

    /// Reads what is available without blocking: first into `first` (e.g. the rest of a data segment, straight into
    /// the buffer it belongs to), then up to `rest_max` bytes appended to `rest` (which is not zero-filled first).
    /// `Data(n)`: `min(n, first.len())` bytes went to `first`, the others extend `rest`.
    pub fn recv_split(&mut self, first: &mut [u8], rest: &mut BytesMut, rest_max: usize) -> Result<RecvStatus, TcpError> {
        if self.shut_down {
            return Ok(RecvStatus::Closed);
        }
        if first.is_empty() && rest_max == 0 {
            return Ok(RecvStatus::Data(0));
        }
        loop {
            match sys::readv_split(self.stream.as_raw_fd(), first, rest, rest_max) {
                Ok(0) => return Ok(RecvStatus::Closed),
                Ok(n) => {
                    self.stats.bytes_received = self.stats.bytes_received.saturating_add(n as u64);
                    return Ok(RecvStatus::Data(n));
                }
                Err(err) => match err.kind() {
                    io::ErrorKind::WouldBlock => return Ok(RecvStatus::WouldBlock),
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(TcpError::from_io(err, false)),
                },
            }
        }
    }

    /// Queues `chain` behind everything queued before. Never blocks; nothing is written until [`KernelConn::flush`].
    /// Empty buffers are dropped right away; a chain without bytes completes when the queue reaches it. After
    /// [`KernelConn::shutdown`] the chain is released at once and its tag completes.
    pub fn send_chain(&mut self, mut chain: Vec<Bytes>, tag: u64) {
        self.send_from(&mut chain, tag);
    }

    /// [`KernelConn::send_chain`] taking the buffers out of `chain`, which is left empty with its capacity (a
    /// caller that reuses one vector queues PDUs without allocating).
    pub fn send_from(&mut self, chain: &mut Vec<Bytes>, tag: u64) {
        self.stats.chains_queued = self.stats.chains_queued.saturating_add(1);
        if self.shut_down {
            chain.clear();
            self.complete(tag);
            return;
        }
        for b in chain.drain(..) {
            if !b.is_empty() {
                self.queued_bytes = self.queued_bytes.saturating_add(b.len());
                self.bufs.push_back(b);
                self.pushed += 1;
            }
        }
        self.queue.push_back(PendingChain { end: self.pushed, tag, zc_last: None });
    }

    /// Writes as many queued bytes as the socket takes without blocking, with one writev(2) per up to
    /// [`MAX_IOV`] buffers, possibly spanning several chains (several buffers of at most [`GATHER_MAX`] bytes in all
    /// are copied together and written with one write(2) instead). A partial write leaves the rest of a buffer
    /// queued. Returns `Ok(true)` when the queue is empty.
    pub fn flush(&mut self) -> Result<bool, TcpError> {
        loop {
            self.retire_finished();
            if self.queue.is_empty() {
                self.stalled = false;
                return Ok(true);
            }
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            let mut offered = 0usize;
            for (slot, buf) in iov.iter_mut().zip(&self.bufs) {
                *slot = IoSlice::new(buf);
                count += 1;
                offered += buf.len();
            }
            let slices = iov.get(..count).unwrap_or(&[]);
            let mut zerocopy = self.zc.threshold.is_some_and(|t| offered >= t);
            let written = if zerocopy {
                match sys::send_zerocopy(self.stream.as_raw_fd(), slices) {
                    // Over the socket's optmem limit for pinned pages: copy this time.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        zerocopy = false;
                        self.stats.zerocopy_fallbacks = self.stats.zerocopy_fallbacks.saturating_add(1);
                        self.stream.write_vectored(slices)
                    }
                    r => r,
                }
            } else if count > 1 && offered <= GATHER_MAX && !self.stalled {
                self.gather.clear();
                for b in slices {
                    self.gather.extend_from_slice(b);
                }
                self.stats.gathered_writes = self.stats.gathered_writes.saturating_add(1);
                self.stream.write(&self.gather)
            } else {
                self.stream.write_vectored(slices)
            };
            match written {
                Ok(0) => return Err(TcpError::Send(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    let id = if zerocopy {
                        let id = self.zc.next_id;
                        self.zc.next_id = id.wrapping_add(1);
                        self.stats.bytes_zerocopy = self.stats.bytes_zerocopy.saturating_add(n as u64);
                        Some(id)
                    } else {
                        self.stats.bytes_copied = self.stats.bytes_copied.saturating_add(n as u64);
                        None
                    };
                    self.consume(n, id);
                    if n < offered {
                        // A short write on a non-blocking stream socket means its send buffer is full: trying again
                        // now would only return EAGAIN.
                        self.stats.send_stalls = self.stats.send_stalls.saturating_add(1);
                        self.stalled = true;
                        return Ok(false);
                    }
                }
                Err(err) => match err.kind() {
                    io::ErrorKind::WouldBlock => {
                        self.stats.send_stalls = self.stats.send_stalls.saturating_add(1);
                        self.stalled = true;
                        return Ok(false);
                    }
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(TcpError::from_io(err, true)),
                },
            }
        }
    }

    /// Appends the tags of chains completed since the last call, in the order they were queued (zero-copy: after
    /// reading the kernel's notifications).
    pub fn poll_send_complete(&mut self, done: &mut Vec<u64>) {
        if !self.zc.held.is_empty() {
            self.reap_zerocopy();
        }
        done.append(&mut self.completed);
    }

    /// Reads zero-copy notifications, drops the buffers the kernel has released and completes the chains whose
    /// sends are all notified.
    fn reap_zerocopy(&mut self) {
        let zc = &mut self.zc;
        let stats = &mut self.stats;
        let r = sys::zerocopy_notifications(self.stream.as_raw_fd(), |lo, hi, copied| {
            zc.mark(lo, hi);
            zc.notifications += 1;
            stats.zerocopy_notifications = stats.zerocopy_notifications.saturating_add(1);
            if copied {
                zc.copied += 1;
                stats.zerocopy_copied = stats.zerocopy_copied.saturating_add(1);
            }
        });
        if let Err(err) = r {
            tracing::debug!(peer = %self.peer, %err, "reading zero-copy notifications");
        }
        if self.zc.threshold.is_some() && self.zc.notifications >= ZEROCOPY_PROBE && self.zc.copied == self.zc.notifications {
            tracing::debug!(peer = %self.peer, "the kernel copies zero-copy sends on this path; copying from now on");
            self.zc.threshold = None;
            self.stats.zerocopy_disabled = true;
        }
        while self.zc.held.front().is_some_and(|(id, _)| self.zc.is_done(*id)) {
            self.zc.held.pop_front();
        }
        while let Some(&(tag, last)) = self.zc.awaiting.front() {
            if last.is_some_and(|id| !self.zc.is_done(id)) {
                break;
            }
            self.zc.awaiting.pop_front();
            self.complete(tag);
        }
    }

    /// Bytes queued and not yet written into the socket.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Closes both directions. Unwritten chains are dropped and their tags complete; later `recv` answers `Closed`
    /// and later `send_chain` completes at once.
    pub fn shutdown(&mut self) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        if let Err(err) = self.stream.shutdown(Shutdown::Both) {
            // NotConnected when the peer already reset the connection: nothing left to close.
            tracing::debug!(peer = %self.peer, %err, "shutdown");
        }
        self.zc.held.clear();
        while let Some((tag, _)) = self.zc.awaiting.pop_front() {
            self.complete(tag);
        }
        self.bufs.clear();
        self.popped = self.pushed;
        while let Some(chain) = self.queue.pop_front() {
            self.complete(chain.tag);
        }
        self.queued_bytes = 0;
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Counters of this connection.
    pub fn stats(&self) -> ConnStats {
        self.stats
    }

    /// Accounts `n` written bytes against the front of the queue, dropping buffers (or, for the zero-copy send
    /// `zc`, keeping them until its notification) and completing chains that are fully written.
    fn consume(&mut self, mut n: usize, zc: Option<u32>) {
        self.stats.bytes_sent = self.stats.bytes_sent.saturating_add(n as u64);
        self.queued_bytes = self.queued_bytes.saturating_sub(n);
        let before = self.popped;
        let mut pinned = Vec::new();
        let mut partial = false;
        while n > 0 {
            let Some(buf) = self.bufs.front_mut() else {
                break;
            };
            if n >= buf.len() {
                n -= buf.len();
                self.popped += 1;
                if let Some(b) = self.bufs.pop_front() {
                    if zc.is_some() {
                        pinned.push(b);
                    }
                }
            } else {
                if zc.is_some() {
                    pinned.push(buf.split_to(n));
                } else {
                    buf.advance(n);
                }
                partial = true;
                n = 0;
            }
        }
        if let Some(id) = zc {
            // The chains that had bytes in this send: from the first unfinished one up to the one the send ended in.
            let touched_end = self.popped + u64::from(partial);
            let mut start = before;
            for chain in self.queue.iter_mut() {
                if start >= touched_end {
                    break;
                }
                chain.zc_last = Some(id);
                start = chain.end;
            }
            self.zc.held.push_back((id, pinned));
        }
        self.retire_finished();
    }

    /// Completes the chains at the front of the queue whose buffers are all written.
    fn retire_finished(&mut self) {
        while self.queue.front().is_some_and(|c| c.end <= self.popped) {
            if let Some(done) = self.queue.pop_front() {
                self.finish_chain(done.tag, done.zc_last);
            }
        }
    }

    /// A fully written chain completes now, or after its zero-copy notification (and those of the chains before it).
    fn finish_chain(&mut self, tag: u64, zc_last: Option<u32>) {
        if zc_last.is_none() && self.zc.awaiting.is_empty() {
            self.complete(tag);
        } else {
            self.zc.awaiting.push_back((tag, zc_last));
        }
    }

    fn complete(&mut self, tag: u64) {
        self.stats.chains_completed = self.stats.chains_completed.saturating_add(1);
        self.completed.push(tag);
    }
}

impl std::os::fd::AsRawFd for KernelConn {
    /// The socket, for a reactor's interrupt mode (epoll); never read or written through it.
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.stream.as_raw_fd()
    }
}

impl std::os::fd::AsRawFd for KernelListener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.listener.as_raw_fd()
    }
}

impl TcpConnection for KernelConn {
    fn recv(&mut self, buf: &mut [u8]) -> Result<RecvStatus, TcpError> {
        KernelConn::recv(self, buf)
    }
    fn recv_split(&mut self, first: &mut [u8], rest: &mut BytesMut, rest_max: usize) -> Result<RecvStatus, TcpError> {
        KernelConn::recv_split(self, first, rest, rest_max)
    }
    fn send_chain(&mut self, chain: Vec<Bytes>, tag: u64) {
        KernelConn::send_chain(self, chain, tag)
    }
    fn send_from(&mut self, chain: &mut Vec<Bytes>, tag: u64) {
        KernelConn::send_from(self, chain, tag)
    }
    fn flush(&mut self) -> Result<bool, TcpError> {
        KernelConn::flush(self)
    }
    fn poll_send_complete(&mut self, done: &mut Vec<u64>) {
        KernelConn::poll_send_complete(self, done)
    }
    fn queued_bytes(&self) -> usize {
        KernelConn::queued_bytes(self)
    }
    fn shutdown(&mut self) {
        KernelConn::shutdown(self)
    }
    fn peer_addr(&self) -> SocketAddr {
        self.peer
    }
    fn local_addr(&self) -> SocketAddr {
        self.local
    }
    fn stats(&self) -> ConnStats {
        self.stats
    }
}

/// The kernel stack as a [`TcpBackend`]: a set of listeners (one per portal), accepted from in turn.
#[derive(Debug, Default)]
pub struct KernelBackend {
    listeners: Vec<KernelListener>,
    /// The listener `accept` asks first, so a busy portal cannot starve the others.
    next: usize,
}

impl KernelBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// The bound addresses, in the order `listen` was called.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .map(KernelListener::local_addr)
            .collect()
    }
}

impl TcpBackend for KernelBackend {
    type Conn = KernelConn;

    fn listen(&mut self, addr: SocketAddr) -> Result<SocketAddr, TcpError> {
        let listener = KernelListener::bind(addr)?;
        let local = listener.local_addr();
        self.listeners.push(listener);
        Ok(local)
    }

    fn accept(&mut self) -> Result<Option<Accepted>, TcpError> {
        let n = self.listeners.len();
        for i in 0..n {
            let idx = (self.next + i) % n;
            let Some(listener) = self.listeners.get_mut(idx) else {
                continue;
            };
            if let Some(accepted) = listener.accept()? {
                self.next = (idx + 1) % n;
                return Ok(Some(accepted));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    /// A connected pair over loopback: (polltgt side, peer side).
    fn pair() -> (KernelConn, std::net::TcpStream) {
        let mut l = KernelListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let peer = std::net::TcpStream::connect(l.local_addr()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(a) = l.accept().unwrap() {
                return (a.conn, peer);
            }
            assert!(std::time::Instant::now() < deadline, "no connection accepted");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn zerocopy_sends_hold_buffers_until_notified_and_count_bytes() {
        let (mut c, mut peer) = pair();
        if !c.set_zerocopy(Some(64 * 1024)) {
            eprintln!("SO_ZEROCOPY not supported here; nothing to test");
            return;
        }
        let big = Bytes::from((0..256 * 1024).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let weak_probe = big.clone();
        c.send_chain(vec![Bytes::from_static(b"hdr"), big], 1);
        c.send_chain(vec![Bytes::from_static(b"small")], 2);
        drop(weak_probe);
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 3 + 256 * 1024 + 5];
            peer.read_exact(&mut got).unwrap();
            got
        });
        let mut done = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while done.len() < 2 {
            c.flush().unwrap();
            c.poll_send_complete(&mut done);
            assert!(std::time::Instant::now() < deadline, "completions: {done:?}, stats {:?}", c.stats());
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(done, vec![1, 2], "completions in queueing order");
        let got = reader.join().unwrap();
        assert_eq!(&got[..3], b"hdr");
        assert!(got[3..3 + 256 * 1024].iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        assert_eq!(&got[3 + 256 * 1024..], b"small");
        let st = c.stats();
        assert!(st.bytes_zerocopy >= 64 * 1024, "{st:?}");
        assert!(st.zerocopy_notifications >= 1, "{st:?}");
        assert_eq!(st.bytes_zerocopy + st.bytes_copied, st.bytes_sent);
        assert!(c.zc.held.is_empty() && c.zc.awaiting.is_empty());
    }

    #[test]
    fn writes_below_the_threshold_are_copied() {
        let (mut c, mut peer) = pair();
        c.set_zerocopy(Some(1 << 20));
        c.send_chain(vec![Bytes::from(vec![7u8; 4096])], 5);
        c.flush().unwrap();
        let mut done = Vec::new();
        c.poll_send_complete(&mut done);
        assert_eq!(done, vec![5], "a copied chain completes when written");
        let mut got = vec![0u8; 4096];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(c.stats().bytes_copied, 4096);
        assert_eq!(c.stats().bytes_zerocopy, 0);
    }

    #[test]
    fn conn_and_listener_are_send() {
        assert_send::<KernelConn>();
        assert_send::<KernelListener>();
        assert_send::<Accepted>();
    }
}
