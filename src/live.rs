//! The management backend of the running target: `polltgt_mgmt::backend::Backend` over the dataplane's registry,
//! reactors ([`Control`]) and bdevs. The management crate keeps the configuration; this module turns its objects
//! into registry entries and its run-time questions into reactor messages.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use polltgt_bdev::{BdevError, BdevKind};
use polltgt_dataplane::isns::IsnsSlot;
use polltgt_dataplane::lifecycle::ResizeError;
use polltgt_dataplane::medium::MediumError;
use polltgt_dataplane::portals::{PortalControl, PortalError};
use polltgt_dataplane::live::{ConnSnapshot, Control, ControlError, SessionSnapshot};
use polltgt_dataplane::registry::{IniGroup, LunEntry, ReactorPolicy, Registry, RegistryError, TargetEntry};
use polltgt_dataplane::sessions::SessionsError;
use polltgt_iscsi::params::SessionParams;
use polltgt_dataplane::stats::{DataPathSnapshot, PoolSnapshot};
use polltgt_mgmt::backend::{
    Backend, BackendError, ConnectionInfo, DataPathInfo, DataplaneStats, DeviceState, ErrorKind, LunStatsInfo,
    PollerInfo, PoolClassInfo, PoolInfo, ReactorInfo, SessionInfo,
};
use polltgt_mgmt::protocol::IsnsServer;
use polltgt_mgmt::{DeviceConfig, Handler, IscsiConfig, LunConfig, PortalConfig, TargetConfig};

use crate::build::{isns_config, lu_config, open_bdev};

fn err(kind: ErrorKind, m: impl Into<String>) -> BackendError {
    BackendError::new(kind, m)
}

fn registry_err(e: RegistryError) -> BackendError {
    let kind = match &e {
        RegistryError::DuplicateDevice(_) | RegistryError::DuplicateTarget(_) | RegistryError::DuplicateLun { .. } => {
            ErrorKind::Exists
        }
        RegistryError::NoSuchDevice(_) | RegistryError::NoSuchTarget(_) => ErrorKind::NotFound,
        RegistryError::DeviceInUse { .. } => ErrorKind::Busy,
    };
    err(kind, e.to_string())
}

fn control_err(e: ControlError) -> BackendError {
    let kind = match e {
        ControlError::NoSuchSession(_) | ControlError::Sessions(SessionsError::NoSuchSession(_)) => ErrorKind::NotFound,
        _ => ErrorKind::Internal,
    };
    err(kind, e.to_string())
}

/// Open a device's backing store and register it.
pub(crate) fn create_device(registry: &Registry, d: &DeviceConfig) -> Result<(), BackendError> {
    if registry.device(&d.name).is_some() {
        return Err(err(ErrorKind::Exists, format!("device {:?} already exists", d.name)));
    }
    let bdev = open_bdev(d).map_err(|e| err(ErrorKind::Io, format!("{e:#}")))?;
    let lu = lu_config(d, bdev.as_ref());
    registry.add_device(&d.name, bdev, lu).map_err(registry_err)?;
    Ok(())
}

fn lun_map(registry: &Registry, luns: &[LunConfig]) -> Result<BTreeMap<u64, LunEntry>, BackendError> {
    let mut map = BTreeMap::new();
    for l in luns {
        let dev = registry
            .device(&l.device)
            .ok_or_else(|| err(ErrorKind::NotFound, format!("no device named {:?}", l.device)))?;
        map.insert(u64::from(l.lun), LunEntry::new(u64::from(l.lun), dev, l.read_only));
    }
    Ok(map)
}

/// The registry entry of a configured target: negotiation defaults, CHAP, LUN maps, initiator groups, ACL
/// attributes (allowed_portal, per_portal_acl), redirect and MaxSessions. LUN mappings that already exist with the same device keep their counters.
pub(crate) fn target_entry(registry: &Registry, t: &TargetConfig) -> Result<TargetEntry, BackendError> {
    let old = registry.target(t.name.as_str());
    let keep = |new: &mut BTreeMap<u64, LunEntry>, old: Option<&BTreeMap<u64, LunEntry>>| {
        for (n, l) in new.iter_mut() {
            if let Some(o) = old.and_then(|o| o.get(n)) {
                if o.device.id == l.device.id {
                    l.stats = o.stats.clone();
                }
            }
        }
    };
    let mut e = TargetEntry::new(t.name.as_str(), None, t.target_params(), t.enabled);
    e.credentials = t.credentials();
    e.luns = lun_map(registry, &t.luns)?;
    keep(&mut e.luns, old.as_ref().map(|o| &o.luns));
    for g in &t.ini_groups {
        let mut luns = lun_map(registry, &g.luns)?;
        let old_group = old
            .as_ref()
            .and_then(|o| o.ini_groups.iter().find(|x| x.name == g.name));
        keep(&mut luns, old_group.map(|x| &x.luns));
        e.ini_groups.push(IniGroup {
            name: g.name.clone(),
            initiators: g.initiators.clone(),
            luns,
            cpus: g.cpu_mask.as_ref().map(|m| m.cpus().to_vec()),
            dedicated: g.per_sess_dedicated_tgt_threads,
        });
    }
    e.per_portal_acl = t.per_portal_acl;
    e.allowed_portals = t.allowed_portals.clone();
    e.redirect = t.redirect.clone();
    e.max_sessions = t.max_sessions;
    e.rel_tgt_id = t.rel_tgt_id.unwrap_or(0);
    // Where its sessions run (crate::placement in the dataplane); sessions logging in from now on.
    e.reactors = ReactorPolicy {
        cpus: t.cpu_mask.as_ref().map(|m| m.cpus().to_vec()),
        dedicated: t.per_sess_dedicated_tgt_threads,
    };
    Ok(e)
}

fn portal_err(e: PortalError) -> BackendError {
    let kind = match &e {
        PortalError::Exists(_) => ErrorKind::Exists,
        PortalError::NotFound(_) => ErrorKind::NotFound,
        PortalError::Listen { .. } => ErrorKind::Io,
        PortalError::LastPortal => ErrorKind::Busy,
        PortalError::NoAnswer(_) => ErrorKind::Internal,
    };
    err(kind, e.to_string())
}

/// Replaces the `tracing` filter; set up by `main`.
pub type TraceSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// The backend of the running target.
pub struct LiveBackend {
    control: Control,
    /// Portals added and removed at run time.
    portals: PortalControl,
    /// The iSNS client (`iSNSServer`), started, replaced or stopped by [`Backend::apply_driver`].
    isns: IsnsSlot,
    trace_level: Mutex<String>,
    set_trace: TraceSetter,
}

impl LiveBackend {
    pub fn new(
        control: Control,
        portals: PortalControl,
        isns: IsnsSlot,
        trace_level: String,
        set_trace: TraceSetter,
    ) -> Self {
        LiveBackend {
            control,
            portals,
            isns,
            trace_level: Mutex::new(trace_level),
            set_trace,
        }
    }

    fn registry(&self) -> &Arc<Registry> {
        self.control.registry()
    }

    /// Push the registry's entries of `targets` to their sessions (and the iSNS server, if one is configured).
    fn refresh(&self, targets: &[String]) -> Result<(), BackendError> {
        for t in targets {
            self.control.refresh_target(t).map_err(control_err)?;
        }
        self.isns.refresh();
        Ok(())
    }

    /// Start, replace or stop the iSNS client as `iSNSServer` says.
    fn apply_isns(&self, server: Option<&IsnsServer>) -> Result<(), BackendError> {
        match server {
            None => self.isns.stop(),
            Some(s) => {
                let cfg = isns_config(s, &self.registry().portals());
                if self.isns.config().as_ref() != Some(&cfg) {
                    self.isns
                        .start(cfg)
                        .map_err(|e| err(ErrorKind::Io, format!("iSNSServer: cannot start the iSNS client: {e}")))?;
                    tracing::info!(server = %s.address(), access_control = s.access_control, "iSNS client (re)started");
                }
            }
        }
        Ok(())
    }
}

fn yes_no(b: bool) -> String {
    (if b { "Yes" } else { "No" }).to_string()
}

/// Negotiated parameters under their RFC 7143 key names.
fn param_map(p: &SessionParams) -> BTreeMap<String, String> {
    [
        ("HeaderDigest", p.header_digest.as_str().to_string()),
        ("DataDigest", p.data_digest.as_str().to_string()),
        ("InitialR2T", yes_no(p.initial_r2t)),
        ("ImmediateData", yes_no(p.immediate_data)),
        ("MaxRecvDataSegmentLength", p.max_recv_data_segment_length.to_string()),
        ("MaxXmitDataSegmentLength", p.max_xmit_data_segment_length.to_string()),
        ("MaxBurstLength", p.max_burst_length.to_string()),
        ("FirstBurstLength", p.first_burst_length.to_string()),
        ("MaxOutstandingR2T", p.max_outstanding_r2t.to_string()),
        ("DataPDUInOrder", yes_no(p.data_pdu_in_order)),
        ("DataSequenceInOrder", yes_no(p.data_sequence_in_order)),
        ("DefaultTime2Wait", p.default_time2wait.to_string()),
        ("DefaultTime2Retain", p.default_time2retain.to_string()),
        ("MaxConnections", p.max_connections.to_string()),
        ("ErrorRecoveryLevel", p.error_recovery_level.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn conn_info(c: &ConnSnapshot) -> ConnectionInfo {
    ConnectionInfo {
        reactor: c.reactor,
        cid: c.cid,
        ip: c.peer,
        portal: c.local,
        state: c.state.to_string(),
        session_type: c.session_type.map(str::to_string),
        initiator_name: c.initiator_name.clone(),
        target_name: c.target_name.clone(),
        pdus_received: c.pdus_received,
        pdus_sent: c.pdus_sent,
    }
}

fn session_info(s: &SessionSnapshot) -> SessionInfo {
    SessionInfo {
        target: s.target.clone(),
        initiator_name: s.params.initiator_name.clone(),
        initiator_alias: s.params.initiator_alias.clone(),
        sid: format!("{:016x}", s.sid),
        tsih: s.params.tsih,
        reinstating: s.reinstating,
        group: s.group.clone(),
        luns: s.luns.clone(),
        params: param_map(&s.params),
        active_commands: s.active_commands as u64,
        commands: s.counters.commands,
        read_commands: s.counters.read_commands,
        write_commands: s.counters.write_commands,
        read_bytes: s.counters.read_bytes,
        write_bytes: s.counters.write_bytes,
        errors: s.counters.errors,
        connections: vec![conn_info(&s.connection)],
    }
}

impl Backend for LiveBackend {
    fn create_device(&self, dev: &DeviceConfig) -> Result<(), BackendError> {
        create_device(self.registry(), dev)
    }

    fn delete_device(&self, name: &str) -> Result<(), BackendError> {
        self.registry().remove_device(name).map_err(registry_err)?;
        Ok(())
    }

    fn resize_device(&self, d: &DeviceConfig, size: Option<u64>) -> Result<u64, BackendError> {
        let registry = self.registry();
        let dev = registry
            .device(&d.name)
            .ok_or_else(|| err(ErrorKind::NotFound, "no such device"))?;
        let info = dev.bdev.info();
        let bs = u64::from(info.block_size);
        // The bdev changes its size in place (`Registry::resize_device`): sessions keep their views, channels and
        // the device's range lock; the logical unit then raises CAPACITY DATA HAS CHANGED (SBC-3 §4.6).
        let blocks = match (d.handler, size) {
            (Handler::Ram, _) => {
                return Err(err(
                    ErrorKind::Unsupported,
                    "a RAM disk keeps the size it was created with",
                ));
            }
            (Handler::VdiskNullio, Some(bytes)) => Some(bytes / bs),
            (Handler::VdiskNullio, None) => {
                return Err(err(
                    ErrorKind::Unsupported,
                    "a null device has no backing store to resync",
                ))
            }
            (Handler::Vcdrom, _) => {
                return Err(err(
                    ErrorKind::Unsupported,
                    "a vcdrom device takes its size from its image; write filename to change the medium",
                ))
            }
            (Handler::VdiskFileio | Handler::VdiskBlockio, size) => {
                if let Some(bytes) = size {
                    if info.kind != BdevKind::File {
                        return Err(err(
                            ErrorKind::Unsupported,
                            "resize the block device itself, then write resync_size",
                        ));
                    }
                    if bytes < info.size_bytes() {
                        return Err(err(
                            ErrorKind::Unsupported,
                            format!("shrinking would cut off data beyond {bytes} bytes; truncate the file yourself, then write resync_size"),
                        ));
                    }
                    let path = d
                        .filename
                        .as_ref()
                        .ok_or_else(|| err(ErrorKind::Invalid, "no filename"))?;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(path)
                        .and_then(|f| f.set_len(bytes))
                        .map_err(|e| err(ErrorKind::Io, format!("cannot extend {}: {e}", path.display())))?;
                }
                None
            }
        };
        let blocks = registry.resize_device(&d.name, blocks).map_err(|e| {
            let kind = match &e {
                ResizeError::NoSuchDevice(_) => ErrorKind::NotFound,
                ResizeError::Bdev { source: BdevError::InvalidConfig(_), .. } => ErrorKind::Invalid,
                ResizeError::Bdev { .. } => ErrorKind::Io,
            };
            err(kind, e.to_string())
        })?;
        let bytes = blocks * bs;
        tracing::info!(device = %d.name, bytes, "device resized");
        Ok(bytes)
    }

    fn change_medium(&self, d: &DeviceConfig) -> Result<(), BackendError> {
        let blocks = self.registry().change_medium(&d.name, d.filename.as_deref()).map_err(|e| {
            let kind = match &e {
                MediumError::NoSuchDevice(_) => ErrorKind::NotFound,
                MediumError::NotRemovable(_) => ErrorKind::Unsupported,
                MediumError::Prevented(_) => ErrorKind::Busy,
                MediumError::Bdev { .. } => ErrorKind::Io,
            };
            err(kind, e.to_string())
        })?;
        match &d.filename {
            Some(f) => tracing::info!(device = %d.name, image = %f.display(), blocks, "medium loaded"),
            None => tracing::info!(device = %d.name, "medium ejected"),
        }
        Ok(())
    }

    fn device_state(&self, d: &DeviceConfig) -> Option<DeviceState> {
        let dev = self.registry().device(&d.name)?;
        let info = dev.bdev.info();
        let lu = lu_config(d, dev.bdev.as_ref());
        Some(DeviceState {
            size: info.size_bytes(),
            block_size: info.block_size,
            t10_vend_id: lu.vendor,
            prod_id: lu.product,
            prod_rev_lvl: lu.revision,
            usn: lu.serial,
            t10_dev_id: lu.device_id,
            engine: format!("{:?}", info.kind).to_lowercase(),
            threads_num: u32::try_from(dev.bdev.threads()).unwrap_or(u32::MAX),
        })
    }

    fn update_device(&self, old: &DeviceConfig, new: &DeviceConfig) -> Result<(), BackendError> {
        let dev = self
            .registry()
            .device(&new.name)
            .ok_or_else(|| err(ErrorKind::NotFound, "no such device"))?;
        // A file opened read-only at creation cannot take writes: refuse before anything changes.
        if old.read_only && !new.read_only && dev.bdev.info().read_only {
            return Err(err(
                ErrorKind::Unsupported,
                "the backing file was opened read-only when the device was created; delete the device and add it \
                 again writable",
            ));
        }
        if new.threads_num != old.threads_num {
            let n = new.threads_num.map_or(polltgt_bdev::FileOptions::default().threads, |n| n as usize);
            dev.bdev
                .set_threads(n)
                .map_err(|e| err(ErrorKind::Unsupported, e.to_string()))?;
        }
        // Identity, write protection, caches, rotation, removable medium: the logical unit raises the unit
        // attentions (INQUIRY DATA HAS CHANGED, MODE PARAMETERS CHANGED).
        let changed = dev.lu.reconfigure(&lu_config(new, dev.bdev.as_ref()));
        tracing::info!(device = %new.name, inquiry = changed.inquiry, mode = changed.mode, "device attributes changed");
        Ok(())
    }

    fn apply_target(&self, t: &TargetConfig) -> Result<(), BackendError> {
        let entry = target_entry(self.registry(), t)?;
        self.registry().put_target(entry);
        self.refresh(&[t.name.to_string()])
    }

    fn delete_target(&self, name: &str) -> Result<usize, BackendError> {
        self.registry().remove_target(name).map_err(registry_err)?;
        let closed = self.control.close_target_sessions(name).map_err(control_err)?;
        self.isns.refresh();
        Ok(closed)
    }

    fn apply_driver(&self, iscsi: &IscsiConfig) -> Result<(), BackendError> {
        self.apply_isns(iscsi.isns_server.as_ref())?;
        self.registry().set_driver_enabled(iscsi.enabled);
        self.registry().set_discovery_credentials(iscsi.credentials());
        self.registry()
            .set_digest_faults(iscsi.debug_digest_failures.to_faults());
        self.registry().set_login_timeout(iscsi.login_timeout());
        Ok(())
    }

    fn sessions(&self) -> Result<Vec<SessionInfo>, BackendError> {
        Ok(self
            .control
            .sessions()
            .map_err(control_err)?
            .iter()
            .map(session_info)
            .collect())
    }

    fn connections(&self) -> Result<Vec<ConnectionInfo>, BackendError> {
        Ok(self
            .control
            .connections()
            .map_err(control_err)?
            .iter()
            .map(conn_info)
            .collect())
    }

    fn force_close(&self, sid: u64) -> Result<(), BackendError> {
        self.control.force_close(sid).map_err(control_err)
    }

    fn dataplane_stats(&self) -> Result<DataplaneStats, BackendError> {
        let snap = self.control.snapshot().map_err(control_err)?;
        Ok(DataplaneStats {
            reactors: snap
                .reactors
                .into_iter()
                .map(|r| ReactorInfo {
                    id: r.id,
                    core: r.core,
                    tid: r.tid,
                    tick_rate: r.tick_rate,
                    busy_tsc: r.busy_tsc,
                    idle_tsc: r.idle_tsc,
                    busy_ns: r.busy_ns,
                    idle_ns: r.idle_ns,
                    iterations: r.iterations,
                    messages: r.messages,
                    sleeps: r.sleeps,
                    connections: r.connections,
                    sessions: r.sessions,
                    sessions_total: r.sessions_total,
                    dedicated: r.dedicated,
                    sessions_moved_in: r.sessions_moved_in,
                    pollers: r
                        .pollers
                        .into_iter()
                        .map(|p| PollerInfo { name: p.name, runs: p.runs, busy_runs: p.busy_runs })
                        .collect(),
                    datapath: r.datapath.as_ref().map(datapath_info).unwrap_or_default(),
                })
                .collect(),
            pool: pool_info(snap.pool),
            datapath: datapath_info(&snap.datapath),
        })
    }

    fn pool(&self) -> PoolInfo {
        pool_info(self.control.pool_snapshot())
    }

    fn lun_stats(&self) -> Vec<LunStatsInfo> {
        let mut out = Vec::new();
        for t in self.registry().targets() {
            let sets =
                std::iter::once((None, &t.luns)).chain(t.ini_groups.iter().map(|g| (Some(g.name.clone()), &g.luns)));
            for (group, luns) in sets {
                for l in luns.values() {
                    let s = &l.stats;
                    out.push(LunStatsInfo {
                        target: t.name.clone(),
                        group: group.clone(),
                        lun: l.lun,
                        device: l.device.name.clone(),
                        read_commands: s.read_commands.load(Ordering::Relaxed),
                        write_commands: s.write_commands.load(Ordering::Relaxed),
                        other_commands: s.other_commands.load(Ordering::Relaxed),
                        read_bytes: s.read_bytes.load(Ordering::Relaxed),
                        write_bytes: s.write_bytes.load(Ordering::Relaxed),
                        errors: s.errors.load(Ordering::Relaxed),
                    });
                }
            }
        }
        out
    }

    fn target_tid(&self, name: &str) -> Option<u32> {
        self.registry().target(name).map(|t| t.tid)
    }

    fn auth_failures(&self) -> u64 {
        self.registry().auth_failures()
    }

    fn portals(&self) -> Vec<(SocketAddr, u16)> {
        self.portals.list().into_iter().map(|p| (p.addr, p.tpgt)).collect()
    }

    fn add_portal(&self, portal: &PortalConfig) -> Result<SocketAddr, BackendError> {
        let p = self.portals.add(portal.address, portal.tpgt).map_err(portal_err)?;
        self.isns.refresh();
        Ok(p.addr)
    }

    fn remove_portal(&self, addr: SocketAddr) -> Result<usize, BackendError> {
        let closed = self.portals.remove(addr).map_err(portal_err)?;
        self.isns.refresh();
        Ok(closed)
    }

    fn trace_level(&self) -> String {
        self.trace_level.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_trace_level(&self, level: &str) -> Result<(), BackendError> {
        (self.set_trace)(level).map_err(|e| err(ErrorKind::Invalid, e))?;
        *self.trace_level.lock().unwrap_or_else(PoisonError::into_inner) = level.to_string();
        tracing::info!(level, "trace level changed");
        Ok(())
    }
}

/// The management view of the dataplane's pool statistics (`polltgt_dataplane::stats`).
fn pool_info(p: PoolSnapshot) -> PoolInfo {
    PoolInfo {
        allocations: p.allocations,
        frees: p.frees,
        cache_hits: p.cache_hits,
        cache_misses: p.cache_misses,
        large_allocations: p.large_allocations,
        exhausted: p.exhausted,
        bytes_in_use: p.bytes_in_use,
        high_water: p.high_water,
        bytes_mapped: p.bytes_mapped,
        bytes_cached: p.bytes_cached,
        thread_caches: p.thread_caches,
        max_bytes: p.max_bytes,
        classes: p
            .classes
            .into_iter()
            .map(|c| PoolClassInfo { size: c.size, slabs: c.slabs, free: c.free, in_use: c.in_use, cached: c.cached })
            .collect(),
    }
}

/// The management view of data path counters.
fn datapath_info(d: &DataPathSnapshot) -> DataPathInfo {
    DataPathInfo {
        connections_accepted: d.connections_accepted,
        connections_closed: d.connections_closed,
        commands: d.commands,
        bytes_read: d.bytes_read,
        bytes_written: d.bytes_written,
        read_bytes_by_reference: d.read_bytes_by_reference,
        tx_bytes_zerocopy: d.tx_bytes_zerocopy,
        tx_bytes_copied: d.tx_bytes_copied,
        tx_zerocopy_notifications: d.tx_zerocopy_notifications,
        tx_zerocopy_copied: d.tx_zerocopy_copied,
        tx_zerocopy_fallbacks: d.tx_zerocopy_fallbacks,
        rx_bytes_placed: d.rx_bytes_placed,
        rx_bytes_copied: d.rx_bytes_copied,
        rx_write_claims: d.rx_write_claims,
        rx_claim_failures: d.rx_claim_failures,
        buffer_waits: d.buffer_waits,
        buffer_waiting: d.buffer_waiting,
    }
}
