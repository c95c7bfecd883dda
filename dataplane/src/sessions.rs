//! The table of live iSCSI sessions, shared by all reactors and the management plane.
//!
//! Every session that completes its login is registered here by the reactor that owns its connection (one
//! connection per session, MaxConnections=1) with its negotiated parameters; it leaves the table when its connection
//! is released. The table is touched on the slow path only (login, connection close, management): the fast path
//! never takes its lock. Acting on a session that lives on another reactor is a message to that reactor
//! ([`ReactorHandle::send`]), never a lock on its state.
//!
//! This is the one session directory of the target. What the management plane gets here (iSCSI-SCST's `sessions/`
//! sysfs tree and `force_close`, SPDK's `iscsi_get_sessions`): [`SessionTable::list`], [`SessionTable::get`],
//! [`SessionTable::by_sid`], [`SessionTable::for_target`], [`SessionTable::force_close`],
//! [`SessionTable::force_close_target`], [`SessionTable::count_for`] (MaxSessions) and
//! [`SessionTable::request_logout_all`] (shutdown). The run-time details of a listed session (I/O counters, its LUN
//! view, active commands) live with its connection on its reactor; [`crate::live::Control::sessions`] joins them to
//! this table. The table also keeps the reactor handles every cross-reactor action uses.
//!
//! Session reinstatement (RFC 7143 §6.3.5): a new session with the initiator name, ISID and target of a live one
//! replaces it: [`SessionTable::register`] returns the old session's connection and the caller closes it, which
//! aborts its tasks (their results are dropped) wherever it lives.


use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use polltgt_iscsi::params::{SessionParams, SessionType};

use crate::driver::ReactorState;
use crate::reactor::ReactorHandle;

/// How long a management caller waits for a reactor to close a connection it was asked to close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Errors of management actions on sessions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionsError {
    #[error("no session with TSIH {0}")]
    NoSuchSession(u16),
    #[error("the reactor owning session {0} has stopped")]
    ReactorGone(u16),
    #[error("the dataplane is not running (no reactors attached)")]
    NotRunning,
}

/// Where a connection lives: its reactor and its slot there (the generation tells a reused slot apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub reactor: usize,
    pub(crate) slot: usize,
    pub(crate) generation: u64,
}

/// One TCP connection of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// Connection ID chosen by the initiator.
    pub cid: u16,
    /// The initiator's address.
    pub peer: SocketAddr,
    /// The portal address the connection arrived on.
    pub local: SocketAddr,
    /// Target Portal Group Tag of that portal.
    pub tpgt: u16,
    /// The reactor that owns the connection.
    pub reactor: usize,
}

/// A live session as the management plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Target Session Identifying Handle, unique among live sessions.
    pub tsih: u16,
    pub isid: [u8; 6],
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    /// None for discovery sessions.
    pub target_name: Option<String>,
    pub session_type: SessionType,
    /// The operational parameters the login negotiated (RFC 7143 §13).
    pub params: SessionParams,
    /// Its connections (one: MaxConnections=1).
    pub connections: Vec<ConnectionInfo>,
    /// A newer session with the same initiator name, ISID and target is replacing this one (iSCSI-SCST's
    /// `reinstating`).
    pub reinstating: bool,
}

impl SessionInfo {
    /// The ISID as the usual 12 hex digits.
    pub fn isid_hex(&self) -> String {
        self.isid.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The SCST session id: ISID (48 bits) and TSIH (16 bits) as one 64-bit number ([`session_id`]).
    pub fn sid(&self) -> u64 {
        session_id(self.isid, self.tsih)
    }

    /// The SCST session id in hex (16 digits).
    pub fn sid_hex(&self) -> String {
        format!("{:016x}", self.sid())
    }
}

/// The session id SCST shows (`sid`): the ISID in the upper 48 bits, the TSIH in the lower 16.
pub fn session_id(isid: [u8; 6], tsih: u16) -> u64 {
    let mut v = 0u64;
    for b in isid {
        v = (v << 8) | u64::from(b);
    }
    (v << 16) | u64::from(tsih)
}

struct Entry {
    info: SessionInfo,
    conn: ConnRef,
    /// Closed by the administrator (force_close) and on its way out: no longer listed, no longer closable.
    closing: bool,
}

/// Live sessions by TSIH. See the module documentation.
#[derive(Default)]
pub struct SessionTable {
    inner: Mutex<BTreeMap<u16, Entry>>,
    reactors: OnceLock<Vec<ReactorHandle<ReactorState>>>,
}

impl std::fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTable").field("sessions", &self.len()).finish_non_exhaustive()
    }
}

impl SessionTable {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u16, Entry>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the table the handles of the running reactors (once, when the server starts).
    pub fn attach_reactors(&self, handles: Vec<ReactorHandle<ReactorState>>) {
        if self.reactors.set(handles).is_err() {
            tracing::warn!("reactors already attached to the session table");
        }
    }

    /// The reactors attached by [`Self::attach_reactors`], by id; empty until they run.
    pub fn reactors(&self) -> &[ReactorHandle<ReactorState>] {
        self.reactors.get().map_or(&[], |v| v.as_slice())
    }

    /// Every live session, by TSIH, but those being closed by [`Self::force_close`]. A session being replaced by
    /// reinstatement stays listed (`reinstating`) until its connection is gone.
    pub fn list(&self) -> Vec<SessionInfo> {
        self.lock().values().filter(|e| !e.closing).map(|e| e.info.clone()).collect()
    }

    /// The session with this TSIH (as [`Self::list`] shows it).
    pub fn get(&self, tsih: u16) -> Option<SessionInfo> {
        self.lock().get(&tsih).filter(|e| !e.closing).map(|e| e.info.clone())
    }

    /// The session with this SCST sid (ISID << 16 | TSIH), as [`Self::list`] shows it.
    pub fn by_sid(&self, sid: u64) -> Option<SessionInfo> {
        let tsih = (sid & 0xffff) as u16;
        self.get(tsih).filter(|s| s.sid() == sid)
    }

    /// The normal sessions of one target (as [`Self::list`] shows them).
    pub fn for_target(&self, target: &str) -> Vec<SessionInfo> {
        self.lock()
            .values()
            .filter(|e| !e.closing && e.info.target_name.as_deref() == Some(target))
            .map(|e| e.info.clone())
            .collect()
    }

    /// Number of live sessions (normal and discovery).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a session with this TSIH is live.
    pub fn contains(&self, tsih: u16) -> bool {
        self.lock().contains_key(&tsih)
    }

    /// Normal sessions of `target`, not counting one that a login by `reinstated` (initiator name, ISID) would
    /// replace, nor sessions already being replaced. For MaxSessions.
    pub fn count_for(&self, target: &str, reinstated: Option<(&str, [u8; 6])>) -> usize {
        self.lock()
            .values()
            .filter(|e| e.info.target_name.as_deref() == Some(target) && !e.info.reinstating)
            .filter(|e| reinstated.is_none_or(|(name, isid)| !(e.info.initiator_name == name && e.info.isid == isid)))
            .count()
    }

    /// Closes session `tsih` at once (iSCSI-SCST's `force_close`): its connection is closed by the reactor that owns
    /// it, its tasks are aborted (results dropped) and it leaves the table once the connection is released; it is
    /// no longer listed from now on. Exactly that one session is closed.
    pub fn force_close(&self, tsih: u16) -> Result<SessionInfo, SessionsError> {
        let (info, conn) = {
            let map = self.lock();
            let e = map.get(&tsih).filter(|e| !e.closing).ok_or(SessionsError::NoSuchSession(tsih))?;
            (e.info.clone(), e.conn)
        };
        tracing::info!(tsih, initiator = %info.initiator_name, target = ?info.target_name, "closing session");
        self.close_conn_and_wait(conn).map_err(|e| match e {
            SessionsError::ReactorGone(_) => SessionsError::ReactorGone(tsih),
            other => other,
        })?;
        if let Some(e) = self.lock().get_mut(&tsih).filter(|e| e.conn == conn) {
            e.closing = true;
        }
        Ok(info)
    }

    /// The connections of every normal session of `target` (for a TARGET COLD RESET, which closes them all).
    pub(crate) fn target_connections(&self, target: &str) -> Vec<ConnRef> {
        self.lock().values().filter(|e| e.info.target_name.as_deref() == Some(target)).map(|e| e.conn).collect()
    }

    /// Closes every session of `target`; returns how many were asked to close.
    pub fn force_close_target(&self, target: &str) -> usize {
        self.for_target(target).iter().filter(|s| self.force_close(s.tsih).is_ok()).count()
    }

    /// Asks every session to log out within `within` (RFC 7143 §11.9.1 AsyncEvent 1), e.g. before a shutdown;
    /// discovery sessions and connections still logging in are closed. Returns false when no reactor is running.
    pub fn request_logout_all(&self, within: Duration) -> bool {
        let Some(reactors) = self.reactors.get() else { return false };
        let mut sent = false;
        for r in reactors {
            sent |= r.send(move |s: &mut ReactorState, now| s.request_logout_all(within, now));
        }
        sent
    }

    /// Registers a session that just completed its login on `conn`. Returns the connections of the sessions it
    /// reinstates (same initiator name, ISID and target, RFC 7143 §6.3.5), already marked `reinstating`: the
    /// caller closes them with [`Self::close_conn`].
    pub(crate) fn register(&self, info: SessionInfo, conn: ConnRef) -> Vec<ConnRef> {
        let mut map = self.lock();
        let mut replaced = Vec::new();
        if info.session_type == SessionType::Normal {
            for e in map.values_mut() {
                let same = e.info.session_type == SessionType::Normal
                    && e.info.isid == info.isid
                    && e.info.initiator_name == info.initiator_name
                    && e.info.target_name == info.target_name;
                if same && !e.info.reinstating {
                    e.info.reinstating = true;
                    replaced.push(e.conn);
                    tracing::info!(
                        old_tsih = e.info.tsih,
                        new_tsih = info.tsih,
                        initiator = %info.initiator_name,
                        "session reinstatement: closing the old session"
                    );
                }
            }
        }
        if let Some(old) = map.insert(info.tsih, Entry { info, conn, closing: false }) {
            tracing::warn!(tsih = old.info.tsih, "TSIH reused while its session was registered");
        }
        replaced
    }

    /// Removes the session registered on `conn` (its connection was released).
    pub(crate) fn unregister(&self, tsih: u16, conn: ConnRef) {
        let mut map = self.lock();
        if map.get(&tsih).is_some_and(|e| e.conn == conn) {
            map.remove(&tsih);
        }
    }

    /// Asks the reactor owning `conn` to close it.
    /// Like [`Self::close_conn`], but returns only once the owning reactor has closed the connection, so that a
    /// management caller (force_close, removing a target) knows no further command of the session runs. Never
    /// call it from a reactor thread.
    fn close_conn_and_wait(&self, conn: ConnRef) -> Result<(), SessionsError> {
        let reactors = self.reactors.get().ok_or(SessionsError::NotRunning)?;
        let handle = reactors.get(conn.reactor).ok_or(SessionsError::NotRunning)?;
        let ConnRef { slot, generation, .. } = conn;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sent = handle.send(move |s: &mut ReactorState, _now| {
            s.close_conn(slot, generation);
            let _ = tx.send(());
        });
        if sent && rx.recv_timeout(CLOSE_WAIT).is_ok() {
            Ok(())
        } else {
            Err(SessionsError::ReactorGone(0))
        }
    }

    pub(crate) fn close_conn(&self, conn: ConnRef) -> Result<(), SessionsError> {
        let reactors = self.reactors.get().ok_or(SessionsError::NotRunning)?;
        let handle = reactors.get(conn.reactor).ok_or(SessionsError::NotRunning)?;
        let ConnRef { slot, generation, .. } = conn;
        if handle.send(move |s: &mut ReactorState, _now| s.close_conn(slot, generation)) {
            Ok(())
        } else {
            Err(SessionsError::ReactorGone(0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(initiator: &str, target: &str, isid: [u8; 6], tsih: u16) -> SessionParams {
        SessionParams {
            session_type: SessionType::Normal,
            initiator_name: initiator.into(),
            initiator_alias: None,
            target_name: target.into(),
            isid,
            tsih,
            header_digest: polltgt_iscsi::params::Digest::None,
            data_digest: polltgt_iscsi::params::Digest::None,
            initial_r2t: false,
            immediate_data: true,
            max_recv_data_segment_length: 8192,
            max_xmit_data_segment_length: 8192,
            max_burst_length: 262144,
            first_burst_length: 65536,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            default_time2wait: 2,
            default_time2retain: 0,
            max_connections: 1,
            error_recovery_level: 0,
        }
    }

    fn info(initiator: &str, target: &str, isid: [u8; 6], tsih: u16) -> SessionInfo {
        SessionInfo {
            tsih,
            isid,
            initiator_name: initiator.into(),
            initiator_alias: None,
            target_name: Some(target.into()),
            session_type: SessionType::Normal,
            params: params(initiator, target, isid, tsih),
            connections: vec![ConnectionInfo {
                cid: 0,
                peer: "127.0.0.1:40000".parse().unwrap(),
                local: "127.0.0.1:3260".parse().unwrap(),
                tpgt: 1,
                reactor: 0,
            }],
            reinstating: false,
        }
    }

    fn conn(slot: usize) -> ConnRef {
        ConnRef { reactor: 0, slot, generation: slot as u64 + 100 }
    }

    #[test]
    fn register_list_count_and_unregister() {
        let t = SessionTable::default();
        assert!(t.register(info("iqn.a", "iqn.t1", [1; 6], 5), conn(0)).is_empty());
        assert!(t.register(info("iqn.b", "iqn.t1", [1; 6], 6), conn(1)).is_empty());
        assert!(t.register(info("iqn.a", "iqn.t2", [1; 6], 7), conn(2)).is_empty());
        assert_eq!(t.list().iter().map(|s| s.tsih).collect::<Vec<_>>(), vec![5, 6, 7]);
        assert_eq!(t.for_target("iqn.t1").len(), 2);
        assert_eq!(t.count_for("iqn.t1", None), 2);
        assert_eq!(t.count_for("iqn.t1", Some(("iqn.a", [1; 6]))), 1, "a reinstating login adds no session");
        assert_eq!(t.count_for("iqn.t1", Some(("iqn.a", [2; 6]))), 2);
        assert!(t.contains(6) && !t.contains(8));
        assert_eq!(t.get(7).map(|s| s.sid_hex()), Some("0101010101010007".to_string()));
        assert_eq!(t.by_sid(0x0101_0101_0101_0007).map(|s| s.tsih), Some(7));
        assert_eq!(t.by_sid(0x0202_0202_0202_0007), None, "the ISID is part of the sid");
        // A stale unregister (another connection in the slot) does nothing.
        t.unregister(5, conn(9));
        assert!(t.contains(5));
        t.unregister(5, conn(0));
        assert!(!t.contains(5));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn same_initiator_isid_and_target_reinstates() {
        let t = SessionTable::default();
        t.register(info("iqn.a", "iqn.t1", [1; 6], 5), conn(0));
        let replaced = t.register(info("iqn.a", "iqn.t1", [1; 6], 6), conn(1));
        assert_eq!(replaced, vec![conn(0)]);
        assert!(t.get(5).is_some_and(|s| s.reinstating));
        assert_eq!(t.count_for("iqn.t1", None), 1, "the session being replaced does not count");
        // Another ISID, or the same ISID on another target, is another session.
        assert!(t.register(info("iqn.a", "iqn.t1", [2; 6], 7), conn(2)).is_empty());
        assert!(t.register(info("iqn.a", "iqn.t2", [1; 6], 8), conn(3)).is_empty());
    }

    #[test]
    fn session_ids_put_the_isid_above_the_tsih() {
        assert_eq!(session_id([0x40, 0, 0x01, 0x37, 0, 0], 0x0102), 0x4000_0137_0000_0102);
    }

    #[test]
    fn force_close_needs_a_running_dataplane() {
        let t = SessionTable::default();
        assert_eq!(t.force_close(3), Err(SessionsError::NoSuchSession(3)));
        t.register(info("iqn.a", "iqn.t1", [1; 6], 3), conn(0));
        assert_eq!(t.force_close(3), Err(SessionsError::NotRunning));
        assert!(!t.request_logout_all(Duration::from_secs(1)));
    }
}
