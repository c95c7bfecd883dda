//! io_uring engine: one ring per channel. `submit` queues SQEs without entering the kernel; `poll` hands them to
//! the kernel (one `io_uring_enter` for the batch, never waiting), reaps completions, continues short transfers and
//! `fallocate` fallbacks, and returns finished I/Os. Requests beyond the ring's capacity wait in a backlog.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::threads::{ThreadChannel, Workers};
use super::FileCtx;
use crate::sys::uring::{Data, Reaped, Ring, RingOp};
use crate::{sys, BdevError, Buf, Channel, Completion, Io, Op};

/// Which `fallocate` a zeroing request tried.
#[derive(Clone, Copy)]
enum ZeroKind {
    Unmap,
    WriteZeroes,
}

#[derive(Clone, Copy)]
enum State {
    /// Bytes transferred so far.
    Read {
        offset: u64,
        done: usize,
    },
    Write {
        offset: u64,
        done: usize,
        fua: bool,
    },
    Flush,
    Fallocate {
        offset: u64,
        len: u64,
        kind: ZeroKind,
    },
    /// Writing zeros: next byte to write, end of the range.
    ZeroFill {
        next: u64,
        end: u64,
    },
}

struct Req {
    tag: u64,
    state: State,
}

/// Where a ring channel sends what io_uring cannot do (lseek for [`Op::Allocation`]): the bdev's thread pool,
/// started on first use.
pub(crate) struct Side {
    pub workers: Arc<Mutex<Option<Workers>>>,
    pub name: String,
    /// The pool's size when this channel starts it (SCST `threads_num`).
    pub threads: Arc<std::sync::atomic::AtomicUsize>,
}

/// A channel of the io_uring engine.
pub(crate) struct UringChannel {
    ctx: Arc<FileCtx>,
    side: Side,
    side_channel: Option<ThreadChannel>,
    ring: Ring,
    /// With IOPOLL: an ordinary ring for the operations a polled ring cannot run (fsync, fallocate).
    aux: Option<Ring>,
    reqs: Vec<Option<Req>>,
    free_ids: Vec<usize>,
    /// Operations waiting for room in the ring, in order.
    backlog: VecDeque<(u64, RingOp)>,
    /// Finished I/Os not yet returned by `poll`.
    ready: VecDeque<Completion>,
    reaped: Vec<Reaped>,
    /// Requests accepted and not yet finished.
    active: usize,
}

impl UringChannel {
    pub(crate) fn new(ctx: Arc<FileCtx>, depth: u32, iopoll: bool, side: Side) -> io::Result<UringChannel> {
        let ring = Ring::new(Arc::clone(&ctx.file), depth, iopoll)?;
        let aux = if iopoll { Some(Ring::new(Arc::clone(&ctx.file), depth.min(32), false)?) } else { None };
        Ok(UringChannel {
            ctx,
            side,
            side_channel: None,
            ring,
            aux,
            reqs: Vec::new(),
            free_ids: Vec::new(),
            backlog: VecDeque::new(),
            ready: VecDeque::new(),
            reaped: Vec::new(),
            active: 0,
        })
    }

    fn insert(&mut self, req: Req) -> u64 {
        self.active += 1;
        match self.free_ids.pop() {
            Some(id) => {
                if let Some(slot) = self.reqs.get_mut(id) {
                    *slot = Some(req);
                }
                id as u64
            }
            None => {
                self.reqs.push(Some(req));
                (self.reqs.len() - 1) as u64
            }
        }
    }

    fn finish(&mut self, id: u64, result: Result<(), BdevError>, buf: Option<Buf>) {
        let Some(req) = usize::try_from(id)
            .ok()
            .and_then(|i| self.reqs.get_mut(i))
            .and_then(Option::take)
        else {
            return;
        };
        self.free_ids.push(id as usize);
        self.active -= 1;
        self.ready.push_back(Completion {
            tag: req.tag,
            result,
            buf,
        });
    }

    /// Queues an operation behind any backlog.
    fn start(&mut self, id: u64, op: RingOp) {
        if !self.backlog.is_empty() {
            self.backlog.push_back((id, op));
            return;
        }
        if let Err(op) = self.ring_for(&op).push(id, op) {
            self.backlog.push_back((id, op));
        }
    }

    /// The ring an operation goes to: reads and writes to the main ring, the rest to the auxiliary ring if any.
    fn ring_for(&mut self, op: &RingOp) -> &mut Ring {
        match (op, self.aux.as_mut()) {
            (RingOp::Fsync | RingOp::Fallocate { .. }, Some(aux)) => aux,
            _ => &mut self.ring,
        }
    }

    fn drain_backlog(&mut self) {
        while let Some((id, op)) = self.backlog.pop_front() {
            if let Err(op) = self.ring_for(&op).push(id, op) {
                self.backlog.push_front((id, op));
                break;
            }
        }
    }

    /// The next zero-writing step of a fallback, or completion when the range is done.
    fn zero_step(&mut self, id: u64, next: u64, end: u64) {
        if next >= end {
            self.finish(id, Ok(()), None);
            return;
        }
        let zeros = match self.ctx.zeros() {
            Ok(z) => z,
            Err(e) => return self.finish(id, Err(e), None),
        };
        let len = usize::try_from(end - next)
            .unwrap_or(usize::MAX)
            .min(zeros.len());
        if let Some(Some(req)) = usize::try_from(id).ok().and_then(|i| self.reqs.get_mut(i)) {
            req.state = State::ZeroFill { next, end };
        }
        self.start(
            id,
            RingOp::Write {
                offset: next,
                data: Data::Zeros(zeros),
                at: 0,
                len,
                dsync: false,
            },
        );
    }

    fn fallocate_flag(&self, kind: ZeroKind) -> &AtomicBool {
        match kind {
            ZeroKind::Unmap => &self.ctx.punch_ok,
            ZeroKind::WriteZeroes => &self.ctx.zero_range_ok,
        }
    }

    fn zero_request(&mut self, id: u64, offset: u64, len: u64, kind: ZeroKind) {
        if len == 0 {
            return self.finish(id, Ok(()), None);
        }
        if self.fallocate_flag(kind).load(Ordering::Relaxed) {
            let mode = match kind {
                ZeroKind::Unmap => sys::PUNCH_HOLE,
                ZeroKind::WriteZeroes => sys::ZERO_RANGE,
            };
            self.start(id, RingOp::Fallocate { offset, len, mode });
        } else {
            self.zero_step(id, offset, offset + len);
        }
    }

    fn set_state(&mut self, id: u64, state: State) {
        if let Some(Some(req)) = usize::try_from(id).ok().and_then(|i| self.reqs.get_mut(i)) {
            req.state = state;
        }
    }

    /// Continues or finishes a read/write after a CQE of `res` bytes (or `-errno`).
    fn transfer_step(
        &mut self,
        id: u64,
        res: i32,
        buf: Buf,
        offset: u64,
        done: usize,
        write: Option<bool>,
    ) {
        let total = buf.len();
        if res < 0 && res != -libc::EINTR && res != -libc::EAGAIN {
            return self.finish(
                id,
                Err(io::Error::from_raw_os_error(-res).into()),
                Some(buf),
            );
        }
        let done = done + usize::try_from(res).unwrap_or(0);
        if done >= total {
            return self.finish(id, Ok(()), Some(buf));
        }
        if res == 0 {
            // End of file (or device) inside the range: the file shrank under us.
            let kind = if write.is_some() {
                io::ErrorKind::WriteZero
            } else {
                io::ErrorKind::UnexpectedEof
            };
            return self.finish(id, Err(io::Error::from(kind).into()), Some(buf));
        }
        let pos = offset + done as u64;
        match write {
            None => {
                self.set_state(id, State::Read { offset, done });
                self.start(
                    id,
                    RingOp::Read {
                        offset: pos,
                        buf,
                        at: done,
                    },
                );
            }
            Some(fua) => {
                self.set_state(id, State::Write { offset, done, fua });
                let op = RingOp::Write {
                    offset: pos,
                    data: Data::Buf(buf),
                    at: done,
                    len: total - done,
                    dsync: fua,
                };
                self.start(id, op);
            }
        }
    }

    /// Handles one CQE.
    fn complete(&mut self, r: Reaped) {
        let Reaped { user: id, res, op } = r;
        let Some(state) = usize::try_from(id)
            .ok()
            .and_then(|i| self.reqs.get(i))
            .and_then(|r| r.as_ref())
            .map(|r| r.state)
        else {
            tracing::warn!(id, "io_uring completion for an unknown request");
            return;
        };
        let retry = res == -libc::EINTR || res == -libc::EAGAIN;
        let os_err = |res: i32| -> BdevError { io::Error::from_raw_os_error(-res).into() };
        match (state, op) {
            (State::Read { offset, done }, RingOp::Read { buf, .. }) => {
                self.transfer_step(id, res, buf, offset, done, None);
            }
            (
                State::Write { offset, done, fua },
                RingOp::Write {
                    data: Data::Buf(buf),
                    ..
                },
            ) => {
                self.transfer_step(id, res, buf, offset, done, Some(fua));
            }
            (State::Flush, RingOp::Fsync) => {
                if retry {
                    return self.start(id, RingOp::Fsync);
                }
                self.finish(id, if res < 0 { Err(os_err(res)) } else { Ok(()) }, None);
            }
            (State::Fallocate { offset, len, kind }, RingOp::Fallocate { mode, .. }) => {
                if retry {
                    return self.start(id, RingOp::Fallocate { offset, len, mode });
                }
                if res >= 0 {
                    return self.finish(id, Ok(()), None);
                }
                if sys::fallocate_unsupported(-res) {
                    tracing::debug!(errno = -res, mode, "fallocate unsupported; writing zeros");
                    self.fallocate_flag(kind).store(false, Ordering::Relaxed);
                    return self.zero_step(id, offset, offset + len);
                }
                self.finish(id, Err(os_err(res)), None);
            }
            (
                State::ZeroFill { next, end },
                RingOp::Write {
                    data: Data::Zeros(_),
                    ..
                },
            ) => {
                if res < 0 && !retry {
                    return self.finish(id, Err(os_err(res)), None);
                }
                if res == 0 {
                    return self.finish(
                        id,
                        Err(io::Error::from(io::ErrorKind::WriteZero).into()),
                        None,
                    );
                }
                let next = next + u64::try_from(res).unwrap_or(0);
                self.zero_step(id, next, end);
            }
            (_, op) => {
                let buf = match op {
                    RingOp::Read { buf, .. }
                    | RingOp::Write {
                        data: Data::Buf(buf),
                        ..
                    } => Some(buf),
                    _ => None,
                };
                self.finish(
                    id,
                    Err(io::Error::other("mismatched io_uring completion").into()),
                    buf,
                );
            }
        }
    }

    /// Hands queued SQEs to the kernel. Transient errors (EAGAIN/EBUSY/EINTR) are absorbed by the ring; others
    /// are logged and the SQEs stay queued for the next poll.
    fn kick(&mut self) {
        if let Err(e) = self.ring.submit() {
            tracing::warn!(error = %e, "io_uring submit failed");
        }
        if let Some(aux) = self.aux.as_mut() {
            if let Err(e) = aux.submit() {
                tracing::warn!(error = %e, "io_uring submit failed");
            }
        }
    }
}

impl Channel for UringChannel {
    fn submit(&mut self, io: Io) {
        let Io { tag, op } = io;
        if let Err(e) = self.ctx.check(&op) {
            self.ready.push_back(Completion::of(tag, op, Err(e)));
            return;
        }
        match op {
            Op::Allocation { .. } => {
                if self.side_channel.is_none() {
                    match super::side_channel(&self.side.workers, &self.ctx, &self.side.name, self.side.threads.load(std::sync::atomic::Ordering::Acquire)) {
                        Ok(ch) => self.side_channel = Some(ch),
                        Err(e) => return self.ready.push_back(Completion::of(tag, op, Err(e))),
                    }
                }
                if let Some(ch) = self.side_channel.as_mut() {
                    ch.submit(Io { tag, op });
                }
            }
            Op::Read { offset, buf } => {
                if buf.is_empty() {
                    return self.ready.push_back(Completion {
                        tag,
                        result: Ok(()),
                        buf: Some(buf),
                    });
                }
                let id = self.insert(Req {
                    tag,
                    state: State::Read { offset, done: 0 },
                });
                self.start(id, RingOp::Read { offset, buf, at: 0 });
            }
            Op::Write { offset, buf, fua } => {
                if buf.is_empty() {
                    return self.ready.push_back(Completion {
                        tag,
                        result: Ok(()),
                        buf: Some(buf),
                    });
                }
                let id = self.insert(Req {
                    tag,
                    state: State::Write {
                        offset,
                        done: 0,
                        fua,
                    },
                });
                let len = buf.len();
                self.start(
                    id,
                    RingOp::Write {
                        offset,
                        data: Data::Buf(buf),
                        at: 0,
                        len,
                        dsync: fua,
                    },
                );
            }
            Op::Flush => {
                let id = self.insert(Req {
                    tag,
                    state: State::Flush,
                });
                self.start(id, RingOp::Fsync);
            }
            Op::Unmap { offset, len } => {
                let kind = ZeroKind::Unmap;
                let id = self.insert(Req {
                    tag,
                    state: State::Fallocate { offset, len, kind },
                });
                self.zero_request(id, offset, len, kind);
            }
            Op::WriteZeroes { offset, len } => {
                let kind = ZeroKind::WriteZeroes;
                let id = self.insert(Req {
                    tag,
                    state: State::Fallocate { offset, len, kind },
                });
                self.zero_request(id, offset, len, kind);
            }
        }
    }

    fn poll(&mut self, done: &mut Vec<Completion>) -> usize {
        let side = self.side_channel.as_mut().map_or(0, |ch| ch.poll(done));
        self.drain_backlog();
        self.kick();
        let mut reaped = std::mem::take(&mut self.reaped);
        // Reaping frees ring slots, which lets the backlog in; repeat while that yields more work done.
        loop {
            let mut n = self.ring.reap(&mut reaped);
            if let Some(aux) = self.aux.as_mut() {
                n += aux.reap(&mut reaped);
            }
            if n == 0 {
                break;
            }
            for r in reaped.drain(..) {
                self.complete(r);
            }
            self.drain_backlog();
            self.kick();
        }
        self.reaped = reaped;
        let n = self.ready.len();
        done.extend(self.ready.drain(..));
        n + side
    }

    fn in_flight(&self) -> usize {
        self.active + self.ready.len() + self.side_channel.as_ref().map_or(0, |ch| ch.in_flight())
    }
}
