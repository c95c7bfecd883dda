//! Listening portals added and removed while the target runs (the management plane's `portals`).
//!
//! The listeners live in the acceptor, a poller of reactor 0 ([`crate::server`]). [`PortalControl::add`] binds the
//! new listener on the caller's thread (so a bind error is the caller's), registers the portal (SendTargets reports
//! it from then on) and hands the listener to the acceptor by message. [`PortalControl::remove`] unregisters the
//! portal, has the acceptor close its listener (new connections are refused once it returns) and closes every
//! connection that arrived through it, on whichever reactor runs it: sessions, discovery sessions and logins in
//! progress. Connections on the other portals are untouched.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use polltgt_tcpstack::KernelListener;

use crate::driver::ReactorState;
use crate::reactor::ReactorHandle;
use crate::registry::{Portal, Registry};

/// How long a portal change waits for the reactors' answers.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a portal change failed.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("a portal listens on {0} already")]
    Exists(SocketAddr),
    #[error("no portal listens on {0}")]
    NotFound(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: polltgt_tcpstack::TcpError },
    #[error("the last portal cannot be removed (the target would be unreachable; add another one first)")]
    LastPortal,
    #[error("reactor {0} did not answer")]
    NoAnswer(usize),
}

/// What the acceptor is told to do with its listeners.
pub(crate) enum AcceptorCmd {
    /// Accept connections on this listener too.
    Add(KernelListener),
    /// Close the listener bound to this address; answer whether there was one.
    Remove(SocketAddr, crossbeam_channel::Sender<bool>),
}

/// The handle the management plane changes portals with (cheap to clone).
#[derive(Clone)]
pub struct PortalControl {
    registry: Arc<Registry>,
    cmds: crossbeam_channel::Sender<AcceptorCmd>,
    reactors: Vec<ReactorHandle<ReactorState>>,
}

impl PortalControl {
    pub(crate) fn new(
        registry: Arc<Registry>,
        cmds: crossbeam_channel::Sender<AcceptorCmd>,
        reactors: Vec<ReactorHandle<ReactorState>>,
    ) -> PortalControl {
        PortalControl { registry, cmds, reactors }
    }

    /// The portals listening now (addresses as bound).
    pub fn list(&self) -> Vec<Portal> {
        self.registry.portals()
    }

    /// Send `cmd` to the acceptor and wake its reactor (an idle reactor sleeps in epoll).
    fn tell_acceptor(&self, cmd: AcceptorCmd) -> Result<(), PortalError> {
        let r0 = self.reactors.first().ok_or(PortalError::NoAnswer(0))?;
        self.cmds.send(cmd).map_err(|_| PortalError::NoAnswer(0))?;
        if !r0.send(|_s: &mut ReactorState, _now| {}) {
            return Err(PortalError::NoAnswer(0));
        }
        Ok(())
    }

    /// Listen on `addr` (port 0: the kernel picks one) as a portal of group `tpgt`. Returns the portal as bound.
    pub fn add(&self, addr: SocketAddr, tpgt: u16) -> Result<Portal, PortalError> {
        if addr.port() != 0 && self.registry.portals().iter().any(|p| p.addr == addr) {
            return Err(PortalError::Exists(addr));
        }
        let listener = KernelListener::bind(addr).map_err(|source| PortalError::Listen { addr, source })?;
        let portal = Portal { addr: listener.local_addr(), tpgt };
        self.registry.add_portal(portal.clone());
        if let Err(e) = self.tell_acceptor(AcceptorCmd::Add(listener)) {
            self.registry.remove_portal(portal.addr);
            return Err(e);
        }
        tracing::info!(portal = %portal.addr, tpgt, "portal added");
        Ok(portal)
    }

    /// Stop listening on `addr` and close the connections that arrived through it. Returns how many connections
    /// were closed.
    pub fn remove(&self, addr: SocketAddr) -> Result<usize, PortalError> {
        let portals = self.registry.portals();
        if !portals.iter().any(|p| p.addr == addr) {
            return Err(PortalError::NotFound(addr));
        }
        if portals.len() == 1 {
            return Err(PortalError::LastPortal);
        }
        self.registry.remove_portal(addr);
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.tell_acceptor(AcceptorCmd::Remove(addr, tx))?;
        rx.recv_timeout(REPLY_TIMEOUT).map_err(|_| PortalError::NoAnswer(0))?;
        let mut waiting = Vec::new();
        for (id, h) in self.reactors.iter().enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(1);
            if !h.send(move |s: &mut ReactorState, _now| {
                let _ = tx.send(s.close_portal_connections(addr));
            }) {
                return Err(PortalError::NoAnswer(id));
            }
            waiting.push((id, rx));
        }
        let mut closed = 0;
        for (id, rx) in waiting {
            closed += rx.recv_timeout(REPLY_TIMEOUT).map_err(|_| PortalError::NoAnswer(id))?;
        }
        tracing::info!(portal = %addr, closed, "portal removed");
        Ok(closed)
    }
}

impl ReactorState {
    /// Close every connection of this reactor that arrived through the portal bound to `addr`; returns how many.
    pub(crate) fn close_portal_connections(&mut self, addr: SocketAddr) -> usize {
        let mut n = 0;
        for slot in self.slots.iter_mut().flatten() {
            let through = slot.local == addr
                || (addr.ip().is_unspecified() && slot.local.port() == addr.port());
            if through && !slot.iscsi.is_closed() {
                tracing::info!(peer = %slot.peer, portal = %addr, "portal removed: closing the connection");
                slot.iscsi.close();
                n += 1;
            }
        }
        n
    }
}
