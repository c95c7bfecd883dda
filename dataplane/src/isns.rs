//! iSNS (RFC 4171) client side of the target: registration of targets and portals with the configured iSNS server,
//! and iSNS access control (the server's discovery domains decide which initiators see and reach a target).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

/// iSNS access control (iSCSI-SCST's `iSNSServer ... AccessControl`): when enabled, a target is visible in
/// SendTargets and accepts logins only from initiators the iSNS server places in one of its discovery domains.
/// Until the server has answered for a target, no initiator may reach it (fail closed).
#[derive(Debug, Default)]
pub struct IsnsAcl {
    enabled: AtomicBool,
    /// Target name -> initiator names (lower case) sharing a discovery domain with it.
    visible: RwLock<HashMap<String, HashSet<String>>>,
}

impl IsnsAcl {
    /// Whether `initiator` may see and log in to `target`.
    pub fn allows(&self, target: &str, initiator: &str) -> bool {
        if !self.enabled.load(Ordering::Acquire) {
            return true;
        }
        let visible = self.visible.read().unwrap_or_else(|p| p.into_inner());
        visible.get(target).is_some_and(|s| s.contains(&initiator.to_ascii_lowercase()))
    }

    /// Whether access control is on.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Turns access control on or off.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Release);
    }

    /// The initiators the server reports in a discovery domain with `target`.
    pub fn set_visible(&self, target: &str, initiators: impl IntoIterator<Item = String>) {
        let set: HashSet<String> = initiators.into_iter().map(|i| i.to_ascii_lowercase()).collect();
        self.visible.write().unwrap_or_else(|p| p.into_inner()).insert(target.to_string(), set);
    }

    /// Forgets what the server said about `target`.
    pub fn forget(&self, target: &str) {
        self.visible.write().unwrap_or_else(|p| p.into_inner()).remove(target);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The client

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use polltgt_iscsi::isns::{self as proto, NodeReg, Response};

use crate::registry::Registry;

/// How long connecting to, sending to and waiting for the iSNS server may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Registrations are refreshed at least this often even when nothing changed.
const REREGISTER: Duration = Duration::from_secs(60);
/// While the server notifies changes of discovery domains (SCN), the queries are repeated only this often (in case
/// a notification was lost), or at the configured interval when that is longer.
const SCN_FALLBACK: Duration = Duration::from_secs(60);
/// How long a connection from the server to the SCN/ESI port may stay silent before it is closed.
const SCN_IDLE: Duration = Duration::from_secs(30);
/// Connections from the server served at the same time; more are closed at once.
const SCN_MAX_CONNECTIONS: usize = 8;

/// Errors talking to the iSNS server (logged; the client retries on its next round).
#[derive(Debug, thiserror::Error)]
pub enum IsnsClientError {
    #[error("cannot resolve iSNS server {0}")]
    Resolve(String),
    #[error("iSNS server {addr}: {source}")]
    Io { addr: String, source: std::io::Error },
    #[error("iSNS: {0}")]
    Protocol(#[from] proto::IsnsError),
    #[error("iSNS server answered {function:#06x} with status {status}")]
    Status { function: u16, status: u32 },
}

/// What the client registers and with whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsnsConfig {
    /// `host:port` of the iSNS server.
    pub server: String,
    /// Honour the server's discovery domains in SendTargets and logins.
    pub access_control: bool,
    /// How often the registrations and discovery domains are checked.
    pub interval: Duration,
    /// The Entity Identifier of this target (unique per iSNS server).
    pub entity_id: String,
}

/// The iSNS client: a background thread that keeps the server's view of this target's nodes and portals in step
/// with the registry (DevAttrReg when something changed or [`REREGISTER`] passed, DevDereg for targets that went
/// away) and, with access control, asks the server which initiators share a discovery domain with each target
/// (DevAttrQry). Everything is deregistered when the client stops.
///
/// State Change Notifications (RFC 4171 §5.6.5.5, §5.6.5.8): every portal is registered with an SCN Port and an
/// ESI Port, both served by one listener ([`ScnListener`], as tgt and iSCSI-SCST do) on the address this host
/// reaches the server from; with access control each target registers for SCNs about initiators (SCNReg). An SCN
/// is answered (SCNRsp) and makes the client query the discovery domains at once, so a change applies as soon as
/// the server reports it; the queries then run only every [`SCN_FALLBACK`] besides. A server that refuses SCNReg
/// (or a listener that cannot be opened) leaves the client polling every `interval`. Entity Status Inquiries are
/// answered (ESIRsp) on the same port.
pub struct IsnsClient {
    stop: Arc<AtomicBool>,
    wake: crossbeam_channel::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for IsnsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsnsClient").finish_non_exhaustive()
    }
}

impl IsnsClient {
    /// Starts the client thread. With access control, the registry's [`IsnsAcl`] is enabled at once: targets are
    /// unreachable until the server has answered for them.
    pub fn start(registry: Arc<Registry>, cfg: IsnsConfig) -> Result<IsnsClient, std::io::Error> {
        registry.isns().set_enabled(cfg.access_control);
        let stop = Arc::new(AtomicBool::new(false));
        let (wake, woken) = crossbeam_channel::bounded::<()>(1);
        let stop2 = stop.clone();
        let waker = wake.clone();
        let thread = std::thread::Builder::new().name("isns".into()).spawn(move || {
            let mut state = ClientState::new(cfg, waker);
            while !stop2.load(Ordering::Acquire) {
                if let Err(e) = state.sync(&registry) {
                    tracing::warn!(error = %e, "iSNS round failed");
                    state.conn = None;
                }
                let wait = if state.scn_active() { state.cfg.interval.max(SCN_FALLBACK) } else { state.cfg.interval };
                let _ = woken.recv_timeout(wait);
            }
            state.deregister_all();
            if let Some(l) = state.scn.take() {
                l.stop();
            }
        })?;
        Ok(IsnsClient { stop, wake, thread: Some(thread) })
    }

    /// Runs a round now (after targets or portals changed).
    pub fn refresh(&self) {
        let _ = self.wake.try_send(());
    }

    /// Deregisters everything and stops the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for IsnsClient {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The iSNS client of a running target, shared by the server and the management plane: it can be started,
/// replaced and stopped while the target runs (iSCSI-SCST's driver attribute `iSNSServer` is writable).
#[derive(Clone)]
pub struct IsnsSlot {
    registry: Arc<Registry>,
    running: Arc<std::sync::Mutex<Option<(IsnsConfig, IsnsClient)>>>,
}

impl std::fmt::Debug for IsnsSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IsnsSlot").field("config", &self.config()).finish_non_exhaustive()
    }
}

impl IsnsSlot {
    /// No client running.
    pub fn new(registry: Arc<Registry>) -> IsnsSlot {
        IsnsSlot { registry, running: Arc::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(IsnsConfig, IsnsClient)>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers with the server `cfg` names from now on; a client already running for another configuration is
    /// stopped first (deregistering this target from its server).
    pub fn start(&self, cfg: IsnsConfig) -> Result<(), std::io::Error> {
        let mut running = self.lock();
        if running.as_ref().is_some_and(|(c, _)| *c == cfg) {
            return Ok(());
        }
        if let Some((_, old)) = running.take() {
            old.stop();
            self.registry.isns().set_enabled(false);
        }
        let client = IsnsClient::start(self.registry.clone(), cfg.clone())?;
        *running = Some((cfg, client));
        Ok(())
    }

    /// Deregisters and stops the client, if one runs; iSNS access control is off afterwards.
    pub fn stop(&self) {
        if let Some((_, client)) = self.lock().take() {
            client.stop();
            self.registry.isns().set_enabled(false);
        }
    }

    /// Runs a round now (after targets or portals changed); nothing without a client.
    pub fn refresh(&self) {
        if let Some((_, client)) = self.lock().as_ref() {
            client.refresh();
        }
    }

    /// The configuration of the running client.
    pub fn config(&self) -> Option<IsnsConfig> {
        self.lock().as_ref().map(|(c, _)| c.clone())
    }
}

struct ClientState {
    cfg: IsnsConfig,
    conn: Option<TcpStream>,
    /// What the server holds for this entity (by target name).
    registered: BTreeMap<String, NodeReg>,
    registered_at: Option<Instant>,
    transaction: u16,
    /// Wakes the client thread (the SCN listener uses it).
    wake: crossbeam_channel::Sender<()>,
    /// The SCN/ESI port.
    scn: Option<ScnListener>,
    /// Targets registered for SCNs since the last DevAttrReg.
    scn_registered: BTreeSet<String>,
    /// The server refused an SCNReg since the last DevAttrReg: poll instead.
    scn_refused: bool,
}

impl ClientState {
    fn new(cfg: IsnsConfig, wake: crossbeam_channel::Sender<()>) -> ClientState {
        ClientState {
            cfg,
            conn: None,
            registered: BTreeMap::new(),
            registered_at: None,
            transaction: 0,
            wake,
            scn: None,
            scn_registered: BTreeSet::new(),
            scn_refused: false,
        }
    }

    /// Whether the server notifies every registered target of discovery-domain changes.
    fn scn_active(&self) -> bool {
        self.cfg.access_control
            && self.scn.is_some()
            && !self.registered.is_empty()
            && self.registered.keys().all(|n| self.scn_registered.contains(n))
    }

    /// Opens the SCN/ESI listener on the address this host reaches the server from (once).
    fn ensure_scn_listener(&mut self) {
        if self.scn.is_some() {
            return;
        }
        let Some(ip) = self.conn.as_ref().and_then(|s| s.local_addr().ok()).map(|a| a.ip()) else { return };
        match ScnListener::start(ip, self.wake.clone()) {
            Ok(l) => {
                tracing::info!(port = l.port, "iSNS SCN/ESI port open");
                self.scn = Some(l);
            }
            Err(e) => tracing::warn!(error = %e, "cannot open the iSNS SCN/ESI port; polling the server instead"),
        }
    }

    /// SCNReg for every registered target not registered yet (access control only: the notifications serve it).
    fn register_scns(&mut self) -> Result<(), IsnsClientError> {
        if !self.cfg.access_control || self.scn.is_none() || self.scn_refused {
            return Ok(());
        }
        let names: Vec<String> =
            self.registered.keys().filter(|n| !self.scn_registered.contains(*n)).cloned().collect();
        for name in names {
            let t = self.next_transaction();
            match self.exchange(proto::scn_reg(&name, proto::scn::TARGET_NODE, t)?) {
                Ok(_) => {
                    tracing::debug!(target = %name, "registered for iSNS state change notifications");
                    self.scn_registered.insert(name);
                }
                Err(e @ IsnsClientError::Status { .. }) => {
                    tracing::warn!(target = %name, error = %e, "iSNS SCN registration refused; polling instead");
                    self.scn_refused = true;
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn connect(&mut self) -> Result<&mut TcpStream, IsnsClientError> {
        if self.conn.is_none() {
            let addr = &self.cfg.server;
            let io = |source| IsnsClientError::Io { addr: addr.clone(), source };
            let target: SocketAddr = addr
                .to_socket_addrs()
                .map_err(|_| IsnsClientError::Resolve(addr.clone()))?
                .next()
                .ok_or_else(|| IsnsClientError::Resolve(addr.clone()))?;
            let s = TcpStream::connect_timeout(&target, IO_TIMEOUT).map_err(io)?;
            s.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
            s.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
            s.set_nodelay(true).map_err(io)?;
            tracing::info!(server = %addr, "connected to the iSNS server");
            self.conn = Some(s);
        }
        self.conn.as_mut().ok_or_else(|| IsnsClientError::Resolve(self.cfg.server.clone()))
    }

    fn next_transaction(&mut self) -> u16 {
        self.transaction = self.transaction.wrapping_add(1);
        self.transaction
    }

    /// Sends one request and returns the response with its transaction ID.
    fn exchange(&mut self, msg: proto::Message) -> Result<Response, IsnsClientError> {
        let bytes = msg.encode()?;
        let addr = self.cfg.server.clone();
        let io = |source| IsnsClientError::Io { addr: addr.clone(), source };
        let s = self.connect()?;
        s.write_all(&bytes).map_err(io)?;
        // Responses to earlier, abandoned requests are skipped.
        for _ in 0..16 {
            let mut head = [0u8; proto::HEADER_LEN];
            s.read_exact(&mut head).map_err(io)?;
            let len = proto::pdu_len(&head).unwrap_or(proto::HEADER_LEN);
            let mut pdu = head.to_vec();
            pdu.resize(len, 0);
            s.read_exact(&mut pdu[proto::HEADER_LEN..]).map_err(io)?;
            let rsp = Response::decode(&pdu)?;
            if rsp.header.transaction == msg.transaction
                && rsp.header.function == proto::function::response(msg.function)
            {
                if rsp.status != proto::status::SUCCESS {
                    return Err(IsnsClientError::Status { function: rsp.header.function, status: rsp.status });
                }
                return Ok(rsp);
            }
            tracing::debug!(function = rsp.header.function, transaction = rsp.header.transaction, "iSNS PDU skipped");
        }
        Err(IsnsClientError::Io { addr, source: std::io::Error::other("no matching response") })
    }

    /// The nodes the server should hold: every enabled target with the portals it is allowed on. A wildcard portal
    /// is registered with the address this host reaches the iSNS server from.
    fn desired(&mut self, registry: &Registry) -> Result<BTreeMap<String, NodeReg>, IsnsClientError> {
        let local_ip: Option<IpAddr> = match &self.conn {
            Some(s) => s.local_addr().ok().map(|a| a.ip()),
            None => None,
        };
        let portals = registry.portals();
        let mut out = BTreeMap::new();
        for t in registry.targets().into_iter().filter(|t| t.enabled) {
            let name = t.name.clone();
            let mut reg_portals = Vec::new();
            for p in &portals {
                let ip = match (p.addr.ip().is_unspecified(), local_ip) {
                    (false, _) => p.addr.ip(),
                    (true, Some(ip)) => ip,
                    (true, None) => continue,
                };
                if crate::acl::portal_allowed(&t.allowed_portals, ip) {
                    reg_portals.push((ip, p.addr.port(), p.tpgt));
                }
            }
            if !reg_portals.is_empty() {
                out.insert(name.clone(), NodeReg { name, alias: t.alias.clone(), portals: reg_portals });
            }
        }
        Ok(out)
    }

    fn sync(&mut self, registry: &Registry) -> Result<(), IsnsClientError> {
        self.connect()?;
        self.ensure_scn_listener();
        let desired = self.desired(registry)?;
        // Targets that went away (or lost all their portals) are deregistered.
        let gone: Vec<String> = self.registered.keys().filter(|n| !desired.contains_key(*n)).cloned().collect();
        if !gone.is_empty() {
            let names: Vec<&str> = gone.iter().map(String::as_str).collect();
            let t = self.next_transaction();
            self.exchange(proto::dev_dereg(names[0], &names, t)?)?;
            for n in &gone {
                self.registered.remove(n);
                registry.isns().forget(n);
                tracing::info!(target = %n, "deregistered from the iSNS server");
            }
        }
        let stale = self.registered_at.is_none_or(|at| at.elapsed() >= REREGISTER);
        if !desired.is_empty() && (desired != self.registered || stale) {
            let nodes: Vec<NodeReg> = desired.values().cloned().collect();
            let t = self.next_transaction();
            let scn_port = self.scn.as_ref().map(|l| l.port);
            self.exchange(proto::dev_attr_reg(&self.cfg.entity_id, &nodes, scn_port, t)?)?;
            // A replacing registration may drop the server's SCN registrations: make them again.
            self.scn_registered.clear();
            self.scn_refused = false;
            if desired != self.registered {
                tracing::info!(targets = desired.len(), entity = %self.cfg.entity_id, "registered with the iSNS server");
            }
            self.registered = desired;
            self.registered_at = Some(Instant::now());
        }
        self.register_scns()?;
        if self.cfg.access_control {
            let names: Vec<String> = self.registered.keys().cloned().collect();
            for name in names {
                let t = self.next_transaction();
                match self.exchange(proto::query_initiators(&name, t)?) {
                    Ok(rsp) => {
                        let initiators = rsp.initiator_names();
                        tracing::debug!(target = %name, ?initiators, "iSNS discovery domains");
                        registry.isns().set_visible(&name, initiators);
                    }
                    Err(e @ IsnsClientError::Status { .. }) => {
                        tracing::warn!(target = %name, error = %e, "iSNS query refused; no initiator may reach the target");
                        registry.isns().set_visible(&name, Vec::new());
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Deregisters every node and the entity (shutdown).
    fn deregister_all(&mut self) {
        if self.registered.is_empty() {
            return;
        }
        let names: Vec<String> = self.registered.keys().cloned().collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let t = self.next_transaction();
        let result = proto::dev_dereg(refs[0], &refs, t).map_err(IsnsClientError::from).and_then(|m| self.exchange(m));
        let t = self.next_transaction();
        let entity = proto::dev_dereg_entity(refs[0], &self.cfg.entity_id, t)
            .map_err(IsnsClientError::from)
            .and_then(|m| self.exchange(m));
        match result.and(entity) {
            Ok(_) => tracing::info!(targets = names.len(), "deregistered from the iSNS server"),
            Err(e) => tracing::warn!(error = %e, "iSNS deregistration failed"),
        }
        self.registered.clear();
    }
}

/// The SCN/ESI port: a listener for the connections the iSNS server opens to deliver State Change Notifications and
/// Entity Status Inquiries. Each connection is served on a short-lived thread: every SCN is answered and wakes the
/// client (which queries the discovery domains again), every ESI is answered. Stopping it wakes the blocked
/// accept with a connection of its own.
pub struct ScnListener {
    port: u16,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScnListener {
    /// Listens on `ip` (port chosen by the kernel); SCNs wake the client through `wake`.
    pub fn start(ip: IpAddr, wake: crossbeam_channel::Sender<()>) -> std::io::Result<ScnListener> {
        let listener = std::net::TcpListener::bind(SocketAddr::new(ip, 0))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let thread = std::thread::Builder::new().name("isns-scn".into()).spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Acquire) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if active.load(Ordering::Acquire) >= SCN_MAX_CONNECTIONS {
                    tracing::warn!("too many iSNS SCN/ESI connections; closing one");
                    continue;
                }
                active.fetch_add(1, Ordering::AcqRel);
                let (wake, stop, active2) = (wake.clone(), stop2.clone(), active.clone());
                let spawned = std::thread::Builder::new().name("isns-scn-conn".into()).spawn(move || {
                    serve_server_messages(conn, &wake, &stop);
                    active2.fetch_sub(1, Ordering::AcqRel);
                });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
        Ok(ScnListener { port: addr.port(), addr, stop, thread: Some(thread) })
    }

    /// The port registered as SCN Port and ESI Port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops accepting (connections being served end at their next read).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            // Unblock the accept.
            let _ = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT);
            let _ = t.join();
        }
    }
}

impl Drop for ScnListener {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads the server's messages on one connection and answers each (SCNRsp, ESIRsp); ends on close, error, stop or
/// [`SCN_IDLE`] of silence.
fn serve_server_messages(mut conn: TcpStream, wake: &crossbeam_channel::Sender<()>, stop: &AtomicBool) {
    let peer = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    if conn.set_read_timeout(Some(SCN_IDLE)).and(conn.set_write_timeout(Some(IO_TIMEOUT))).is_err() {
        return;
    }
    while !stop.load(Ordering::Acquire) {
        let mut head = [0u8; proto::HEADER_LEN];
        if conn.read_exact(&mut head).is_err() {
            return;
        }
        let Some(len) = proto::pdu_len(&head) else { return };
        let mut pdu = head.to_vec();
        pdu.resize(len, 0);
        if conn.read_exact(&mut pdu[proto::HEADER_LEN..]).is_err() {
            return;
        }
        match proto::answer_server_message(&pdu) {
            Ok((answer, scn)) => {
                if conn.write_all(&answer).is_err() {
                    return;
                }
                match scn {
                    Some(scn) => {
                        let (destination, events) = (&scn.destination, &scn.events);
                        tracing::info!(%peer, %destination, ?events, "iSNS state change notification");
                        let _ = wake.try_send(());
                    }
                    None => {
                        let function = u16::from_be_bytes([pdu[2], pdu[3]]);
                        tracing::debug!(%peer, function, "iSNS server message answered");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "undecodable message on the iSNS SCN/ESI port");
                return;
            }
        }
    }
}
