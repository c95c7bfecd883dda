//! Resets across reactors: LOGICAL UNIT RESET (SAM-5 §7.7) and TARGET WARM/COLD RESET (RFC 7143 §11.5.1, SAM-5
//! §6.3) abort the tasks of every I_T nexus on the logical units concerned, not only the requester's. Those
//! sessions may live on any reactor.
//!
//! The reactor that received the reset sends every reactor (itself included) a message with the devices concerned
//! and a shared [`ResetJoin`]. Each one aborts the matching tasks of its sessions (other than the requesting one)
//! in the iSCSI core — silently, TAS is 0 — takes away those still waiting for a range lock or for buffers, and
//! then waits for those already at a block device, since a submitted I/O cannot be recalled (a multi-step
//! operation stops after its current step). When it has nothing left in flight it acknowledges. The TMF stays a
//! pending TMF of its connection until every reactor has acknowledged and the requester's own tasks on the
//! devices have finished: only then is the reset performed (unit attentions 29/03) and answered FUNCTION
//! COMPLETE, so after the response no aborted task of any session can still reach the medium.
//!
//! No reactor thread ever blocks for this: acknowledgements are messages. The wait is bounded: a reset not
//! acknowledged within [`RESET_WAIT_LIMIT`] (a block device that does not complete) is answered FUNCTION REJECTED
//! (RFC 7143 §11.6.1, 255), so the initiator escalates; the tasks already aborted stay aborted and the reset's unit
//! attentions are established.
//!
//! Task set model: the Control mode page reports TST 001b (a task set per I_T nexus, as iSCSI-SCST's vdisk
//! default) and TAS 0, so ABORT TASK SET and CLEAR TASK SET touch only the requesting session's tasks (the iSCSI
//! core and [`ReactorState::task_mgmt`](super::ReactorState)) and never establish COMMANDS CLEARED BY ANOTHER
//! INITIATOR; resets reach every nexus.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ReactorState;
use crate::sessions::ConnRef;

/// How long a reset waits for every reactor to acknowledge the abort of its tasks before it is answered FUNCTION
/// REJECTED. Initiators give a reset about 30 s (open-iscsi's lu_reset_timeout / tgt_reset_timeout).
pub const RESET_WAIT_LIMIT: Duration = Duration::from_secs(25);

/// A reset waiting for every reactor to acknowledge.
pub(super) struct ResetJoin {
    /// Reactors that have not acknowledged yet.
    remaining: AtomicUsize,
    /// The connection of the requester (reactor, slot, generation); its own tasks are left to the TMF itself.
    origin: ConnRef,
}

/// Bdev I/Os of tasks a reset aborted that one reactor waits for before it acknowledges.
struct ResetWait {
    tags: Vec<u64>,
    join: Arc<ResetJoin>,
}

/// One reactor's part in resets: its waits, and the limit for the resets it received.
pub(super) struct Resets {
    waits: Vec<ResetWait>,
    limit: Duration,
}

impl Default for Resets {
    fn default() -> Self {
        Resets { waits: Vec::new(), limit: RESET_WAIT_LIMIT }
    }
}

impl ReactorState {
    /// Sets how long resets received on this reactor wait for the other reactors (default [`RESET_WAIT_LIMIT`]).
    pub fn set_reset_wait_limit(&mut self, limit: Duration) {
        self.resets.limit = limit;
    }

    /// The reset just queued as the last pending TMF of connection `i` concerns `devices`: ask every reactor
    /// (this one included) to abort the other sessions' tasks on them; the TMF waits for all of them.
    pub(super) fn start_reset(&mut self, i: usize, devices: Vec<u64>, now: Instant) {
        let deadline = now.checked_add(self.resets.limit).unwrap_or(now);
        let Some(slot) = self.slots.get_mut(i).and_then(|s| s.as_mut()) else { return };
        let origin = ConnRef { reactor: self.id, slot: i, generation: slot.generation };
        let me = self.id;
        let others: Vec<_> =
            self.registry.reactors().iter().enumerate().filter(|(id, _)| *id != me).map(|(_, h)| h.clone()).collect();
        let join = Arc::new(ResetJoin { remaining: AtomicUsize::new(1 + others.len()), origin });
        // Set before any acknowledgement can arrive (this reactor's own may come at once).
        let Some(tmf) = slot.tmfs.last_mut() else { return };
        tmf.reset = Some((join.clone(), deadline));
        let devices = Arc::new(devices);
        for h in others {
            let (d, j) = (devices.clone(), join.clone());
            if !h.send(move |s: &mut ReactorState, now| s.reset_abort(&d, j, now)) {
                // That reactor is gone, and its sessions with it.
                join.remaining.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.reset_abort(&devices, join, now);
    }

    /// Silently aborts the tasks every session of this reactor but the requester has on `devices`, and
    /// acknowledges once those at a block device have come back.
    fn reset_abort(&mut self, devices: &[u64], join: Arc<ResetJoin>, now: Instant) {
        let except = join.origin;
        let mut held_by_slot = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot.as_mut() else { continue };
            if self.id == except.reactor && i == except.slot && slot.generation == except.generation {
                continue;
            }
            let Some(session) = slot.session.as_ref() else { continue };
            let target = session.target.clone();
            let before = slot.iscsi.session().map_or(0, |s| s.task_count());
            // Tasks still at a bdev finish there; the iSCSI core drops their results (no status with TAS = 0).
            let held = slot.iscsi.abort_tasks(|raw_lun, _| {
                polltgt_iscsi::wire::decode_lun(raw_lun)
                    .and_then(|l| target.luns.get(&l))
                    .is_some_and(|e| devices.contains(&e.device.id))
            });
            let aborted = before.saturating_sub(slot.iscsi.session().map_or(0, |s| s.task_count()));
            if aborted > 0 {
                let at_devices = held.len();
                let reactor = self.id;
                tracing::info!(reactor, tasks = aborted, at_devices, "tasks aborted by a reset from another nexus");
            }
            if !held.is_empty() {
                held_by_slot.push((i, slot.generation, held));
            }
        }
        let mut tags = Vec::new();
        for (i, generation, held) in held_by_slot {
            tags.extend(self.mark_aborted(i, generation, &held, now));
        }
        if tags.is_empty() {
            self.reset_arrive(join, now);
        } else {
            self.resets.waits.push(ResetWait { tags, join });
        }
    }

    /// A command's bdev work `tag` is over: release the resets that waited for it.
    pub(super) fn reset_io_done(&mut self, tag: u64, now: Instant) {
        if self.resets.waits.is_empty() {
            return;
        }
        for w in &mut self.resets.waits {
            w.tags.retain(|t| *t != tag);
        }
        let (done, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.resets.waits).into_iter().partition(|w| w.tags.is_empty());
        self.resets.waits = waiting;
        for w in done {
            self.reset_arrive(w.join, now);
        }
    }

    /// This reactor is done; the last one tells the requester's reactor.
    fn reset_arrive(&mut self, join: Arc<ResetJoin>, now: Instant) {
        if join.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let origin = join.origin.reactor;
        if origin == self.id {
            self.reset_acknowledged(&join, now);
        } else if let Some(h) = self.registry.reactors().get(origin) {
            h.send(move |s: &mut ReactorState, now| s.reset_acknowledged(&join, now));
        }
    }

    /// Every reactor acknowledged: the requester's pending TMF may complete (when its own tasks are done too).
    fn reset_acknowledged(&mut self, join: &Arc<ResetJoin>, now: Instant) {
        let o = join.origin;
        let Some(slot) = self.slots.get_mut(o.slot).and_then(|s| s.as_mut()) else { return };
        if slot.generation != o.generation {
            return;
        }
        let mut found = false;
        for t in &mut slot.tmfs {
            if t.reset.as_ref().is_some_and(|(j, _)| Arc::ptr_eq(j, join)) {
                t.reset = None;
                found = true;
            }
        }
        if found {
            self.check_tmfs(o.slot, 0, now);
        }
    }

    /// Resets of connection `i` whose acknowledgements did not arrive in time are answered FUNCTION REJECTED.
    pub(super) fn expire_resets(&mut self, i: usize, now: Instant) {
        let Some(slot) = self.slots.get_mut(i).and_then(|s| s.as_mut()) else { return };
        let mut expired = false;
        for t in &mut slot.tmfs {
            if t.reset.as_ref().is_some_and(|(_, deadline)| *deadline <= now) {
                tracing::warn!(reactor = self.id, itt = t.itt, "reset not acknowledged by every reactor in time");
                t.reset = None;
                t.waiting_for.clear();
                t.rejected = true;
                expired = true;
            }
        }
        if expired {
            self.check_tmfs(i, 0, now);
        }
    }

    /// The earliest deadline of the resets pending on connection `i` (interrupt mode wakes up for it).
    pub(super) fn reset_deadline(&self, i: usize) -> Option<Instant> {
        self.slots.get(i)?.as_ref()?.tmfs.iter().filter_map(|t| t.reset.as_ref().map(|(_, d)| *d)).min()
    }
}
