//! What the management layer needs from the running target, as a trait the `polltgt` binary implements over the
//! dataplane (registry, reactors, bdevs). The management crate does not depend on the dataplane: the persistent
//! attributes of the object tree are the [`crate::Config`] the [`crate::Manager`] keeps, and everything that exists
//! only at run time (sessions, connections, counters, actual sizes) comes through this trait as the plain serde types
//! below, which are also the JSON-RPC result types.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::{DeviceConfig, IscsiConfig, PortalConfig, TargetConfig};

/// Why the running target refused or failed an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub kind: ErrorKind,
    pub message: String,
}

/// Error classes; they map to JSON-RPC error codes ([`ErrorKind::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No such object.
    NotFound,
    /// The object exists already.
    Exists,
    /// The object is in use (mapped device, target with sessions).
    Busy,
    /// A value or a command is invalid.
    Invalid,
    /// The attribute cannot be changed while the object exists, or the feature is not available.
    Unsupported,
    /// The backing store could not be opened, read or written.
    Io,
    /// The dataplane did not answer.
    Internal,
}

impl ErrorKind {
    /// The JSON-RPC error code: negative errno values as SPDK answers (-ENOENT, -EEXIST, -EBUSY, -EINVAL,
    /// -EOPNOTSUPP, -EIO), -32603 (internal error) for the rest.
    pub fn code(self) -> i64 {
        match self {
            ErrorKind::NotFound => -2,
            ErrorKind::Exists => -17,
            ErrorKind::Busy => -16,
            ErrorKind::Invalid => -22,
            ErrorKind::Unsupported => -95,
            ErrorKind::Io => -5,
            ErrorKind::Internal => -32603,
        }
    }

    pub fn from_code(code: i64) -> Option<ErrorKind> {
        [
            ErrorKind::NotFound,
            ErrorKind::Exists,
            ErrorKind::Busy,
            ErrorKind::Invalid,
            ErrorKind::Unsupported,
            ErrorKind::Io,
            ErrorKind::Internal,
        ]
        .into_iter()
        .find(|k| k.code() == code)
    }
}

impl BackendError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BackendError {
            kind,
            message: message.into(),
        }
    }
}

/// Run-time facts of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceState {
    /// Current capacity in bytes.
    pub size: u64,
    pub block_size: u32,
    /// INQUIRY identity in effect (configured or derived from the name).
    pub t10_vend_id: String,
    pub prod_id: String,
    pub prod_rev_lvl: String,
    pub usn: String,
    pub t10_dev_id: String,
    /// I/O engine of file devices ("io_uring", "threads"), empty otherwise.
    pub engine: String,
    /// I/O threads of the thread engine (SCST `threads_num`), 0 when not used.
    pub threads_num: u32,
}

/// One connection (SCST's session connection directory; SPDK `iscsi_get_connections`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    pub reactor: usize,
    pub cid: Option<u16>,
    /// The initiator's address (SCST `ip`).
    pub ip: SocketAddr,
    /// The portal the connection arrived on.
    pub portal: SocketAddr,
    /// "login", "full_feature" or "closing".
    pub state: String,
    pub session_type: Option<String>,
    pub initiator_name: Option<String>,
    pub target_name: Option<String>,
    pub pdus_received: u64,
    pub pdus_sent: u64,
}

/// One normal session (SCST's `targets/iscsi/<target>/sessions/<initiator>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub target: String,
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    /// SCST's session id: ISID and TSIH, as 16 hex digits.
    pub sid: String,
    pub tsih: u16,
    /// Session reinstatement in progress (SCST `reinstating`); always false until reinstatement exists.
    pub reinstating: bool,
    /// The initiator group the session is attached to (None: the target's default LUN set).
    pub group: Option<String>,
    pub luns: Vec<u64>,
    /// Negotiated parameters under their RFC 7143 key names.
    pub params: BTreeMap<String, String>,
    pub active_commands: u64,
    pub commands: u64,
    pub read_commands: u64,
    pub write_commands: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub errors: u64,
    pub connections: Vec<ConnectionInfo>,
}

/// One poller's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollerInfo {
    pub name: String,
    pub runs: u64,
    pub busy_runs: u64,
}

/// One reactor (SPDK `framework_get_reactors`): time from the reactor's TSC accounting (ticks at `tick_rate` per
/// second, and the same in nanoseconds), loop counters, pollers, session placement, and the data path counters of
/// its connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactorInfo {
    pub id: usize,
    pub core: Option<usize>,
    /// The reactor thread's id in the operating system (SCST `thread_pid`); 0 when unknown.
    #[serde(default)]
    pub tid: u64,
    pub tick_rate: u64,
    pub busy_tsc: u64,
    pub idle_tsc: u64,
    pub busy_ns: u64,
    pub idle_ns: u64,
    pub iterations: u64,
    pub messages: u64,
    /// Times the reactor slept in epoll (interrupt mode).
    pub sleeps: u64,
    pub connections: usize,
    /// Normal sessions running here now and since start, whether a dedicated session holds the reactor, and
    /// sessions moved here after login (target `cpu_mask`, `per_sess_dedicated_tgt_threads`).
    pub sessions: u64,
    pub sessions_total: u64,
    pub dedicated: bool,
    pub sessions_moved_in: u64,
    pub pollers: Vec<PollerInfo>,
    pub datapath: DataPathInfo,
}

/// Data path counters (of one reactor, or summed over all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPathInfo {
    pub connections_accepted: u64,
    pub connections_closed: u64,
    pub commands: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// READ data handed to the transport as references to pool buffers.
    pub read_bytes_by_reference: u64,
    /// Transmit: bytes sent by reference (MSG_ZEROCOPY) vs copied into the socket; zero-copy completions, sends
    /// the kernel copied anyway, fallbacks to copying.
    pub tx_bytes_zerocopy: u64,
    pub tx_bytes_copied: u64,
    pub tx_zerocopy_notifications: u64,
    pub tx_zerocopy_copied: u64,
    pub tx_zerocopy_fallbacks: u64,
    /// Receive: write data read straight into pool buffers vs copied from the receive buffer; write commands that
    /// claimed a buffer, and those that could not.
    pub rx_bytes_placed: u64,
    pub rx_bytes_copied: u64,
    pub rx_write_claims: u64,
    pub rx_claim_failures: u64,
    /// Back-pressure: commands that waited for pool buffers, and those waiting now.
    pub buffer_waits: u64,
    pub buffer_waiting: u64,
}

/// One size class of the buffer pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolClassInfo {
    pub size: usize,
    pub slabs: usize,
    pub free: usize,
    pub in_use: usize,
    /// Buffers of this class held in the reactors' caches.
    pub cached: usize,
}

/// Buffer pool statistics (SCST `sgv/global_stats`; SPDK `iobuf_get_stats`), per-reactor caches included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolInfo {
    pub allocations: u64,
    pub frees: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub large_allocations: u64,
    pub exhausted: u64,
    pub bytes_in_use: usize,
    pub high_water: usize,
    pub bytes_mapped: usize,
    /// Bytes held in the reactors' buffer caches, and how many caches there are.
    pub bytes_cached: usize,
    pub thread_caches: usize,
    /// The pool's cap (`reactors.buffer_pool_max`); None: none.
    pub max_bytes: Option<usize>,
    pub classes: Vec<PoolClassInfo>,
}

/// The dataplane's statistics at once (`dataplane_get_stats`): the same snapshot the binary prints as its
/// `polltgt-stats:` line on SIGUSR1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneStats {
    pub reactors: Vec<ReactorInfo>,
    pub pool: PoolInfo,
    /// Summed over the reactors.
    pub datapath: DataPathInfo,
}

/// I/O counters of one LUN mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LunStatsInfo {
    pub target: String,
    /// None: the target's default LUN set.
    pub group: Option<String>,
    pub lun: u64,
    pub device: String,
    pub read_commands: u64,
    pub write_commands: u64,
    pub other_commands: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub errors: u64,
}

/// The running target, as the management layer drives it. Every method is called with the manager's lock held,
/// so implementations see one change at a time.
pub trait Backend: Send + Sync {
    /// Open the backing store and register the device.
    fn create_device(&self, dev: &DeviceConfig) -> Result<(), BackendError>;
    /// Unregister a device that no LUN maps any more. Commands in flight complete.
    fn delete_device(&self, name: &str) -> Result<(), BackendError>;
    /// Resize to `size` bytes, or with `None` take the backing store's current size (SCST `resync_size`).
    /// Sessions get CAPACITY DATA HAS CHANGED. Returns the new size in bytes.
    fn resize_device(&self, dev: &DeviceConfig, size: Option<u64>) -> Result<u64, BackendError>;
    /// Run-time facts of a device.
    fn device_state(&self, dev: &DeviceConfig) -> Option<DeviceState>;
    /// Load the image `dev.filename` into the `vcdrom` device (none: eject). Refused while an initiator prevents
    /// medium removal; sessions get NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED for a new medium.
    fn change_medium(&self, dev: &DeviceConfig) -> Result<(), BackendError> {
        let _ = dev;
        Err(BackendError::new(ErrorKind::Unsupported, "media changes are not supported"))
    }
    /// Apply the run-time changeable attributes of a device that `old` describes as `new`: read_only, nv_cache,
    /// write_through, rotational, removable, the identity strings (t10_vend_id, prod_id, prod_rev_lvl, t10_dev_id,
    /// usn) and threads_num. Sessions get INQUIRY DATA HAS CHANGED or MODE PARAMETERS CHANGED as the change calls
    /// for. The manager has checked that nothing else differs.
    fn update_device(&self, old: &DeviceConfig, new: &DeviceConfig) -> Result<(), BackendError> {
        let _ = (old, new);
        Err(BackendError::new(ErrorKind::Unsupported, "device attributes cannot change at run time"))
    }
    /// Start listening on a portal (port 0: the kernel picks one); returns the address bound. Sessions on other
    /// portals are untouched.
    fn add_portal(&self, portal: &PortalConfig) -> Result<SocketAddr, BackendError> {
        let _ = portal;
        Err(BackendError::new(ErrorKind::Unsupported, "portals cannot change at run time"))
    }
    /// Stop listening on the portal bound to `addr` and close the connections (sessions, discovery, logins) that
    /// came through it; returns how many were closed.
    fn remove_portal(&self, addr: SocketAddr) -> Result<usize, BackendError> {
        let _ = addr;
        Err(BackendError::new(ErrorKind::Unsupported, "portals cannot change at run time"))
    }
    /// Create a target, or bring an existing one in line with `target` (attributes, CHAP, ACL, LUN maps); running
    /// sessions see LUN changes with the unit attentions they call for. Devices are referenced by name and exist.
    fn apply_target(&self, target: &TargetConfig) -> Result<(), BackendError>;
    /// Remove a target; its sessions are closed. Returns how many sessions were closed.
    fn delete_target(&self, name: &str) -> Result<usize, BackendError>;
    /// Driver-level attributes (enabled, discovery CHAP).
    fn apply_driver(&self, iscsi: &IscsiConfig) -> Result<(), BackendError>;
    fn sessions(&self) -> Result<Vec<SessionInfo>, BackendError>;
    fn connections(&self) -> Result<Vec<ConnectionInfo>, BackendError>;
    /// Close the session with this SCST sid.
    fn force_close(&self, sid: u64) -> Result<(), BackendError>;
    /// Reactors, pool and data path counters (one snapshot).
    fn dataplane_stats(&self) -> Result<DataplaneStats, BackendError>;
    /// The buffer pool alone (asks no reactor).
    fn pool(&self) -> PoolInfo;
    fn lun_stats(&self) -> Vec<LunStatsInfo>;
    /// tid of a target (SCST `tid`).
    fn target_tid(&self, name: &str) -> Option<u32>;
    /// Logins refused with "authentication failure".
    fn auth_failures(&self) -> u64;
    /// The addresses the target listens on now, with their TPGT.
    fn portals(&self) -> Vec<(SocketAddr, u16)>;
    /// The `tracing` filter in force (SCST `trace_level`).
    fn trace_level(&self) -> String;
    /// Replace the `tracing` filter (an EnvFilter directive such as `info` or `polltgt_dataplane=debug`).
    fn set_trace_level(&self, level: &str) -> Result<(), BackendError>;
}
