//! Block operations beyond a single READ, WRITE or FLUSH, and the range lock around every block operation.
//!
//! - **Range lock.** Before a block operation starts, it takes its byte range in the device's [`RangeLock`]:
//!   shared for ordinary I/O (the fast path is one atomic load and a per-reactor counter), exclusive for COMPARE
//!   AND WRITE, ORWRITE, WRITE ATOMIC and SANITIZE. A command that must wait is parked and retried from the bdev
//!   poller when the lock's epoch moved; a parked command that is aborted or whose connection goes away gives its
//!   place up. Every reactor acknowledges new lock generations from the same poller once its own fast-path I/O on
//!   the device has drained.
//! - **Multi-step operations** ([`BlockOp`]): VERIFY (read and compare, also BYTCHK 11b), WRITE AND VERIFY with
//!   BYTCHK (write through, read back, compare), WRITE SAME (one WriteZeroes or Unmap, or the block replicated in
//!   1 MiB writes), UNMAP (one Unmap per descriptor), GET LBA STATUS (an Allocation query), COMPARE AND WRITE (read,
//!   compare, write), ORWRITE (read, OR, write) and WRITE ATOMIC (a write under the exclusive lock); SANITIZE runs
//!   in the background (sanitize.rs). Each runs one bdev I/O at a time under the command's bdev tag,
//!   so task management sees one tag per command, and stops early when a task management function waits for it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use polltgt_bdev::{Buf, Completion, Extent, Io, Op};
use polltgt_iscsi::session::{CommandResult, ScsiTask};
use polltgt_scsi::{
    Action, ByteCheck, Command, IoResult, LbaExtent, NexusId, ProvisioningStatus, Response,
};

use super::{bdev_error_to_io_result, clamp32, total_len, Pending, PendingKind, ReactorState};
use crate::reactor::PollStatus;
use crate::rangelock::Ticket;
use crate::registry::Device;

/// Largest buffer one step of WRITE SAME writes.
const CHUNK: u64 = 1 << 20;
/// SCSI status TASK ABORTED (SAM-5 §5.3.1), for parked commands a task management function took away.
pub(super) const TASK_ABORTED: u8 = 0x40;

/// This reactor's view of one device's range lock.
pub(super) struct LocalLock {
    device: Arc<Device>,
    /// Our reactor slot in the lock; `None`: no slot left, always the slow path.
    slot: Option<usize>,
    /// Fast-path I/Os of this reactor on the device in flight.
    fast: usize,
    /// The last generation acknowledged.
    acked: u64,
    /// The slot is marked idle in the lock (the reactor went to sleep with nothing in flight on the device).
    idle: bool,
}

/// What a block operation holds in the range lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    Nothing,
    /// Counted in [`LocalLock::fast`].
    Fast,
    /// Registered in the lock (shared on the slow path, or exclusive).
    Ticket(Ticket),
}

/// A command waiting for its range.
pub(super) struct Parked {
    slot: usize,
    generation: u64,
    task: ScsiTask,
    device: Arc<Device>,
    lun: u64,
    action: Action,
    /// The buffer a placed WRITE's data is in.
    claimed: Option<Buf>,
    /// The queued exclusive request, if any.
    ticket: Option<Ticket>,
    /// The lock's epoch when it was last tried.
    epoch: u64,
}

/// A command handed out by the logical unit ends without running to its completion (connection gone, aborted
/// while parked): the logical unit still hears of its end (a SANITIZE that never started keeps it busy until then).
pub(super) fn abandon(device: &Device, lun: u64, cdb: &[u8]) {
    let cmd = Command { nexus: NexusId(0), lun, cdb, expected_len: 0, data_out: None };
    let _ = device.lu.io_done(&cmd, IoResult::Other);
}

/// The byte range and access an action needs: `(start, end, exclusive)`.
fn lock_need(a: &Action) -> Option<(u64, u64, bool)> {
    let span = |offset: u64, len: u64| (offset, offset.saturating_add(len));
    let (start, end) = match a {
        // EXTENDED COPY takes the range of each of its steps on the copy targets (xcopy.rs).
        Action::Respond(_) | Action::Flush | Action::GetLbaStatus { .. } | Action::ExtendedCopy(_) => return None,
        Action::Read { offset, len, .. }
        | Action::Write { offset, len, .. }
        | Action::Verify { offset, len, .. }
        | Action::WriteVerify { offset, len }
        | Action::WriteSame { offset, len, .. } => span(*offset, *len),
        Action::Unmap { ranges } => {
            let start = ranges.iter().map(|r| r.0).min().unwrap_or(0);
            let end = ranges.iter().map(|r| r.0.saturating_add(r.1)).max().unwrap_or(0);
            (start, end)
        }
        Action::CompareAndWrite { offset, len, .. } | Action::OrWrite { offset, len, .. } | Action::WriteAtomic { offset, len, .. } => {
            let (s, e) = span(*offset, *len);
            return Some((s, e, true));
        }
        Action::Sanitize { .. } => return Some((0, u64::MAX, true)),
    };
    Some((start, end, false))
}

/// One step of a [`BlockOp`].
enum Step {
    Submit(Op),
    Done(Outcome),
}

enum Outcome {
    Io(IoResult),
    Response(Response),
}

/// A multi-step block operation in flight.
pub(super) struct BlockOp {
    state: State,
}

enum State {
    /// One read of the range, compared on completion.
    Verify { mode: ByteCheck, expected: Vec<Bytes>, block: usize },
    /// Write through, then read back and compare.
    WriteVerify { offset: u64, data: Vec<Bytes>, wrote: bool },
    /// Replicate `block` over `next..end` in writes of at most [`CHUNK`] bytes.
    WriteSame { next: u64, end: u64, fua: bool, block: Vec<u8>, template: Option<Buf> },
    /// One Unmap per range.
    Unmap { ranges: Vec<(u64, u64)>, next: usize },
    /// One Allocation query.
    LbaStatus { block_size: u64 },
    /// Read, compare with the first half of the Data-Out, write the second half.
    CompareAndWrite { offset: u64, len: u64, fua: bool, data: Vec<Bytes>, wrote: bool },
    /// Read, OR the Data-Out in, write.
    OrWrite { offset: u64, fua: bool, data: Vec<Bytes>, wrote: bool },
    /// One write under the exclusive lock.
    Atomic,
    /// The last step was submitted: its completion ends the command.
    Last,
}

/// Bytes `start..start + dst.len()` of the concatenation of `segs` into `dst` (zeros past the end).
fn copy_from(segs: &[Bytes], start: usize, dst: &mut [u8]) {
    dst.fill(0);
    let mut seg_start = 0usize;
    for s in segs {
        let seg_end = seg_start + s.len();
        let lo = start.max(seg_start);
        let hi = (start + dst.len()).min(seg_end);
        if lo < hi {
            dst[lo - start..hi - start].copy_from_slice(&s[lo - seg_start..hi - seg_start]);
        }
        seg_start = seg_end;
    }
}

/// The first offset (counted in `read`) where `read` differs from bytes `start..` of the concatenation of `segs`.
fn first_difference(read: &[u8], segs: &[Bytes], start: usize) -> Option<usize> {
    let mut seg_start = 0usize;
    for s in segs {
        let seg_end = seg_start + s.len();
        let lo = start.max(seg_start);
        let hi = (start + read.len()).min(seg_end);
        if lo < hi {
            let ours = &read[lo - start..hi - start];
            let theirs = &s[lo - seg_start..hi - seg_start];
            if let Some(p) = ours.iter().zip(theirs).position(|(a, b)| a != b) {
                return Some(lo - start + p);
            }
        }
        seg_start = seg_end;
    }
    None
}

impl BlockOp {
    /// The first step of `action`; `have` is the Data-Out received, `block` the block size.
    fn start(action: Action, data: Vec<Bytes>, block: u64, pool: &polltgt_hugepages::BufPool) -> (BlockOp, Step) {
        let have = total_len(&data) as u64;
        let whole = |len: u64| len.min(have) / block.max(1) * block.max(1);
        let alloc = |len: u64| pool.alloc(len as usize).ok();
        let fail = |state| (BlockOp { state }, Step::Done(Outcome::Io(IoResult::Other)));
        match action {
            Action::Verify { offset, len, byte_check } => {
                let len = match byte_check {
                    ByteCheck::Medium => len,
                    ByteCheck::Bytes => whole(len),
                    // The LU checked that the Data-Out is one block.
                    ByteCheck::OneBlock => len,
                };
                if len == 0 {
                    return (BlockOp { state: State::Last }, Step::Done(Outcome::Io(IoResult::Ok)));
                }
                let state = State::Verify { mode: byte_check, expected: data, block: block as usize };
                match alloc(len) {
                    Some(buf) => (BlockOp { state }, Step::Submit(Op::Read { offset, buf })),
                    None => fail(state),
                }
            }
            Action::WriteVerify { offset, len } => {
                let len = whole(len);
                if len == 0 {
                    return (BlockOp { state: State::Last }, Step::Done(Outcome::Io(IoResult::Ok)));
                }
                let Some(mut buf) = alloc(len) else { return fail(State::Last) };
                copy_from(&data, 0, &mut buf);
                let state = State::WriteVerify { offset, data, wrote: false };
                (BlockOp { state }, Step::Submit(Op::Write { offset, buf, fua: true }))
            }
            Action::WriteSame { offset, len, unmap, ndob, fua } => {
                let end = offset.saturating_add(len);
                if unmap {
                    return (BlockOp { state: State::Last }, Step::Submit(Op::Unmap { offset, len }));
                }
                let zeros = ndob || data.iter().all(|s| s.iter().all(|&b| b == 0));
                if zeros {
                    return (BlockOp { state: State::Last }, Step::Submit(Op::WriteZeroes { offset, len }));
                }
                let mut one = vec![0u8; block as usize];
                copy_from(&data, 0, &mut one);
                let mut op = BlockOp { state: State::WriteSame { next: offset, end, fua, block: one, template: None } };
                let step = op.write_same_step(None, pool);
                (op, step)
            }
            Action::Unmap { ranges } => {
                let mut op = BlockOp { state: State::Unmap { ranges, next: 0 } };
                let step = op.unmap_step();
                (op, step)
            }
            Action::GetLbaStatus { offset, len, max_extents } => {
                let records = (max_extents as usize).max(1);
                let buf = Buf::zeroed(records * Extent::RECORD_LEN);
                let state = State::LbaStatus { block_size: block };
                (BlockOp { state }, Step::Submit(Op::Allocation { offset, len, buf }))
            }
            Action::CompareAndWrite { offset, len, fua } => {
                let state = State::CompareAndWrite { offset, len, fua, data, wrote: false };
                match alloc(len) {
                    Some(buf) => (BlockOp { state }, Step::Submit(Op::Read { offset, buf })),
                    None => fail(state),
                }
            }
            Action::OrWrite { offset, len, fua } => {
                let len = whole(len);
                if len == 0 {
                    return (BlockOp { state: State::Last }, Step::Done(Outcome::Io(IoResult::Ok)));
                }
                let state = State::OrWrite { offset, fua, data, wrote: false };
                match alloc(len) {
                    Some(buf) => (BlockOp { state }, Step::Submit(Op::Read { offset, buf })),
                    None => fail(state),
                }
            }
            Action::WriteAtomic { offset, len, fua } => {
                let len = whole(len);
                if len == 0 {
                    return (BlockOp { state: State::Last }, Step::Done(Outcome::Io(IoResult::Ok)));
                }
                let Some(mut buf) = alloc(len) else { return fail(State::Last) };
                copy_from(&data, 0, &mut buf);
                (BlockOp { state: State::Atomic }, Step::Submit(Op::Write { offset, buf, fua }))
            }
            Action::Respond(r) => (BlockOp { state: State::Last }, Step::Done(Outcome::Response(r))),
            // SANITIZE runs in sanitize.rs, EXTENDED COPY in xcopy.rs; READ, WRITE and FLUSH are single I/Os of the
            // driver.
            Action::Sanitize { .. }
            | Action::Read { .. }
            | Action::Write { .. }
            | Action::Flush
            | Action::ExtendedCopy(_) => fail(State::Last),
        }
    }

    /// The next WRITE SAME write, reusing the template buffer the last one returned.
    fn write_same_step(&mut self, back: Option<Buf>, pool: &polltgt_hugepages::BufPool) -> Step {
        let State::WriteSame { next, end, fua, block, template } = &mut self.state else {
            return Step::Done(Outcome::Io(IoResult::Other));
        };
        if back.is_some() {
            *template = back;
        }
        if *next >= *end {
            return Step::Done(Outcome::Io(IoResult::Ok));
        }
        let bs = block.len().max(1) as u64;
        let len = (*end - *next).min(CHUNK / bs * bs) as usize;
        let mut buf = match template.take() {
            Some(b) if b.len() >= len => b,
            _ => {
                let Ok(mut b) = pool.alloc(len) else { return Step::Done(Outcome::Io(IoResult::Other)) };
                for chunk in b.chunks_mut(block.len().max(1)) {
                    let n = chunk.len();
                    chunk.copy_from_slice(&block[..n]);
                }
                b
            }
        };
        buf.truncate(len);
        let op = Op::Write { offset: *next, buf, fua: *fua };
        *next += len as u64;
        Step::Submit(op)
    }

    fn unmap_step(&mut self) -> Step {
        let State::Unmap { ranges, next } = &mut self.state else {
            return Step::Done(Outcome::Io(IoResult::Other));
        };
        match ranges.get(*next) {
            Some(&(offset, len)) => {
                *next += 1;
                Step::Submit(Op::Unmap { offset, len })
            }
            None => Step::Done(Outcome::Io(IoResult::Ok)),
        }
    }

    /// The step after a completion.
    fn next(&mut self, c: Completion, pool: &polltgt_hugepages::BufPool) -> Step {
        if let Err(e) = &c.result {
            return Step::Done(Outcome::Io(bdev_error_to_io_result(e)));
        }
        match &mut self.state {
            State::Verify { mode, expected, block } => {
                let read = c.buf.as_deref().unwrap_or(&[]);
                let diff = match mode {
                    ByteCheck::Medium => None,
                    ByteCheck::Bytes => first_difference(read, expected, 0),
                    ByteCheck::OneBlock => read
                        .chunks(*block)
                        .enumerate()
                        .find_map(|(i, b)| first_difference(b, expected, 0).map(|p| i * *block + p)),
                };
                Step::Done(Outcome::Io(match diff {
                    Some(offset) => IoResult::Miscompare { offset: offset as u64 },
                    None => IoResult::Ok,
                }))
            }
            State::WriteVerify { offset, data, wrote } => {
                if !*wrote {
                    *wrote = true;
                    let Some(buf) = c.buf else { return Step::Done(Outcome::Io(IoResult::Other)) };
                    // Read back into the same buffer.
                    return Step::Submit(Op::Read { offset: *offset, buf });
                }
                let read = c.buf.as_deref().unwrap_or(&[]);
                Step::Done(Outcome::Io(match first_difference(read, data, 0) {
                    Some(p) => IoResult::Miscompare { offset: p as u64 },
                    None => IoResult::Ok,
                }))
            }
            State::WriteSame { .. } => self.write_same_step(c.buf, pool),
            State::Unmap { .. } => self.unmap_step(),
            State::LbaStatus { .. } => Step::Done(Outcome::Io(IoResult::Ok)),
            State::CompareAndWrite { offset, len, fua, data, wrote } => {
                if *wrote {
                    return Step::Done(Outcome::Io(IoResult::Ok));
                }
                let Some(mut buf) = c.buf else { return Step::Done(Outcome::Io(IoResult::Other)) };
                if let Some(p) = first_difference(&buf, data, 0) {
                    return Step::Done(Outcome::Io(IoResult::Miscompare { offset: p as u64 }));
                }
                copy_from(data, *len as usize, &mut buf);
                *wrote = true;
                Step::Submit(Op::Write { offset: *offset, buf, fua: *fua })
            }
            State::OrWrite { offset, fua, data, wrote } => {
                if *wrote {
                    return Step::Done(Outcome::Io(IoResult::Ok));
                }
                let Some(mut buf) = c.buf else { return Step::Done(Outcome::Io(IoResult::Other)) };
                let mut theirs = vec![0u8; buf.len()];
                copy_from(data, 0, &mut theirs);
                buf.iter_mut().zip(&theirs).for_each(|(a, b)| *a |= b);
                *wrote = true;
                Step::Submit(Op::Write { offset: *offset, buf, fua: *fua })
            }
            State::Atomic | State::Last => Step::Done(Outcome::Io(IoResult::Ok)),
        }
    }

    /// Turns the Allocation answer into the logical blocks GET LBA STATUS reports.
    fn extents(&self, c: &Completion) -> Vec<LbaExtent> {
        let State::LbaStatus { block_size } = self.state else { return Vec::new() };
        let bs = block_size.max(1);
        c.buf
            .as_deref()
            .map(Extent::decode_all)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.len >= bs)
            .map(|e| LbaExtent {
                lba: e.offset / bs,
                blocks: e.len / bs,
                status: if e.allocated { ProvisioningStatus::Mapped } else { ProvisioningStatus::Deallocated },
            })
            .collect()
    }
}

impl ReactorState {
    /// The nexus of connection slot `i` (0 when it has no session any more).
    pub(super) fn nexus_of(&self, i: usize) -> NexusId {
        self.slots.get(i).and_then(|s| s.as_ref()).and_then(|s| s.session.as_ref()).map_or(NexusId(0), |s| s.nexus)
    }

    /// Takes the range `action` needs (or parks the command until it can), then starts it.
    /// `claimed`: the pool buffer a plain WRITE's data was received into (zero-copy receive, `crate::rx`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn begin(
        &mut self,
        i: usize,
        task: ScsiTask,
        device: Arc<Device>,
        lun: u64,
        action: Action,
        claimed: Option<Buf>,
        now: Instant,
    ) {
        let Some((start, end, exclusive)) = lock_need(&action) else {
            return self.start(i, task, device, lun, action, claimed, Hold::Nothing, now);
        };
        let epoch = device.range_lock.epoch();
        match self.acquire(&device, start, end, exclusive, None) {
            Ok(hold) => self.start(i, task, device, lun, action, claimed, hold, now),
            Err(ticket) => {
                let Some(slot) = self.slots.get(i).and_then(|s| s.as_ref()) else {
                    if let Some(t) = ticket {
                        device.range_lock.release(t);
                    }
                    return;
                };
                let generation = slot.generation;
                self.parked.push(Parked { slot: i, generation, task, device, lun, action, claimed, ticket, epoch });
            }
        }
    }

    fn local_lock(&mut self, device: &Arc<Device>) -> &mut LocalLock {
        self.locks.entry(device.id).or_insert_with(|| {
            let slot = device.range_lock.register();
            LocalLock { device: device.clone(), slot, fast: 0, acked: device.range_lock.generation(), idle: false }
        })
    }

    /// Takes `start..end` of `device`'s range lock; `Err` carries the queued exclusive request to retry with.
    pub(super) fn acquire(
        &mut self,
        device: &Arc<Device>,
        start: u64,
        end: u64,
        exclusive: bool,
        ticket: Option<Ticket>,
    ) -> Result<Hold, Option<Ticket>> {
        let local = self.local_lock(device);
        let lock = &device.range_lock;
        if local.idle {
            if let Some(slot) = local.slot {
                local.acked = lock.resume(slot);
            }
            local.idle = false;
        }
        if exclusive {
            let t = ticket.unwrap_or_else(|| lock.request_exclusive(start, end));
            if local.fast == 0 {
                // Nothing of ours on the fast path: acknowledge now rather than on the next poll.
                let g = lock.generation();
                if let Some(slot) = local.slot {
                    lock.acknowledge(slot, g);
                }
                local.acked = g;
            }
            return if lock.try_grant(t) { Ok(Hold::Ticket(t)) } else { Err(Some(t)) };
        }
        if local.slot.is_some() && lock.quiet() {
            local.fast += 1;
            return Ok(Hold::Fast);
        }
        lock.try_shared(start, end).map(Hold::Ticket).ok_or(None)
    }

    /// Gives back what a block operation held.
    pub(super) fn release_hold(&mut self, device: &Arc<Device>, hold: Hold) {
        match hold {
            Hold::Nothing => {}
            Hold::Fast => {
                if let Some(local) = self.locks.get_mut(&device.id) {
                    local.fast = local.fast.saturating_sub(1);
                }
            }
            Hold::Ticket(t) => device.range_lock.release(t),
        }
    }

    /// From the bdev poller: acknowledge lock generations once this reactor's fast-path I/O drained, and retry the
    /// parked commands whose lock moved.
    pub(super) fn poll_locks(&mut self, now: Instant) -> PollStatus {
        for local in self.locks.values_mut() {
            if local.fast == 0 && !local.idle {
                let g = local.device.range_lock.generation();
                if g != local.acked {
                    if let Some(slot) = local.slot {
                        local.device.range_lock.acknowledge(slot, g);
                    }
                    local.acked = g;
                }
            }
        }
        if self.parked.is_empty() {
            return PollStatus::Idle;
        }
        let mut busy = PollStatus::Idle;
        for mut p in std::mem::take(&mut self.parked) {
            let live = matches!(self.slots.get(p.slot), Some(Some(s)) if s.generation == p.generation);
            if !live {
                if let Some(t) = p.ticket {
                    p.device.range_lock.release(t);
                }
                abandon(&p.device, p.lun, &p.task.cdb);
                continue;
            }
            let epoch = p.device.range_lock.epoch();
            if epoch == p.epoch {
                self.parked.push(p);
                continue;
            }
            let Some((start, end, exclusive)) = lock_need(&p.action) else {
                self.start(p.slot, p.task, p.device, p.lun, p.action, p.claimed, Hold::Nothing, now);
                continue;
            };
            match self.acquire(&p.device, start, end, exclusive, p.ticket) {
                Ok(hold) => {
                    busy = PollStatus::Busy;
                    self.start(p.slot, p.task, p.device, p.lun, p.action, p.claimed, hold, now);
                }
                Err(ticket) => {
                    p.ticket = ticket;
                    p.epoch = epoch;
                    self.parked.push(p);
                }
            }
        }
        busy
    }

    /// Interrupt mode, before the reactor sleeps: whether it may (no command waits for a range; waiting commands
    /// are retried from the bdev poller), and if so its slots in the range locks it holds nothing in are marked
    /// idle, so that an exclusive request on another reactor does not wait for this one to wake up.
    pub(super) fn locks_may_sleep(&mut self) -> bool {
        if !self.parked.is_empty() {
            return false;
        }
        for local in self.locks.values_mut() {
            if local.fast == 0 && !local.idle {
                if let Some(slot) = local.slot {
                    local.device.range_lock.idle(slot);
                }
                local.idle = true;
            }
        }
        true
    }

    /// Forgets this reactor's range-lock state of devices that are gone (not in `live`) once none of its commands
    /// uses it, giving the lock slot back.
    pub(crate) fn drop_idle_locks(&mut self, live: &std::collections::HashSet<u64>) {
        let copies = self.pending.values().filter_map(|p| match &p.kind {
            PendingKind::Copy(op) => Some(op.devices()),
            _ => None,
        });
        let busy: std::collections::HashSet<u64> = self
            .parked
            .iter()
            .map(|p| p.device.id)
            .chain(self.pending.values().map(|p| p.device.id))
            .chain(self.sanitizes.values().map(|r| r.device.id))
            .chain(copies.flatten())
            .collect();
        self.locks.retain(|id, l| {
            let keep = live.contains(id) || l.fast > 0 || busy.contains(id);
            if !keep {
                if let Some(slot) = l.slot {
                    l.device.range_lock.unregister(slot);
                }
            }
            keep
        });
    }

    /// Takes parked commands of connection `i` that `pred` selects out of the queue (aborted by a task management
    /// function): their lock requests are withdrawn and they end with TASK ABORTED, which the iSCSI layer drops.
    pub(super) fn abort_parked(&mut self, i: usize, now: Instant, pred: impl Fn(&ScsiTask, u64) -> bool) {
        let (gone, keep): (Vec<Parked>, Vec<Parked>) =
            std::mem::take(&mut self.parked).into_iter().partition(|p| p.slot == i && pred(&p.task, p.lun));
        self.parked = keep;
        for p in gone {
            if let Some(t) = p.ticket {
                p.device.range_lock.release(t);
            }
            abandon(&p.device, p.lun, &p.task.cdb);
            let result = CommandResult { status: TASK_ABORTED, sense: None, data_in: Vec::new(), transfer_len: 0 };
            self.complete(p.slot, p.task.id, result, now);
        }
    }

    /// Starts a multi-step block operation holding `hold`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_ops(
        &mut self,
        i: usize,
        task: ScsiTask,
        device: Arc<Device>,
        lun: u64,
        action: Action,
        hold: Hold,
        now: Instant,
    ) {
        let block = u64::from(device.lu.block_size().max(1));
        let (op, step) = BlockOp::start(action, task.data_out.clone(), block, &self.pool);
        match step {
            Step::Submit(io) => self.submit(i, task, device, lun, io, PendingKind::Ops(Box::new(op)), hold),
            Step::Done(outcome) => {
                self.release_hold(&device, hold);
                let result = self.outcome(i, &task.cdb, task.edtl, &device, lun, outcome, None, &op);
                self.complete(i, task.id, result, now);
            }
        }
    }

    /// A bdev completion of a multi-step operation: the next step under the same tag, or the end of the command.
    pub(super) fn step_ops(&mut self, tag: u64, mut p: Pending, c: Completion, now: Instant) {
        let PendingKind::Ops(op) = &mut p.kind else { return };
        // A task management function waiting for this command stops it after the current step.
        let aborted = p.aborted
            || self.slots[p.slot].as_ref().is_some_and(|s| s.tmfs.iter().any(|t| t.waiting_for.contains(&tag)));
        let extents = op.extents(&c);
        let step = if aborted { Step::Done(Outcome::Io(IoResult::Other)) } else { op.next(c, &self.pool) };
        match step {
            Step::Submit(io) => {
                let device = p.device.clone();
                self.pending.insert(tag, p);
                match self.channels.get_mut(&device.id) {
                    Some(ch) => ch.submit(Io { tag, op: io }),
                    None => {
                        let err = polltgt_bdev::BdevError::InvalidConfig("bdev channel is gone".into());
                        self.completions.push(Completion::of(tag, io, Err(err)));
                    }
                }
            }
            Step::Done(outcome) => {
                if let Some(Some(slot)) = self.slots.get_mut(p.slot) {
                    slot.in_flight.retain(|t| *t != tag);
                }
                self.release_hold(&p.device, p.hold);
                let PendingKind::Ops(op) = &p.kind else { return };
                let result = self.outcome(p.slot, &p.cdb, p.edtl, &p.device, p.lun, outcome, Some(&extents), op);
                self.complete(p.slot, p.task, result, now);
                self.check_tmfs(p.slot, tag, now);
                self.preempt_io_done(tag, now);
                self.reset_io_done(tag, now);
            }
        }
    }

    /// The command result of a finished multi-step operation.
    #[allow(clippy::too_many_arguments)]
    fn outcome(
        &self,
        i: usize,
        cdb: &[u8],
        edtl: u32,
        device: &Device,
        lun: u64,
        outcome: Outcome,
        extents: Option<&[LbaExtent]>,
        op: &BlockOp,
    ) -> CommandResult {
        let cmd = Command { nexus: self.nexus_of(i), lun, cdb, expected_len: edtl, data_out: None };
        let r = match outcome {
            Outcome::Response(r) => r,
            Outcome::Io(IoResult::Ok) if matches!(op.state, State::LbaStatus { .. }) => {
                device.lu.lba_status_done(&cmd, extents.unwrap_or(&[]))
            }
            Outcome::Io(io) => device.lu.io_done(&cmd, io),
        };
        let transfer_len = if r.data.is_empty() { device.lu.data_out_len(cdb).unwrap_or(0) } else { r.data.len() as u64 };
        CommandResult {
            status: r.status as u8,
            sense: r.sense,
            data_in: if r.data.is_empty() { Vec::new() } else { vec![Bytes::from(r.data)] },
            transfer_len: clamp32(transfer_len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(parts: &[&'static [u8]]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::from_static(p)).collect()
    }

    #[test]
    fn copy_and_compare_across_segments() {
        let d = segs(&[b"abc", b"", b"defg", b"h"]);
        let mut out = [0u8; 4];
        copy_from(&d, 2, &mut out);
        assert_eq!(&out, b"cdef");
        let mut tail = [9u8; 4];
        copy_from(&d, 6, &mut tail);
        assert_eq!(&tail, b"gh\0\0", "zeros past the end");
        assert_eq!(first_difference(b"cdef", &d, 2), None);
        assert_eq!(first_difference(b"cdXf", &d, 2), Some(2));
        assert_eq!(first_difference(b"Xbcdefgh", &d, 0), Some(0));
        assert_eq!(first_difference(b"abcdefgX", &d, 0), Some(7));
        // Bytes the Data-Out does not have are not compared (the caller sizes the read to what it has).
        assert_eq!(first_difference(b"hZZ", &d, 7), None);
    }

    use polltgt_bdev::{Bdev, Channel, RamBdev};
    use polltgt_hugepages::{BufPool, RegionOptions};

    /// Runs a block operation to its end on `ch`; returns the outcome and how many bdev I/Os it took.
    fn drive(mut op: BlockOp, mut step: Step, ch: &mut dyn Channel, pool: &BufPool) -> (Outcome, usize, BlockOp) {
        let mut ios = 0;
        loop {
            match step {
                Step::Done(o) => return (o, ios, op),
                Step::Submit(io) => {
                    ios += 1;
                    ch.submit(Io { tag: 1, op: io });
                    let mut done = Vec::new();
                    while ch.poll(&mut done) == 0 {}
                    let c = done.pop().expect("completion");
                    step = op.next(c, pool);
                }
            }
        }
    }

    fn io(o: Outcome) -> IoResult {
        match o {
            Outcome::Io(r) => r,
            Outcome::Response(r) => panic!("unexpected response {r:?}"),
        }
    }

    fn read(ch: &mut dyn Channel, offset: u64, len: usize) -> Vec<u8> {
        ch.submit(Io { tag: 9, op: Op::Read { offset, buf: Buf::zeroed(len) } });
        let mut done = Vec::new();
        while ch.poll(&mut done) == 0 {}
        done.pop().and_then(|c| c.buf).map(|b| b.to_vec()).expect("read")
    }

    fn setup() -> (RamBdev, Box<dyn Channel>, BufPool) {
        let dev = RamBdev::new("r", 512, 8192, &RegionOptions::small_pages()).expect("ram");
        let ch = dev.open_channel().expect("channel");
        (dev, ch, BufPool::with_defaults())
    }

    fn data(parts: &[&[u8]]) -> Vec<Bytes> {
        parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
    }

    #[test]
    fn write_same_replicates_in_chunks_zeroes_and_unmaps() {
        let (_dev, mut ch, pool) = setup();
        let block: Vec<u8> = (0..512).map(|i| (i % 251) as u8).collect();
        // 3 MiB + 1 block: four writes of at most 1 MiB, the block split over two Data-Out segments.
        let len = 3 * (1 << 20) + 512;
        let action = Action::WriteSame { offset: 512, len, unmap: false, ndob: false, fua: false };
        let (op, step) = BlockOp::start(action, data(&[&block[..100], &block[100..]]), 512, &pool);
        let (o, ios, _) = drive(op, step, ch.as_mut(), &pool);
        assert_eq!((io(o), ios), (IoResult::Ok, 4));
        let back = read(ch.as_mut(), 0, (len + 1024) as usize);
        assert!(back[..512].iter().all(|&b| b == 0));
        for b in back[512..512 + len as usize].chunks(512) {
            assert_eq!(b, &block[..]);
        }
        assert!(back[512 + len as usize..].iter().all(|&b| b == 0));
        // A zero block is one WriteZeroes, UNMAP one Unmap, NDOB zeros without Data-Out.
        for (action, d) in [
            (Action::WriteSame { offset: 512, len: 1 << 20, unmap: false, ndob: false, fua: false }, vec![Bytes::from(vec![0u8; 512])]),
            (Action::WriteSame { offset: 512, len: 1 << 20, unmap: true, ndob: false, fua: false }, data(&[&block])),
            (Action::WriteSame { offset: 512, len: 1 << 20, unmap: false, ndob: true, fua: false }, Vec::new()),
        ] {
            let (op, step) = BlockOp::start(action, d, 512, &pool);
            let (o, ios, _) = drive(op, step, ch.as_mut(), &pool);
            assert_eq!((io(o), ios), (IoResult::Ok, 1));
            assert!(read(ch.as_mut(), 512, 1 << 20).iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn compare_and_write_orwrite_and_verify() {
        let (_dev, mut ch, pool) = setup();
        let old = vec![0x11u8; 1024];
        let (op, step) = BlockOp::start(Action::WriteAtomic { offset: 2048, len: 1024, fua: false }, data(&[&old]), 512, &pool);
        assert_eq!(io(drive(op, step, ch.as_mut(), &pool).0), IoResult::Ok);
        // A miscompare at byte 700 of the verify data writes nothing.
        let mut verify = old.clone();
        verify[700] = 0;
        let caw = |v: &[u8], w: &[u8]| {
            let (op, step) = BlockOp::start(Action::CompareAndWrite { offset: 2048, len: 1024, fua: false }, data(&[v, w]), 512, &pool);
            (op, step)
        };
        let (op, step) = caw(&verify, &[0x22; 1024]);
        assert_eq!(io(drive(op, step, ch.as_mut(), &pool).0), IoResult::Miscompare { offset: 700 });
        assert_eq!(read(ch.as_mut(), 2048, 1024), old);
        let (op, step) = caw(&old, &[0x22; 1024]);
        let (o, ios, _) = drive(op, step, ch.as_mut(), &pool);
        assert_eq!((io(o), ios), (IoResult::Ok, 2));
        assert_eq!(read(ch.as_mut(), 2048, 1024), vec![0x22; 1024]);
        // ORWRITE.
        let (op, step) = BlockOp::start(Action::OrWrite { offset: 2048, len: 1024, fua: false }, data(&[&[0x41; 1024]]), 512, &pool);
        assert_eq!(io(drive(op, step, ch.as_mut(), &pool).0), IoResult::Ok);
        assert_eq!(read(ch.as_mut(), 2048, 1024), vec![0x63; 1024]);
        // VERIFY BYTCHK 01b and 11b.
        let mut check = |byte_check, d: Vec<Bytes>| {
            let (op, step) = BlockOp::start(Action::Verify { offset: 2048, len: 1024, byte_check }, d, 512, &pool);
            io(drive(op, step, ch.as_mut(), &pool).0)
        };
        let mut other = vec![0x63u8; 1024];
        other[1000] = 1;
        assert_eq!(check(ByteCheck::Bytes, data(&[&[0x63; 1024]])), IoResult::Ok);
        assert_eq!(check(ByteCheck::Bytes, data(&[&other])), IoResult::Miscompare { offset: 1000 });
        assert_eq!(check(ByteCheck::OneBlock, data(&[&[0x63; 512]])), IoResult::Ok);
        assert_eq!(check(ByteCheck::OneBlock, data(&[&other[512..]])), IoResult::Miscompare { offset: 488 });
        assert_eq!(check(ByteCheck::Medium, Vec::new()), IoResult::Ok);
        // The second block of the medium differs from the one block of Data-Out: the offset counts from the range.
        let (op, step) = BlockOp::start(Action::WriteAtomic { offset: 2048, len: 1024, fua: false }, data(&[&other]), 512, &pool);
        assert_eq!(io(drive(op, step, ch.as_mut(), &pool).0), IoResult::Ok);
        let (op, step) =
            BlockOp::start(Action::Verify { offset: 2048, len: 1024, byte_check: ByteCheck::OneBlock }, data(&[&[0x63; 512]]), 512, &pool);
        assert_eq!(io(drive(op, step, ch.as_mut(), &pool).0), IoResult::Miscompare { offset: 1000 });
        // WRITE AND VERIFY with BYTCHK: written, read back, compared.
        let (op, step) = BlockOp::start(Action::WriteVerify { offset: 0, len: 512 }, data(&[&[7; 512]]), 512, &pool);
        let (o, ios, _) = drive(op, step, ch.as_mut(), &pool);
        assert_eq!((io(o), ios), (IoResult::Ok, 2));
        assert_eq!(read(ch.as_mut(), 0, 512), vec![7; 512]);
    }

    #[test]
    fn unmap_ranges_and_lba_status() {
        let (_dev, mut ch, pool) = setup();
        let (op, step) = BlockOp::start(Action::WriteAtomic { offset: 0, len: 65536, fua: false }, data(&[&[1; 65536]]), 512, &pool);
        assert_eq!(io(drive(op, step, ch.as_mut(), &pool).0), IoResult::Ok);
        let ranges = vec![(0, 4096), (8192, 8192)];
        let (op, step) = BlockOp::start(Action::Unmap { ranges }, Vec::new(), 512, &pool);
        let (o, ios, _) = drive(op, step, ch.as_mut(), &pool);
        assert_eq!((io(o), ios), (IoResult::Ok, 2));
        let (op, step) = BlockOp::start(Action::GetLbaStatus { offset: 0, len: 65536, max_extents: 8 }, Vec::new(), 512, &pool);
        let Step::Submit(query) = step else { panic!("a query") };
        ch.submit(Io { tag: 1, op: query });
        let mut done = Vec::new();
        while ch.poll(&mut done) == 0 {}
        let ext = op.extents(&done[0]);
        let st = |lba, blocks, status| LbaExtent { lba, blocks, status };
        assert_eq!(
            ext,
            [
                st(0, 8, ProvisioningStatus::Deallocated),
                st(8, 8, ProvisioningStatus::Mapped),
                st(16, 16, ProvisioningStatus::Deallocated),
                st(32, 96, ProvisioningStatus::Mapped),
            ]
        );
    }

    #[test]
    fn lock_needs() {
        assert_eq!(lock_need(&Action::Flush), None);
        assert_eq!(lock_need(&Action::Read { offset: 512, len: 1024, fua: false }), Some((512, 1536, false)));
        assert_eq!(lock_need(&Action::CompareAndWrite { offset: 0, len: 512, fua: false }), Some((0, 512, true)));
        assert_eq!(lock_need(&Action::Unmap { ranges: vec![(4096, 512), (0, 512)] }), Some((0, 4608, false)));
        let sanitize = Action::Sanitize { op: polltgt_scsi::SanitizeOp::BlockErase, immed: true };
        assert_eq!(lock_need(&sanitize), Some((0, u64::MAX, true)));
    }
}
