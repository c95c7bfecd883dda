//! The configuration model: one YAML file (the same structures are the RPC parameters), written for a storage
//! administrator coming from SCST. Attribute names are SCST's where SCST has one (`t10_vend_id`, `nv_cache`,
//! `QueuedCommands`, `MaxBurstLength`, ...).
//!
//! ```yaml
//! reactors: { count: 1 }            # or cpu_mask: "0x3"
//! state_dir: /var/lib/polltgt       # persistent reservations with APTPL live in state_dir/pr/
//! portals:
//!   - address: "127.0.0.1:3260"     # "[::1]:3260" for IPv6
//!     tpgt: 1
//! iscsi:                            # driver-level attributes: CHAP for discovery sessions
//!   IncomingUser: [ "disc 12charsecret" ]
//! devices:
//!   - name: disk1
//!     handler: vdisk_fileio         # ram | vdisk_nullio | vdisk_fileio | vdisk_blockio
//!     filename: /var/lib/polltgt/disk1.img
//!     blocksize: 4096
//! targets:
//!   - name: iqn.2026-11.io.polltgt:disk1
//!     luns: [ { lun: 0, device: disk1 } ]
//!     MaxBurstLength: 262144
//!     IncomingUser:                 # CHAP: initiators must log in as one of these
//!       - { user: joe, secret: 12charsecret }
//!       - "joe2 12charsecret2"      # SCST's "user secret" form
//!     OutgoingUser: { user: jim1, secret: 12charpasswd }   # mutual CHAP: the target's own account
//! ```
//!
//! Loading checks everything: unknown keys are errors (so typos do not pass silently), every value is checked
//! against its syntax and range, and the cross-references (LUN -> device, unique names and LUN numbers, handler
//! requirements, FirstBurstLength <= MaxBurstLength) after parsing. Each error names the file, line, column and
//! field path: `polltgt.yaml:14:21: targets[0].MaxBurstLength: 0 is out of range 512..16777215`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use polltgt_iscsi::chap::Credentials;
use polltgt_iscsi::params::TargetParams;
use serde::{Deserialize, Serialize};

use polltgt_iscsi::access::{PortalPattern, Redirect};

use crate::error::{ConfigError, Diagnostic, FieldPath};
use crate::protocol::{self, DigestFaultConfig, IsnsServer};
use crate::locate::locate;
use crate::values::{
    self, check_range, BlockSize, ChapAccount, CpuMask, Digests, InvalidValue, Size, TargetName,
    MAX_LUN, MAX_QUEUED_COMMANDS, MAX_REACTORS, MAX_RFC_LENGTH, MIN_RFC_LENGTH,
};

/// The name of the target of the embedded default configuration.
pub const DEFAULT_TARGET_NAME: &str = "iqn.2026-11.io.polltgt:default";
/// The default portal.
pub const DEFAULT_PORTAL: &str = "127.0.0.1:3260";
/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/polltgt";

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Polling threads. Default: one.
    #[serde(default)]
    pub reactors: ReactorsConfig,
    /// Where polltgt keeps what must survive a restart: persistent reservations made with APTPL (SPC-4 §5.9.4),
    /// one file per device in `state_dir/pr/`. An absolute path; default [`DEFAULT_STATE_DIR`].
    #[serde(
        default = "default_state_dir",
        skip_serializing_if = "is_default_state_dir",
        deserialize_with = "state_dir_path"
    )]
    pub state_dir: PathBuf,
    /// Where the target listens. Default: 127.0.0.1:3260.
    #[serde(default = "default_portals")]
    pub portals: Vec<PortalConfig>,
    /// Driver-level iSCSI attributes (SCST's `targets/iscsi` attributes): CHAP accounts of discovery sessions.
    #[serde(default, skip_serializing_if = "IscsiConfig::is_empty")]
    pub iscsi: IscsiConfig,
    /// Backing devices (SCST's `handlers/<handler>/<device>`).
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// iSCSI targets (SCST's `targets/iscsi/<name>`).
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// Management interfaces: the JSON-RPC socket and the optional Prometheus listener.
    #[serde(default, skip_serializing_if = "MgmtConfig::is_default")]
    pub mgmt: MgmtConfig,
}

/// Where the target's RPC socket is when neither the configuration nor `--rpc-socket` says otherwise (like SPDK's
/// /var/tmp/spdk.sock).
pub const DEFAULT_RPC_SOCKET: &str = "/var/tmp/polltgt.sock";

/// The management interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MgmtConfig {
    /// The JSON-RPC 2.0 Unix socket (created with mode 0600). `null` turns RPC off. Default
    /// /var/tmp/polltgt.sock.
    #[serde(default = "default_rpc_socket", deserialize_with = "values::opt_socket_path")]
    pub rpc_socket: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP at `http://ADDRESS/metrics`. Default: off.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "values::opt_portal"
    )]
    pub prometheus: Option<SocketAddr>,
}

impl Default for MgmtConfig {
    fn default() -> Self {
        MgmtConfig {
            rpc_socket: default_rpc_socket(),
            prometheus: None,
        }
    }
}

impl MgmtConfig {
    pub fn is_default(&self) -> bool {
        *self == MgmtConfig::default()
    }
}

fn default_rpc_socket() -> Option<PathBuf> {
    Some(PathBuf::from(DEFAULT_RPC_SOCKET))
}

/// Driver-level iSCSI attributes, SCST's `/sys/kernel/scst_tgt/targets/iscsi/{IncomingUser,OutgoingUser}`: the CHAP
/// accounts of discovery sessions (RFC 7143 §12.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IscsiConfig {
    /// Accept connections at all (SCST's `targets/iscsi/enabled`). Default true.
    #[serde(default = "yes", deserialize_with = "values::flag")]
    pub enabled: bool,
    /// With at least one account, discovery sessions must authenticate with CHAP as one of them. A single account
    /// or a list.
    #[serde(
        rename = "IncomingUser",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "values::chap_accounts"
    )]
    pub incoming_users: Vec<ChapAccount>,
    /// The account the target answers with when a discovery initiator asks it to authenticate (mutual CHAP).
    #[serde(
        rename = "OutgoingUser",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub outgoing_user: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser1` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser1", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user1: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser2` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser2", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user2: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser3` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser3", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user3: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser4` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser4", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user4: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser5` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser5", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user5: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser6` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser6", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user6: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser7` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser7", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user7: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser8` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser8", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user8: Option<ChapAccount>,
    /// iSNS server to register the targets and portals with (RFC 4171): `"<host>[:port] [AccessControl]"`; with
    /// `AccessControl` its discovery domains decide which initiators see and reach each target.
    #[serde(rename = "iSNSServer", default, skip_serializing_if = "Option::is_none")]
    pub isns_server: Option<IsnsServer>,
    /// Digest fault injection for testing (`{ receive: N, send: M }`: every Nth received / Mth sent PDU with a
    /// digest gets a digest error). Off by default.
    #[serde(rename = "DEBUG_DIGEST_FAILURES", default, skip_serializing_if = "DigestFaultConfig::is_off")]
    pub debug_digest_failures: DigestFaultConfig,
    /// Seconds a connection may take from its accept to a completed login, 1..3600; a connection that sends
    /// nothing, or stops in the middle of its login, is closed then (new connections use a changed value). Default
    /// 30. Driver level: the target is not known before the login names it.
    #[serde(
        rename = "LoginTimeout",
        default = "defaults::login_timeout",
        deserialize_with = "values::ranged::<_, u32, 1, MAX_LOGIN_TIMEOUT>"
    )]
    pub login_timeout: u32,
}

/// Largest `LoginTimeout` in seconds.
pub const MAX_LOGIN_TIMEOUT: u64 = 3600;

impl Default for IscsiConfig {
    fn default() -> Self {
        IscsiConfig {
            enabled: true,
            incoming_users: Vec::new(),
            outgoing_user: None,
            incoming_user1: None,
            incoming_user2: None,
            incoming_user3: None,
            incoming_user4: None,
            incoming_user5: None,
            incoming_user6: None,
            incoming_user7: None,
            incoming_user8: None,
            isns_server: None,
            debug_digest_failures: DigestFaultConfig::default(),
            login_timeout: defaults::login_timeout(),
        }
    }
}

impl IscsiConfig {
    /// Every attribute at its default.
    pub fn is_empty(&self) -> bool {
        self.enabled
            && self.incoming_users.is_empty()
            && self.outgoing_user.is_none()
            && self.numbered_incoming().iter().all(|(_, a)| a.is_none())
            && self.isns_server.is_none()
            && self.debug_digest_failures.is_off()
            && self.login_timeout == defaults::login_timeout()
    }

    /// `LoginTimeout` as a duration.
    pub fn login_timeout(&self) -> Duration {
        Duration::from_secs(self.login_timeout.into())
    }

    /// The CHAP accounts of discovery sessions, for the iSCSI core.
    pub fn credentials(&self) -> Credentials {
        let mut c = credentials(&self.incoming_users, self.outgoing_user.as_ref());
        c.incoming.extend(self.numbered_incoming().iter().filter_map(|(_, a)| a.map(ChapAccount::to_chap_user)));
        c
    }

    /// The numbered `IncomingUser1`.. attributes with their keys.
    pub fn numbered_incoming(&self) -> [(&'static str, Option<&ChapAccount>); NUMBERED_USERS] {
        [
            ("IncomingUser1", self.incoming_user1.as_ref()),
            ("IncomingUser2", self.incoming_user2.as_ref()),
            ("IncomingUser3", self.incoming_user3.as_ref()),
            ("IncomingUser4", self.incoming_user4.as_ref()),
            ("IncomingUser5", self.incoming_user5.as_ref()),
            ("IncomingUser6", self.incoming_user6.as_ref()),
            ("IncomingUser7", self.incoming_user7.as_ref()),
            ("IncomingUser8", self.incoming_user8.as_ref()),
        ]
    }

    /// Every CHAP account of the section, to change them (management).
    pub fn chap_accounts_mut(&mut self) -> ChapAccountsMut<'_> {
        ChapAccountsMut {
            incoming: &mut self.incoming_users,
            numbered: [
                &mut self.incoming_user1,
                &mut self.incoming_user2,
                &mut self.incoming_user3,
                &mut self.incoming_user4,
                &mut self.incoming_user5,
                &mut self.incoming_user6,
                &mut self.incoming_user7,
                &mut self.incoming_user8,
            ],
            outgoing: &mut self.outgoing_user,
        }
    }
}

/// The CHAP accounts of a target or of the driver section, borrowed for a change: the `IncomingUser` list, the
/// numbered `IncomingUser1`.. attributes and `OutgoingUser`.
pub struct ChapAccountsMut<'a> {
    pub incoming: &'a mut Vec<ChapAccount>,
    pub numbered: [&'a mut Option<ChapAccount>; NUMBERED_USERS],
    pub outgoing: &'a mut Option<ChapAccount>,
}

/// How many numbered `IncomingUser<n>` attributes a section may have (any number of accounts fit in the
/// `IncomingUser` list).
pub const NUMBERED_USERS: usize = 8;

fn credentials(incoming: &[ChapAccount], outgoing: Option<&ChapAccount>) -> Credentials {
    Credentials {
        incoming: incoming.iter().map(ChapAccount::to_chap_user).collect(),
        outgoing: outgoing.map(ChapAccount::to_chap_user),
    }
}

/// How many reactors run, and where: a count (CPUs chosen by the dataplane) or an explicit CPU mask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReactorsConfig {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "values::opt_ranged::<_, u32, 1, MAX_REACTORS>"
    )]
    pub count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_mask: Option<CpuMask>,
    /// What an idle reactor does: `interrupt` (default; it sleeps in epoll until a socket, a timer or a message
    /// needs it) or `poll` (it spins like SPDK: lowest latency, one core busy per reactor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<IdlePolicy>,
    /// Transmits of at least this size go out with MSG_ZEROCOPY (SPDK's `zerocopy_threshold`); unset: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zerocopy_threshold: Option<Size>,
    /// Hard cap on the data buffer pool's memory; commands wait for buffers beyond it. Unset: no cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_pool_max: Option<Size>,
}

/// What an idle reactor does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdlePolicy {
    Poll,
    Interrupt,
}

impl Default for ReactorsConfig {
    fn default() -> Self {
        ReactorsConfig {
            count: Some(1),
            cpu_mask: None,
            idle: None,
            zerocopy_threshold: None,
            buffer_pool_max: None,
        }
    }
}

impl ReactorsConfig {
    /// The number of reactors: the count, the number of CPUs in the mask, or 1 when neither is given.
    pub fn reactor_count(&self) -> usize {
        match (&self.cpu_mask, self.count) {
            (Some(mask), _) => mask.cpus().len(),
            (None, Some(n)) => n as usize,
            (None, None) => 1,
        }
    }
}

/// A network portal (RFC 7143 §4.4.1): an address the target listens on, and its portal group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    /// `IPv4:port` or `[IPv6]:port`; without a port, 3260.
    #[serde(deserialize_with = "values::portal")]
    pub address: SocketAddr,
    /// Target Portal Group Tag (RFC 7143 §13.9), 16 bits. Default 1.
    #[serde(
        default = "default_tpgt",
        deserialize_with = "values::ranged::<_, u16, 0, 65535>"
    )]
    pub tpgt: u16,
}

impl PortalConfig {
    pub fn new(address: SocketAddr) -> Self {
        PortalConfig {
            address,
            tpgt: default_tpgt(),
        }
    }
}

/// The device handler (SCST's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handler {
    /// A disk in (hugepage) memory; contents are lost at exit.
    Ram,
    /// Reads return zeroes, writes are discarded (SCST `vdisk_nullio`).
    VdiskNullio,
    /// A regular file (SCST `vdisk_fileio`).
    VdiskFileio,
    /// A block device (SCST `vdisk_blockio`).
    VdiskBlockio,
    /// A CD-ROM drive (SCST `vcdrom`): an ISO image file (`filename`, optional: an empty drive) as a read-only MMC
    /// medium of 2048-byte blocks; writing `filename` at run time changes the medium (empty: eject).
    Vcdrom,
}

impl Handler {
    pub fn as_str(self) -> &'static str {
        match self {
            Handler::Ram => "ram",
            Handler::VdiskNullio => "vdisk_nullio",
            Handler::VdiskFileio => "vdisk_fileio",
            Handler::VdiskBlockio => "vdisk_blockio",
            Handler::Vcdrom => "vcdrom",
        }
    }

    /// Whether the handler stores data in a file or block device (and so needs `filename`).
    pub fn needs_filename(self) -> bool {
        matches!(self, Handler::VdiskFileio | Handler::VdiskBlockio)
    }

    /// Whether the handler has a `filename` (required, or for `vcdrom` the medium, which may be absent).
    pub fn uses_filename(self) -> bool {
        self.needs_filename() || self == Handler::Vcdrom
    }
}

/// A backing device with its SCSI identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Unique device name (SCST device names: up to 64 of letters, digits, `_-.:`).
    #[serde(deserialize_with = "values::device_name")]
    pub name: String,
    pub handler: Handler,
    /// Size in bytes (`1G`, `512M`, ...). Required for `ram` and `vdisk_nullio`; for files and block devices the
    /// size of the file/device is used when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    /// Size in MiB, as SCST's `size_mb`; an alternative to `size`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "values::opt_ranged::<_, u64, 1, { u64::MAX >> 20 }>"
    )]
    pub size_mb: Option<u64>,
    /// Backing file or block device (absolute path); `vdisk_fileio` and `vdisk_blockio`; for `vcdrom` the ISO image
    /// in the drive (absent: no medium).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "values::opt_filename"
    )]
    pub filename: Option<PathBuf>,
    /// Logical block size. Default 512.
    #[serde(default)]
    pub blocksize: BlockSize,
    /// Physical block size in bytes (SPDK's `physical_block_size`): a power of two multiple of `blocksize`, at
    /// most 2^15 logical blocks. Reported as LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT in READ CAPACITY (16)
    /// (SBC-3 §5.16.2) and as OPTIMAL TRANSFER LENGTH GRANULARITY in the Block Limits VPD page. A creation-time
    /// attribute like `blocksize`. Default: `blocksize` (one logical block per physical block).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "values::opt_ranged::<_, u32, 512, { 1 << 31 }>"
    )]
    pub physical_blocksize: Option<u32>,
    /// Write-protect the device (SBC-3 §6.5.1 WP bit). Default false.
    #[serde(default, deserialize_with = "values::flag")]
    pub read_only: bool,
    /// The backing store is non-volatile: SYNCHRONIZE CACHE and FUA become no-ops. Default false.
    #[serde(default, deserialize_with = "values::flag")]
    pub nv_cache: bool,
    /// Open the file with O_DIRECT (`vdisk_fileio` only). Default false.
    #[serde(default, deserialize_with = "values::flag")]
    pub o_direct: bool,
    /// Polled completions (io_uring `IORING_SETUP_IOPOLL`) for NVMe block devices with poll queues
    /// (`vdisk_blockio`, which then opens with O_DIRECT; or `vdisk_fileio` with `o_direct`). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not", deserialize_with = "values::flag")]
    pub iopoll: bool,
    /// I/O threads of a file or block device (SCST `threads_num`): the worker pool of the thread engine (which also
    /// answers GET LBA STATUS lookups for io_uring channels), 1..128. Changeable at run time. Default 4.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "values::opt_ranged::<_, u32, 1, 128>"
    )]
    pub threads_num: Option<u32>,
    /// Report a rotating medium in the Block Device Characteristics VPD page (SBC-3 §6.6.2). Default true, as SCST.
    #[serde(default = "yes", deserialize_with = "values::flag")]
    pub rotational: bool,
    /// Write-through cache: WCE = 0 in the caching mode page (SBC-3 §6.4.5), every write is durable. Default false.
    #[serde(default, deserialize_with = "values::flag")]
    pub write_through: bool,
    /// Report removable media (INQUIRY RMB bit). Default false.
    #[serde(default, deserialize_with = "values::flag")]
    pub removable: bool,
    /// Thin provisioning (SCST `thin_provisioned`, SBC-3 §4.7): LBPME/LBPRZ, UNMAP, WRITE SAME with the UNMAP bit
    /// and GET LBA STATUS; files get holes punched, RAM disks give pages back. Default false.
    #[serde(default, deserialize_with = "values::flag")]
    pub thin_provisioned: bool,
    /// INQUIRY T10 VENDOR IDENTIFICATION, up to 8 characters (SPC-4 §6.6.1). Default `POLLTGT`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "values::opt_inquiry::<_, 8>"
    )]
    pub t10_vend_id: Option<String>,
    /// INQUIRY PRODUCT IDENTIFICATION, up to 16 characters. Default derived from the device name.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "values::opt_inquiry::<_, 16>"
    )]
    pub prod_id: Option<String>,
    /// INQUIRY PRODUCT REVISION LEVEL, up to 4 characters.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "values::opt_inquiry::<_, 4>"
    )]
    pub prod_rev_lvl: Option<String>,
    /// Vendor specific part of the T10 vendor ID designator (VPD page 0x83, SPC-4 §7.8.6.4), up to 24 characters.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "values::opt_inquiry::<_, 24>"
    )]
    pub t10_dev_id: Option<String>,
    /// Unit serial number (VPD page 0x80, SPC-4 §7.8.15), up to 20 characters as in SCST.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "values::opt_inquiry::<_, 20>"
    )]
    pub usn: Option<String>,
}

impl DeviceConfig {
    /// A device with every optional attribute at its default.
    pub fn new(name: &str, handler: Handler) -> Self {
        DeviceConfig {
            name: name.to_owned(),
            handler,
            size: None,
            size_mb: None,
            filename: None,
            blocksize: BlockSize::default(),
            physical_blocksize: None,
            read_only: false,
            nv_cache: false,
            o_direct: false,
            iopoll: false,
            threads_num: None,
            rotational: true,
            write_through: false,
            removable: false,
            thin_provisioned: false,
            t10_vend_id: None,
            prod_id: None,
            prod_rev_lvl: None,
            t10_dev_id: None,
            usn: None,
        }
    }

    /// The physical block size in bytes: `physical_blocksize`, or the logical block size.
    pub fn physical_block_bytes(&self) -> u32 {
        self.physical_blocksize.unwrap_or(self.blocksize.bytes())
    }

    /// The configured size in bytes (`size`, or `size_mb` MiB), if any.
    pub fn size_bytes(&self) -> Option<u64> {
        match (self.size, self.size_mb) {
            (Some(s), _) => Some(s.bytes()),
            (None, Some(mb)) => mb.checked_mul(1 << 20),
            (None, None) => None,
        }
    }
}

/// A LUN of a target: LUN number -> device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LunConfig {
    /// 0..16383.
    #[serde(deserialize_with = "values::ranged::<_, u16, 0, MAX_LUN>")]
    pub lun: u16,
    /// Name of a device in `devices`.
    pub device: String,
    /// Export this LUN write-protected even if the device is writable. Default false.
    #[serde(default, deserialize_with = "values::flag")]
    pub read_only: bool,
}

impl LunConfig {
    pub fn new(lun: u16, device: &str) -> Self {
        LunConfig {
            lun,
            device: device.to_owned(),
            read_only: false,
        }
    }
}

/// An iSCSI target with its LUNs and its negotiation defaults (SCST's target attributes, same names and
/// defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The iSCSI target name (RFC 7143 §4.2.7).
    pub name: TargetName,
    /// Accept logins. Default true (SCST starts disabled; a file configuration is complete when loaded).
    #[serde(default = "yes", deserialize_with = "values::flag")]
    pub enabled: bool,
    #[serde(default)]
    pub luns: Vec<LunConfig>,
    /// RFC 7143 §13.10. Default No.
    #[serde(
        rename = "InitialR2T",
        default = "defaults::initial_r2t",
        deserialize_with = "values::flag"
    )]
    pub initial_r2t: bool,
    /// RFC 7143 §13.11. Default Yes.
    #[serde(
        rename = "ImmediateData",
        default = "defaults::immediate_data",
        deserialize_with = "values::flag"
    )]
    pub immediate_data: bool,
    /// RFC 7143 §13.12: what the target declares it receives. Default 1048576.
    #[serde(
        rename = "MaxRecvDataSegmentLength",
        default = "defaults::max_recv_data_segment_length",
        deserialize_with = "values::ranged::<_, u32, MIN_RFC_LENGTH, MAX_RFC_LENGTH>"
    )]
    pub max_recv_data_segment_length: u32,
    /// Upper bound for the data segments the target sends (SCST). Default 1048576.
    #[serde(
        rename = "MaxXmitDataSegmentLength",
        default = "defaults::max_xmit_data_segment_length",
        deserialize_with = "values::ranged::<_, u32, MIN_RFC_LENGTH, MAX_RFC_LENGTH>"
    )]
    pub max_xmit_data_segment_length: u32,
    /// RFC 7143 §13.13. Default 1048576.
    #[serde(
        rename = "MaxBurstLength",
        default = "defaults::max_burst_length",
        deserialize_with = "values::ranged::<_, u32, MIN_RFC_LENGTH, MAX_RFC_LENGTH>"
    )]
    pub max_burst_length: u32,
    /// RFC 7143 §13.14; not more than MaxBurstLength. Default 1048576.
    #[serde(
        rename = "FirstBurstLength",
        default = "defaults::first_burst_length",
        deserialize_with = "values::ranged::<_, u32, MIN_RFC_LENGTH, MAX_RFC_LENGTH>"
    )]
    pub first_burst_length: u32,
    /// RFC 7143 §13.17, 1..65535. Default 32.
    #[serde(
        rename = "MaxOutstandingR2T",
        default = "defaults::max_outstanding_r2t",
        deserialize_with = "values::ranged::<_, u32, 1, 65535>"
    )]
    pub max_outstanding_r2t: u32,
    /// RFC 7143 §13.1 preference list. Default None.
    #[serde(rename = "HeaderDigest", default = "Digests::none")]
    pub header_digest: Digests,
    /// RFC 7143 §13.1 preference list. Default None.
    #[serde(rename = "DataDigest", default = "Digests::none")]
    pub data_digest: Digests,
    /// Commands queued per session, 1..2048 (iSCSI-SCST's bounds). Default 32.
    #[serde(
        rename = "QueuedCommands",
        default = "defaults::queued_commands",
        deserialize_with = "values::ranged::<_, u32, 1, MAX_QUEUED_COMMANDS>"
    )]
    pub queued_commands: u32,
    /// Seconds between NOP-In pings on an idle connection, 0..65535; 0 disables them. Default 30.
    #[serde(
        rename = "NopInInterval",
        default = "defaults::nop_in_interval",
        deserialize_with = "values::ranged::<_, u32, 0, 65535>"
    )]
    pub nop_in_interval: u32,
    /// Seconds a NOP-In waits for its NOP-Out before the connection is closed, 2..65535. Default 30.
    #[serde(
        rename = "NopInTimeout",
        default = "defaults::nop_in_timeout",
        deserialize_with = "values::ranged::<_, u32, 2, 65535>"
    )]
    pub nop_in_timeout: u32,
    /// Seconds a command may wait for the initiator before the connection is closed, 2..65535. Default 90.
    #[serde(
        rename = "RspTimeout",
        default = "defaults::rsp_timeout",
        deserialize_with = "values::ranged::<_, u32, 2, 65535>"
    )]
    pub rsp_timeout: u32,
    /// CHAP accounts initiators log in with (SCST's `IncomingUser`, `IncomingUser1`, ...): with at least one, CHAP is
    /// required and any listed account is accepted. A single account or a list.
    #[serde(
        rename = "IncomingUser",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "values::chap_accounts"
    )]
    pub incoming_users: Vec<ChapAccount>,
    /// The account the target answers with when the initiator asks it to authenticate (mutual CHAP).
    #[serde(
        rename = "OutgoingUser",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub outgoing_user: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser1` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser1", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user1: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser2` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser2", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user2: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser3` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser3", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user3: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser4` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser4", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user4: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser5` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser5", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user5: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser6` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser6", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user6: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser7` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser7", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user7: Option<ChapAccount>,
    /// SCST's numbered `IncomingUser8` attribute: one more account, like an entry of `IncomingUser`.
    #[serde(rename = "IncomingUser8", default, skip_serializing_if = "Option::is_none")]
    pub incoming_user8: Option<ChapAccount>,
    /// Login redirection (SCST `redirect`): `"<ip>[:port] temp|perm"`, IPv6 in brackets. Normal-session logins
    /// are answered "target moved temporarily/permanently" with this address before security negotiation;
    /// discovery sessions are not redirected. Empty: none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "protocol::redirect",
        serialize_with = "protocol::serialize_redirect"
    )]
    pub redirect: Option<Redirect>,
    /// Per-portal access control (SCST `per_portal_acl`): initiator groups match `initiator_name#portal_ip`.
    /// Default false.
    #[serde(default, skip_serializing_if = "is_false", deserialize_with = "values::flag")]
    pub per_portal_acl: bool,
    /// Portals the target is reachable and reported on (SCST `allowed_portal`): patterns over the portal IP address
    /// with `*`, `?` and a leading `!`; a portal matching any pattern is allowed. None given: every portal. One
    /// pattern or a list.
    #[serde(
        rename = "allowed_portal",
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "protocol::portal_patterns",
        serialize_with = "protocol::serialize_portal_patterns"
    )]
    pub allowed_portals: Vec<PortalPattern>,
    /// Most normal sessions at once, 0..65535; 0 (default) is no limit. Further logins get "out of resources".
    #[serde(
        rename = "MaxSessions",
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "values::ranged::<_, u32, 0, 65535>"
    )]
    pub max_sessions: u32,
    /// SCSI relative target port identifier (SCST `rel_tgt_id`), 1..65535. Default: the target's tid.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "values::opt_ranged::<_, u16, 1, 65535>"
    )]
    pub rel_tgt_id: Option<u16>,
    /// Initiator groups (SCST `ini_groups`), searched in order: an initiator matching one of a group's patterns sees
    /// the group's LUNs instead of `luns`; an initiator whose LUN set is empty does not see the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ini_groups: Vec<IniGroupConfig>,
    /// Run this target's sessions only on reactors pinned to these CPUs (SPDK's per-target cpumask). Default: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_mask: Option<CpuMask>,
    /// Give each session a reactor of its own while one is free (SCST's per_sess_dedicated_tgt_threads). Default
    /// false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not", deserialize_with = "values::flag")]
    pub per_sess_dedicated_tgt_threads: bool,
}

/// An initiator group of a target (SCST security group `ini_groups/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IniGroupConfig {
    /// Group name (letters, digits, `_-.:`, up to 64).
    #[serde(deserialize_with = "values::device_name")]
    pub name: String,
    /// Initiator name patterns: `*` any run, `?` any character, a leading `!` inverts; case-insensitive.
    #[serde(default)]
    pub initiators: Vec<String>,
    /// The LUNs the group's initiators see. None: they do not see the target.
    #[serde(default)]
    pub luns: Vec<LunConfig>,
    /// Run the group's sessions only on reactors pinned to these CPUs (the iSCSI-SCST README's "cpu_mask attribute
    /// of their targets or security groups"). Default: the target's `cpu_mask`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_mask: Option<CpuMask>,
    /// Give each of the group's sessions a reactor of its own while one is free (SCST's initiator group
    /// `per_sess_dedicated_tgt_threads`). Default: the target's setting.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "values::opt_flag")]
    pub per_sess_dedicated_tgt_threads: Option<bool>,
}

impl IniGroupConfig {
    pub fn new(name: &str) -> Self {
        IniGroupConfig {
            name: name.to_owned(),
            initiators: Vec::new(),
            luns: Vec::new(),
            cpu_mask: None,
            per_sess_dedicated_tgt_threads: None,
        }
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Defaults of the target attributes: the iSCSI core's [`TargetParams::default`] (SCST's defaults).
mod defaults {
    use super::TargetParams;

    pub(super) fn initial_r2t() -> bool {
        TargetParams::default().initial_r2t
    }
    pub(super) fn immediate_data() -> bool {
        TargetParams::default().immediate_data
    }
    pub(super) fn max_recv_data_segment_length() -> u32 {
        TargetParams::default().max_recv_data_segment_length
    }
    pub(super) fn max_xmit_data_segment_length() -> u32 {
        TargetParams::default().max_xmit_data_segment_length
    }
    pub(super) fn max_burst_length() -> u32 {
        TargetParams::default().max_burst_length
    }
    pub(super) fn first_burst_length() -> u32 {
        TargetParams::default().first_burst_length
    }
    pub(super) fn max_outstanding_r2t() -> u32 {
        TargetParams::default().max_outstanding_r2t
    }
    pub(super) fn queued_commands() -> u32 {
        TargetParams::default().queued_commands
    }
    pub(super) fn nop_in_interval() -> u32 {
        TargetParams::default()
            .nop_in_interval
            .map_or(0, |d| d.as_secs() as u32)
    }
    pub(super) fn nop_in_timeout() -> u32 {
        TargetParams::default().nop_in_timeout.as_secs() as u32
    }
    pub(super) fn rsp_timeout() -> u32 {
        TargetParams::default().rsp_timeout.as_secs() as u32
    }
    pub(super) fn login_timeout() -> u32 {
        polltgt_iscsi::conn::LOGIN_TIMEOUT.as_secs() as u32
    }
}

impl TargetConfig {
    /// A target with no LUNs and every attribute at its default.
    pub fn new(name: TargetName) -> Self {
        TargetConfig {
            name,
            enabled: true,
            luns: Vec::new(),
            cpu_mask: None,
            per_sess_dedicated_tgt_threads: false,
            initial_r2t: defaults::initial_r2t(),
            immediate_data: defaults::immediate_data(),
            max_recv_data_segment_length: defaults::max_recv_data_segment_length(),
            max_xmit_data_segment_length: defaults::max_xmit_data_segment_length(),
            max_burst_length: defaults::max_burst_length(),
            first_burst_length: defaults::first_burst_length(),
            max_outstanding_r2t: defaults::max_outstanding_r2t(),
            header_digest: Digests::none(),
            data_digest: Digests::none(),
            queued_commands: defaults::queued_commands(),
            nop_in_interval: defaults::nop_in_interval(),
            nop_in_timeout: defaults::nop_in_timeout(),
            rsp_timeout: defaults::rsp_timeout(),
            incoming_users: Vec::new(),
            outgoing_user: None,
            incoming_user1: None,
            incoming_user2: None,
            incoming_user3: None,
            incoming_user4: None,
            incoming_user5: None,
            incoming_user6: None,
            incoming_user7: None,
            incoming_user8: None,
            redirect: None,
            per_portal_acl: false,
            allowed_portals: Vec::new(),
            max_sessions: 0,
            rel_tgt_id: None,
            ini_groups: Vec::new(),
        }
    }

    /// The initiator group named `name`.
    pub fn group(&self, name: &str) -> Option<&IniGroupConfig> {
        self.ini_groups.iter().find(|g| g.name == name)
    }

    /// The target's CHAP accounts, for the iSCSI core.
    pub fn credentials(&self) -> Credentials {
        let mut c = credentials(&self.incoming_users, self.outgoing_user.as_ref());
        c.incoming.extend(self.numbered_incoming().iter().filter_map(|(_, a)| a.map(ChapAccount::to_chap_user)));
        c
    }

    /// The numbered `IncomingUser1`.. attributes with their keys.
    pub fn numbered_incoming(&self) -> [(&'static str, Option<&ChapAccount>); NUMBERED_USERS] {
        [
            ("IncomingUser1", self.incoming_user1.as_ref()),
            ("IncomingUser2", self.incoming_user2.as_ref()),
            ("IncomingUser3", self.incoming_user3.as_ref()),
            ("IncomingUser4", self.incoming_user4.as_ref()),
            ("IncomingUser5", self.incoming_user5.as_ref()),
            ("IncomingUser6", self.incoming_user6.as_ref()),
            ("IncomingUser7", self.incoming_user7.as_ref()),
            ("IncomingUser8", self.incoming_user8.as_ref()),
        ]
    }

    /// Every CHAP account of the section, to change them (management).
    pub fn chap_accounts_mut(&mut self) -> ChapAccountsMut<'_> {
        ChapAccountsMut {
            incoming: &mut self.incoming_users,
            numbered: [
                &mut self.incoming_user1,
                &mut self.incoming_user2,
                &mut self.incoming_user3,
                &mut self.incoming_user4,
                &mut self.incoming_user5,
                &mut self.incoming_user6,
                &mut self.incoming_user7,
                &mut self.incoming_user8,
            ],
            outgoing: &mut self.outgoing_user,
        }
    }

    /// The negotiation defaults and limits the iSCSI core offers for this target. Keys SCST does not expose keep
    /// the core's defaults (DefaultTime2Wait, DefaultTime2Retain, MaxConnections, ErrorRecoveryLevel).
    pub fn target_params(&self) -> TargetParams {
        TargetParams {
            initial_r2t: self.initial_r2t,
            immediate_data: self.immediate_data,
            max_recv_data_segment_length: self.max_recv_data_segment_length,
            max_xmit_data_segment_length: self.max_xmit_data_segment_length,
            max_burst_length: self.max_burst_length,
            first_burst_length: self.first_burst_length,
            max_outstanding_r2t: self.max_outstanding_r2t,
            header_digest: self.header_digest.as_slice().to_vec(),
            data_digest: self.data_digest.as_slice().to_vec(),
            queued_commands: self.queued_commands,
            nop_in_interval: (self.nop_in_interval > 0)
                .then(|| Duration::from_secs(self.nop_in_interval.into())),
            nop_in_timeout: Duration::from_secs(self.nop_in_timeout.into()),
            rsp_timeout: Duration::from_secs(self.rsp_timeout.into()),
            ..TargetParams::default()
        }
    }
}

fn yes() -> bool {
    true
}

fn default_tpgt() -> u16 {
    1
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

fn is_default_state_dir(p: &Path) -> bool {
    p == Path::new(DEFAULT_STATE_DIR)
}

/// `deserialize_with` for `state_dir`: an absolute path, checked while the scalar's position is known.
fn state_dir_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    struct AbsolutePath;
    impl serde::de::Visitor<'_> for AbsolutePath {
        type Value = PathBuf;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an absolute path")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PathBuf, E> {
            let p = PathBuf::from(v);
            values::check_filename(&p).map_err(|e| E::custom(e.0))?;
            Ok(p)
        }
    }
    d.deserialize_str(AbsolutePath)
}

fn default_portals() -> Vec<PortalConfig> {
    vec![PortalConfig::new(SocketAddr::from(([127, 0, 0, 1], 3260)))]
}

/// A validation failure before it is located in the text.
struct Finding {
    path: FieldPath,
    message: String,
}

fn finding(path: FieldPath, message: impl Into<String>) -> Finding {
    Finding {
        path,
        message: message.into(),
    }
}

fn value_at(path: FieldPath, result: Result<(), InvalidValue>) -> Result<(), Finding> {
    result.map_err(|e| finding(path, e.0))
}

impl Config {
    /// Reads and validates a YAML configuration file. Errors name the file as given.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            origin: origin.clone(),
            source,
        })?;
        Config::from_yaml_str(&text, &origin)
    }

    /// Parses and validates a YAML configuration; `origin_name` is the file name errors show.
    pub fn from_yaml_str(text: &str, origin_name: &str) -> Result<Config, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let config: Config =
            serde_path_to_error::deserialize(de).map_err(|e| parse_error(origin_name, e))?;
        config.check().map_err(|f| {
            let location = locate(text, &f.path);
            ConfigError::Invalid(Diagnostic {
                origin: origin_name.to_owned(),
                location,
                path: f.path,
                message: f.message,
            })
        })?;
        Ok(config)
    }

    /// Checks a configuration built or changed in code (e.g. by RPC) with the rules [`Config::from_yaml_str`]
    /// applies. Errors carry the field path but no location; their origin is "config".
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|f| {
            ConfigError::Invalid(Diagnostic {
                origin: "config".to_owned(),
                location: None,
                path: f.path,
                message: f.message,
            })
        })
    }

    /// The configuration polltgt serves without a file: target `iqn.2026-11.io.polltgt:default` on
    /// 127.0.0.1:3260, enabled, with a 1 GiB RAM disk `ram0` as LUN 0.
    pub fn embedded_default() -> Config {
        let mut ram0 = DeviceConfig::new("ram0", Handler::Ram);
        ram0.size = Some(Size::GIB);
        ram0.rotational = false;
        let mut target = TargetConfig::new(TargetName::from_static(DEFAULT_TARGET_NAME));
        target.luns.push(LunConfig::new(0, "ram0"));
        Config {
            reactors: ReactorsConfig::default(),
            state_dir: default_state_dir(),
            portals: default_portals(),
            iscsi: IscsiConfig::default(),
            devices: vec![ram0],
            targets: vec![target],
            mgmt: MgmtConfig::default(),
        }
    }

    /// The configuration as YAML; [`Config::from_yaml_str`] reads it back to an equal `Config`.
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        serde_yaml_ng::to_string(self).map_err(|e| ConfigError::Serialize(e.to_string()))
    }

    /// The device named `name`.
    pub fn device(&self, name: &str) -> Option<&DeviceConfig> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// The target named `name`.
    pub fn target(&self, name: &str) -> Option<&TargetConfig> {
        self.targets.iter().find(|t| t.name.as_str() == name)
    }

    /// The CHAP accounts of discovery sessions (the `iscsi` section).
    pub fn discovery_credentials(&self) -> Credentials {
        self.iscsi.credentials()
    }

    /// All rules, in document order; the first violation.
    fn check(&self) -> Result<(), Finding> {
        let root = FieldPath::root();
        self.check_reactors(&root.key("reactors"))?;
        value_at(root.key("state_dir"), values::check_filename(&self.state_dir))?;
        self.check_portals(&root.key("portals"))?;
        let iscsi = root.key("iscsi");
        check_chap(
            &self.iscsi.incoming_users,
            self.iscsi.outgoing_user.as_ref(),
            &iscsi,
        )?;
        check_numbered_chap(&self.iscsi.incoming_users, &self.iscsi.numbered_incoming(), &iscsi)?;
        value_at(iscsi.key("LoginTimeout"), check_range(self.iscsi.login_timeout.into(), 1, MAX_LOGIN_TIMEOUT))?;
        self.check_devices(&root.key("devices"))?;
        self.check_targets(&root.key("targets"))?;
        self.check_chap_directions()
    }

    /// RFC 7143 §9.2.1: "Any CHAP secret used for initiator authentication MUST NOT be configured for authentication
    /// of any target": no OutgoingUser anywhere may have the secret of an IncomingUser anywhere.
    fn check_chap_directions(&self) -> Result<(), Finding> {
        let root = FieldPath::root();
        let mut incoming: Vec<(FieldPath, &ChapAccount)> = Vec::new();
        let mut outgoing: Vec<(FieldPath, &ChapAccount)> = Vec::new();
        let sections = std::iter::once((
            root.key("iscsi"),
            &self.iscsi.incoming_users,
            self.iscsi.outgoing_user.as_ref(),
            self.iscsi.numbered_incoming(),
        ))
        .chain(self.targets.iter().enumerate().map(|(i, t)| {
            (
                root.key("targets").index(i),
                &t.incoming_users,
                t.outgoing_user.as_ref(),
                t.numbered_incoming(),
            )
        }));
        for (at, ins, out, numbered) in sections {
            for (j, a) in ins.iter().enumerate() {
                incoming.push((at.key("IncomingUser").index(j), a));
            }
            for (key, a) in numbered {
                if let Some(a) = a {
                    incoming.push((at.key(key), a));
                }
            }
            if let Some(o) = out {
                outgoing.push((at.key("OutgoingUser"), o));
            }
        }
        for (out_at, out) in &outgoing {
            if let Some((in_at, a)) = incoming.iter().find(|(_, a)| a.secret == out.secret) {
                return Err(finding(
                    out_at.clone(),
                    format!(
                        "OutgoingUser {:?} has the secret of IncomingUser {:?} ({in_at}); RFC 7143 §9.2.1 forbids \
                         using a CHAP secret in both directions",
                        out.user, a.user
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_reactors(&self, at: &FieldPath) -> Result<(), Finding> {
        let r = &self.reactors;
        if let Some(n) = r.count {
            value_at(at.key("count"), check_range(n.into(), 1, MAX_REACTORS))?;
        }
        if r.count.is_some() && r.cpu_mask.is_some() {
            return Err(finding(
                at.key("cpu_mask"),
                "give either count or cpu_mask, not both",
            ));
        }
        Ok(())
    }

    fn check_portals(&self, at: &FieldPath) -> Result<(), Finding> {
        if self.portals.is_empty() {
            return Err(finding(at.clone(), "at least one portal is required"));
        }
        let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
        for (i, p) in self.portals.iter().enumerate() {
            if let Some(first) = seen.insert(p.address, i) {
                return Err(finding(
                    at.index(i).key("address"),
                    format!(
                        "portal {} is already listed as {}",
                        p.address,
                        at.index(first)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_devices(&self, at: &FieldPath) -> Result<(), Finding> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, d) in self.devices.iter().enumerate() {
            let here = at.index(i);
            value_at(here.key("name"), values::check_device_name(&d.name))?;
            if let Some(first) = seen.insert(d.name.as_str(), i) {
                return Err(finding(
                    here.key("name"),
                    format!(
                        "device name {:?} is already used by {}",
                        d.name,
                        at.index(first)
                    ),
                ));
            }
            check_device(d, &here)?;
        }
        Ok(())
    }

    fn check_targets(&self, at: &FieldPath) -> Result<(), Finding> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, t) in self.targets.iter().enumerate() {
            let here = at.index(i);
            value_at(here.key("name"), TargetName::new(t.name.as_str()).map(drop))?;
            if let Some(first) = seen.insert(t.name.as_str(), i) {
                return Err(finding(
                    here.key("name"),
                    format!(
                        "target name {} is already used by {}",
                        t.name,
                        at.index(first)
                    ),
                ));
            }
            check_target_params(t, &here)?;
            self.check_session_cpus(t.cpu_mask.as_ref(), &here.key("cpu_mask"))?;
            self.check_luns(&t.luns, &here.key("luns"))?;
            check_chap(&t.incoming_users, t.outgoing_user.as_ref(), &here)?;
            check_numbered_chap(&t.incoming_users, &t.numbered_incoming(), &here)?;
            self.check_groups(t, &here.key("ini_groups"))?;
        }
        Ok(())
    }

    fn check_groups(&self, t: &TargetConfig, at: &FieldPath) -> Result<(), Finding> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (j, g) in t.ini_groups.iter().enumerate() {
            let here = at.index(j);
            value_at(here.key("name"), values::check_device_name(&g.name))?;
            if let Some(first) = seen.insert(g.name.as_str(), j) {
                return Err(finding(
                    here.key("name"),
                    format!("group name {:?} is already used by {}", g.name, at.index(first)),
                ));
            }
            let mut patterns: HashMap<&str, usize> = HashMap::new();
            for (k, p) in g.initiators.iter().enumerate() {
                value_at(here.key("initiators").index(k), values::check_pattern(p))?;
                if let Some(first) = patterns.insert(p.as_str(), k) {
                    return Err(finding(
                        here.key("initiators").index(k),
                        format!("initiator {p:?} is already listed as {}", here.key("initiators").index(first)),
                    ));
                }
            }
            self.check_session_cpus(g.cpu_mask.as_ref(), &here.key("cpu_mask"))?;
            self.check_luns(&g.luns, &here.key("luns"))?;
        }
        Ok(())
    }

    /// A target's or initiator group's `cpu_mask` must name a CPU a reactor runs on when the reactors are given by
    /// `reactors.cpu_mask` (with `reactors.count` the dataplane picks the CPUs, and a mask without a reactor leaves
    /// sessions where they were accepted, with a warning).
    fn check_session_cpus(&self, mask: Option<&CpuMask>, at: &FieldPath) -> Result<(), Finding> {
        let (Some(mask), Some(reactors)) = (mask, self.reactors.cpu_mask.as_ref()) else {
            return Ok(());
        };
        if mask.cpus().iter().any(|c| reactors.cpus().contains(c)) {
            return Ok(());
        }
        Err(finding(
            at.clone(),
            format!("{mask} selects no CPU a reactor runs on (reactors.cpu_mask is {reactors})"),
        ))
    }

    fn check_luns(&self, luns: &[LunConfig], at: &FieldPath) -> Result<(), Finding> {
        let mut seen: HashMap<u16, usize> = HashMap::new();
        for (j, l) in luns.iter().enumerate() {
            let here = at.index(j);
            value_at(here.key("lun"), check_range(l.lun.into(), 0, MAX_LUN))?;
            if let Some(first) = seen.insert(l.lun, j) {
                return Err(finding(
                    here.key("lun"),
                    format!("LUN {} is already mapped by {}", l.lun, at.index(first)),
                ));
            }
            if self.device(&l.device).is_none() {
                let known: Vec<&str> = self.devices.iter().map(|d| d.name.as_str()).collect();
                let known = if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                };
                return Err(finding(
                    here.key("device"),
                    format!("no device named {:?} (devices: {known})", l.device),
                ));
            }
        }
        Ok(())
    }
}

/// The handler's requirements and the device's values.
fn check_device(d: &DeviceConfig, at: &FieldPath) -> Result<(), Finding> {
    let handler = d.handler.as_str();
    if d.size.is_some() && d.size_mb.is_some() {
        return Err(finding(
            at.key("size_mb"),
            "give either size or size_mb, not both",
        ));
    }
    if let Some(mb) = d.size_mb {
        value_at(at.key("size_mb"), check_range(mb, 1, u64::MAX >> 20))?;
    }
    if d.handler.needs_filename() {
        match &d.filename {
            None => {
                return Err(finding(
                    at.key("filename"),
                    format!("handler {handler} needs filename"),
                ))
            }
            Some(f) => value_at(at.key("filename"), values::check_filename(f))?,
        }
    } else if d.handler == Handler::Vcdrom {
        if let Some(f) = &d.filename {
            value_at(at.key("filename"), values::check_filename(f))?;
        }
        if d.size.is_some() || d.size_mb.is_some() {
            let key = if d.size.is_some() { "size" } else { "size_mb" };
            return Err(finding(at.key(key), "a vcdrom device takes its size from the image in filename"));
        }
        if !matches!(d.blocksize.bytes(), 512 | 2048) {
            return Err(finding(at.key("blocksize"), "a vcdrom device has 2048-byte blocks"));
        }
        if d.thin_provisioned {
            return Err(finding(at.key("thin_provisioned"), "a vcdrom device is read-only"));
        }
        if d.physical_blocksize.is_some() {
            return Err(finding(at.key("physical_blocksize"), "a vcdrom device has 2048-byte blocks"));
        }
    } else {
        if d.filename.is_some() {
            return Err(finding(
                at.key("filename"),
                format!("handler {handler} does not use filename"),
            ));
        }
        if d.size_bytes().is_none() {
            return Err(finding(
                at.key("size"),
                format!("handler {handler} needs size (or size_mb)"),
            ));
        }
    }
    if d.o_direct && d.handler != Handler::VdiskFileio {
        return Err(finding(
            at.key("o_direct"),
            format!("o_direct applies to vdisk_fileio, not {handler}"),
        ));
    }
    if d.iopoll
        && !(d.handler == Handler::VdiskBlockio || (d.handler == Handler::VdiskFileio && d.o_direct))
    {
        return Err(finding(
            at.key("iopoll"),
            format!("iopoll applies to vdisk_blockio, or vdisk_fileio with o_direct, not {handler} without it"),
        ));
    }
    if d.threads_num.is_some() && !d.handler.needs_filename() {
        return Err(finding(
            at.key("threads_num"),
            format!("threads_num applies to vdisk_fileio and vdisk_blockio; {handler} does its I/O on the reactors"),
        ));
    }
    if let Some(p) = d.physical_blocksize {
        let bs = d.blocksize.bytes();
        if p < bs || p % bs != 0 || !(p / bs).is_power_of_two() || p / bs > 1 << 15 {
            return Err(finding(
                at.key("physical_blocksize"),
                format!("{p} is not a power of two multiple of blocksize {bs} (at most {} bytes)", u64::from(bs) << 15),
            ));
        }
    }
    if let Some(bytes) = d.size_bytes() {
        let bs = u64::from(d.blocksize.bytes());
        if bytes % bs != 0 {
            let key = if d.size.is_some() { "size" } else { "size_mb" };
            return Err(finding(
                at.key(key),
                format!("{bytes} bytes is not a multiple of blocksize {bs}"),
            ));
        }
    }
    for (key, value, max) in [
        ("t10_vend_id", &d.t10_vend_id, 8),
        ("prod_id", &d.prod_id, 16),
        ("prod_rev_lvl", &d.prod_rev_lvl, 4),
        ("t10_dev_id", &d.t10_dev_id, 24),
        ("usn", &d.usn, 20),
    ] {
        if let Some(v) = value {
            value_at(at.key(key), values::check_inquiry_string(v, max))?;
        }
    }
    Ok(())
}

/// Ranges of the negotiation attributes (again, for configurations built in code) and FirstBurstLength <=
/// MaxBurstLength (RFC 7143 §13.14).
fn check_target_params(t: &TargetConfig, at: &FieldPath) -> Result<(), Finding> {
    let (lo, hi) = (MIN_RFC_LENGTH, MAX_RFC_LENGTH);
    for (key, value, min, max) in [
        (
            "MaxRecvDataSegmentLength",
            t.max_recv_data_segment_length,
            lo,
            hi,
        ),
        (
            "MaxXmitDataSegmentLength",
            t.max_xmit_data_segment_length,
            lo,
            hi,
        ),
        ("MaxBurstLength", t.max_burst_length, lo, hi),
        ("FirstBurstLength", t.first_burst_length, lo, hi),
        ("MaxOutstandingR2T", t.max_outstanding_r2t, 1, 65535),
        ("QueuedCommands", t.queued_commands, 1, MAX_QUEUED_COMMANDS),
        ("NopInInterval", t.nop_in_interval, 0, 65535),
        ("NopInTimeout", t.nop_in_timeout, 2, 65535),
        ("RspTimeout", t.rsp_timeout, 2, 65535),
    ] {
        value_at(at.key(key), check_range(value.into(), min, max))?;
    }
    if t.first_burst_length > t.max_burst_length {
        return Err(finding(
            at.key("FirstBurstLength"),
            format!(
                "{} exceeds MaxBurstLength {} (RFC 7143 §13.14)",
                t.first_burst_length, t.max_burst_length
            ),
        ));
    }
    Ok(())
}

/// The CHAP accounts of one section (again, for configurations built in code): valid names and secrets, and no
/// user listed twice.
fn check_chap(
    incoming: &[ChapAccount],
    outgoing: Option<&ChapAccount>,
    at: &FieldPath,
) -> Result<(), Finding> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (j, a) in incoming.iter().enumerate() {
        let here = at.key("IncomingUser").index(j);
        check_account(a, &here)?;
        if let Some(first) = seen.insert(a.user.as_str(), j) {
            return Err(finding(
                here,
                format!(
                    "CHAP user {:?} is already listed as {}",
                    a.user,
                    at.key("IncomingUser").index(first)
                ),
            ));
        }
    }
    if let Some(o) = outgoing {
        check_account(o, &at.key("OutgoingUser"))?;
    }
    Ok(())
}

/// The numbered `IncomingUser<n>` accounts of one section: valid, and no user also listed elsewhere in it.
fn check_numbered_chap(
    list: &[ChapAccount],
    numbered: &[(&'static str, Option<&ChapAccount>)],
    at: &FieldPath,
) -> Result<(), Finding> {
    let mut seen: HashMap<&str, FieldPath> = HashMap::new();
    for (j, a) in list.iter().enumerate() {
        seen.insert(a.user.as_str(), at.key("IncomingUser").index(j));
    }
    for (key, a) in numbered {
        let Some(a) = a else { continue };
        let here = at.key(key);
        check_account(a, &here)?;
        if let Some(first) = seen.insert(a.user.as_str(), here.clone()) {
            return Err(finding(
                here,
                format!("CHAP user {:?} is already listed as {first}", a.user),
            ));
        }
    }
    Ok(())
}

fn check_account(a: &ChapAccount, at: &FieldPath) -> Result<(), Finding> {
    value_at(at.clone(), values::check_chap_user(&a.user))?;
    value_at(at.clone(), values::check_chap_secret(&a.secret))
}

/// Turns a parse error into a diagnostic: the parser's position, the path serde_path_to_error tracked, and the
/// parser's message without the position and path it embeds.
fn parse_error(origin: &str, err: serde_path_to_error::Error<serde_yaml_ng::Error>) -> ConfigError {
    let path = FieldPath::from_serde(err.path());
    let inner = err.inner();
    let location = inner.location().map(|l| (l.line(), l.column()));
    let mut message = inner.to_string();
    if let Some((line, column)) = location {
        let at = format!(" at line {line} column {column}");
        if let Some(pos) = message.find(&at) {
            message.replace_range(pos..pos + at.len(), "");
        }
    }
    // The parser prefixes messages with its own path, which for unknown keys stops at the enclosing mapping.
    for len in (1..=path.segments().len()).rev() {
        let prefix = format!("{}: ", path.truncated(len));
        if let Some(rest) = message.strip_prefix(&prefix) {
            message = rest.to_owned();
            break;
        }
    }
    ConfigError::Invalid(Diagnostic {
        origin: origin.to_owned(),
        location,
        path,
        message,
    })
}
