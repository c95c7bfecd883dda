//! The live object tree the dataplane serves: devices (a bdev plus its SCSI logical unit), targets with their LUN
//! maps and negotiation defaults, and portals. It answers the iSCSI core's questions during login and discovery
//! ([`TargetCatalog`]). Reads happen at login and on the slow path only; the fast path works on `Arc`s taken at login.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use polltgt_bdev::Bdev;
use polltgt_iscsi::chap::{Credentials, RandomSource, RandomUnavailable};
use polltgt_iscsi::login::{PortalInfo, TargetCatalog, TargetInfo};
use polltgt_iscsi::params::TargetParams;
use polltgt_scsi::{LogicalUnit, LuConfig};

/// A block device exported as a SCSI logical unit. The LU (unit attentions, mode pages, identity) belongs to the
/// device, so a device exported by several targets has one set of SCSI state, as in SCST.
pub struct Device {
    /// Index of the device, unique for the life of the process; reactors key their bdev channels by it.
    pub id: u64,
    pub name: String,
    pub bdev: Arc<dyn Bdev>,
    pub lu: LogicalUnit,
}

/// One LUN of a target.
#[derive(Clone)]
pub struct LunEntry {
    pub lun: u64,
    pub device: Arc<Device>,
}

/// A target node.
pub struct TargetEntry {
    pub name: String,
    pub alias: Option<String>,
    pub enabled: bool,
    pub params: TargetParams,
    pub luns: BTreeMap<u64, LunEntry>,
    /// CHAP accounts (IncomingUser*, OutgoingUser); none = no authentication.
    pub credentials: Credentials,
    /// Which reactors this target's sessions run on.
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
    /// LUN numbers in ascending order (REPORT LUNS).
    pub fn lun_numbers(&self) -> Vec<u64> {
        self.luns.keys().copied().collect()
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
        let dev = Arc::new(Device { id, name: name.to_string(), bdev, lu: LogicalUnit::new(lu) });
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
        let t = TargetEntry {
            name: name.to_string(),
            alias,
            enabled,
            params,
            luns: BTreeMap::new(),
            credentials: Credentials::none(),
            reactors: ReactorPolicy::default(),
        };
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
        let mut luns = t.luns.clone();
        luns.insert(lun, LunEntry { lun, device: dev });
        let new = TargetEntry {
            name: t.name.clone(),
            alias: t.alias.clone(),
            enabled: t.enabled,
            params: t.params.clone(),
            luns,
            credentials: t.credentials.clone(),
            reactors: t.reactors.clone(),
        };
        inner.targets.insert(target.to_string(), Arc::new(new));
        Ok(())
    }

    /// Set the CHAP accounts of a target (IncomingUser*, OutgoingUser).
    pub fn set_credentials(&self, target: &str, credentials: Credentials) -> Result<(), RegistryError> {
        let mut inner = self.write();
        let t = inner.targets.get(target).ok_or_else(|| RegistryError::NoSuchTarget(target.into()))?;
        let new = TargetEntry {
            name: t.name.clone(),
            alias: t.alias.clone(),
            enabled: t.enabled,
            params: t.params.clone(),
            luns: t.luns.clone(),
            credentials,
            reactors: t.reactors.clone(),
        };
        inner.targets.insert(target.to_string(), Arc::new(new));
        Ok(())
    }

    /// Set where a target's sessions run.
    pub fn set_reactor_policy(&self, target: &str, reactors: ReactorPolicy) -> Result<(), RegistryError> {
        let mut inner = self.write();
        let t = inner.targets.get(target).ok_or_else(|| RegistryError::NoSuchTarget(target.into()))?;
        let new = TargetEntry {
            name: t.name.clone(),
            alias: t.alias.clone(),
            enabled: t.enabled,
            params: t.params.clone(),
            luns: t.luns.clone(),
            credentials: t.credentials.clone(),
            reactors,
        };
        inner.targets.insert(target.to_string(), Arc::new(new));
        Ok(())
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

    /// A new I_T nexus identifier for the SCSI core.
    pub fn new_nexus(&self) -> u64 {
        self.next_nexus.fetch_add(1, Ordering::Relaxed)
    }

    /// The TargetAddress values of the portals, as seen from a connection that arrived on `local`: a wildcard
    /// portal is reported with the address the initiator reached.
    fn target_addresses(&self, local: &SocketAddr) -> Vec<String> {
        self.read()
            .portals
            .iter()
            .map(|p| {
                let ip = if p.addr.ip().is_unspecified() { local.ip() } else { p.addr.ip() };
                let addr = SocketAddr::new(ip, p.addr.port());
                format!("{addr},{}", p.tpgt)
            })
            .collect()
    }
}

impl TargetCatalog for Registry {
    fn lookup(&self, target_name: &str, _initiator_name: &str, _portal: &PortalInfo) -> Option<TargetInfo> {
        let t = self.target(target_name)?;
        if !t.enabled {
            return None;
        }
        Some(TargetInfo { name: t.name.clone(), alias: t.alias.clone(), params: t.params.clone() })
    }

    fn send_targets(
        &self,
        _initiator_name: &str,
        portal: &PortalInfo,
        which: Option<&str>,
    ) -> Vec<(String, Vec<String>)> {
        let addrs = self.target_addresses(&portal.local);
        self.read()
            .targets
            .values()
            .filter(|t| t.enabled && which.is_none_or(|w| w == t.name))
            .map(|t| (t.name.clone(), addrs.clone()))
            .collect()
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
        loop {
            let t = self.next_tsih.fetch_add(1, Ordering::Relaxed);
            if t != 0 {
                return t;
            }
        }
    }
}
