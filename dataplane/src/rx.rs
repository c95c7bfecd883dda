//! The receive path of one connection, with zero-copy receive of write data.
//!
//! Bytes from the socket land in a receive buffer (`rbuf`, read into its spare capacity: never zero-filled) from
//! which the iSCSI core consumes whole PDUs. Write data takes another way: when the core says that the PDU at the
//! front is a write command or a Data-Out it will accept ([`Connection::placement`]), the driver claims a pool
//! buffer of the command's Expected Data Transfer Length for its ITT and every data segment of that task is put at
//! its buffer offset in that buffer: the part already in `rbuf` is copied (counted as `rx_bytes_copied`), the rest
//! is read by the socket straight into the buffer with readv(2) (`rx_bytes_placed`), the next PDU header going to
//! `rbuf` in the same call. The claimed buffer goes to the bdev as the WRITE's buffer: page aligned (O_DIRECT) and
//! never copied again. Small PDUs that arrive many per read are copied once, like SPDK's receive pipe does.

use std::time::Instant;

use bytes::{Buf as _, Bytes, BytesMut};
use polltgt_hugepages::{Buf, BufPool};
use polltgt_iscsi::conn::Connection;
use polltgt_iscsi::session::Placement;
use polltgt_tcpstack::{KernelConn, RecvStatus, TcpError};
use rustc_hash::FxHashMap as HashMap;

/// Receive buffer bytes offered to one read.
pub(crate) const RECV_CHUNK: usize = 256 * 1024;
/// While the rest of a large data segment is read straight into its buffer, offer only this much of the receive
/// buffer in the same read (room for the next header and a little more), so the next large segment also lands
/// directly instead of being pulled into the receive buffer and copied.
const TAIL_CHUNK: usize = 4096;
/// Data segments at least this long get the short tail.
const LARGE_SEGMENT: usize = 64 * 1024;
/// Largest write (Expected Data Transfer Length) for which a buffer is claimed at command arrival; larger ones go
/// the copying way (the SCSI core refuses transfers above the LU's maximum anyway).
pub(crate) const MAX_CLAIM: u32 = 16 << 20;

/// Receive counters of a reactor.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxCounters {
    /// Write data bytes the socket read straight into claimed pool buffers.
    pub bytes_placed: u64,
    /// Write data bytes copied from the receive buffer into claimed pool buffers.
    pub bytes_copied: u64,
    /// Write commands whose data went to a claimed buffer.
    pub claims: u64,
    /// Write commands that could not claim a buffer (pool at its cap): their data travels as received bytes and
    /// is copied into a pool buffer at execution.
    pub claim_failures: u64,
}

/// A data segment on its way into a claimed buffer.
#[derive(Debug)]
struct Landing {
    header: Bytes,
    itt: u32,
    at: usize,
    end: usize,
    data_len: usize,
    pad: usize,
}

/// Per-connection receive state.
#[derive(Debug)]
pub(crate) struct RxPath {
    rbuf: BytesMut,
    claimed: HashMap<u32, Buf>,
    landing: Option<Landing>,
    /// Claimed buffers at which the next sweep for abandoned ones runs.
    sweep_at: usize,
}

/// Claimed buffers below which no sweep runs.
const SWEEP_MIN: usize = 16;

/// SCSI WRITE(6/10/12/16) and WRITE AND VERIFY(10/12/16) (SBC-3 §5.28-5.33, §5.38-5.40): the data goes to the
/// medium as received, so it is worth receiving straight into the I/O buffer.
fn claims_data(opcode: u8) -> bool {
    matches!(opcode, 0x0a | 0x2a | 0xaa | 0x8a | 0x2e | 0xae | 0x8e)
}

impl RxPath {
    pub(crate) fn new() -> RxPath {
        RxPath { rbuf: BytesMut::with_capacity(RECV_CHUNK), claimed: HashMap::default(), landing: None, sweep_at: SWEEP_MIN }
    }

    /// The claimed buffer of a delivered placed write.
    pub(crate) fn take_claimed(&mut self, itt: u32) -> Option<Buf> {
        self.claimed.remove(&itt)
    }

    /// One non-blocking read: the rest of a landing data segment straight into its buffer plus what follows into
    /// the receive buffer. Returns the status and whether the read filled everything offered.
    pub(crate) fn read(&mut self, tcp: &mut KernelConn, c: &mut RxCounters) -> (Result<RecvStatus, TcpError>, bool) {
        let (first, rest_max): (&mut [u8], usize) = match &self.landing {
            Some(l) => match self.claimed.get_mut(&l.itt).and_then(|b| b.get_mut(l.at..l.end)) {
                Some(dst) => {
                    let tail = if dst.len() >= LARGE_SEGMENT { TAIL_CHUNK } else { RECV_CHUNK };
                    (dst, tail)
                }
                None => (&mut [], RECV_CHUNK),
            },
            None => (&mut [], RECV_CHUNK),
        };
        let first_len = first.len();
        let r = tcp.recv_split(first, &mut self.rbuf, rest_max);
        let mut full = false;
        if let Ok(RecvStatus::Data(n)) = r {
            let direct = n.min(first_len);
            if let Some(l) = self.landing.as_mut() {
                l.at += direct;
            }
            c.bytes_placed += direct as u64;
            full = n == first_len + rest_max;
        }
        (r, full)
    }

    /// Feeds what the receive buffer holds to the connection: whole PDUs to the iSCSI core, write data into claimed
    /// buffers. Returns whether anything was consumed.
    pub(crate) fn process(&mut self, iscsi: &mut Connection, pool: &BufPool, c: &mut RxCounters, now: Instant) -> bool {
        let mut progress = false;
        loop {
            if let Some(l) = self.landing.as_mut() {
                let n = (l.end - l.at).min(self.rbuf.len());
                if n > 0 {
                    if let Some(dst) = self.claimed.get_mut(&l.itt).and_then(|b| b.get_mut(l.at..l.at + n)) {
                        dst.copy_from_slice(&self.rbuf[..n]);
                    }
                    self.rbuf.advance(n);
                    l.at += n;
                    c.bytes_copied += n as u64;
                    progress = true;
                }
                if l.at < l.end {
                    return progress;
                }
                let p = l.pad.min(self.rbuf.len());
                self.rbuf.advance(p);
                l.pad -= p;
                if l.pad > 0 {
                    return progress;
                }
                if let Some(l) = self.landing.take() {
                    iscsi.handle_placed(&l.header, l.data_len, now);
                    progress = true;
                }
                continue;
            }
            if let Some(p) = iscsi.placement(&self.rbuf) {
                let target = match p.kind {
                    Placement::Command { itt, edtl, opcode } => {
                        self.claim(iscsi, pool, c, itt, edtl, opcode).then_some((itt, 0usize))
                    }
                    Placement::DataOut { itt, offset, .. } => {
                        self.claimed.contains_key(&itt).then_some((itt, offset as usize))
                    }
                };
                if let Some((itt, at)) = target {
                    // Copied (48 bytes or so) rather than split off: a split shares the receive buffer's
                    // allocation, and while a landing holds it the next read could not reuse the buffer in place
                    // (BytesMut::reserve would allocate and fault in a fresh 256 KiB).
                    let header = Bytes::copy_from_slice(&self.rbuf[..p.header_len]);
                    self.rbuf.advance(p.header_len);
                    self.landing =
                        Some(Landing { header, itt, at, end: at + p.data_len, data_len: p.data_len, pad: p.pad_len });
                    progress = true;
                    continue;
                }
            }
            if !iscsi.handle_one(&mut self.rbuf, now) {
                return progress;
            }
            progress = true;
        }
    }

    /// Claim an `edtl`-byte pool buffer for the write command `itt`, if it is worth it and the pool has room.
    fn claim(&mut self, iscsi: &Connection, pool: &BufPool, c: &mut RxCounters, itt: u32, edtl: u32, opcode: u8) -> bool {
        if !claims_data(opcode) || edtl == 0 || edtl > MAX_CLAIM {
            return false;
        }
        if self.claimed.len() >= self.sweep_at {
            // Drop buffers of tasks that ended without being executed (terminated, aborted). Not at every claim: at
            // queue depth 32 that would be 32 lookups per WRITE; the next sweep waits for twice what stays.
            if let Some(s) = iscsi.session() {
                self.claimed.retain(|itt, _| s.has_placed_write(*itt));
            }
            self.sweep_at = (2 * self.claimed.len()).max(SWEEP_MIN);
        }
        match pool.alloc(edtl as usize) {
            Ok(buf) => {
                c.claims += 1;
                self.claimed.insert(itt, buf);
                true
            }
            Err(_) => {
                c.claim_failures += 1;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_opcodes_claim() {
        assert!(claims_data(0x2a) && claims_data(0x8a) && claims_data(0x0a) && claims_data(0x2e));
        assert!(!claims_data(0x28) && !claims_data(0x2f) && !claims_data(0x15) && !claims_data(0x89));
    }
}
