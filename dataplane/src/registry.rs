//! The live object tree the dataplane serves: devices (a bdev plus its SCSI logical unit), targets with their LUN
//! maps and negotiation defaults, and portals. It answers the iSCSI core's questions during login and discovery
//! ([`TargetCatalog`]). Reads happen at login and on the slow path only; the fast path works on `Arc`s taken at login.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use polltgt_bdev::Bdev;
use polltgt_iscsi::chap::{Credentials, RandomSource, RandomUnavailable};
use polltgt_iscsi::access::{PortalPattern, Redirect};
use polltgt_iscsi::conn::DigestFaults;
use polltgt_iscsi::login::{PortalInfo, Refusal, TargetCatalog, TargetInfo};
use polltgt_iscsi::params::TargetParams;
use polltgt_scsi::{LogicalUnit, LuConfig};

use crate::acl;
use crate::driver::ReactorState;
use crate::isns::IsnsAcl;
use crate::nexus::NexusDirectory;
use crate::placement::Directory;
use crate::pr_store::PrStore;
use crate::rangelock::RangeLock;
use crate::reactor::ReactorHandle;
use crate::sessions::SessionTable;

/// A block device exported as a SCSI logical unit. The LU (unit attentions, mode pages, identity) belongs to the
/// device, so a device exported by several targets has one set of SCSI state, as in SCST.
pub struct Device {
    /// Index of the device, unique for the life of the process; reactors key their bdev channels by it.
    pub id: u64,
    pub name: String,
    pub bdev: Arc<dyn Bdev>,
    pub lu: Arc<LogicalUnit>,
    /// Makes COMPARE AND WRITE, ORWRITE and WRITE ATOMIC atomic against every other command (all reactors).
    pub range_lock: RangeLock,
}

/// I/O counters of one LUN mapping (SCST's per-LUN statistics), shared by every reactor; relaxed atomics.
#[derive(Debug, Default)]
pub struct IoCounters {
    pub read_commands: AtomicU64,
    pub write_commands: AtomicU64,
    pub other_commands: AtomicU64,
    pub read_bytes: AtomicU64,
    pub write_bytes: AtomicU64,
    /// Commands that ended in CHECK CONDITION or another non-GOOD status.
    pub errors: AtomicU64,
}

/// One LUN of a target (or of an initiator group).
#[derive(Clone)]
pub struct LunEntry {
    pub lun: u64,
    pub device: Arc<Device>,
    /// Export write-protected (SCST's per-LUN `read_only`): writes fail with DATA PROTECT.
    pub read_only: bool,
    pub stats: Arc<IoCounters>,
}

impl LunEntry {
    pub fn new(lun: u64, device: Arc<Device>, read_only: bool) -> LunEntry {
        LunEntry { lun, device, read_only, stats: Arc::new(IoCounters::default()) }
    }
}

/// An initiator group (SCST security group): initiator name patterns and the LUN set their sessions see instead of
/// the target's default set. See [`crate::acl`].
#[derive(Clone)]
pub struct IniGroup {
    pub name: String,
    /// Patterns (`*`, `?`, leading `!`), matched against the initiator name (or `name#portal_ip`).
    pub initiators: Vec<String>,
    pub luns: BTreeMap<u64, LunEntry>,
    /// The group's own `cpu_mask` (CPUs of the reactors its sessions run on); `None`: the target's.
    pub cpus: Option<Vec<usize>>,
    /// The group's own `per_sess_dedicated_tgt_threads`; `None`: the target's.
    pub dedicated: Option<bool>,
}

impl IniGroup {
    /// Where the group's sessions run: its own settings, each falling back to the target's `policy`.
    pub fn reactor_policy(&self, policy: &ReactorPolicy) -> ReactorPolicy {
        ReactorPolicy {
            cpus: self.cpus.clone().or_else(|| policy.cpus.clone()),
            dedicated: self.dedicated.unwrap_or(policy.dedicated),
        }
    }
}

/// A target node. A session holds a *view* of its target ([`Registry::session_view`]): the same entry with `luns`
/// replaced by the LUN set of the initiator's group and `group` naming that group.
#[derive(Clone)]
pub struct TargetEntry {
    pub name: String,
    pub alias: Option<String>,
    pub enabled: bool,
    pub params: TargetParams,
    /// The default LUN set (SCST's target `luns`).
    pub luns: BTreeMap<u64, LunEntry>,
    /// CHAP accounts (IncomingUser*, OutgoingUser); none = no authentication.
    pub credentials: Credentials,
    /// Initiator groups, in the order they are searched.
    pub ini_groups: Vec<IniGroup>,
    /// Match `initiator#portal_ip` instead of the initiator name.
    pub per_portal_acl: bool,
    /// Portals the target is reachable and reported on (SCST `allowed_portal`, by IP address pattern; empty:
    /// all).
    pub allowed_portals: Vec<PortalPattern>,
    /// Login redirection (SCST `redirect`): normal-session logins are answered 0x0101/0x0102 with this address.
    pub redirect: Option<Redirect>,
    /// Most normal sessions at once (SCST `MaxSessions`); 0: no limit.
    pub max_sessions: u32,
    /// Target id (SCST `tid`), assigned when the target is added.
    pub tid: u32,
    /// SCSI relative target port identifier (SCST `rel_tgt_id`); 0 = the tid.
    pub rel_tgt_id: u16,
    /// In a session view: the group whose LUN set the session uses (None: the default set).
    pub group: Option<String>,
    /// Which reactors this target's sessions run on (in a session view: the group's policy, see
    /// [`IniGroup::reactor_policy`]).
    pub reactors: ReactorPolicy,
}

/// Where a target's sessions run (after login; connections are accepted round robin before the target is known).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReactorPolicy {
    /// Only reactors pinned to these CPUs (SPDK's per-target cpumask); `None`: any reactor.
    pub cpus: Option<Vec<usize>>,
    /// Each session gets a reactor of its own while one is free (SCST's per_sess_dedicated_tgt_threads).
    pub dedicated: bool,
}

impl TargetEntry {
    /// A target with no LUNs, groups or CHAP accounts.
    pub fn new(name: &str, alias: Option<String>, params: TargetParams, enabled: bool) -> TargetEntry {
        TargetEntry {
            name: name.to_string(),
            alias,
            enabled,
            params,
            luns: BTreeMap::new(),
            credentials: Credentials::none(),
            ini_groups: Vec::new(),
            per_portal_acl: false,
            allowed_portals: Vec::new(),
            redirect: None,
            max_sessions: 0,
            tid: 0,
            rel_tgt_id: 0,
            group: None,
            reactors: ReactorPolicy::default(),
        }
    }

    /// LUN numbers in ascending order (REPORT LUNS).
    pub fn lun_numbers(&self) -> Vec<u64> {
        self.luns.keys().copied().collect()
    }

    /// What an initiator connected through `portal_ip` sees of this target: the entry with the LUN set of its
    /// group (or the default set) and `group` set, without the other groups. See [`crate::acl`].
    pub fn view_for(&self, initiator: &str, portal_ip: std::net::IpAddr) -> TargetEntry {
        let (luns, group, reactors) = match self.group_for(initiator, portal_ip) {
            Some(g) => (g.luns.clone(), Some(g.name.clone()), g.reactor_policy(&self.reactors)),
            None => (self.luns.clone(), None, self.reactors.clone()),
        };
        TargetEntry { luns, group, reactors, ini_groups: Vec::new(), ..self.clone() }
    }

    /// Where a session of `initiator` connected through `portal_ip` runs: the policy of its group (each setting the
    /// group leaves unset is the target's), or the target's. See [`crate::placement`].
    pub fn reactor_policy_for(&self, initiator: &str, portal_ip: std::net::IpAddr) -> ReactorPolicy {
        match self.group_for(initiator, portal_ip) {
            Some(g) => g.reactor_policy(&self.reactors),
            None => self.reactors.clone(),
        }
    }

    /// The first group whose patterns match `initiator` (or `initiator#portal_ip` with per_portal_acl).
    fn group_for(&self, initiator: &str, portal_ip: std::net::IpAddr) -> Option<&IniGroup> {
        let name = acl::acl_name(initiator, portal_ip, self.per_portal_acl);
        acl::select_group(self.ini_groups.iter().map(|g| &g.initiators), &name).and_then(|i| self.ini_groups.get(i))
    }

    /// Whether this target is visible to (and may be logged in to by) `initiator` through `portal_ip`: enabled,
    /// the portal allowed, and a non-empty LUN set.
    pub fn visible_to(&self, initiator: &str, portal_ip: std::net::IpAddr) -> bool {
        self.enabled
            && acl::portal_allowed(&self.allowed_portals, portal_ip)
            && !self.view_for(initiator, portal_ip).luns.is_empty()
    }

    /// Every (group, LUN) that maps the device with id `device_id`; group None is the default set.
    pub fn device_users(&self, device_id: u64) -> Vec<(Option<String>, u64)> {
        let mut users: Vec<(Option<String>, u64)> =
            self.luns.values().filter(|l| l.device.id == device_id).map(|l| (None, l.lun)).collect();
        for g in &self.ini_groups {
            users.extend(g.luns.values().filter(|l| l.device.id == device_id).map(|l| (Some(g.name.clone()), l.lun)));
        }
        users
    }
}

/// A listening portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Portal {
    /// The address actually bound (port 0 in the configuration is replaced by the kernel's choice).
    pub addr: SocketAddr,
    pub tpgt: u16,
}

/// Errors building or changing the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("device {0:?} already exists")]
    DuplicateDevice(String),
    #[error("target {0:?} already exists")]
    DuplicateTarget(String),
    #[error("no device named {0:?}")]
    NoSuchDevice(String),
    #[error("no target named {0:?}")]
    NoSuchTarget(String),
    #[error("target {target:?} already has LUN {lun}")]
    DuplicateLun { target: String, lun: u64 },
    #[error("device {device:?} is in use by {users}")]
    DeviceInUse { device: String, users: String },
}

#[derive(Default)]
struct Inner {
    devices: BTreeMap<String, Arc<Device>>,
    targets: BTreeMap<String, Arc<TargetEntry>>,
    portals: Vec<Portal>,
}

/// The registry shared by all reactors.
pub struct Registry {
    inner: RwLock<Inner>,
    next_device: AtomicU64,
    next_tsih: AtomicU16,
    next_nexus: AtomicU64,
    discovery: RwLock<TargetParams>,
    discovery_credentials: RwLock<Credentials>,
    auth_failures: AtomicU64,
    random: OsRandom,
    /// Logged-in I_T nexuses (persistent reservations).
    nexuses: NexusDirectory,
    /// Where persistent reservations with APTPL are stored; none: they live in memory only.
    pr_store: RwLock<Option<Arc<PrStore>>>,
    next_tid: AtomicU32,
    /// The iSCSI driver's `enabled` attribute: when false no login (normal or discovery) is accepted.
    driver_enabled: AtomicBool,
    /// The live sessions. It also holds the reactor handles (set once the reactors run) for work that spans
    /// reactors: force_close, reinstatement, resets and PREEMPT AND ABORT across nexuses, logout requests.
    sessions: SessionTable,
    /// Every reactor with its core and session placement counters (crate::placement), set with the session
    /// table's handles.
    placement: OnceLock<Directory>,
    isns: IsnsAcl,
    digest_faults: RwLock<DigestFaults>,
    /// The driver's `LoginTimeout` in milliseconds, for new connections.
    login_timeout_ms: AtomicU64,
}

/// The operating system's CSPRNG (getrandom(2) through /dev/urandom), for CHAP challenges.
#[derive(Debug, Default)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), RandomUnavailable> {
        use std::io::Read;
        std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf)).map_err(|_| RandomUnavailable)
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            inner: RwLock::new(Inner::default()),
            next_device: AtomicU64::new(1),
            next_tsih: AtomicU16::new(1),
            next_nexus: AtomicU64::new(1),
            discovery: RwLock::new(TargetParams::default()),
            discovery_credentials: RwLock::new(Credentials::none()),
            auth_failures: AtomicU64::new(0),
            random: OsRandom,
            nexuses: NexusDirectory::default(),
            pr_store: RwLock::new(None),
            next_tid: AtomicU32::new(1),
            driver_enabled: AtomicBool::new(true),
            sessions: SessionTable::default(),
            placement: OnceLock::new(),
            isns: IsnsAcl::default(),
            digest_faults: RwLock::new(DigestFaults::NONE),
            login_timeout_ms: AtomicU64::new(polltgt_iscsi::conn::LOGIN_TIMEOUT.as_millis() as u64),
        }
    }
}

impl Registry {
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry::default())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a device: `bdev` exported through a logical unit built from `lu`.
    pub fn add_device(&self, name: &str, bdev: Arc<dyn Bdev>, lu: LuConfig) -> Result<Arc<Device>, RegistryError> {
        let mut inner = self.write();
        if inner.devices.contains_key(name) {
            return Err(RegistryError::DuplicateDevice(name.to_string()));
        }
        let id = self.next_device.fetch_add(1, Ordering::Relaxed);
        let dev = Arc::new(Device {
            id,
            name: name.to_string(),
            bdev,
            lu: Arc::new(LogicalUnit::new(lu)),
            range_lock: RangeLock::new(),
        });
        inner.devices.insert(name.to_string(), dev.clone());
        Ok(dev)
    }

    /// Add a target with no LUNs.
    pub fn add_target(
        &self,
        name: &str,
        alias: Option<String>,
        params: TargetParams,
        enabled: bool,
    ) -> Result<(), RegistryError> {
        let mut inner = self.write();
        if inner.targets.contains_key(name) {
            return Err(RegistryError::DuplicateTarget(name.to_string()));
        }
        let mut t = TargetEntry::new(name, alias, params, enabled);
        t.tid = self.next_tid.fetch_add(1, Ordering::Relaxed);
        inner.targets.insert(name.to_string(), Arc::new(t));
        Ok(())
    }

    /// Map `device` as `lun` of `target`. Sessions that log in afterwards see it.
    pub fn add_lun(&self, target: &str, lun: u64, device: &str) -> Result<(), RegistryError> {
        let mut inner = self.write();
        let dev = inner.devices.get(device).cloned().ok_or_else(|| RegistryError::NoSuchDevice(device.into()))?;
        let t = inner.targets.get(target).ok_or_else(|| RegistryError::NoSuchTarget(target.into()))?;
        if t.luns.contains_key(&lun) {
            return Err(RegistryError::DuplicateLun { target: target.into(), lun });
        }
        let mut new = TargetEntry::clone(t);
        new.luns.insert(lun, LunEntry::new(lun, dev, false));
        inner.targets.insert(target.to_string(), Arc::new(new));
        Ok(())
    }

    /// Set the CHAP accounts of a target (IncomingUser*, OutgoingUser).
    pub fn set_credentials(&self, target: &str, credentials: Credentials) -> Result<(), RegistryError> {
        let mut inner = self.write();
        let t = inner.targets.get(target).ok_or_else(|| RegistryError::NoSuchTarget(target.into()))?;
        let new = TargetEntry { credentials, ..TargetEntry::clone(t) };
        inner.targets.insert(target.to_string(), Arc::new(new));
        Ok(())
    }

    /// Set where a target's sessions run (sessions logging in from now on).
    pub fn set_reactor_policy(&self, target: &str, reactors: ReactorPolicy) -> Result<(), RegistryError> {
        let mut inner = self.write();
        let t = inner.targets.get(target).ok_or_else(|| RegistryError::NoSuchTarget(target.into()))?;
        let new = TargetEntry { reactors, ..TargetEntry::clone(t) };
        inner.targets.insert(target.to_string(), Arc::new(new));
        Ok(())
    }

    /// The live sessions (listing, force_close, reinstatement, MaxSessions).
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// iSNS access control state.
    pub fn isns(&self) -> &IsnsAcl {
        &self.isns
    }

    /// Digest fault injection for new connections (iSCSI-SCST's DEBUG_DIGEST_FAILURES).
    pub fn set_digest_faults(&self, faults: DigestFaults) {
        *self.digest_faults.write().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    pub fn digest_faults(&self) -> DigestFaults {
        *self.digest_faults.read().unwrap_or_else(|p| p.into_inner())
    }

    /// How long connections accepted from now on may take to complete their login (the driver's `LoginTimeout`).
    pub fn set_login_timeout(&self, timeout: std::time::Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.login_timeout_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn login_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.login_timeout_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Set the CHAP accounts of discovery sessions (the iSCSI driver-level IncomingUser*, OutgoingUser).
    pub fn set_discovery_credentials(&self, credentials: Credentials) {
        *self.discovery_credentials.write().unwrap_or_else(|p| p.into_inner()) = credentials;
    }

    /// Logins refused with "authentication failure" since start.
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures.load(Ordering::Relaxed)
    }

    pub fn add_portal(&self, portal: Portal) {
        self.write().portals.push(portal);
    }

    /// Forget the portal bound to `addr` (SendTargets stops reporting it); returns it. See [`crate::portals`].
    pub fn remove_portal(&self, addr: SocketAddr) -> Option<Portal> {
        let mut inner = self.write();
        let i = inner.portals.iter().position(|p| p.addr == addr)?;
        Some(inner.portals.remove(i))
    }

    pub fn set_discovery_params(&self, params: TargetParams) {
        *self.discovery.write().unwrap_or_else(|p| p.into_inner()) = params;
    }

    pub fn target(&self, name: &str) -> Option<Arc<TargetEntry>> {
        self.read().targets.get(name).cloned()
    }

    pub fn device(&self, name: &str) -> Option<Arc<Device>> {
        self.read().devices.get(name).cloned()
    }

    pub fn devices(&self) -> Vec<Arc<Device>> {
        self.read().devices.values().cloned().collect()
    }

    pub fn portals(&self) -> Vec<Portal> {
        self.read().portals.clone()
    }

    /// Add a target, or replace the one of the same name (keeping its tid), in one step: sessions see the change
    /// once the reactors refresh their views ([`crate::live::Control::refresh_target`]). A new target gets the next
    /// tid. Returns the entry as stored.
    pub fn put_target(&self, mut entry: TargetEntry) -> Arc<TargetEntry> {
        let mut inner = self.write();
        entry.tid = match inner.targets.get(&entry.name) {
            Some(old) => old.tid,
            None => self.next_tid.fetch_add(1, Ordering::Relaxed),
        };
        entry.group = None;
        let entry = Arc::new(entry);
        inner.targets.insert(entry.name.clone(), entry.clone());
        entry
    }

    /// Remove a target. Its sessions keep their views until they are closed.
    pub fn remove_target(&self, name: &str) -> Result<Arc<TargetEntry>, RegistryError> {
        self.write().targets.remove(name).ok_or_else(|| RegistryError::NoSuchTarget(name.into()))
    }

    /// Every target, by name.
    pub fn targets(&self) -> Vec<Arc<TargetEntry>> {
        self.read().targets.values().cloned().collect()
    }

    /// Where a device is mapped, as "target/LUN" or "target/group/LUN" strings.
    pub fn device_users(&self, name: &str) -> Vec<String> {
        let inner = self.read();
        let Some(dev) = inner.devices.get(name) else { return Vec::new() };
        let mut users = Vec::new();
        for t in inner.targets.values() {
            for (group, lun) in t.device_users(dev.id) {
                users.push(match group {
                    Some(g) => format!("{}/{g}/{lun}", t.name),
                    None => format!("{}/{lun}", t.name),
                });
            }
        }
        users
    }

    /// Remove a device that no LUN maps (remove or force-unmap the LUNs first). Commands in flight keep their
    /// reference and complete normally.
    pub fn remove_device(&self, name: &str) -> Result<Arc<Device>, RegistryError> {
        let users = self.device_users(name);
        if !users.is_empty() {
            return Err(RegistryError::DeviceInUse { device: name.into(), users: users.join(", ") });
        }
        self.write().devices.remove(name).ok_or_else(|| RegistryError::NoSuchDevice(name.into()))
    }

    /// The iSCSI driver's `enabled` attribute (SCST `targets/iscsi/enabled`).
    pub fn set_driver_enabled(&self, enabled: bool) {
        self.driver_enabled.store(enabled, Ordering::Relaxed);
    }

    pub fn driver_enabled(&self) -> bool {
        self.driver_enabled.load(Ordering::Relaxed)
    }

    /// The view a session of `initiator` connected through `portal_ip` has of `target` (see
    /// [`TargetEntry::view_for`]); None when the target no longer exists.
    pub fn session_view(&self, target: &str, initiator: &str, portal_ip: std::net::IpAddr) -> Option<Arc<TargetEntry>> {
        self.target(target).map(|t| Arc::new(t.view_for(initiator, portal_ip)))
    }

    /// A new I_T nexus identifier for the SCSI core.
    pub fn new_nexus(&self) -> u64 {
        self.next_nexus.fetch_add(1, Ordering::Relaxed)
    }

    /// The logged-in I_T nexuses.
    pub fn nexuses(&self) -> &NexusDirectory {
        &self.nexuses
    }

    /// Keep persistent reservations with APTPL under `state_dir` (the configuration's `state_dir`).
    pub fn set_state_dir(&self, state_dir: &std::path::Path) {
        *self.pr_store.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(PrStore::new(state_dir)));
    }

    /// The store of persistent reservations, once a state directory is set.
    pub fn pr_store(&self) -> Option<Arc<PrStore>> {
        self.pr_store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Records the reactors (once, when they start): the session table keeps their handles, the placement
    /// directory their cores and session counts.
    pub fn set_reactors(&self, handles: Vec<ReactorHandle<ReactorState>>) {
        let slots = handles.iter().map(|h| (h.stats().id, h.stats().core, h.clone())).collect();
        if self.placement.set(Directory::new(slots)).is_err() {
            tracing::warn!("reactors already recorded in the placement directory");
        }
        self.sessions.attach_reactors(handles);
    }

    /// The reactors as session placement sees them; None until they run.
    pub fn placement(&self) -> Option<&Directory> {
        self.placement.get()
    }

    /// Every reactor, by id; empty until they run.
    pub fn reactors(&self) -> &[ReactorHandle<ReactorState>] {
        self.sessions.reactors()
    }
}

impl TargetCatalog for Registry {
    fn lookup(&self, target_name: &str, initiator_name: &str, portal: &PortalInfo) -> Option<TargetInfo> {
        self.resolve(target_name, initiator_name, portal).ok()
    }

    /// Refusals: the driver disabled -> service unavailable (0x0301); unknown target -> not found (0x0203); then
    /// [`acl::login_refusal`]: a disabled target, a portal outside `allowed_portal`, an initiator without LUNs or
    /// outside the target's iSNS discovery domains -> not found (0x0203), as iSCSI-SCST answers; a `redirect` ->
    /// 0x0101/0x0102.
    fn resolve(&self, target_name: &str, initiator_name: &str, portal: &PortalInfo) -> Result<TargetInfo, Refusal> {
        if !self.driver_enabled() {
            return Err(Refusal::ServiceUnavailable);
        }
        let t = self.target(target_name).ok_or(Refusal::NotFound)?;
        if let Some(refusal) = acl::login_refusal(&t, initiator_name, portal.local.ip(), &self.isns) {
            if !matches!(refusal, Refusal::Redirect { .. }) {
                tracing::info!(initiator = %initiator_name, target = %target_name, portal = %portal.local, "login refused by access control");
            }
            return Err(refusal);
        }
        Ok(TargetInfo { name: t.name.clone(), alias: t.alias.clone(), params: t.params.clone() })
    }

    fn discovery_allowed(&self, _initiator_name: &str, _portal: &PortalInfo) -> Result<(), Refusal> {
        if self.driver_enabled() {
            Ok(())
        } else {
            Err(Refusal::ServiceUnavailable)
        }
    }

    /// Only targets the initiator may use through the portal it asked on, with only the portals it may use
    /// (allowed_portal, per-portal ACL, iSNS discovery domains): [`acl::send_targets`].
    fn send_targets(
        &self,
        initiator_name: &str,
        portal: &PortalInfo,
        which: Option<&str>,
    ) -> Vec<(String, Vec<String>)> {
        let portals = self.portals();
        let targets = self.targets();
        acl::send_targets(targets.iter().map(|t| &**t), &portals, initiator_name, &portal.local, which, &self.isns)
    }

    fn admit_session(&self, target_name: &str, initiator_name: &str, isid: [u8; 6]) -> Result<(), Refusal> {
        let max = self.target(target_name).map_or(0, |t| t.max_sessions);
        if max > 0 && self.sessions.count_for(target_name, Some((initiator_name, isid))) >= max as usize {
            tracing::info!(target = target_name, initiator = initiator_name, max, "MaxSessions reached");
            return Err(Refusal::OutOfResources);
        }
        Ok(())
    }

    fn session_exists(&self, tsih: u16) -> bool {
        self.sessions.contains(tsih)
    }

    fn discovery_params(&self) -> TargetParams {
        self.discovery.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn credentials(&self, target_name: Option<&str>) -> Credentials {
        match target_name {
            None => self.discovery_credentials.read().unwrap_or_else(|p| p.into_inner()).clone(),
            Some(name) => self.target(name).map(|t| t.credentials.clone()).unwrap_or_default(),
        }
    }

    fn random_source(&self) -> Option<&dyn RandomSource> {
        Some(&self.random)
    }

    fn auth_failed(&self, _initiator_name: &str, _target_name: Option<&str>) {
        // The login layer has logged the failure (without secrets); count it.
        self.auth_failures.fetch_add(1, Ordering::Relaxed);
    }

    fn new_tsih(&self) -> u16 {
        // Unique among live sessions; after 65535 tries every TSIH is taken and 0 refuses the login.
        for _ in 0..=u16::MAX {
            let t = self.next_tsih.fetch_add(1, Ordering::Relaxed);
            if t != 0 && !self.sessions.contains(t) {
                return t;
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polltgt_bdev::NullBdev;

    const T: &str = "iqn.2026-11.io.polltgt:acl";

    fn portal(ip: &str) -> PortalInfo {
        PortalInfo { local: SocketAddr::new(ip.parse().unwrap(), 3260), tpgt: 1 }
    }

    /// A registry with devices d0..d2 and target T mapping d0 as LUN 0 by default.
    fn setup() -> (Arc<Registry>, TargetEntry) {
        let r = Registry::new();
        for name in ["d0", "d1", "d2"] {
            let bdev = Arc::new(NullBdev::new(name, 512, 1024).unwrap());
            r.add_device(name, bdev, LuConfig { num_blocks: 1024, ..Default::default() }).unwrap();
        }
        r.add_portal(Portal { addr: "10.170.77.2:3260".parse().unwrap(), tpgt: 1 });
        r.add_portal(Portal { addr: "10.170.75.2:3260".parse().unwrap(), tpgt: 1 });
        let mut t = TargetEntry::new(T, None, TargetParams::default(), true);
        t.luns.insert(0, LunEntry::new(0, r.device("d0").unwrap(), false));
        (r, t)
    }

    fn group(r: &Registry, name: &str, initiators: &[&str], luns: &[(u64, &str)]) -> IniGroup {
        IniGroup {
            name: name.into(),
            initiators: initiators.iter().map(|s| s.to_string()).collect(),
            luns: luns.iter().map(|(l, d)| (*l, LunEntry::new(*l, r.device(d).unwrap(), false))).collect(),
            cpus: None,
            dedicated: None,
        }
    }

    #[test]
    fn a_group_reactor_policy_overrides_the_targets_setting_by_setting() {
        let (r, mut t) = setup();
        t.reactors = ReactorPolicy { cpus: Some(vec![0]), dedicated: true };
        let mut pinned = group(&r, "pinned", &["iqn.x:pinned"], &[(0, "d0")]);
        pinned.cpus = Some(vec![1]);
        let mut shared = group(&r, "shared", &["iqn.x:shared"], &[(0, "d0")]);
        shared.dedicated = Some(false);
        t.ini_groups.extend([pinned, shared, group(&r, "plain", &["iqn.x:plain"], &[(0, "d0")])]);
        r.put_target(t.clone());
        let ip = "10.170.77.2".parse().unwrap();
        let of = |ini: &str| t.reactor_policy_for(ini, ip);
        assert_eq!(of("iqn.x:pinned"), ReactorPolicy { cpus: Some(vec![1]), dedicated: true });
        assert_eq!(of("iqn.x:shared"), ReactorPolicy { cpus: Some(vec![0]), dedicated: false });
        assert_eq!(of("iqn.x:plain"), t.reactors, "a group without its own settings follows the target");
        assert_eq!(of("iqn.x:nobody"), t.reactors, "no group: the target's");
        // The session view carries the same policy.
        assert_eq!(r.session_view(T, "iqn.x:pinned", ip).unwrap().reactors, of("iqn.x:pinned"));
    }

    #[test]
    fn a_group_lun_set_replaces_the_default_set() {
        let (r, mut t) = setup();
        t.ini_groups.push(group(&r, "special_ini", &["iqn.2005-03.org.open-iscsi:cacdcd2520"], &[(0, "d1"), (5, "d2")]));
        r.put_target(t);
        let ip = "10.170.77.2".parse().unwrap();
        let special = r.session_view(T, "iqn.2005-03.org.open-iscsi:cacdcd2520", ip).unwrap();
        assert_eq!(special.group.as_deref(), Some("special_ini"));
        assert_eq!(special.lun_numbers(), vec![0, 5]);
        assert_eq!(special.luns[&0].device.name, "d1");
        let other = r.session_view(T, "iqn.2005-03.org.open-iscsi:other", ip).unwrap();
        assert_eq!(other.group, None);
        assert_eq!(other.lun_numbers(), vec![0]);
        assert_eq!(other.luns[&0].device.name, "d0");
    }

    #[test]
    fn an_empty_effective_lun_set_hides_the_target() {
        // README recipe 2b: default LUNs for everybody, and an empty group that catches all but one initiator.
        let (r, mut t) = setup();
        t.ini_groups.push(group(&r, "denied_inis", &["!iqn.2005-03.org.vlnb:cacdcd2520"], &[]));
        r.put_target(t);
        let p = portal("10.170.77.2");
        assert!(r.resolve(T, "iqn.2005-03.org.vlnb:cacdcd2520", &p).is_ok());
        assert_eq!(r.resolve(T, "iqn.2005-03.org.vlnb:intruder", &p), Err(Refusal::NotFound));
        assert!(r.send_targets("iqn.2005-03.org.vlnb:intruder", &p, None).is_empty());
        assert_eq!(r.send_targets("iqn.2005-03.org.vlnb:cacdcd2520", &p, None).len(), 1);
        // README recipe 2a: no default LUNs, a group for the allowed initiator.
        let (r, mut t) = setup();
        t.luns.clear();
        t.ini_groups.push(group(&r, "allowed_ini", &["iqn.2005-03.org.vlnb:cacdcd2520"], &[(0, "d0")]));
        r.put_target(t);
        assert!(r.resolve(T, "iqn.2005-03.org.vlnb:cacdcd2520", &p).is_ok());
        assert_eq!(r.resolve(T, "iqn.2005-03.org.vlnb:other", &p), Err(Refusal::NotFound));
    }

    #[test]
    fn per_portal_acl_blocks_one_portal_or_all() {
        let (r, mut t) = setup();
        t.per_portal_acl = true;
        t.ini_groups.push(group(&r, "BLOCKING_GROUP", &["iqn.2005-03.org.vlnb:cacdcd2520#10.170.77.2"], &[]));
        r.put_target(t.clone());
        let ini = "iqn.2005-03.org.vlnb:cacdcd2520";
        assert_eq!(r.resolve(T, ini, &portal("10.170.77.2")), Err(Refusal::NotFound));
        assert!(r.resolve(T, ini, &portal("10.170.75.2")).is_ok());
        // SendTargets through the allowed portal lists only that portal's address.
        let st = r.send_targets(ini, &portal("10.170.75.2"), None);
        assert_eq!(st, vec![(T.to_string(), vec!["10.170.75.2:3260,1".to_string()])]);
        t.ini_groups[0].initiators = vec!["iqn.2005-03.org.vlnb:cacdcd2520*".into()];
        r.put_target(t);
        assert_eq!(r.resolve(T, ini, &portal("10.170.75.2")), Err(Refusal::NotFound));
        assert!(r.resolve(T, "iqn.2005-03.org.vlnb:other", &portal("10.170.75.2")).is_ok());
    }

    #[test]
    fn allowed_portals_and_enabled_flags_gate_logins() {
        let (r, mut t) = setup();
        t.allowed_portals = vec![PortalPattern::parse("10.170.7?.2").unwrap()];
        r.put_target(t.clone());
        assert!(r.resolve(T, "iqn.x:y", &portal("10.170.75.2")).is_ok());
        t.allowed_portals = vec![PortalPattern::parse("10.170.77.2").unwrap()];
        r.put_target(t.clone());
        assert_eq!(r.resolve(T, "iqn.x:y", &portal("10.170.75.2")), Err(Refusal::NotFound));
        let st = r.send_targets("iqn.x:y", &portal("10.170.77.2"), None);
        assert_eq!(st, vec![(T.to_string(), vec!["10.170.77.2:3260,1".to_string()])]);
        t.allowed_portals.clear();
        t.enabled = false;
        r.put_target(t.clone());
        assert_eq!(r.resolve(T, "iqn.x:y", &portal("10.170.75.2")), Err(Refusal::NotFound));
        t.enabled = true;
        r.put_target(t);
        r.set_driver_enabled(false);
        assert_eq!(r.resolve(T, "iqn.x:y", &portal("10.170.75.2")), Err(Refusal::ServiceUnavailable));
        assert!(r.discovery_allowed("iqn.x:y", &portal("10.170.75.2")).is_err());
        r.set_driver_enabled(true);
        assert!(r.discovery_allowed("iqn.x:y", &portal("10.170.75.2")).is_ok());
    }

    #[test]
    fn devices_in_use_cannot_be_removed_and_tids_survive_updates() {
        let (r, mut t) = setup();
        t.ini_groups.push(group(&r, "g", &["*"], &[(3, "d1")]));
        let first = r.put_target(t.clone());
        let again = r.put_target(t);
        assert_eq!(first.tid, again.tid);
        assert!(first.tid > 0);
        match r.remove_device("d1") {
            Err(RegistryError::DeviceInUse { users, .. }) => assert_eq!(users, format!("{T}/g/3")),
            other => panic!("unexpected {:?}", other.map(|d| d.name.clone())),
        }
        assert!(r.remove_device("d2").is_ok());
        assert!(r.device("d2").is_none());
        r.remove_target(T).unwrap();
        assert!(r.remove_device("d1").is_ok());
    }
}
