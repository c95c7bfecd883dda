//! EXTENDED COPY in the driver: the copy manager's data movement (SPC-4 §6.4).
//!
//! The SCSI core parsed the parameter list ([`CopyJob`]); here the copy targets are found among the logical units
//! the command's I_T nexus reaches (its session's LUN set, [`LogicalUnit::is_copy_target`]), and every segment is
//! copied in chunks of at most [`CHUNK`] bytes: a read of the source into a pool buffer, then a write of the same
//! buffer to the destination, one bdev I/O at a time under the command's tag (so task management sees one tag, as
//! for the other multi-step operations). Each I/O holds its byte range shared in its device's range lock, so a
//! COMPARE AND WRITE (exclusive) is never interleaved with a chunk; a chunk that must wait for the lock waits
//! without blocking the reactor and is retried from the bdev poller when the lock's epoch moves. An abort (task
//! management, PREEMPT AND ABORT, a closing connection) stops the copy after the I/O in flight.
//!
//! [`LogicalUnit::is_copy_target`]: polltgt_scsi::LogicalUnit::is_copy_target

use std::sync::Arc;
use std::time::Instant;

use polltgt_bdev::{Buf, Completion, Io, Op};
use polltgt_iscsi::session::{CommandResult, ScsiTask};
use polltgt_scsi::{CopyFailure, CopyJob, CopyOutcome, CopyTargetRef, IoResult, SegmentIo};

use super::blockops::Hold;
use super::{bdev_error_to_io_result, clamp32, IoClass, Pending, PendingKind, ReactorState};
use crate::registry::Device;

/// Largest read or write of one copy step.
const CHUNK: u64 = 1 << 20;

/// The step a copy is at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Read the next chunk of the current segment from the source.
    Read,
    /// Write the chunk just read to the destination.
    Write,
}

/// An EXTENDED COPY in flight.
pub(super) struct CopyOp {
    job: Box<CopyJob>,
    /// The copy target of each target descriptor (`None`: null or not found) and whether its LUN is read-only.
    targets: Vec<Option<(Arc<Device>, bool)>>,
    /// The segment being processed and its byte ranges (once checked).
    segment: usize,
    io: Option<SegmentIo>,
    /// Bytes of the current segment written.
    done: u64,
    /// Bytes written in all.
    bytes: u64,
    step: Step,
    /// Length of the chunk being read or written.
    chunk: u64,
    /// The chunk read, to be written.
    buf: Option<Buf>,
    /// What the I/O in flight holds in the range lock, and of which device.
    hold: Option<(Arc<Device>, Hold)>,
}

impl CopyOp {
    /// Devices the copy uses (so their range-lock state stays while it runs).
    pub(super) fn devices(&self) -> impl Iterator<Item = u64> + '_ {
        self.targets.iter().flatten().map(|(d, _)| d.id)
    }
}

/// A copy waiting for its range: its tag, the device and the lock epoch it last tried at.
pub(super) struct CopyWait {
    tag: u64,
    device: Arc<Device>,
    epoch: u64,
}

/// What to do next with a copy.
enum Next {
    /// An I/O was submitted, or the copy waits for its range.
    Wait,
    /// The copy is over.
    Finish(Option<CopyFailure>),
}

impl ReactorState {
    /// Starts an EXTENDED COPY handed out by the logical unit of `device` (the copy manager).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_copy(
        &mut self,
        i: usize,
        task: ScsiTask,
        device: Arc<Device>,
        lun: u64,
        job: Box<CopyJob>,
        hold: Hold,
        now: Instant,
    ) {
        self.release_hold(&device, hold);
        let Some(slot) = self.slots.get_mut(i).and_then(|s| s.as_mut()) else {
            return;
        };
        // The copy targets: logical units of this session's LUN set whose designators the descriptors name.
        let targets: Vec<Option<(Arc<Device>, bool)>> = match slot.session.as_ref() {
            Some(s) => job
                .targets()
                .iter()
                .map(|t| {
                    s.target
                        .luns
                        .values()
                        .find(|e| e.device.lu.is_copy_target(t))
                        .map(|e| (e.device.clone(), e.read_only))
                })
                .collect(),
            None => vec![None; job.targets().len()],
        };
        let tag = self.next_tag;
        self.next_tag += 1;
        slot.in_flight.push(tag);
        let generation = slot.generation;
        let op = CopyOp {
            job,
            targets,
            segment: 0,
            io: None,
            done: 0,
            bytes: 0,
            step: Step::Read,
            chunk: 0,
            buf: None,
            hold: None,
        };
        let failure = {
            let refs = refs(&op.targets);
            op.job.check_targets(&refs).err().map(CopyFailure::Sense)
        };
        let p = Pending {
            slot: i,
            generation,
            task: task.id,
            device,
            lun,
            cdb: task.cdb,
            edtl: task.edtl,
            kind: PendingKind::Copy(Box::new(op)),
            hold: Hold::Nothing,
            aborted: false,
        };
        match failure {
            Some(f) => self.finish_copy(tag, p, Some(f), now),
            None => self.advance_copy(tag, p, None, now),
        }
    }

    /// A bdev completion of a copy step.
    pub(super) fn copy_io_done(&mut self, tag: u64, p: Pending, c: Completion, now: Instant) {
        self.advance_copy(tag, p, Some(c), now);
    }

    /// Copies waiting for their range: retried when their lock moved, stopped when aborted.
    pub(super) fn poll_copy_waits(&mut self, now: Instant) {
        if self.copy_waits.is_empty() {
            return;
        }
        for w in std::mem::take(&mut self.copy_waits) {
            let Some(p) = self.pending.remove(&w.tag) else { continue };
            if w.device.range_lock.epoch() == w.epoch && !self.copy_stopped(w.tag, &p) {
                self.pending.insert(w.tag, p);
                self.copy_waits.push(w);
                continue;
            }
            self.advance_copy(w.tag, p, None, now);
        }
    }

    /// Whether the copy must stop after its current step: aborted (task management, PREEMPT AND ABORT) or its
    /// connection going away.
    fn copy_stopped(&self, tag: u64, p: &Pending) -> bool {
        match self.slots.get(p.slot).and_then(|s| s.as_ref()) {
            Some(s) if s.generation == p.generation => {
                p.aborted || s.closing || s.tmfs.iter().any(|t| t.waiting_for.contains(&tag))
            }
            _ => true,
        }
    }

    /// Takes the completion of the last step (if any) into account and starts the next one, or ends the copy.
    fn advance_copy(&mut self, tag: u64, mut p: Pending, c: Option<Completion>, now: Instant) {
        let stopped = self.copy_stopped(tag, &p);
        let PendingKind::Copy(op) = &mut p.kind else { return };
        if let Some((device, hold)) = op.hold.take() {
            self.release_hold(&device, hold);
        }
        let mut failure = None;
        if let Some(c) = c {
            match c.result {
                Err(e) => {
                    failure = Some(CopyFailure::Io {
                        segment: op.segment,
                        source: op.step == Step::Read,
                        result: bdev_error_to_io_result(&e),
                    })
                }
                Ok(()) => {
                    op.buf = c.buf;
                    match op.step {
                        Step::Read => op.step = Step::Write,
                        Step::Write => {
                            op.done += op.chunk;
                            op.bytes += op.chunk;
                            op.step = Step::Read;
                        }
                    }
                }
            }
        }
        if failure.is_none() && stopped {
            failure = Some(CopyFailure::Io { segment: op.segment, source: true, result: IoResult::Other });
        }
        let next = match failure {
            Some(f) => Next::Finish(Some(f)),
            None => self.next_copy_step(tag, &mut p),
        };
        match next {
            Next::Wait => {
                self.pending.insert(tag, p);
            }
            Next::Finish(f) => self.finish_copy(tag, p, f, now),
        }
    }

    /// Submits the next read or write of the copy, or parks it until its range is free.
    fn next_copy_step(&mut self, tag: u64, p: &mut Pending) -> Next {
        let nexus = self.nexus_of(p.slot);
        let PendingKind::Copy(op) = &mut p.kind else {
            return Next::Finish(None);
        };
        // The segment to work on.
        let io = loop {
            match op.io {
                Some(io) if op.done < io.len => break io,
                Some(_) => {
                    op.io = None;
                    op.segment += 1;
                }
                None if op.segment >= op.job.segment_count() => return Next::Finish(None),
                None => match op.job.segment(op.segment, nexus, &refs(&op.targets)) {
                    Ok(io) => {
                        op.io = Some(io);
                        op.done = 0;
                    }
                    Err(s) => return Next::Finish(Some(CopyFailure::Sense(s))),
                },
            }
        };
        let (target, offset) = match op.step {
            Step::Read => (io.source, io.source_offset + op.done),
            Step::Write => (io.destination, io.destination_offset + op.done),
        };
        let Some((device, _)) = op.targets.get(target).cloned().flatten() else {
            return Next::Finish(Some(CopyFailure::Io { segment: op.segment, source: true, result: IoResult::Other }));
        };
        let io_failure = |op: &CopyOp| CopyFailure::Io {
            segment: op.segment,
            source: op.step == Step::Read,
            result: IoResult::Other,
        };
        let len = match op.step {
            Step::Read => (io.len - op.done).min(CHUNK),
            Step::Write => op.chunk,
        };
        let hold = match self.acquire(&device, offset, offset.saturating_add(len), false, None) {
            Ok(hold) => hold,
            Err(_) => {
                let epoch = device.range_lock.epoch();
                self.copy_waits.push(CopyWait { tag, device, epoch });
                return Next::Wait;
            }
        };
        let PendingKind::Copy(op) = &mut p.kind else {
            return Next::Finish(None);
        };
        let bdev_op = match op.step {
            Step::Read => {
                let buf = match op.buf.take() {
                    Some(mut b) if b.len() >= len as usize => {
                        b.truncate(len as usize);
                        Ok(b)
                    }
                    _ => self.pool.alloc(len as usize),
                };
                let Ok(buf) = buf else {
                    self.release_hold(&device, hold);
                    return Next::Finish(Some(io_failure(op)));
                };
                op.chunk = len;
                Op::Read { offset, buf }
            }
            Step::Write => {
                let Some(buf) = op.buf.take() else {
                    self.release_hold(&device, hold);
                    return Next::Finish(Some(io_failure(op)));
                };
                Op::Write { offset, buf, fua: !device.lu.write_cache_enabled() }
            }
        };
        op.hold = Some((device.clone(), hold));
        if let std::collections::hash_map::Entry::Vacant(e) = self.channels.entry(device.id) {
            match device.bdev.open_channel() {
                Ok(ch) => {
                    e.insert(ch);
                }
                Err(err) => {
                    tracing::error!(device = %device.name, error = %err, "cannot open a bdev channel");
                    self.completions.push(Completion::of(tag, bdev_op, Err(err)));
                    return Next::Wait;
                }
            }
        }
        match self.channels.get_mut(&device.id) {
            Some(ch) => ch.submit(Io { tag, op: bdev_op }),
            None => {
                let err = polltgt_bdev::BdevError::InvalidConfig("bdev channel is gone".into());
                self.completions.push(Completion::of(tag, bdev_op, Err(err)));
            }
        }
        Next::Wait
    }

    /// Ends the copy: the logical unit records the results and gives the status.
    fn finish_copy(&mut self, tag: u64, p: Pending, failure: Option<CopyFailure>, now: Instant) {
        let PendingKind::Copy(mut op) = p.kind else { return };
        if let Some((device, hold)) = op.hold.take() {
            self.release_hold(&device, hold);
        }
        if let Some(Some(slot)) = self.slots.get_mut(p.slot) {
            if slot.generation == p.generation {
                slot.in_flight.retain(|t| *t != tag);
            }
        }
        let cmd = polltgt_scsi::Command {
            nexus: self.nexus_of(p.slot),
            lun: p.lun,
            cdb: &p.cdb,
            expected_len: p.edtl,
            data_out: None,
        };
        let outcome = CopyOutcome { segments: op.segment, bytes: op.bytes, failure };
        let r = p.device.lu.copy_done(&cmd, &op.job, &outcome);
        let live = matches!(self.slots.get(p.slot), Some(Some(s)) if s.generation == p.generation);
        if live {
            let transfer_len = p.device.lu.data_out_len(&p.cdb).unwrap_or(0);
            let result = CommandResult {
                status: r.status as u8,
                sense: r.sense,
                data_in: Vec::new(),
                transfer_len: clamp32(transfer_len),
            };
            self.count_io(p.slot, p.lun, IoClass::Other, &result);
            self.complete(p.slot, p.task, result, now);
            self.check_tmfs(p.slot, tag, now);
        }
        self.preempt_io_done(tag, now);
        self.reset_io_done(tag, now);
    }
}

/// The copy targets as the SCSI core sees them.
fn refs(targets: &[Option<(Arc<Device>, bool)>]) -> Vec<Option<CopyTargetRef<'_>>> {
    targets.iter().map(|t| t.as_ref().map(|(d, ro)| CopyTargetRef { lu: &d.lu, read_only: *ro })).collect()
}
