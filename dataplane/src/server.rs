//! The running target: listening portals, the acceptor, and the reactors that own the connections.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use polltgt_hugepages::BufPool;
use polltgt_tcpstack::KernelListener;

use crate::driver::{BdevPoller, ConnPoller, ReactorState};
use crate::isns::{IsnsConfig, IsnsSlot};
use crate::reactor::{PollStatus, Poller, ReactorConfig, ReactorError, ReactorHandle, ReactorSet, WakeSet};

/// Wake-set tokens of listening sockets (connections use their generation numbers, far below).
const LISTENER_TOKEN: u64 = 1 << 62;
/// Per size class, what a reactor's buffer cache may hold.
const REACTOR_CACHE_BYTES: usize = 4 << 20;
/// How often a polling reactor asks its listeners for new connections (SPDK's acceptor poller runs every
/// `ACCEPT_TIMEOUT_US` = 1 ms too). accept4(2) on a non-blocking listener is no cheap "nothing pending" check: the
/// kernel allocates a socket, inode and file before it finds the queue empty and frees them again, several
/// microseconds that, asked on every loop iteration, cost more than the I/O the iteration moved.
const ACCEPT_PERIOD: Duration = Duration::from_millis(1);
use crate::portals::{AcceptorCmd, PortalControl};
use crate::registry::{Portal, Registry};
use crate::stats::DataplaneSnapshot;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: polltgt_tcpstack::TcpError },
    #[error(transparent)]
    Reactor(#[from] ReactorError),
}

/// A portal to listen on.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    pub addr: SocketAddr,
    pub tpgt: u16,
}

/// Accepts connections on every listener and hands each to a reactor, round robin: connections, not targets, are
/// spread over reactors, so one busy target can use every core.
struct Acceptor {
    /// Listeners with the serial number that names them in the wake set (unique, so a closed listener's descriptor
    /// number reused by a new one is registered again).
    listeners: Vec<(KernelListener, u64)>,
    next_serial: u64,
    /// Portals added and removed at run time (crate::portals).
    cmds: crossbeam_channel::Receiver<AcceptorCmd>,
    reactors: Vec<ReactorHandle<ReactorState>>,
    next: usize,
    /// Cleared at shutdown: the listeners are closed.
    accepting: Arc<AtomicBool>,
}

impl Acceptor {
    fn poll(&mut self, local_state: &mut ReactorState, now: Instant) -> PollStatus {
        let mut status = PollStatus::Idle;
        while let Ok(cmd) = self.cmds.try_recv() {
            status = PollStatus::Busy;
            match cmd {
                AcceptorCmd::Add(l) => {
                    self.listeners.push((l, self.next_serial));
                    self.next_serial += 1;
                }
                AcceptorCmd::Remove(addr, reply) => {
                    let before = self.listeners.len();
                    self.listeners.retain(|(l, _)| l.local_addr() != addr);
                    let _ = reply.send(self.listeners.len() != before);
                }
            }
        }
        if !self.accepting.load(Ordering::Acquire) && !self.listeners.is_empty() {
            tracing::info!("no longer accepting connections");
            self.listeners.clear();
        }
        for (l, _) in &mut self.listeners {
            loop {
                match l.accept() {
                    Ok(Some(acc)) => {
                        status = PollStatus::Busy;
                        let target = self.next % self.reactors.len().max(1);
                        self.next = self.next.wrapping_add(1);
                        if target == local_state.id || self.reactors.is_empty() {
                            local_state.adopt(acc.conn, acc.local, acc.peer, now);
                        } else {
                            let (conn, local, peer) = (acc.conn, acc.local, acc.peer);
                            self.reactors[target].send(move |s: &mut ReactorState, now| s.adopt(conn, local, peer, now));
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        break;
                    }
                }
            }
        }
        status
    }
}

/// Poller wrapping the acceptor, which lives on reactor 0 once the reactor handles exist.
struct AcceptPoller {
    acceptor: Option<Acceptor>,
    inbox: crossbeam_channel::Receiver<Acceptor>,
    /// The listeners are asked again from then on ([`ACCEPT_PERIOD`]); None: at the next poll.
    next_accept: Option<Instant>,
}

impl Poller<ReactorState> for AcceptPoller {
    fn name(&self) -> &str {
        "iscsi_accept"
    }
    fn poll(&mut self, state: &mut ReactorState, now: Instant) -> PollStatus {
        if self.acceptor.is_none() {
            if let Ok(a) = self.inbox.try_recv() {
                self.acceptor = Some(a);
            }
        }
        if self.next_accept.is_some_and(|t| now < t) {
            return PollStatus::Idle;
        }
        let status = match self.acceptor.as_mut() {
            Some(a) => a.poll(state, now),
            None => PollStatus::Idle,
        };
        // After a connection arrived, look again at once (a burst of logins); else in a while.
        self.next_accept = if status == PollStatus::Busy { None } else { now.checked_add(ACCEPT_PERIOD) };
        status
    }
    fn prepare_sleep(&mut self, _state: &mut ReactorState, _now: Instant, wake: &mut WakeSet) -> bool {
        // Woken by a listener (or anything else), the reactor accepts at its first poll.
        self.next_accept = None;
        let Some(a) = self.acceptor.as_ref() else {
            // The acceptor arrives by channel right after start-up: keep polling until it is there.
            return false;
        };
        for (l, serial) in &a.listeners {
            wake.add_fd(l.as_raw_fd(), LISTENER_TOKEN + serial, true, false);
        }
        true
    }
}

/// Dataplane options beyond the reactor layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// Transmits of at least this many bytes use MSG_ZEROCOPY (None: never).
    pub zerocopy_threshold: Option<usize>,
}

/// The running target.
pub struct Server {
    reactors: ReactorSet<ReactorState>,
    portals: Vec<Portal>,
    registry: Arc<Registry>,
    accepting: Arc<AtomicBool>,
    isns: IsnsSlot,
    pool: BufPool,
    portal_control: PortalControl,
}

impl Server {
    /// Bind every portal, start the reactors and begin accepting connections.
    pub fn start(
        registry: Arc<Registry>,
        portals: &[PortalConfig],
        reactor_cfg: &ReactorConfig,
        pool: BufPool,
    ) -> Result<Server, ServerError> {
        Server::start_with(registry, portals, reactor_cfg, pool, &ServerOptions::default())
    }

    /// [`Server::start`] with options.
    pub fn start_with(
        registry: Arc<Registry>,
        portals: &[PortalConfig],
        reactor_cfg: &ReactorConfig,
        pool: BufPool,
        options: &ServerOptions,
    ) -> Result<Server, ServerError> {
        let mut listeners = Vec::new();
        let mut bound = Vec::new();
        for p in portals {
            let l = KernelListener::bind(p.addr).map_err(|source| ServerError::Listen { addr: p.addr, source })?;
            let addr = l.local_addr();
            let portal = Portal { addr, tpgt: p.tpgt };
            registry.add_portal(portal.clone());
            bound.push(portal);
            listeners.push(l);
        }
        let (atx, arx) = crossbeam_channel::bounded::<Acceptor>(1);
        let reg = registry.clone();
        let arx = std::sync::Mutex::new(Some(arx));
        let zerocopy_threshold = options.zerocopy_threshold;
        let reactor_pool = pool.clone();
        let reactors = ReactorSet::spawn(reactor_cfg, move |id| {
            // This runs on the reactor's thread: its buffer cache belongs to it.
            reactor_pool.enable_thread_cache(REACTOR_CACHE_BYTES);
            let mut state = ReactorState::new(id, reg.clone(), reactor_pool.clone());
            state.set_zerocopy_threshold(zerocopy_threshold);
            let mut pollers: Vec<Box<dyn Poller<ReactorState>>> = Vec::new();
            if id == 0 {
                if let Some(inbox) = arx.lock().ok().and_then(|mut g| g.take()) {
                    pollers.push(Box::new(AcceptPoller { acceptor: None, inbox, next_accept: None }));
                }
            }
            pollers.push(Box::new(ConnPoller));
            pollers.push(Box::new(BdevPoller));
            (state, pollers)
        })?;
        // The session table's reactor handles and the placement directory (crate::placement).
        registry.set_reactors(reactors.handles().to_vec());
        let accepting = Arc::new(AtomicBool::new(true));
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let next_serial = listeners.len() as u64;
        let acceptor = Acceptor {
            listeners: listeners.into_iter().zip(0..).collect(),
            next_serial,
            cmds: cmd_rx,
            reactors: reactors.handles().to_vec(),
            next: 0,
            accepting: accepting.clone(),
        };
        let portal_control = PortalControl::new(registry.clone(), cmd_tx, reactors.handles().to_vec());
        // The channel holds one value and nobody else sends on it, so this cannot block or fail while reactor 0 runs.
        let _ = atx.send(acceptor);
        let isns = IsnsSlot::new(registry.clone());
        Ok(Server { reactors, portals: bound, registry, accepting, isns, pool, portal_control })
    }

    /// The addresses bound at start (see [`Server::portal_control`] for those listening now).
    pub fn portals(&self) -> &[Portal] {
        &self.portals
    }

    /// Adds and removes portals while the target runs ([`crate::portals`]).
    pub fn portal_control(&self) -> &PortalControl {
        &self.portal_control
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn reactors(&self) -> &[ReactorHandle<ReactorState>] {
        self.reactors.handles()
    }

    /// Registers the targets with an iSNS server from now on (see [`crate::isns::IsnsClient`]); the client stops,
    /// deregistering them, when the server shuts down.
    pub fn start_isns(&self, cfg: IsnsConfig) -> Result<(), std::io::Error> {
        self.isns.start(cfg)
    }

    /// The iSNS client slot (call [`IsnsSlot::refresh`] after changing targets or portals; the management plane
    /// starts, replaces and stops the client through it).
    pub fn isns(&self) -> &IsnsSlot {
        &self.isns
    }

    /// A statistics snapshot ([`crate::stats::collect`]: the one collector the management plane uses too).
    pub fn snapshot(&self, timeout: Duration) -> DataplaneSnapshot {
        crate::stats::collect(&self.registry, &self.pool, timeout)
    }

    /// Stop the reactors (connections are dropped).
    pub fn shutdown(self) {
        self.isns.stop();
        self.reactors.shutdown();
    }

    /// Stop accepting connections, ask every session to log out within `logout_within` (RFC 7143 §11.9.1,
    /// AsyncEvent 1; sessions that do not are dropped by their reactor after that time), wait until the sessions
    /// are gone or `logout_within` plus a grace second has passed, then stop the reactors.
    pub fn shutdown_gracefully(self, logout_within: Duration) {
        self.accepting.store(false, Ordering::Release);
        self.isns.stop();
        let sessions = self.registry.sessions();
        if !sessions.is_empty() && sessions.request_logout_all(logout_within) {
            tracing::info!(sessions = sessions.len(), "asking initiators to log out");
            let deadline = Instant::now() + logout_within + Duration::from_secs(1);
            while !sessions.is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !sessions.is_empty() {
                tracing::warn!(sessions = sessions.len(), "sessions still open at shutdown are dropped");
            }
        }
        self.reactors.shutdown();
    }
}
