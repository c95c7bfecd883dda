//! iSNS (RFC 4171) client side of the target: registration of targets and portals with the configured iSNS server,
//! and iSNS access control (the server's discovery domains decide which initiators see and reach a target).

use std::collections::{HashMap, HashSet};
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
/// (DevAttrQry) every `interval` (State Change Notifications are not used: changes of discovery domains take
/// effect within one interval). Everything is deregistered when the client stops.
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
        let thread = std::thread::Builder::new().name("isns".into()).spawn(move || {
            let mut state = ClientState::new(cfg);
            while !stop2.load(Ordering::Acquire) {
                if let Err(e) = state.sync(&registry) {
                    tracing::warn!(error = %e, "iSNS round failed");
                    state.conn = None;
                }
                let _ = woken.recv_timeout(state.cfg.interval);
            }
            state.deregister_all();
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
}

impl ClientState {
    fn new(cfg: IsnsConfig) -> ClientState {
        ClientState { cfg, conn: None, registered: BTreeMap::new(), registered_at: None, transaction: 0 }
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
            self.exchange(proto::dev_attr_reg(&self.cfg.entity_id, &nodes, t)?)?;
            if desired != self.registered {
                tracing::info!(targets = desired.len(), entity = %self.cfg.entity_id, "registered with the iSNS server");
            }
            self.registered = desired;
            self.registered_at = Some(Instant::now());
        }
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
