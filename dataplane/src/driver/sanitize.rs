//! SANITIZE in the driver: the sanitize operation runs in the background of the reactor its command arrived on
//! (SBC-3 §4.11, §5.19).
//!
//! Once the command holds the whole medium exclusively in the range lock (in-flight I/O drained), the operation
//! starts ([`polltgt_scsi::LogicalUnit::sanitize_started`]) and is owned by the reactor, not by the command or
//! its connection: it runs one bdev I/O at a time under its own tags (overwrite passes in writes of at most
//! [`CHUNK`] bytes, or one Unmap of the whole medium for BLOCK ERASE, then a Flush so that the medium is sanitized
//! on stable storage when the operation ends), reports its progress to the logical unit after every I/O, and ends
//! with [`polltgt_scsi::LogicalUnit::sanitize_done`]. Task management (ABORT TASK, ABORT TASK SET, CLEAR TASK SET,
//! LOGICAL UNIT RESET, target resets), PREEMPT AND ABORT and the loss of the connection end a SANITIZE command with
//! IMMED = 0 that waits for the operation (its status is never sent), never the operation.

use std::sync::Arc;
use std::time::Instant;

use polltgt_bdev::{Buf, Completion, Io, Op};
use polltgt_hugepages::BufPool;
use polltgt_iscsi::session::{CommandResult, ScsiTask};
use polltgt_scsi::{IoResult, Response, SanitizeOp};

use super::blockops::{Hold, TASK_ABORTED};
use super::{bdev_error_to_io_result, command_result, IoClass, ReactorState};
use crate::registry::Device;

/// Largest write of an overwrite pass.
const CHUNK: u64 = 1 << 20;

/// The I/O of one sanitize operation, step by step, without the reactor (tested on its own).
pub(super) struct Sweep {
    work: Work,
    /// Medium size in bytes.
    size: u64,
    block: u64,
    /// The buffer of the last write, reused while the pass's pattern stays the same.
    template: Option<Buf>,
    /// The final Flush was submitted.
    flushed: bool,
}

enum Work {
    /// OVERWRITE: pass `pass` of `passes` has written up to `next`.
    Overwrite { pattern: Vec<u8>, invert: bool, passes: u8, pass: u8, next: u64 },
    /// BLOCK ERASE: one Unmap of everything.
    Erase { submitted: bool },
}

/// What a [`Sweep`] does next.
pub(super) enum Next {
    Submit(Op),
    Done(IoResult),
}

impl Sweep {
    pub(super) fn new(op: SanitizeOp, size: u64, block: u64) -> Self {
        let work = match op {
            SanitizeOp::Overwrite { pattern, invert, passes } => {
                Work::Overwrite { pattern, invert, passes: passes.max(1), pass: 0, next: 0 }
            }
            SanitizeOp::BlockErase => Work::Erase { submitted: false },
        };
        Self { work, size, block: block.max(1), template: None, flushed: false }
    }

    /// The first I/O (`last` is `None`), or the one after the completion `last`; `Done` when the operation ended.
    pub(super) fn next(&mut self, last: Option<Completion>, pool: &BufPool) -> Next {
        if let Some(c) = last {
            if let Err(e) = &c.result {
                return Next::Done(bdev_error_to_io_result(e));
            }
            if c.buf.is_some() {
                self.template = c.buf;
            }
        }
        if self.flushed {
            return Next::Done(IoResult::Ok);
        }
        let size = self.size;
        match &mut self.work {
            Work::Erase { submitted } if !*submitted && size > 0 => {
                *submitted = true;
                return Next::Submit(Op::Unmap { offset: 0, len: size });
            }
            Work::Erase { .. } => {}
            Work::Overwrite { pattern, invert, passes, pass, next } => {
                if *next >= size && size > 0 && *pass + 1 < *passes {
                    // The next pass; its pattern may be the inverse of this one's.
                    *pass += 1;
                    *next = 0;
                    self.template = None;
                }
                if *next < size {
                    // SBC-4 §5.30.2: with INVERT the pattern is inverted between passes, and the last pass writes
                    // the INITIALIZATION PATTERN itself (so the first pass is inverted when OWCOUNT is even).
                    let flip = if *invert && (*passes - 1 - *pass) % 2 == 1 { 0xFF } else { 0 };
                    let bs = self.block as usize;
                    let len = (size - *next).min(CHUNK / self.block * self.block) as usize;
                    let mut buf = match self.template.take() {
                        Some(b) if b.len() >= len => b,
                        _ => {
                            let Ok(mut b) = pool.alloc(len) else { return Next::Done(IoResult::Other) };
                            for chunk in b.chunks_mut(bs) {
                                for (i, byte) in chunk.iter_mut().enumerate() {
                                    *byte = pattern.get(i % pattern.len().max(1)).copied().unwrap_or(0) ^ flip;
                                }
                            }
                            b
                        }
                    };
                    buf.truncate(len);
                    let op = Op::Write { offset: *next, buf, fua: false };
                    *next += len as u64;
                    return Next::Submit(op);
                }
            }
        }
        self.flushed = true;
        Next::Submit(Op::Flush)
    }

    /// Work done and in all, in bytes (BLOCK ERASE: 0 of 1 until it ends).
    pub(super) fn progress(&self) -> (u64, u64) {
        match &self.work {
            Work::Overwrite { passes, pass, next, .. } => {
                let total = self.size.saturating_mul(u64::from(*passes));
                (self.size.saturating_mul(u64::from(*pass)).saturating_add(*next), total)
            }
            Work::Erase { .. } => (0, 1),
        }
    }
}

/// A sanitize operation in flight on this reactor.
pub(super) struct SanitizeRun {
    pub(super) device: Arc<Device>,
    lun: u64,
    /// The whole medium, exclusively.
    hold: Hold,
    sweep: Sweep,
    /// The SANITIZE with IMMED = 0 waiting for the end, while its task lives.
    waiter: Option<Waiter>,
}

pub(super) struct Waiter {
    slot: usize,
    generation: u64,
    task: ScsiTask,
}

impl ReactorState {
    /// Starts the sanitize operation of a SANITIZE command that holds the whole medium (`hold`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_sanitize(
        &mut self,
        i: usize,
        task: ScsiTask,
        device: Arc<Device>,
        lun: u64,
        op: SanitizeOp,
        immed: bool,
        hold: Hold,
        now: Instant,
    ) {
        device.lu.sanitize_started();
        let info = device.bdev.info();
        let sweep = Sweep::new(op, info.size_bytes(), u64::from(info.block_size));
        tracing::info!(reactor = self.id, device = %device.name, immed, "sanitize operation started");
        let waiter = if immed {
            // IMMED = 1: the status now; the operation goes on.
            let result = command_result(&device, &task.cdb, Response::good(Vec::new()));
            self.count_io(i, lun, IoClass::Other, &result);
            self.complete(i, task.id, result, now);
            None
        } else {
            self.slots.get(i).and_then(|s| s.as_ref()).map(|s| Waiter { slot: i, generation: s.generation, task })
        };
        let run = SanitizeRun { device, lun, hold, sweep, waiter };
        self.sanitize_step(run, None, now);
    }

    /// The next I/O of `run` after `last` (its first when `None`), or its end.
    pub(super) fn sanitize_step(&mut self, mut run: SanitizeRun, last: Option<Completion>, now: Instant) {
        let step = run.sweep.next(last, &self.pool);
        let (done, total) = run.sweep.progress();
        run.device.lu.sanitize_progress(done, total);
        let op = match step {
            Next::Submit(op) => op,
            Next::Done(result) => return self.sanitize_end(run, result, now),
        };
        let tag = self.next_tag;
        self.next_tag += 1;
        let id = run.device.id;
        if let std::collections::hash_map::Entry::Vacant(e) = self.channels.entry(id) {
            match run.device.bdev.open_channel() {
                Ok(ch) => {
                    e.insert(ch);
                }
                Err(err) => {
                    tracing::error!(device = %run.device.name, error = %err, "cannot open a bdev channel");
                    self.completions.push(Completion::of(tag, op, Err(err)));
                    self.sanitizes.insert(tag, run);
                    return;
                }
            }
        }
        self.sanitizes.insert(tag, run);
        if let Some(ch) = self.channels.get_mut(&id) {
            ch.submit(Io { tag, op });
        }
    }

    /// The operation ended: the logical unit learns how, the medium is released, a waiting command gets its status.
    fn sanitize_end(&mut self, run: SanitizeRun, result: IoResult, now: Instant) {
        self.release_hold(&run.device, run.hold);
        let r = run.device.lu.sanitize_done(result);
        if result == IoResult::Ok {
            tracing::info!(reactor = self.id, device = %run.device.name, "sanitize operation completed");
        } else {
            tracing::warn!(reactor = self.id, device = %run.device.name, ?result, "sanitize operation failed");
        }
        let Some(w) = run.waiter else { return };
        let live = matches!(self.slots.get(w.slot), Some(Some(s)) if s.generation == w.generation);
        if live {
            let result = command_result(&run.device, &w.task.cdb, r);
            self.count_io(w.slot, run.lun, IoClass::Other, &result);
            self.complete(w.slot, w.task.id, result, now);
        }
    }

    /// SANITIZE commands of connection `i` waiting for their operation that `pred(task, lun)` selects (task
    /// management, PREEMPT AND ABORT) end now with TASK ABORTED (which the iSCSI layer drops); their operations go
    /// on.
    pub(super) fn release_sanitize_waiters(&mut self, i: usize, now: Instant, pred: impl Fn(&ScsiTask, Option<u64>) -> bool) {
        let Some(generation) = self.slots.get(i).and_then(|s| s.as_ref()).map(|s| s.generation) else { return };
        let mut ended = Vec::new();
        for run in self.sanitizes.values_mut() {
            let hit = run.waiter.as_ref().is_some_and(|w| w.slot == i && w.generation == generation && pred(&w.task, Some(run.lun)));
            if hit {
                if let Some(w) = run.waiter.take() {
                    ended.push(w.task.id);
                }
            }
        }
        for id in ended {
            let result = CommandResult { status: TASK_ABORTED, sense: None, data_in: Vec::new(), transfer_len: 0 };
            self.complete(i, id, result, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polltgt_bdev::{Bdev, Channel, RamBdev};
    use polltgt_hugepages::RegionOptions;

    /// Runs a sweep to its end on `ch`: the outcome, the ops it submitted (kinds) and the progress seen.
    fn drive(mut sweep: Sweep, ch: &mut dyn Channel, pool: &BufPool) -> (IoResult, Vec<&'static str>, Vec<(u64, u64)>) {
        let mut kinds = Vec::new();
        let mut progress = Vec::new();
        let mut last = None;
        loop {
            let next = sweep.next(last.take(), pool);
            progress.push(sweep.progress());
            match next {
                Next::Done(r) => return (r, kinds, progress),
                Next::Submit(op) => {
                    kinds.push(match &op {
                        Op::Write { .. } => "write",
                        Op::Unmap { .. } => "unmap",
                        Op::Flush => "flush",
                        _ => "other",
                    });
                    ch.submit(Io { tag: 1, op });
                    let mut done = Vec::new();
                    while ch.poll(&mut done) == 0 {}
                    last = done.pop();
                }
            }
        }
    }

    fn read(ch: &mut dyn Channel, offset: u64, len: usize) -> Vec<u8> {
        ch.submit(Io { tag: 9, op: Op::Read { offset, buf: Buf::zeroed(len) } });
        let mut done = Vec::new();
        while ch.poll(&mut done) == 0 {}
        done.pop().and_then(|c| c.buf).map(|b| b.to_vec()).expect("read")
    }

    #[test]
    fn overwrite_passes_progress_and_flush() {
        let dev = RamBdev::new("r", 512, 8192, &RegionOptions::small_pages()).expect("ram");
        let mut ch = dev.open_channel().expect("channel");
        let pool = BufPool::with_defaults();
        let size = dev.info().size_bytes();
        // 4 MiB, three passes of four 1 MiB writes, then a flush.
        let op = SanitizeOp::Overwrite { pattern: vec![0x0F, 0xF0, 0x5A], invert: true, passes: 3 };
        let (r, kinds, progress) = drive(Sweep::new(op, size, 512), ch.as_mut(), &pool);
        assert_eq!(r, IoResult::Ok);
        assert_eq!(kinds.len(), 13);
        assert!(kinds[..12].iter().all(|k| *k == "write") && kinds[12] == "flush", "{kinds:?}");
        assert!(progress.windows(2).all(|w| w[0].0 <= w[1].0), "progress only grows: {progress:?}");
        assert_eq!(progress.last(), Some(&(3 * size, 3 * size)));
        let back = read(ch.as_mut(), size - 1024, 1024);
        // The pattern repeats within each block; the last pass writes it uninverted.
        assert_eq!(&back[..6], &[0x0F, 0xF0, 0x5A, 0x0F, 0xF0, 0x5A]);
        assert_eq!(&back[510..514], &[0x0F, 0xF0, 0x0F, 0xF0]);
        // Two passes with INVERT: the first is inverted, the last is the pattern (SBC-4: OWCOUNT even).
        let op = SanitizeOp::Overwrite { pattern: vec![0x0F], invert: true, passes: 2 };
        let mut sweep = Sweep::new(op, size, 512);
        let Next::Submit(Op::Write { buf, .. }) = sweep.next(None, &pool) else { panic!("a write first") };
        assert!(buf.iter().all(|&b| b == 0xF0), "the first of two passes is inverted");
        let (r, _, _) = drive(Sweep::new(SanitizeOp::Overwrite { pattern: vec![0x0F], invert: true, passes: 2 }, size, 512), ch.as_mut(), &pool);
        assert_eq!(r, IoResult::Ok);
        assert!(read(ch.as_mut(), 0, 4096).iter().all(|&b| b == 0x0F));
    }

    #[test]
    fn block_erase_is_one_unmap_and_a_flush() {
        let dev = RamBdev::new("r", 512, 8192, &RegionOptions::small_pages()).expect("ram");
        let mut ch = dev.open_channel().expect("channel");
        let pool = BufPool::with_defaults();
        let size = dev.info().size_bytes();
        let (r, _, _) = drive(
            Sweep::new(SanitizeOp::Overwrite { pattern: vec![0x77], invert: false, passes: 1 }, size, 512),
            ch.as_mut(),
            &pool,
        );
        assert_eq!(r, IoResult::Ok);
        assert!(read(ch.as_mut(), 0, 4096).iter().all(|&b| b == 0x77));
        let (r, kinds, progress) = drive(Sweep::new(SanitizeOp::BlockErase, size, 512), ch.as_mut(), &pool);
        assert_eq!((r, kinds), (IoResult::Ok, vec!["unmap", "flush"]));
        assert_eq!(progress[0], (0, 1));
        assert!(read(ch.as_mut(), 0, 1 << 20).iter().all(|&b| b == 0));
    }

    #[test]
    fn an_empty_medium_only_flushes_and_errors_end_the_sweep() {
        let dev = RamBdev::new("r", 512, 8, &RegionOptions::small_pages()).expect("ram");
        let mut ch = dev.open_channel().expect("channel");
        let pool = BufPool::with_defaults();
        for op in [SanitizeOp::BlockErase, SanitizeOp::Overwrite { pattern: vec![1], invert: true, passes: 4 }] {
            let (r, kinds, _) = drive(Sweep::new(op, 0, 512), ch.as_mut(), &pool);
            assert_eq!((r, kinds), (IoResult::Ok, vec!["flush"]));
        }
        // A medium larger than the bdev: the write past its end fails and the sweep ends with the error.
        let op = SanitizeOp::Overwrite { pattern: vec![1], invert: false, passes: 1 };
        let (r, kinds, _) = drive(Sweep::new(op, 1 << 20, 512), ch.as_mut(), &pool);
        assert_eq!((r, kinds), (IoResult::OutOfRange, vec!["write"]));
    }
}
