//! The driver's part of reservations: telling the logical units who each I_T nexus is at login, storing the APTPL
//! state after a PERSISTENT RESERVE OUT, and aborting the tasks PREEMPT AND ABORT names.
//!
//! PREEMPT AND ABORT (SPC-4 §5.9.11.5) aborts every task of the preempted I_T nexuses on the logical unit, as CLEAR
//! TASK SET would. Those sessions may live on any reactor, so the reactor that ran the command sends every reactor
//! (itself included) a message; each one aborts the matching tasks in its iSCSI sessions (they never answer, TAS = 0)
//! and, exactly as for ABORT TASK SET, waits for the ones already at a block device to come back, since a submitted
//! I/O cannot be recalled. When every reactor is done, the PERSISTENT RESERVE OUT gets its GOOD status: after it,
//! no write of a preempted nexus can still reach the medium.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use polltgt_iscsi::params::SessionParams;
use polltgt_iscsi::session::{CommandResult, TaskId};
use polltgt_scsi::NexusId;

use super::{ReactorState, SessionCtx};
use crate::nexus::NexusInfo;
use crate::registry::{Device, TargetEntry};

/// PERSISTENT RESERVE OUT.
pub(super) const PERSISTENT_RESERVE_OUT: u8 = 0x5F;

/// A PERSISTENT RESERVE OUT waiting for the tasks it aborted on every reactor.
pub(super) struct PreemptJoin {
    /// Reactors still aborting.
    remaining: AtomicUsize,
    /// Where the command runs: reactor, connection slot and its generation, task.
    origin: usize,
    slot: usize,
    generation: u64,
    task: TaskId,
    response: Mutex<Option<CommandResult>>,
}

/// Bdev I/Os of aborted tasks one reactor waits for.
pub(super) struct PreemptWait {
    tags: Vec<u64>,
    join: Arc<PreemptJoin>,
}

impl ReactorState {
    /// A normal session logged in on slot `i` through portal group `tpgt`: name its I_T nexus, record it and tell
    /// every logical unit of the target who it is.
    pub(super) fn nexus_login(&mut self, params: &SessionParams, target: Arc<TargetEntry>, tpgt: u16) -> SessionCtx {
        let nexus = NexusId(self.registry.new_nexus());
        let info = NexusInfo {
            initiator_name: params.initiator_name.clone(),
            isid: params.isid,
            target: target.name.clone(),
            tpgt,
            relative_port_id: self.registry.nexuses().relative_port_id(&target.name, tpgt),
            reactor: self.id,
        };
        let identity = info.identity();
        for entry in target.luns.values() {
            entry.device.lu.bind_nexus(nexus, identity.clone());
        }
        self.registry.nexuses().insert(nexus, info);
        SessionCtx {
            target,
            nexus,
            params: Box::new(params.clone()),
            counters: Default::default(),
            pending_ua: Default::default(),
        }
    }

    /// A PERSISTENT RESERVE OUT on slot `i` produced `r`: store the APTPL state, then answer, or first abort the
    /// tasks a PREEMPT AND ABORT preempted.
    pub(super) fn prout_done(&mut self, i: usize, task: TaskId, device: &Arc<Device>, nexus: NexusId, r: CommandResult, now: Instant) {
        if let Some(snap) = device.lu.reservations_to_persist() {
            match self.registry.pr_store() {
                // Written before the status goes out: GOOD means the state survives a power loss.
                Some(store) => {
                    if let Err(e) = store.save(&device.name, &snap) {
                        tracing::error!(device = %device.name, error = %e, "cannot store persistent reservations (APTPL)");
                    }
                }
                None => tracing::warn!(device = %device.name, "APTPL requested but no state directory is configured"),
            }
        }
        let victims = device.lu.take_task_aborts(nexus);
        if victims.is_empty() {
            self.complete(i, task, r, now);
            return;
        }
        let Some(generation) = self.slots.get(i).and_then(|s| s.as_ref()).map(|s| s.generation) else { return };
        let reactors = self.registry.reactors().to_vec();
        let others: Vec<_> = reactors.iter().enumerate().filter(|(id, _)| *id != self.id).map(|(_, h)| h).collect();
        let join = Arc::new(PreemptJoin {
            remaining: AtomicUsize::new(1 + others.len()),
            origin: self.id,
            slot: i,
            generation,
            task,
            response: Mutex::new(Some(r)),
        });
        tracing::info!(device = %device.name, preempted = ?victims, "PREEMPT AND ABORT: aborting tasks");
        for h in others {
            let (dev, v, j) = (device.clone(), victims.clone(), join.clone());
            if !h.send(move |s: &mut ReactorState, now| s.preempt_abort(&dev, &v, j, now)) {
                // That reactor is gone, and its sessions with it.
                join.remaining.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.preempt_abort(device, &victims, join, now);
    }

    /// Aborts this reactor's tasks of `victims` on `device` (except the PERSISTENT RESERVE OUT itself) and waits
    /// for those at the device.
    fn preempt_abort(&mut self, device: &Arc<Device>, victims: &[NexusId], join: Arc<PreemptJoin>, now: Instant) {
        let mut held_by_slot = Vec::new();
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots[i].as_mut() else { continue };
            let Some(session) = slot.session.as_ref() else { continue };
            if !victims.contains(&session.nexus) {
                continue;
            }
            let target = session.target.clone();
            let own = (join.origin == self.id && join.slot == i && join.generation == slot.generation).then_some(join.task);
            let aborted = slot.iscsi.abort_tasks(|raw_lun, id| {
                Some(id) != own
                    && polltgt_iscsi::wire::decode_lun(raw_lun)
                        .and_then(|l| target.luns.get(&l))
                        .is_some_and(|e| e.device.id == device.id)
            });
            if !aborted.is_empty() {
                held_by_slot.push((i, slot.generation, aborted));
            }
        }
        // Those parked in a range lock are taken away; those at the device are waited for.
        let mut tags = Vec::new();
        for (i, generation, aborted) in held_by_slot {
            tags.extend(self.mark_aborted(i, generation, &aborted, now));
        }
        if tags.is_empty() {
            self.preempt_arrive(join, now);
        } else {
            self.preempt_waits.push(PreemptWait { tags, join });
        }
    }

    /// Bdev I/O `tag` finished: release the PREEMPT AND ABORTs that waited for it.
    pub(super) fn preempt_io_done(&mut self, tag: u64, now: Instant) {
        if self.preempt_waits.is_empty() {
            return;
        }
        for w in &mut self.preempt_waits {
            w.tags.retain(|t| *t != tag);
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.preempt_waits).into_iter().partition(|w| w.tags.is_empty());
        self.preempt_waits = waiting;
        for w in done {
            self.preempt_arrive(w.join, now);
        }
    }

    /// This reactor is done aborting; the last one sends the command's status.
    fn preempt_arrive(&mut self, join: Arc<PreemptJoin>, now: Instant) {
        if join.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if join.origin == self.id {
            self.preempt_finish(&join, now);
        } else if let Some(h) = self.registry.reactors().get(join.origin) {
            h.send(move |s: &mut ReactorState, now| s.preempt_finish(&join, now));
        }
    }

    fn preempt_finish(&mut self, join: &PreemptJoin, now: Instant) {
        let live = matches!(self.slots.get(join.slot), Some(Some(s)) if s.generation == join.generation);
        let r = join.response.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let (true, Some(r)) = (live, r) {
            self.complete(join.slot, join.task, r, now);
        }
    }
}
