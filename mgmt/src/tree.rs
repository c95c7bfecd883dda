//! The object tree, laid out like SCST's sysfs (`/sys/kernel/scst_tgt`): handlers with their devices, devices with
//! their attributes, the iSCSI driver with its targets, each target with `luns`, `ini_groups` (with `initiators` and
//! `luns`) and `sessions` (with negotiated parameters, counters and one directory per connection).
//!
//! Paths are relative to the root, with or without the `/sys/kernel/scst_tgt` prefix, so a line of an SCST script
//! (`echo 1 >/sys/kernel/scst_tgt/targets/iscsi/iqn...:tgt/enabled`) names the same object here. Attribute values
//! are text as SCST shows them (flags 1/0, negotiation booleans Yes/No); `key` marks attributes that differ from
//! their default (SCST's `[key]` line, what `save-config` writes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backend::{ErrorKind, SessionInfo};
use crate::config::{
    Config, DeviceConfig, Handler, IniGroupConfig, IscsiConfig, LunConfig, TargetConfig, MAX_LOGIN_TIMEOUT,
};
use crate::manager::{device_path, device_users, target_path, Manager, MgmtError, LIVE_DEVICE_ATTRS};
use crate::protocol::IsnsServer;
use crate::values::{ChapAccount, Size};

/// The prefix of SCST's sysfs tree, accepted (and ignored) in paths.
pub const SYSFS_ROOT: &str = "/sys/kernel/scst_tgt";

/// The handlers the tree shows (SCST names), in order.
pub const HANDLERS: [Handler; 5] = [
    Handler::VdiskFileio,
    Handler::VdiskBlockio,
    Handler::VdiskNullio,
    Handler::Vcdrom,
    Handler::Ram,
];

/// One attribute of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attr {
    pub name: String,
    pub value: String,
    /// The value differs from the default (SCST's `[key]` mark).
    pub key: bool,
    /// Can be written while the object exists.
    pub writable: bool,
}

/// A directory of the tree: its attributes and the names of its subdirectories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    pub path: String,
    pub attributes: Vec<Attr>,
    pub children: Vec<String>,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attributes.iter().find(|a| a.name == name)
    }
}

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    Directory(Node),
    Attribute { path: String, attribute: Attr },
}

/// The path split into segments, without the sysfs prefix and empty segments.
pub fn segments(path: &str) -> Vec<&str> {
    let p = path.trim();
    let p = p.strip_prefix(SYSFS_ROOT).unwrap_or(p);
    p.split('/').filter(|s| !s.is_empty()).collect()
}

fn attr(name: &str, value: impl Into<String>, key: bool, writable: bool) -> Attr {
    Attr {
        name: name.to_string(),
        value: value.into(),
        key,
        writable,
    }
}

/// Text of a configuration value as SCST shows it.
fn show(name: &str, v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) if matches!(name, "InitialR2T" | "ImmediateData") => (if *b { "Yes" } else { "No" }).into(),
        Value::Bool(b) => (if *b { "1" } else { "0" }).into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// An account attribute's value: the user name, never the secret (crate::redact).
fn chap_text(v: &Value) -> String {
    crate::redact::account_text(v.get("user").and_then(Value::as_str).unwrap_or(""))
}

/// Negotiation and timeout attributes of a target, in SCST's order; all writable (new sessions use them).
pub const TARGET_PARAMS: [&str; 13] = [
    "InitialR2T",
    "ImmediateData",
    "MaxRecvDataSegmentLength",
    "MaxXmitDataSegmentLength",
    "MaxBurstLength",
    "FirstBurstLength",
    "MaxOutstandingR2T",
    "HeaderDigest",
    "DataDigest",
    "QueuedCommands",
    "NopInInterval",
    "NopInTimeout",
    "RspTimeout",
];

/// Target attributes written with a plain value (SCST sysfs files). New logins see a changed `redirect`,
/// `MaxSessions`, `cpu_mask` (empty: any reactor) or `per_sess_dedicated_tgt_threads`; sessions already logged in
/// keep going where they run.
pub const TARGET_WRITABLE: [&str; 7] = [
    "enabled",
    "per_portal_acl",
    "rel_tgt_id",
    "redirect",
    "MaxSessions",
    "cpu_mask",
    "per_sess_dedicated_tgt_threads",
];

/// Initiator group attributes written with a plain value (SCST `ini_groups/<group>/...`). An empty value (for
/// `cpu_mask` also `0`) means "the target's setting"; sessions logging in from then on use them, those already
/// logged in keep their reactor.
pub const GROUP_WRITABLE: [&str; 2] = ["cpu_mask", "per_sess_dedicated_tgt_threads"];

/// The attributes of an initiator group's directory: `cpu_mask` and `per_sess_dedicated_tgt_threads` as they apply
/// to the group's sessions (the group's own, else the target's: like SCST, a group shows what it inherits); `key`
/// marks the group's own settings, the ones save-config writes.
fn group_attrs(t: &TargetConfig, g: &IniGroupConfig) -> Vec<Attr> {
    let mask = g.cpu_mask.as_ref().or(t.cpu_mask.as_ref());
    let dedicated = g.per_sess_dedicated_tgt_threads.unwrap_or(t.per_sess_dedicated_tgt_threads);
    vec![
        attr("cpu_mask", mask.map(|m| m.to_string()).unwrap_or_default(), g.cpu_mask.is_some(), true),
        attr(
            "per_sess_dedicated_tgt_threads",
            show("", &Value::Bool(dedicated)),
            g.per_sess_dedicated_tgt_threads.is_some(),
            true,
        ),
    ]
}

/// Set one attribute of an initiator group from text (empty or, for `cpu_mask`, `0`: the target's setting), with
/// the configuration's checks.
pub fn set_group_attr(g: &mut IniGroupConfig, name: &str, value: &str) -> Result<(), MgmtError> {
    if !GROUP_WRITABLE.contains(&name) {
        return Err(MgmtError::new(
            ErrorKind::Unsupported,
            format!("initiator group attributes: {}", GROUP_WRITABLE.join(", ")),
        )
        .attr(name.to_string()));
    }
    let mut v = json(&*g);
    let Some(obj) = v.as_object_mut() else {
        return Err(MgmtError::new(ErrorKind::Internal, "initiator group is not an object"));
    };
    let t = value.trim();
    if t.is_empty() || (name == "cpu_mask" && t == "0") {
        obj.remove(name);
    } else if name == "cpu_mask" {
        obj.insert(name.to_string(), Value::String(t.to_string()));
    } else {
        obj.insert(name.to_string(), scalar(t));
    }
    *g = serde_json::from_value(v).map_err(|e| MgmtError::invalid(e.to_string()).attr(name))?;
    Ok(())
}

/// The incoming CHAP accounts of a section as SCST names its attributes: the numbered `IncomingUser<n>` accounts
/// under their own names, the `IncomingUser` list under `IncomingUser`, `IncomingUser1`, ... (names a numbered
/// account holds are skipped).
fn incoming_user_attrs(list: &[ChapAccount], numbered: &[(&'static str, Option<&ChapAccount>)]) -> Vec<Attr> {
    let taken: Vec<&str> = numbered.iter().filter(|(_, a)| a.is_some()).map(|(k, _)| *k).collect();
    let mut names = (0..).map(|i| {
        if i == 0 {
            "IncomingUser".to_string()
        } else {
            format!("IncomingUser{i}")
        }
    });
    let mut out = Vec::new();
    for a in list {
        let name = names
            .by_ref()
            .find(|n| !taken.contains(&n.as_str()))
            .unwrap_or_default();
        out.push(attr(&name, chap_text(&json(a)), true, false));
    }
    for (k, a) in numbered {
        if let Some(a) = a {
            out.push(attr(k, chap_text(&json(a)), true, false));
        }
    }
    out
}

fn target_attrs(t: &TargetConfig, tid: Option<u32>) -> Vec<Attr> {
    let v = json(t);
    let d = json(&TargetConfig::new(t.name.clone()));
    let get = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    let differs = |k: &str| v.get(k) != d.get(k);
    let mut out = vec![
        attr("enabled", show("enabled", &get("enabled")), differs("enabled"), true),
        attr("tid", tid.map(|t| t.to_string()).unwrap_or_default(), false, false),
        match t.rel_tgt_id {
            Some(r) => attr("rel_tgt_id", r.to_string(), true, true),
            None => attr(
                "rel_tgt_id",
                tid.map(|t| t.to_string()).unwrap_or_default(),
                false,
                true,
            ),
        },
        attr(
            "per_portal_acl",
            show("", &Value::Bool(t.per_portal_acl)),
            t.per_portal_acl,
            true,
        ),
    ];
    for (i, p) in t.allowed_portals.iter().enumerate() {
        let name = if i == 0 {
            "allowed_portal".to_string()
        } else {
            format!("allowed_portal{i}")
        };
        out.push(attr(&name, p.to_string(), true, false));
    }
    out.push(attr(
        "redirect",
        t.redirect.as_ref().map(|r| r.to_string()).unwrap_or_default(),
        t.redirect.is_some(),
        true,
    ));
    out.push(attr(
        "MaxSessions",
        t.max_sessions.to_string(),
        t.max_sessions != 0,
        true,
    ));
    out.push(attr(
        "cpu_mask",
        t.cpu_mask.as_ref().map(|m| m.to_string()).unwrap_or_default(),
        t.cpu_mask.is_some(),
        true,
    ));
    out.push(attr(
        "per_sess_dedicated_tgt_threads",
        show("", &Value::Bool(t.per_sess_dedicated_tgt_threads)),
        t.per_sess_dedicated_tgt_threads,
        true,
    ));
    out.extend(incoming_user_attrs(&t.incoming_users, &t.numbered_incoming()));
    if let Some(u) = v.get("OutgoingUser") {
        out.push(attr("OutgoingUser", chap_text(u), true, false));
    }
    for k in TARGET_PARAMS {
        out.push(attr(k, show(k, &get(k)), differs(k), true));
    }
    out
}

/// Device attributes in SCST's names. Creation-time attributes are read-only; `size`/`size_mb` resize and
/// `resync_size` (write-only) re-reads a file's size; a `vcdrom`'s `filename` changes its medium; the attributes of
/// [`LIVE_DEVICE_ATTRS`] change at once (`threads_num` only for file and block devices; `read_only` and `removable`
/// not for a vcdrom, which always is both).
fn device_attrs(c: &Config, d: &DeviceConfig, m: &Manager) -> Vec<Attr> {
    let v = json(d);
    let def = json(&DeviceConfig::new(&d.name, d.handler));
    let state = m.backend().device_state(d);
    let configured = |k: &str| v.get(k).is_some_and(|x| !x.is_null()) && v.get(k) != def.get(k);
    let flag = |k: &str| show(k, v.get(k).unwrap_or(&Value::Bool(false)));
    let cdrom = d.handler == Handler::Vcdrom;
    let live = |k: &str| LIVE_DEVICE_ATTRS.contains(&k) && !(cdrom && matches!(k, "read_only" | "removable"));
    let ident = |k: &str, run: Option<String>| {
        let value = v
            .get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .or(run)
            .unwrap_or_default();
        attr(k, value, configured(k), live(k))
    };
    let size = state.as_ref().map(|s| s.size).or(d.size_bytes()).unwrap_or(0);
    let mut out = vec![attr("handler", d.handler.as_str(), false, false)];
    if d.handler.uses_filename() {
        out.push(attr(
            "filename",
            d.filename.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            d.filename.is_some(),
            cdrom,
        ));
    }
    let blocksize = if cdrom { state.as_ref().map_or(2048, |s| s.block_size) } else { d.blocksize.bytes() };
    out.push(attr("blocksize", blocksize.to_string(), configured("blocksize"), false));
    if !cdrom {
        out.push(attr("physical_blocksize", d.physical_block_bytes().to_string(), d.physical_blocksize.is_some(), false));
    }
    out.push(attr("size", size.to_string(), d.size.is_some(), !cdrom));
    out.push(attr("size_mb", (size >> 20).to_string(), d.size_mb.is_some(), !cdrom));
    for k in [
        "read_only",
        "nv_cache",
        "o_direct",
        "rotational",
        "write_through",
        "removable",
        "thin_provisioned",
    ] {
        out.push(attr(k, flag(k), configured(k), live(k)));
    }
    out.push(ident("t10_vend_id", state.as_ref().map(|s| s.t10_vend_id.clone())));
    out.push(ident("prod_id", state.as_ref().map(|s| s.prod_id.clone())));
    out.push(ident("prod_rev_lvl", state.as_ref().map(|s| s.prod_rev_lvl.clone())));
    out.push(ident("t10_dev_id", state.as_ref().map(|s| s.t10_dev_id.clone())));
    out.push(ident("usn", state.as_ref().map(|s| s.usn.clone())));
    // SCST's I/O threads of the device: the thread pool of a file or block device (one pool shared by every
    // initiator: threads_pool_type "shared"); RAM, null and CD-ROM devices do their I/O on the reactors.
    let threads = d.handler.needs_filename();
    out.push(attr(
        "threads_num",
        state.as_ref().map_or(0, |s| s.threads_num).to_string(),
        d.threads_num.is_some(),
        threads,
    ));
    out.push(attr("threads_pool_type", if threads { "shared" } else { "none" }, false, false));
    // SCSI peripheral device type: 0 disk, 5 CD-ROM.
    out.push(attr("type", if cdrom { "5" } else { "0" }, false, false));
    out.push(attr("exported", device_users(c, &d.name).join(" "), false, false));
    if d.handler.needs_filename() {
        out.push(attr("resync_size", "", false, true));
    }
    out
}

fn lun_node(path: String, l: &LunConfig) -> Node {
    Node {
        path,
        attributes: vec![
            attr("device", l.device.clone(), false, false),
            attr("read_only", show("", &Value::Bool(l.read_only)), l.read_only, false),
        ],
        children: Vec::new(),
    }
}

/// Session directory names: the initiator name, in per-portal mode (`per_portal_acl`) `name#portal_ip` as SCST
/// registers the initiator, with `.sid` appended when one name has several sessions.
pub fn session_names(sessions: &[SessionInfo], per_portal_acl: bool) -> Vec<String> {
    let base = |s: &SessionInfo| match (per_portal_acl, s.connections.first()) {
        (true, Some(c)) => format!("{}#{}", s.initiator_name, c.portal.ip()),
        _ => s.initiator_name.clone(),
    };
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for s in sessions {
        *count.entry(base(s)).or_default() += 1;
    }
    sessions
        .iter()
        .map(|s| {
            let b = base(s);
            if count[&b] > 1 {
                format!("{b}.{}", s.sid)
            } else {
                b
            }
        })
        .collect()
}

/// The thread id of each reactor (SCST's `thread_pid`), by reactor id; empty when the reactors do not answer.
fn reactor_tids(m: &Manager) -> BTreeMap<usize, u64> {
    m.backend()
        .dataplane_stats()
        .map(|s| s.reactors.iter().map(|r| (r.id, r.tid)).collect())
        .unwrap_or_default()
}

fn session_attrs(s: &SessionInfo, luns_link: &str, tids: &BTreeMap<usize, u64>) -> Vec<Attr> {
    // The reactor thread running the session's connection.
    let thread_pid = s
        .connections
        .iter()
        .filter_map(|c| tids.get(&c.reactor))
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = vec![
        attr("thread_pid", thread_pid, false, false),
        attr("initiator_name", s.initiator_name.clone(), false, false),
        attr("sid", s.sid.clone(), false, false),
        attr("reinstating", if s.reinstating { "1" } else { "0" }, false, false),
        attr("active_commands", s.active_commands.to_string(), false, false),
        attr("commands", s.commands.to_string(), false, false),
        attr("read_cmd_count", s.read_commands.to_string(), false, false),
        attr("write_cmd_count", s.write_commands.to_string(), false, false),
        attr("read_io_count_kb", (s.read_bytes >> 10).to_string(), false, false),
        attr("write_io_count_kb", (s.write_bytes >> 10).to_string(), false, false),
        attr("luns", luns_link, false, false),
        attr("force_close", "", false, true),
    ];
    for (k, v) in &s.params {
        out.push(attr(k, v.clone(), false, false));
    }
    out
}

fn sessions_of(m: &Manager, target: &str) -> Result<Vec<SessionInfo>, MgmtError> {
    Ok(m.backend()
        .sessions()?
        .into_iter()
        .filter(|s| s.target == target)
        .collect())
}

fn no_such(path: &[&str]) -> MgmtError {
    MgmtError::not_found("no such object or attribute").on(path.join("/"))
}

/// The directory at `path`, if it is one.
fn directory(m: &Manager, c: &Config, seg: &[&str]) -> Result<Option<Node>, MgmtError> {
    let path = seg.join("/");
    let node = |attributes: Vec<Attr>, children: Vec<String>| {
        Ok(Some(Node {
            path: path.clone(),
            attributes,
            children,
        }))
    };
    let backend = m.backend();
    match seg {
        [] => node(
            vec![
                attr("version", env!("CARGO_PKG_VERSION"), false, false),
                attr("trace_level", backend.trace_level(), false, true),
                // SCST's global threads: here the reactor threads, fixed while the target runs (reactors.count).
                attr("threads", c.reactors.reactor_count().to_string(), c.reactors != crate::config::ReactorsConfig::default(), false),
            ],
            ["devices", "handlers", "targets", "sgv"].map(String::from).to_vec(),
        ),
        ["devices"] => node(Vec::new(), c.devices.iter().map(|d| d.name.clone()).collect()),
        ["devices", d] => match c.device(d) {
            Some(dev) => node(device_attrs(c, dev, m), Vec::new()),
            None => Ok(None),
        },
        ["handlers"] => node(Vec::new(), HANDLERS.iter().map(|h| h.as_str().to_string()).collect()),
        ["handlers", h] => match HANDLERS.iter().find(|x| x.as_str() == *h) {
            Some(handler) => node(
                vec![
                    attr("type", if *handler == Handler::Vcdrom { "5" } else { "0" }, false, false),
                    attr("trace_level", backend.trace_level(), false, true),
                    attr(
                        "mgmt",
                        "add_device NAME [attribute=value; ...] | del_device NAME",
                        false,
                        true,
                    ),
                ],
                c.devices
                    .iter()
                    .filter(|d| d.handler == *handler)
                    .map(|d| d.name.clone())
                    .collect(),
            ),
            None => Ok(None),
        },
        ["handlers", h, d] => match c.device(d).filter(|x| x.handler.as_str() == *h) {
            Some(dev) => node(device_attrs(c, dev, m), Vec::new()),
            None => Ok(None),
        },
        ["sgv"] => {
            let p = backend.pool();
            let text = format!(
                "allocations {} frees {} cache_hits {} cache_misses {} large_allocations {} exhausted {} bytes_in_use {} high_water {} bytes_mapped {} bytes_cached {} thread_caches {}",
                p.allocations, p.frees, p.cache_hits, p.cache_misses, p.large_allocations, p.exhausted, p.bytes_in_use, p.high_water, p.bytes_mapped, p.bytes_cached, p.thread_caches
            );
            node(vec![attr("global_stats", text, false, false)], vec!["sgv".into()])
        }
        // SCST's per-pool statistics (sgv, sgv-clust, sgv-dma): polltgt has one pool, by size class.
        ["sgv", "sgv"] => {
            let p = backend.pool();
            let text = p
                .classes
                .iter()
                .map(|c| format!("{}: slabs {} free {} in_use {} cached {}", c.size, c.slabs, c.free, c.in_use, c.cached))
                .collect::<Vec<_>>()
                .join("; ");
            let max = p.max_bytes.map(|b| b.to_string()).unwrap_or_default();
            node(vec![attr("stats", text, false, false), attr("max_bytes", max, p.max_bytes.is_some(), false)], Vec::new())
        }
        ["targets"] => node(Vec::new(), vec!["iscsi".into()]),
        ["targets", "iscsi"] => {
            let v = json(&c.iscsi);
            let mut attrs = vec![
                attr(
                    "enabled",
                    show("", &Value::Bool(c.iscsi.enabled)),
                    !c.iscsi.enabled,
                    true,
                ),
                attr("open_state", "open", false, false),
                attr("version", env!("CARGO_PKG_VERSION"), false, false),
                attr("trace_level", backend.trace_level(), false, true),
            ];
            attrs.extend(incoming_user_attrs(
                &c.iscsi.incoming_users,
                &c.iscsi.numbered_incoming(),
            ));
            if let Some(u) = v.get("OutgoingUser") {
                attrs.push(attr("OutgoingUser", chap_text(u), true, false));
            }
            attrs.push(attr(
                "iSNSServer",
                c.iscsi.isns_server.as_ref().map(|s| s.to_string()).unwrap_or_default(),
                c.iscsi.isns_server.is_some(),
                true,
            ));
            let login_timeout = IscsiConfig::default().login_timeout;
            attrs.push(attr(
                "LoginTimeout",
                c.iscsi.login_timeout.to_string(),
                c.iscsi.login_timeout != login_timeout,
                true,
            ));
            attrs.push(attr(
                "mgmt",
                "add_target NAME | del_target NAME | add_attribute|del_attribute IncomingUser|OutgoingUser USER SECRET | \
                 add_target_attribute|del_target_attribute TARGET IncomingUser|OutgoingUser|allowed_portal VALUE",
                false,
                true,
            ));
            let mut children: Vec<String> = c.targets.iter().map(|t| t.name.to_string()).collect();
            children.push("portals".into());
            node(attrs, children)
        }
        ["targets", "iscsi", "portals"] => node(
            vec![attr("mgmt", "add ADDRESS[:PORT] [tpgt=N] | del ADDRESS[:PORT]", false, true)],
            c.portals.iter().map(|p| p.address.to_string()).collect(),
        ),
        ["targets", "iscsi", "portals", a] => match c.portals.iter().find(|p| p.address.to_string() == *a) {
            Some(p) => node(
                vec![
                    attr("address", p.address.to_string(), false, false),
                    attr("tpgt", p.tpgt.to_string(), p.tpgt != 1, false),
                ],
                Vec::new(),
            ),
            None => Ok(None),
        },
        ["targets", "iscsi", t, rest @ ..] => {
            let Some(tc) = c.target(t) else { return Ok(None) };
            target_directory(m, tc, rest, &path)
        }
        _ => Ok(None),
    }
}

fn target_directory(m: &Manager, t: &TargetConfig, rest: &[&str], path: &str) -> Result<Option<Node>, MgmtError> {
    let node = |attributes: Vec<Attr>, children: Vec<String>| {
        Ok(Some(Node {
            path: path.to_string(),
            attributes,
            children,
        }))
    };
    let lun_list = |luns: &[LunConfig]| luns.iter().map(|l| l.lun.to_string()).collect::<Vec<_>>();
    let luns_help = attr(
        "mgmt",
        "add DEVICE LUN [read_only=1] | replace DEVICE LUN [read_only=1] | del LUN | clear",
        false,
        true,
    );
    match rest {
        [] => node(
            target_attrs(t, m.backend().target_tid(t.name.as_str())),
            ["ini_groups", "luns", "sessions"].map(String::from).to_vec(),
        ),
        ["luns"] => node(vec![luns_help], lun_list(&t.luns)),
        ["luns", n] => match t.luns.iter().find(|l| l.lun.to_string() == *n) {
            Some(l) => Ok(Some(lun_node(path.to_string(), l))),
            None => Ok(None),
        },
        ["ini_groups"] => node(
            vec![attr("mgmt", "create GROUP | del GROUP", false, true)],
            t.ini_groups.iter().map(|g| g.name.clone()).collect(),
        ),
        ["ini_groups", g, more @ ..] => {
            let Some(grp) = t.group(g) else { return Ok(None) };
            match more {
                [] => node(group_attrs(t, grp), vec!["initiators".into(), "luns".into()]),
                ["initiators"] => node(
                    vec![attr(
                        "mgmt",
                        "add NAME | del NAME | move NAME GROUP | clear",
                        false,
                        true,
                    )],
                    grp.initiators.clone(),
                ),
                ["luns"] => node(vec![luns_help], lun_list(&grp.luns)),
                ["luns", n] => match grp.luns.iter().find(|l| l.lun.to_string() == *n) {
                    Some(l) => Ok(Some(lun_node(path.to_string(), l))),
                    None => Ok(None),
                },
                _ => Ok(None),
            }
        }
        ["sessions"] => {
            // SCST: the PIDs of the threads processing the target's sessions; here every reactor thread.
            let tids = reactor_tids(m).values().map(u64::to_string).collect::<Vec<_>>().join(" ");
            node(
                vec![attr("thread_pid", tids, false, false)],
                session_names(&sessions_of(m, t.name.as_str())?, t.per_portal_acl),
            )
        }
        ["sessions", s, more @ ..] => {
            let sessions = sessions_of(m, t.name.as_str())?;
            let names = session_names(&sessions, t.per_portal_acl);
            let Some(i) = names.iter().position(|n| n == s) else {
                return Ok(None);
            };
            let sess = &sessions[i];
            let link = match &sess.group {
                Some(g) => format!("../../ini_groups/{g}/luns"),
                None => "../../luns".to_string(),
            };
            match more {
                [] => node(
                    session_attrs(sess, &link, &reactor_tids(m)),
                    sess.connections.iter().map(|c| c.ip.ip().to_string()).collect(),
                ),
                [ip] => match sess.connections.iter().find(|c| c.ip.ip().to_string() == *ip) {
                    Some(conn) => node(
                        vec![
                            attr("cid", conn.cid.map(|c| c.to_string()).unwrap_or_default(), false, false),
                            attr("ip", conn.ip.ip().to_string(), false, false),
                            attr("state", conn.state.clone(), false, false),
                        ],
                        Vec::new(),
                    ),
                    None => Ok(None),
                },
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// What `path` names: a directory, or an attribute of one.
pub fn get(m: &Manager, path: &str) -> Result<Entry, MgmtError> {
    let seg = segments(path);
    let c = m.config();
    if let Some(n) = directory(m, &c, &seg)? {
        return Ok(Entry::Directory(n));
    }
    if let Some((last, parent)) = seg.split_last() {
        if let Some(n) = directory(m, &c, parent)? {
            if let Some(a) = n.attr(last) {
                return Ok(Entry::Attribute {
                    path: seg.join("/"),
                    attribute: a.clone(),
                });
            }
        }
    }
    Err(no_such(&seg))
}

/// The whole tree below `path` (directories only, depth first), for dumps and comparisons.
pub fn walk(m: &Manager, path: &str) -> Result<Vec<Node>, MgmtError> {
    let mut out = Vec::new();
    let mut todo = vec![segments(path).join("/")];
    while let Some(p) = todo.pop() {
        if let Entry::Directory(n) = get(m, &p)? {
            for ch in n.children.iter().rev() {
                let child = if p.is_empty() { ch.clone() } else { format!("{p}/{ch}") };
                // Initiator patterns are entries, not directories.
                if !p.ends_with("/initiators") {
                    todo.push(child);
                }
            }
            out.push(n);
        }
    }
    Ok(out)
}

/// Parse an attribute value the way the configuration file would read it (YAML scalar): numbers, Yes/No, lists.
fn scalar(text: &str) -> Value {
    let t = text.trim();
    if t.is_empty() {
        return Value::Null;
    }
    serde_yaml_ng::from_str::<Value>(t).unwrap_or_else(|_| Value::String(t.to_string()))
}

/// Set one attribute of a target from text, with the configuration's checks.
pub fn set_target_attr(t: &mut TargetConfig, name: &str, value: &str) -> Result<(), MgmtError> {
    let mut v = json(&*t);
    let Some(obj) = v.as_object_mut() else {
        return Err(MgmtError::new(ErrorKind::Internal, "target is not an object"));
    };
    let new = match name {
        "rel_tgt_id" | "cpu_mask" if value.trim().is_empty() || value.trim() == "0" => Value::Null,
        "HeaderDigest" | "DataDigest" | "redirect" | "cpu_mask" => Value::String(value.trim().to_string()),
        _ => scalar(value),
    };
    obj.insert(name.to_string(), new);
    let default_first_burst = TargetConfig::new(t.name.clone()).first_burst_length;
    *t = serde_json::from_value(v).map_err(|e| MgmtError::invalid(e.to_string()).attr(name))?;
    // A FirstBurstLength left at its default follows a lower MaxBurstLength (RFC 7143 §13.14: it may not exceed
    // it), so that SCST scripts which lower MaxBurstLength before they set FirstBurstLength (the iSCSI-SCST
    // README's advanced sample) run line for line. An explicitly set FirstBurstLength above it stays an error.
    if name == "MaxBurstLength"
        && t.first_burst_length == default_first_burst
        && t.first_burst_length > t.max_burst_length
    {
        t.first_burst_length = t.max_burst_length;
    }
    Ok(())
}

/// Write an attribute (an SCST sysfs write of a plain value). Management commands (`.../mgmt`) are
/// [`crate::scst::execute`]'s.
pub fn set(m: &Manager, path: &str, value: &str) -> Result<(), MgmtError> {
    let seg = segments(path);
    let at = |e: MgmtError, a: &str| e.attr(a.to_string()).on(seg[..seg.len().saturating_sub(1)].join("/"));
    match seg.as_slice() {
        ["trace_level"] | ["targets", "iscsi", "trace_level"] | ["handlers", _, "trace_level"] => {
            Ok(m.backend().set_trace_level(value.trim()).map_err(|e| at(e.into(), "trace_level"))?)
        }
        ["threads"] => Err(MgmtError::new(
            ErrorKind::Unsupported,
            "the reactor threads (reactors.count / reactors.cpu_mask) are started once; edit the configuration \
             file and restart",
        )
        .attr("threads")),
        ["targets", "iscsi", "enabled"] => {
            let on = parse_flag(value).map_err(|e| at(e, "enabled"))?;
            m.edit(|c| {
                c.iscsi.enabled = on;
                Ok(())
            })
            .map_err(|e| at(e, "enabled"))
        }
        ["targets", "iscsi", "iSNSServer"] => {
            // Empty: no iSNS server (deregister). The running target starts, replaces or stops its iSNS client.
            let server = match value.trim() {
                "" => None,
                v => Some(v.parse::<IsnsServer>().map_err(|e| at(MgmtError::invalid(e.0), "iSNSServer"))?),
            };
            m.edit(|c| {
                c.iscsi.isns_server = server;
                Ok(())
            })
            .map_err(|e| at(e, "iSNSServer"))
        }
        ["targets", "iscsi", "LoginTimeout"] => {
            let secs = parse_login_timeout(value).map_err(|e| at(e, "LoginTimeout"))?;
            m.edit(|c| {
                c.iscsi.login_timeout = secs;
                Ok(())
            })
            .map_err(|e| at(e, "LoginTimeout"))
        }
        ["targets", "iscsi", t, a] if TARGET_PARAMS.contains(a) || TARGET_WRITABLE.contains(a) => {
            m.edit_target(t, |tc| set_target_attr(tc, a, value)).map_err(|e| e.attr(a.to_string()))
        }
        ["targets", "iscsi", t, "ini_groups", g, a] if GROUP_WRITABLE.contains(a) => {
            let here = format!("{}/ini_groups/{g}", target_path(t));
            m.edit_target(t, |tc| {
                let grp = tc
                    .ini_groups
                    .iter_mut()
                    .find(|x| x.name == *g)
                    .ok_or_else(|| MgmtError::not_found(format!("no initiator group {g:?}")).on(here.clone()))?;
                set_group_attr(grp, a, value).map_err(|e| e.on(here.clone()))
            })
            .map_err(|e| e.attr(a.to_string()))
        }
        ["targets", "iscsi", t, "sessions", s, "force_close"] => {
            let sessions = sessions_of(m, t)?;
            let per_portal = m.config().target(t).is_some_and(|x| x.per_portal_acl);
            let names = session_names(&sessions, per_portal);
            let i = names.iter().position(|n| n == s).ok_or_else(|| no_such(&seg))?;
            m.force_close(&sessions[i].sid).map_err(|e| e.on(seg[..seg.len() - 1].join("/")))
        }
        ["devices", d, a] | ["handlers", _, d, a] => set_device_attr(m, d, a, value),
        _ => match get(m, path) {
            Ok(Entry::Attribute { attribute, .. }) => Err(MgmtError::new(
                ErrorKind::Unsupported,
                if attribute.name.starts_with("IncomingUser")
                    || attribute.name.starts_with("OutgoingUser")
                    || attribute.name.starts_with("allowed_portal")
                {
                    "written with add_target_attribute/del_target_attribute (or add_attribute) through targets/iscsi/mgmt"
                } else {
                    "read-only attribute"
                },
            )
            .attr(attribute.name)
            .on(seg[..seg.len() - 1].join("/"))),
            Ok(Entry::Directory(_)) => Err(MgmtError::invalid("a directory cannot be written").on(seg.join("/"))),
            Err(e) => Err(e),
        },
    }
}

fn set_device_attr(m: &Manager, d: &str, a: &str, value: &str) -> Result<(), MgmtError> {
    let here = |e: MgmtError| e.attr(a.to_string()).on(device_path(d));
    match a {
        "size" => {
            let size: Size = value
                .trim()
                .parse()
                .map_err(|e: crate::values::InvalidValue| here(MgmtError::invalid(e.0)))?;
            m.resize_device(d, size).map_err(here)
        }
        "size_mb" => {
            let mb: u64 = value
                .trim()
                .parse()
                .map_err(|_| here(MgmtError::invalid(format!("{value:?} is not a number of MiB"))))?;
            let size = mb
                .checked_mul(1 << 20)
                .and_then(|b| Size::from_bytes(b).ok())
                .ok_or_else(|| here(MgmtError::invalid("size out of range")))?;
            m.resize_device(d, size).map_err(here)
        }
        "resync_size" => m.resync_device(d).map(drop).map_err(here),
        a if LIVE_DEVICE_ATTRS.contains(&a) => {
            let c = m.config();
            let dev = c.device(d).ok_or_else(|| here(MgmtError::not_found("no such device")))?;
            if !device_attrs(&c, dev, m).iter().any(|x| x.name == a && x.writable) {
                return Err(here(MgmtError::new(
                    ErrorKind::Unsupported,
                    format!("not writable for a {} device", dev.handler.as_str()),
                )));
            }
            m.set_device_attr(d, a, value.trim_end_matches('\n'))
        }
        // A vcdrom's medium: a path loads it, an empty value ejects (SCST vcdrom).
        "filename" if m.config().device(d).is_some_and(|x| x.handler == Handler::Vcdrom) => {
            let v = value.trim();
            m.change_medium(d, (!v.is_empty()).then(|| std::path::PathBuf::from(v))).map_err(here)
        }
        _ => {
            let c = m.config();
            let dev = c
                .device(d)
                .ok_or_else(|| here(MgmtError::not_found("no such device")))?;
            let attrs = device_attrs(&c, dev, m);
            if attrs.iter().any(|x| x.name == a) {
                Err(here(MgmtError::new(
                    ErrorKind::Unsupported,
                    "set when the device is created (add_device NAME attribute=value) and fixed afterwards; delete \
                     the device and add it again to change it",
                )))
            } else {
                Err(here(MgmtError::not_found("no such attribute")))
            }
        }
    }
}

/// SCST's 1/0 (and yes/no, true/false).
pub fn parse_flag(v: &str) -> Result<bool, MgmtError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(MgmtError::invalid(format!("{v:?} is not 1 or 0"))),
    }
}

/// The driver's `LoginTimeout`: whole seconds, 1..3600.
pub fn parse_login_timeout(v: &str) -> Result<u32, MgmtError> {
    match v.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_LOGIN_TIMEOUT).contains(&u64::from(n)) => Ok(n),
        _ => Err(MgmtError::invalid(format!("{v:?} is not a number of seconds in 1..{MAX_LOGIN_TIMEOUT}"))),
    }
}

/// A target's configuration object plus run-time facts, for `iscsi_get_target_nodes`.
pub fn target_json(m: &Manager, t: &TargetConfig, sessions: &[SessionInfo]) -> Value {
    let mut v = json(t);
    if let Some(o) = v.as_object_mut() {
        o.insert("tid".into(), json(&m.backend().target_tid(t.name.as_str())));
        o.insert(
            "sessions".into(),
            json(&sessions.iter().filter(|s| s.target == t.name.as_str()).count()),
        );
        o.insert("path".into(), Value::String(target_path(t.name.as_str())));
    }
    v
}

/// A device's configuration object plus run-time facts, for `bdev_get_bdevs`.
pub fn device_json(m: &Manager, c: &Config, d: &DeviceConfig) -> Value {
    let mut v = json(d);
    if let Some(o) = v.as_object_mut() {
        if let Some(s) = m.backend().device_state(d) {
            o.insert("state".into(), json(&s));
        }
        o.insert("exported".into(), json(&device_users(c, &d.name)));
    }
    v
}
