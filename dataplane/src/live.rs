//! Live changes and run-time state of the running target: the management side's way into the reactors.
//!
//! The registry ([`crate::registry`]) is the shared, copy-on-write description of devices and targets; sessions work
//! on `Arc` views of their target taken at login, so the per-command path never takes a lock. When the management
//! layer changes a target (LUNs, groups, ACL), it updates the registry and then calls
//! [`Control::refresh_target`], which sends every reactor a message: each reactor recomputes the views of its
//! sessions on that target, establishes the unit attentions the change calls for (REPORTED LUNS DATA HAS CHANGED
//! when the LUN inventory changed, INQUIRY DATA HAS CHANGED when a LUN now maps another logical unit; SPC-4 §6.33,
//! SAM-5 §5.14) and swaps the view. Queries (sessions, counters) and session closes are messages too; the caller
//! waits for every reactor's answer with a time limit.
//!
//! Sessions: which sessions exist (and which are being reinstated) is the session table's
//! ([`crate::sessions::SessionTable`], the one session directory); [`Control::sessions`] adds the run-time details
//! each reactor keeps with the connection (counters, LUN view, active commands), and force_close goes through the
//! table, which closes exactly one session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use polltgt_hugepages::BufPool;
use polltgt_iscsi::params::SessionParams;
use polltgt_scsi::{Sense, SenseKey};

use crate::driver::{ReactorState, SessionCounters, REPORTED_LUNS_CHANGED};
use crate::reactor::ReactorHandle;
use crate::registry::{Registry, TargetEntry};
use crate::stats::{DataplaneSnapshot, PoolSnapshot};
pub use crate::sessions::session_id;
use crate::sessions::SessionsError;

/// How long a management request waits for a reactor's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// INQUIRY DATA HAS CHANGED (SPC-4, ASC/ASCQ 3F/03): a LUN now maps another logical unit (SCST's "replace").
const INQUIRY_DATA_CHANGED: Sense = Sense::new(SenseKey::UnitAttention, 0x3f, 0x03);

/// Errors of live operations.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("reactor {0} did not answer within {REPLY_TIMEOUT:?}")]
    Timeout(usize),
    #[error("reactor {0} has stopped")]
    Stopped(usize),
    #[error("no session with sid {0:#x}")]
    NoSuchSession(u64),
    #[error(transparent)]
    Sessions(#[from] SessionsError),
}

/// One connection as the management layer shows it (SCST's session connection directory: cid, ip, state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnSnapshot {
    pub reactor: usize,
    pub cid: Option<u16>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// "login", "full_feature" or "closing".
    pub state: &'static str,
    /// For a logged-in connection: normal or discovery, the initiator and target names.
    pub session_type: Option<&'static str>,
    pub initiator_name: Option<String>,
    pub target_name: Option<String>,
    pub pdus_received: u64,
    pub pdus_sent: u64,
}

/// One normal session (SCST's `sessions/<initiator>` directory).
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    pub target: String,
    /// ISID (48 bits) and TSIH as SCST's 64-bit `sid`: `isid << 16 | tsih`.
    pub sid: u64,
    /// A newer session with the same initiator name, ISID and target is replacing this one.
    pub reinstating: bool,
    pub params: SessionParams,
    /// The initiator group whose LUN set the session uses (None: the target's default set).
    pub group: Option<String>,
    pub luns: Vec<u64>,
    pub counters: SessionCounters,
    /// Commands the session has received and not yet answered.
    pub active_commands: usize,
    pub connection: ConnSnapshot,
}

/// The control plane's handle on the running dataplane.
pub struct Control {
    registry: Arc<Registry>,
    reactors: Vec<ReactorHandle<ReactorState>>,
    pool: BufPool,
}

impl Control {
    pub fn new(registry: Arc<Registry>, reactors: Vec<ReactorHandle<ReactorState>>, pool: BufPool) -> Control {
        Control {
            registry,
            reactors,
            pool,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Run `f` on every reactor and collect the answers (in reactor order).
    fn ask<T, F>(&self, f: F) -> Result<Vec<T>, ControlError>
    where
        T: Send + 'static,
        F: Fn(&mut ReactorState) -> T + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let mut waiting = Vec::with_capacity(self.reactors.len());
        for (id, h) in self.reactors.iter().enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let f = f.clone();
            if !h.send(move |s: &mut ReactorState, _now| {
                let _ = tx.send(f(s));
            }) {
                return Err(ControlError::Stopped(id));
            }
            waiting.push(rx);
        }
        waiting
            .into_iter()
            .enumerate()
            .map(|(id, rx)| rx.recv_timeout(REPLY_TIMEOUT).map_err(|_| ControlError::Timeout(id)))
            .collect()
    }

    /// Make every session of `target` see the registry's current entry (see the module documentation). Returns
    /// the number of sessions whose LUN set changed. Returns once every reactor has applied the change.
    pub fn refresh_target(&self, target: &str) -> Result<usize, ControlError> {
        let name = target.to_string();
        Ok(self.ask(move |s| s.refresh_views(&name))?.into_iter().sum())
    }

    /// Close every session of `target` (the target was removed). Returns how many.
    pub fn close_target_sessions(&self, target: &str) -> Result<usize, ControlError> {
        Ok(self.registry.sessions().force_close_target(target))
    }

    /// Close the session with SCST sid `sid` (SCST's `force_close`) through the session table: exactly that session
    /// is closed; its connection is dropped once the commands already at the devices have finished, and it is no
    /// longer listed.
    pub fn force_close(&self, sid: u64) -> Result<(), ControlError> {
        let table = self.registry.sessions();
        let s = table.by_sid(sid).ok_or(ControlError::NoSuchSession(sid))?;
        match table.force_close(s.tsih) {
            Ok(_) => Ok(()),
            Err(SessionsError::NoSuchSession(_)) => Err(ControlError::NoSuchSession(sid)),
            Err(e) => Err(e.into()),
        }
    }

    /// Every normal session the session table lists, with the run-time details its reactor keeps.
    pub fn sessions(&self) -> Result<Vec<SessionSnapshot>, ControlError> {
        // Joined by TSIH (unique among live sessions), not by reactor: a session may have moved to another reactor
        // right after its login (crate::placement).
        let mut runtime: std::collections::HashMap<u16, SessionSnapshot> = self
            .ask(|s| s.session_snapshots())?
            .into_iter()
            .flatten()
            .map(|s| (s.params.tsih, s))
            .collect();
        let mut all: Vec<SessionSnapshot> = self
            .registry
            .sessions()
            .list()
            .into_iter()
            .filter(|info| info.target_name.is_some())
            .filter_map(|info| {
                // A session whose connection was released since the table was read is gone.
                let mut snap = runtime.remove(&info.tsih)?;
                snap.reinstating = info.reinstating;
                Some(snap)
            })
            .collect();
        all.sort_by(|a, b| {
            (&a.target, &a.params.initiator_name, a.sid).cmp(&(&b.target, &b.params.initiator_name, b.sid))
        });
        Ok(all)
    }

    /// Every connection (including login-phase and discovery connections).
    pub fn connections(&self) -> Result<Vec<ConnSnapshot>, ControlError> {
        Ok(self.ask(|s| s.connection_snapshots())?.into_iter().flatten().collect())
    }

    /// The dataplane's statistics: reactors (TSC busy/idle, pollers, placement, per-reactor data path), the pool
    /// (with its per-reactor caches), zero-copy and back-pressure counters. The one collector,
    /// [`crate::stats::collect`], which the binary's SIGUSR1 line uses too. An error when a reactor does not answer
    /// within the reply timeout.
    pub fn snapshot(&self) -> Result<DataplaneSnapshot, ControlError> {
        let snap = crate::stats::collect(&self.registry, &self.pool, REPLY_TIMEOUT);
        match snap.reactors.iter().find(|r| r.datapath.is_none()) {
            Some(r) => Err(ControlError::Timeout(r.id)),
            None => Ok(snap),
        }
    }

    /// The data buffer pool's statistics alone (no reactor is asked).
    pub fn pool_snapshot(&self) -> PoolSnapshot {
        PoolSnapshot::of(&self.pool.stats(), self.pool.config().max_bytes)
    }
}

fn conn_snapshot(reactor: usize, slot: &crate::driver::ConnSlot) -> ConnSnapshot {
    let session = slot.iscsi.session();
    let state = if slot.closing || slot.iscsi.is_closed() {
        "closing"
    } else if session.is_some() {
        "full_feature"
    } else {
        "login"
    };
    let params = session.map(|s| s.params());
    let stats = slot.iscsi.stats();
    ConnSnapshot {
        reactor,
        cid: session.map(|s| s.cid()),
        peer: slot.peer,
        local: slot.local,
        state,
        session_type: params.map(|p| match p.session_type {
            polltgt_iscsi::params::SessionType::Normal => "normal",
            polltgt_iscsi::params::SessionType::Discovery => "discovery",
        }),
        initiator_name: params.map(|p| p.initiator_name.clone()),
        target_name: params.map(|p| p.target_name.clone()).filter(|t| !t.is_empty()),
        pdus_received: stats.pdus_received,
        pdus_sent: stats.pdus_sent,
    }
}

/// Reactor-side halves of the [`Control`] requests.
impl ReactorState {
    /// Recompute the views of this reactor's sessions on `target` (see the module documentation); returns how
    /// many sessions' LUN sets changed. Sessions of a removed target are closed.
    pub(crate) fn refresh_views(&mut self, target: &str) -> usize {
        let registry = self.registry.clone();
        let mut changed = 0;
        for slot in self.slots.iter_mut().flatten() {
            let local_ip = slot.local.ip();
            let Some(s) = slot.session.as_mut() else { continue };
            if s.target.name != target {
                continue;
            }
            let Some(new) = registry.session_view(target, &s.params.initiator_name, local_ip) else {
                tracing::info!(target, initiator = %s.params.initiator_name, "target removed: closing its session");
                slot.iscsi.close();
                continue;
            };
            let old = std::mem::replace(&mut s.target, new.clone());
            if apply_view_change(&old, &new, s.nexus, &mut s.pending_ua) {
                changed += 1;
            }
        }
        self.drop_idle_channels();
        changed
    }

    /// Forget bdev channels and range-lock slots of devices that are gone once nothing is in flight on them.
    fn drop_idle_channels(&mut self) {
        let live: std::collections::HashSet<u64> = self.registry.devices().iter().map(|d| d.id).collect();
        self.channels.retain(|id, ch| live.contains(id) || ch.in_flight() > 0);
        self.drop_idle_locks(&live);
    }

    /// The run-time details of this reactor's logged-in normal sessions (also those being closed: the session
    /// table decides which are listed).
    pub(crate) fn session_snapshots(&self) -> Vec<SessionSnapshot> {
        self.slots
            .iter()
            .flatten()
            .filter_map(|slot| {
                let s = slot.session.as_ref()?;
                Some(SessionSnapshot {
                    target: s.target.name.clone(),
                    sid: session_id(s.params.isid, s.params.tsih),
                    reinstating: false,
                    params: (*s.params).clone(),
                    group: s.target.group.clone(),
                    luns: s.target.lun_numbers(),
                    counters: s.counters,
                    active_commands: slot.iscsi.session().map_or(0, |x| x.task_count()),
                    connection: conn_snapshot(self.id, slot),
                })
            })
            .collect()
    }

    pub(crate) fn connection_snapshots(&self) -> Vec<ConnSnapshot> {
        self.slots
            .iter()
            .flatten()
            .map(|slot| conn_snapshot(self.id, slot))
            .collect()
    }
}

/// Compare a session's old and new view and queue the unit attentions the change calls for; logical units the
/// session no longer reaches forget its nexus. Returns whether the LUN set changed.
fn apply_view_change(
    old: &TargetEntry,
    new: &TargetEntry,
    nexus: polltgt_scsi::NexusId,
    pending: &mut std::collections::VecDeque<(Option<u64>, Sense)>,
) -> bool {
    let inventory_changed = !old.luns.keys().eq(new.luns.keys());
    let mut changed = inventory_changed;
    if inventory_changed && !pending.iter().any(|(_, ua)| ua.code() == REPORTED_LUNS_CHANGED) {
        pending.push_back((
            None,
            Sense::new(
                SenseKey::UnitAttention,
                REPORTED_LUNS_CHANGED.0,
                REPORTED_LUNS_CHANGED.1,
            ),
        ));
    }
    for (lun, n) in &new.luns {
        if let Some(o) = old.luns.get(lun) {
            if !Arc::ptr_eq(&o.device.lu, &n.device.lu) || o.read_only != n.read_only {
                changed = true;
                if !pending
                    .iter()
                    .any(|(l, ua)| *l == Some(*lun) && ua.code() == INQUIRY_DATA_CHANGED.code())
                {
                    pending.push_back((Some(*lun), INQUIRY_DATA_CHANGED));
                }
            }
        }
    }
    for o in old.luns.values() {
        if !new.luns.values().any(|n| Arc::ptr_eq(&n.device.lu, &o.device.lu)) {
            o.device.lu.nexus_gone(nexus);
        }
    }
    // Unit attentions for LUNs that are gone can no longer be delivered.
    pending.retain(|(l, _)| l.is_none_or(|l| new.luns.contains_key(&l)));
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::LunEntry;
    use polltgt_bdev::NullBdev;
    use polltgt_iscsi::params::TargetParams;
    use std::collections::VecDeque;

    fn registry_with_devices() -> Arc<Registry> {
        let r = Registry::new();
        for name in ["d0", "d1"] {
            let bdev = Arc::new(NullBdev::new(name, 512, 2048).unwrap());
            r.add_device(
                name,
                bdev,
                polltgt_scsi::LuConfig {
                    num_blocks: 2048,
                    ..Default::default()
                },
            )
            .unwrap();
        }
        r
    }

    #[test]
    fn adding_a_lun_queues_reported_luns_changed_once() {
        let r = registry_with_devices();
        let mut t = TargetEntry::new("iqn.2026-11.io.t:x", None, TargetParams::default(), true);
        t.luns.insert(0, LunEntry::new(0, r.device("d0").unwrap(), false));
        let old = t.clone();
        t.luns.insert(1, LunEntry::new(1, r.device("d1").unwrap(), false));
        let mut pending = VecDeque::new();
        assert!(apply_view_change(&old, &t, polltgt_scsi::NexusId(1), &mut pending));
        assert!(apply_view_change(&old, &t, polltgt_scsi::NexusId(1), &mut pending));
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, None);
        assert_eq!(pending[0].1.code(), (0x3f, 0x0e));
        // No change: nothing queued.
        let mut none = VecDeque::new();
        assert!(!apply_view_change(&t, &t, polltgt_scsi::NexusId(1), &mut none));
        assert!(none.is_empty());
    }

    #[test]
    fn replacing_a_lun_queues_inquiry_data_changed_for_that_lun() {
        let r = registry_with_devices();
        let mut old = TargetEntry::new("iqn.2026-11.io.t:x", None, TargetParams::default(), true);
        old.luns.insert(0, LunEntry::new(0, r.device("d0").unwrap(), false));
        let mut new = old.clone();
        new.luns.insert(0, LunEntry::new(0, r.device("d1").unwrap(), false));
        let mut pending = VecDeque::new();
        assert!(apply_view_change(&old, &new, polltgt_scsi::NexusId(1), &mut pending));
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, Some(0));
        assert_eq!(pending[0].1.code(), (0x3f, 0x03));
    }

    #[test]
    fn removing_a_lun_drops_its_pending_unit_attentions() {
        let r = registry_with_devices();
        let mut old = TargetEntry::new("iqn.2026-11.io.t:x", None, TargetParams::default(), true);
        old.luns.insert(0, LunEntry::new(0, r.device("d0").unwrap(), false));
        old.luns.insert(1, LunEntry::new(1, r.device("d1").unwrap(), false));
        let mut new = old.clone();
        new.luns.remove(&1);
        let mut pending = VecDeque::from(vec![(Some(1), INQUIRY_DATA_CHANGED)]);
        assert!(apply_view_change(&old, &new, polltgt_scsi::NexusId(1), &mut pending));
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].1.code(), (0x3f, 0x0e));
    }
}
