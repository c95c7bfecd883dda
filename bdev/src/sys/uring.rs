//! A safe io_uring ring for one file: operations *own* their memory while the kernel may use it.
//!
//! Each pushed [`RingOp`] (with its `Buf` or zero source) is parked in a slot indexed by the SQE's `user_data` and
//! handed back only when its CQE is reaped, so the memory an SQE points at stays alive, and is not touched by Rust
//! code, until the kernel is done with it. The file is held by an `Arc<File>` so the fd outlives every SQE. Dropping
//! the ring first waits for all operations in the kernel. The number of operations in the kernel never exceeds the
//! CQ size, so completions cannot overflow.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use io_uring::{opcode, types, IoUring, Probe};
use polltgt_hugepages::{Buf, Region};

/// Largest transfer put in one SQE (longer ones complete partially and are continued by the caller).
pub(crate) const MAX_SQE_BYTES: usize = 1 << 30;

/// Source of a write.
pub(crate) enum Data {
    /// A caller's buffer.
    Buf(Buf),
    /// A shared region that is never written (reads as zeros).
    Zeros(Arc<Region>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Buf(b) => b,
            Data::Zeros(r) => r.as_slice(),
        }
    }
}

/// One operation on the ring's file.
pub(crate) enum RingOp {
    /// Read into `buf[at..]` (at most `MAX_SQE_BYTES`) from byte `offset`.
    Read { offset: u64, buf: Buf, at: usize },
    /// Write `data[at..at+len]` (clamped to the data) at byte `offset`, with `RWF_DSYNC` when `dsync`.
    Write {
        offset: u64,
        data: Data,
        at: usize,
        len: usize,
        dsync: bool,
    },
    /// `fdatasync`.
    Fsync,
    /// `fallocate(mode, offset, len)`.
    Fallocate { offset: u64, len: u64, mode: i32 },
}

/// A reaped completion: the caller's `user` value, the CQE result (bytes or `-errno`), and the operation back.
pub(crate) struct Reaped {
    pub user: u64,
    pub res: i32,
    pub op: RingOp,
}

/// Checks that io_uring can be set up here and supports every opcode the file engine uses.
pub(crate) fn probe(entries: u32) -> io::Result<()> {
    let ring = IoUring::new(entries)?;
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    for (code, name) in [
        (opcode::Read::CODE, "READ"),
        (opcode::Write::CODE, "WRITE"),
        (opcode::Fsync::CODE, "FSYNC"),
        (opcode::Fallocate::CODE, "FALLOCATE"),
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring lacks IORING_OP_{name}"),
            ));
        }
    }
    Ok(())
}

pub(crate) struct Ring {
    ring: IoUring,
    file: Arc<File>,
    /// Parked operations by slot (= SQE user_data): the caller's value and the op.
    slots: Vec<Option<(u64, RingOp)>>,
    free: Vec<usize>,
    /// Operations pushed and not yet reaped.
    in_kernel: usize,
    /// Pushed but not yet passed to `io_uring_enter`.
    unsubmitted: usize,
    limit: usize,
    /// `IORING_SETUP_IOPOLL`: completions appear only when `io_uring_enter(GETEVENTS)` polls the device.
    iopoll: bool,
}

impl Ring {
    /// A ring for `file`; with `iopoll`, a polled-completion ring (`IORING_SETUP_IOPOLL`, O_DIRECT reads and writes
    /// only).
    pub(crate) fn new(file: Arc<File>, entries: u32, iopoll: bool) -> io::Result<Ring> {
        let ring = if iopoll { IoUring::builder().setup_iopoll().build(entries)? } else { IoUring::new(entries)? };
        let limit = ring.params().cq_entries() as usize;
        Ok(Ring {
            ring,
            file,
            slots: Vec::new(),
            free: Vec::new(),
            in_kernel: 0,
            unsubmitted: 0,
            limit,
            iopoll,
        })
    }

    /// Queues `op` (tagged `user`) without entering the kernel; gives it back when the ring is full.
    pub(crate) fn push(&mut self, user: u64, mut op: RingOp) -> Result<(), RingOp> {
        if self.in_kernel >= self.limit {
            return Err(op);
        }
        if self.ring.submission().is_full() {
            // Best effort: hand the queued SQEs to the kernel to make room (never waits).
            let _ = self.submit();
            if self.ring.submission().is_full() {
                return Err(op);
            }
        }
        let slot = self.free.pop().unwrap_or(self.slots.len());
        let fd = types::Fd(self.file.as_raw_fd());
        let ud = slot as u64;
        let entry = match &mut op {
            RingOp::Read { offset, buf, at } => {
                let start = (*at).min(buf.len());
                let len = (buf.len() - start).min(MAX_SQE_BYTES) as u32;
                let ptr = buf.as_mut_slice()[start..].as_mut_ptr();
                opcode::Read::new(fd, ptr, len)
                    .offset(*offset)
                    .build()
                    .user_data(ud)
            }
            RingOp::Write {
                offset,
                data,
                at,
                len,
                dsync,
            } => {
                let bytes = data.bytes();
                let start = (*at).min(bytes.len());
                let n = (*len).min(bytes.len() - start).min(MAX_SQE_BYTES) as u32;
                let ptr = bytes[start..].as_ptr();
                let flags = if *dsync { libc::RWF_DSYNC } else { 0 };
                opcode::Write::new(fd, ptr, n)
                    .offset(*offset)
                    .rw_flags(flags)
                    .build()
                    .user_data(ud)
            }
            RingOp::Fsync => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(ud),
            RingOp::Fallocate { offset, len, mode } => opcode::Fallocate::new(fd, *len)
                .offset(*offset)
                .mode(*mode)
                .build()
                .user_data(ud),
        };
        // SAFETY: the SQE refers to (a) the fd of `self.file`, kept open by the `Arc<File>` for the ring's whole
        // life, and (b) for Read/Write, `len` bytes inside the memory of the op's `Buf` or zero `Region`, bounds
        // clamped above. That memory does not move when the `Buf`/`Arc` value moves, and the op is parked in
        // `slots[slot]` right below, where no Rust code reads or writes it until `reap` sees this slot's CQE (or
        // `drop` has waited for it). The zero region is only ever read, by us and by the kernel.
        let pushed = unsafe { self.ring.submission().push(&entry) };
        if pushed.is_err() {
            if slot < self.slots.len() {
                self.free.push(slot);
            }
            return Err(op);
        }
        if slot == self.slots.len() {
            self.slots.push(Some((user, op)));
        } else if let Some(s) = self.slots.get_mut(slot) {
            *s = Some((user, op));
        }
        self.in_kernel += 1;
        self.unsubmitted += 1;
        Ok(())
    }

    /// Hands queued SQEs to the kernel without waiting for completions.
    /// On an IOPOLL ring this is also what polls the device for completions (the crate enters with GETEVENTS).
    pub(crate) fn submit(&mut self) -> io::Result<usize> {
        if self.unsubmitted == 0 && !(self.iopoll && self.in_kernel > 0) {
            return Ok(0);
        }
        match self.ring.submit() {
            Ok(n) => {
                self.unsubmitted = self.unsubmitted.saturating_sub(n);
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EAGAIN | libc::EBUSY | libc::EINTR)
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Moves every available completion into `out` (never waits).
    pub(crate) fn reap(&mut self, out: &mut Vec<Reaped>) -> usize {
        let Ring {
            ring,
            slots,
            free,
            in_kernel,
            ..
        } = self;
        let mut n = 0;
        for cqe in ring.completion() {
            let ud = cqe.user_data();
            let Some((user, op)) = usize::try_from(ud)
                .ok()
                .and_then(|s| slots.get_mut(s))
                .and_then(Option::take)
            else {
                tracing::warn!(user_data = ud, "io_uring completion for an unknown slot");
                continue;
            };
            free.push(ud as usize);
            *in_kernel -= 1;
            out.push(Reaped {
                user,
                res: cqe.result(),
                op,
            });
            n += 1;
        }
        n
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let mut sink = Vec::new();
        while self.in_kernel > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => self.unsubmitted = 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // The kernel may still use the parked buffers: leak them rather than free memory it writes to.
                    tracing::error!(error = %e, in_kernel = self.in_kernel, "io_uring teardown failed; leaking buffers");
                    let parked = std::mem::take(&mut self.slots);
                    Box::leak(Box::new(parked));
                    return;
                }
            }
            self.reap(&mut sink);
            sink.clear();
        }
    }
}
