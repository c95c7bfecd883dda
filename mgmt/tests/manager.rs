//! The management library without a dataplane: the object tree (paths, attributes, `[key]` marks), edits that are
//! validated and applied all-or-nothing, SCST command strings, and the JSON-RPC layer, over a recording backend.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use polltgt_mgmt::backend::*;
use polltgt_mgmt::tree::{self, Entry};
use polltgt_mgmt::{scst, Config, DeviceConfig, IscsiConfig, Manager, TargetConfig};
use serde_json::{json, Value};

#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
    fail_create: Mutex<bool>,
    sessions: Mutex<Vec<SessionInfo>>,
}

impl Fake {
    fn calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
    fn log(&self, s: String) {
        self.calls.lock().unwrap().push(s);
    }
}

impl Backend for Fake {
    fn create_device(&self, dev: &DeviceConfig) -> Result<(), BackendError> {
        if *self.fail_create.lock().unwrap() {
            return Err(BackendError::new(ErrorKind::Io, "cannot open the backing file"));
        }
        self.log(format!("create_device {}", dev.name));
        Ok(())
    }
    fn delete_device(&self, name: &str) -> Result<(), BackendError> {
        self.log(format!("delete_device {name}"));
        Ok(())
    }
    fn resize_device(&self, dev: &DeviceConfig, size: Option<u64>) -> Result<u64, BackendError> {
        self.log(format!("resize_device {} {size:?}", dev.name));
        Ok(size.unwrap_or(4096))
    }
    fn change_medium(&self, dev: &DeviceConfig) -> Result<(), BackendError> {
        if dev.filename.as_deref() == Some(std::path::Path::new("/locked.iso")) {
            return Err(BackendError::new(ErrorKind::Busy, "an initiator prevents medium removal"));
        }
        self.log(format!("change_medium {} {:?}", dev.name, dev.filename));
        Ok(())
    }
    fn device_state(&self, dev: &DeviceConfig) -> Option<DeviceState> {
        Some(DeviceState {
            size: dev.size_bytes().unwrap_or(1 << 20),
            block_size: dev.blocksize.bytes(),
            t10_vend_id: "POLLTGT".into(),
            prod_id: dev.name.clone(),
            prod_rev_lvl: "0100".into(),
            usn: "1234".into(),
            t10_dev_id: dev.name.clone(),
            engine: "null".into(),
            threads_num: 0,
        })
    }
    fn apply_target(&self, target: &TargetConfig) -> Result<(), BackendError> {
        self.log(format!("apply_target {}", target.name));
        Ok(())
    }
    fn delete_target(&self, name: &str) -> Result<usize, BackendError> {
        self.log(format!("delete_target {name}"));
        Ok(0)
    }
    fn apply_driver(&self, iscsi: &IscsiConfig) -> Result<(), BackendError> {
        self.log(format!("apply_driver enabled={}", iscsi.enabled));
        Ok(())
    }
    fn sessions(&self) -> Result<Vec<SessionInfo>, BackendError> {
        Ok(self.sessions.lock().unwrap().clone())
    }
    fn connections(&self) -> Result<Vec<ConnectionInfo>, BackendError> {
        Ok(Vec::new())
    }
    fn force_close(&self, sid: u64) -> Result<(), BackendError> {
        self.log(format!("force_close {sid:x}"));
        Ok(())
    }
    fn dataplane_stats(&self) -> Result<DataplaneStats, BackendError> {
        Ok(DataplaneStats { reactors: Vec::new(), pool: self.pool(), datapath: DataPathInfo::default() })
    }
    fn pool(&self) -> PoolInfo {
        PoolInfo::default()
    }
    fn lun_stats(&self) -> Vec<LunStatsInfo> {
        Vec::new()
    }
    fn target_tid(&self, _name: &str) -> Option<u32> {
        Some(1)
    }
    fn auth_failures(&self) -> u64 {
        0
    }
    fn portals(&self) -> Vec<(SocketAddr, u16)> {
        Vec::new()
    }
    fn update_device(&self, old: &DeviceConfig, new: &DeviceConfig) -> Result<(), BackendError> {
        if new.threads_num == Some(99) {
            return Err(BackendError::new(ErrorKind::Unsupported, "too many"));
        }
        self.log(format!("update_device {} read_only={}->{} usn={:?}", new.name, old.read_only, new.read_only, new.usn));
        Ok(())
    }
    fn add_portal(&self, portal: &polltgt_mgmt::PortalConfig) -> Result<SocketAddr, BackendError> {
        self.log(format!("add_portal {} {}", portal.address, portal.tpgt));
        let mut a = portal.address;
        if a.port() == 0 {
            a.set_port(40000);
        }
        Ok(a)
    }
    fn remove_portal(&self, addr: SocketAddr) -> Result<usize, BackendError> {
        self.log(format!("remove_portal {addr}"));
        Ok(1)
    }
    fn trace_level(&self) -> String {
        "info".into()
    }
    fn set_trace_level(&self, _level: &str) -> Result<(), BackendError> {
        Ok(())
    }
}

const T: &str = "iqn.2026-11.io.polltgt:t";

fn setup() -> (Arc<Fake>, Manager) {
    let cfg = Config::from_yaml_str(
        &format!(
            "devices:\n  - {{ name: d0, handler: vdisk_nullio, size: 1G }}\n  - {{ name: d1, handler: ram, size: 64M, rotational: false }}\n\
             targets:\n  - name: {T}\n    luns: [ {{ lun: 0, device: d0 }} ]\n    MaxBurstLength: 131072\n    FirstBurstLength: 65536\n"
        ),
        "t.yaml",
    )
    .unwrap();
    let fake = Arc::new(Fake::default());
    let m = Manager::new(cfg, fake.clone(), None);
    (fake, m)
}

fn node(m: &Manager, path: &str) -> polltgt_mgmt::tree::Node {
    match tree::get(m, path).unwrap() {
        Entry::Directory(n) => n,
        other => panic!("{path} is not a directory: {other:?}"),
    }
}

#[test]
fn the_tree_has_scst_layout_and_marks_non_default_attributes() {
    let (_f, m) = setup();
    assert_eq!(node(&m, "").children, vec!["devices", "handlers", "targets", "sgv"]);
    assert_eq!(node(&m, "/sys/kernel/scst_tgt/devices").children, vec!["d0", "d1"]);
    assert_eq!(node(&m, "handlers/vdisk_nullio").children, vec!["d0"]);
    assert_eq!(node(&m, "targets/iscsi").children, vec![T, "portals"]);
    // SCST's root threads (the reactors, read-only), the pool's statistics, a handler's trace_level.
    let root = node(&m, "");
    assert_eq!(root.attr("threads").map(|a| (a.value.as_str(), a.writable)), Some(("1", false)));
    assert_eq!(node(&m, "sgv").children, vec!["sgv"]);
    assert!(node(&m, "sgv/sgv").attr("stats").is_some());
    assert!(node(&m, "handlers/vdisk_fileio").attr("trace_level").is_some_and(|a| a.writable));
    assert_eq!(
        node(&m, &format!("targets/iscsi/{T}")).children,
        vec!["ini_groups", "luns", "sessions"]
    );
    let t = node(&m, &format!("targets/iscsi/{T}"));
    let mbl = t.attr("MaxBurstLength").unwrap();
    assert_eq!((mbl.value.as_str(), mbl.key, mbl.writable), ("131072", true, true));
    let imm = t.attr("ImmediateData").unwrap();
    assert_eq!((imm.value.as_str(), imm.key), ("Yes", false));
    let d1 = node(&m, "devices/d1");
    let rot = d1.attr("rotational").unwrap();
    assert_eq!((rot.value.as_str(), rot.key, rot.writable), ("0", true, true));
    assert_eq!(
        d1.attr("size").map(|a| (a.value.as_str(), a.key)),
        Some(("67108864", true))
    );
    assert_eq!(d1.attr("size_mb").map(|a| a.value.as_str()), Some("64"));
    assert_eq!(
        node(&m, "devices/d0").attr("exported").unwrap().value,
        format!("targets/iscsi/{T}/luns/0")
    );
    let lun = node(&m, &format!("targets/iscsi/{T}/luns/0"));
    assert_eq!(lun.attr("device").unwrap().value, "d0");
    match tree::get(&m, &format!("targets/iscsi/{T}/QueuedCommands")).unwrap() {
        Entry::Attribute { attribute, .. } => assert_eq!(attribute.value, "32"),
        other => panic!("{other:?}"),
    }
    let e = tree::get(&m, "targets/iscsi/iqn.2026-11.io.x:nope").unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    let all = tree::walk(&m, "").unwrap();
    assert!(
        all.iter().any(|n| n.path == format!("targets/iscsi/{T}/luns/0")),
        "{all:?}"
    );
}

#[test]
fn edits_are_validated_applied_and_committed_together() {
    let (f, m) = setup();
    // Only what changed is applied.
    tree::set(&m, &format!("targets/iscsi/{T}/QueuedCommands"), "64").unwrap();
    assert_eq!(f.calls(), vec![format!("apply_target {T}")]);
    assert_eq!(m.config().targets[0].queued_commands, 64);
    // A rule violation names the object and attribute and changes nothing.
    let e = tree::set(&m, &format!("targets/iscsi/{T}/FirstBurstLength"), "262144").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(e.object.as_deref(), Some(&*format!("targets/iscsi/{T}")));
    assert_eq!(e.attribute.as_deref(), Some("FirstBurstLength"));
    assert!(f.calls().is_empty());
    assert_eq!(m.config().targets[0].first_burst_length, 65536);
    // A syntax error in the value: the attribute's own message.
    let e = tree::set(&m, &format!("targets/iscsi/{T}/InitialR2T"), "maybe").unwrap_err();
    assert!(
        e.to_string().contains("InitialR2T") && e.message.contains("maybe"),
        "{e}"
    );
    // The backend refusing leaves the configuration unchanged.
    *f.fail_create.lock().unwrap() = true;
    let e = m
        .add_device(DeviceConfig::new("d9", polltgt_mgmt::Handler::Ram))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid, "no size: refused before the backend: {e}");
    let e = scst::write(
        &m,
        "/sys/kernel/scst_tgt/handlers/vdisk_nullio/mgmt",
        "add_device d9 size_mb=16",
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io);
    assert_eq!(e.object.as_deref(), Some("devices/d9"));
    assert!(m.config().device("d9").is_none());
    *f.fail_create.lock().unwrap() = false;
    // Creation-time attributes are read-only; size resizes.
    let e = tree::set(&m, "devices/d0/blocksize", "4096").unwrap_err();
    assert_eq!(
        (e.kind, e.attribute.as_deref()),
        (ErrorKind::Unsupported, Some("blocksize"))
    );
    tree::set(&m, "devices/d0/size", "2G").unwrap();
    assert_eq!(f.calls(), vec![format!("resize_device d0 Some({})", 2u64 << 30)]);
    // Runtime-only sections cannot change live.
    let e = m.edit(|c| {
        c.reactors.count = Some(2);
        Ok(())
    });
    assert_eq!(e.unwrap_err().kind, ErrorKind::Unsupported);
}

#[test]
fn in_use_devices_and_busy_targets_are_protected_unless_forced() {
    let (f, m) = setup();
    scst::execute(&m, &format!("targets/iscsi/{T}/ini_groups"), "create g").unwrap();
    scst::execute(
        &m,
        &format!("targets/iscsi/{T}/ini_groups/g/luns"),
        "add d1 4 read_only=1",
    )
    .unwrap();
    f.calls();
    let e = m.delete_device("d1", false).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Busy);
    assert!(
        e.message.contains(&format!("targets/iscsi/{T}/ini_groups/g/luns/4")),
        "{e}"
    );
    assert!(f.calls().is_empty());
    m.delete_device("d1", true).unwrap();
    assert_eq!(
        f.calls(),
        vec![format!("apply_target {T}"), "delete_device d1".to_string()]
    );
    assert!(m.config().targets[0].ini_groups[0].luns.is_empty());

    // A session without connections (the tree lists it; force_close needs none).
    let session =
        SessionInfo { connections: Vec::new(), ..session_on("iqn.2026-11.io.x:i", "0000000000000001", "127.0.0.1:3260") };
    f.sessions.lock().unwrap().push(session);
    let e = m.delete_target(T, false).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Busy);
    // Sessions in the tree; force_close by the session directory.
    assert_eq!(
        node(&m, &format!("targets/iscsi/{T}/sessions")).children,
        vec!["iqn.2026-11.io.x:i"]
    );
    tree::set(
        &m,
        &format!("targets/iscsi/{T}/sessions/iqn.2026-11.io.x:i/force_close"),
        "1",
    )
    .unwrap();
    assert_eq!(f.calls(), vec!["force_close 1".to_string()]);
    m.delete_target(T, true).unwrap();
    assert_eq!(f.calls(), vec![format!("delete_target {T}")]);
}

#[test]
fn scst_management_strings_map_to_the_same_calls() {
    let (f, m) = setup();
    let w = |path: &str, v: &str| scst::write(&m, path, v);
    w(
        "/sys/kernel/scst_tgt/targets/iscsi/mgmt",
        "add_target iqn.2006-10.net.vlnb:tgt1",
    )
    .unwrap();
    w(
        "/sys/kernel/scst_tgt/targets/iscsi/mgmt",
        "add_target_attribute iqn.2006-10.net.vlnb:tgt1 IncomingUser1 joe2 12charsecret2",
    )
    .unwrap();
    w(
        "/sys/kernel/scst_tgt/targets/iscsi/mgmt",
        "add_target_attribute iqn.2006-10.net.vlnb:tgt1 allowed_portal 10.170.7?.2",
    )
    .unwrap();
    w(
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt1/HeaderDigest",
        "CRC32C,None",
    )
    .unwrap();
    w(
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt1/luns/mgmt",
        "add d0 26",
    )
    .unwrap();
    w(
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt1/ini_groups/mgmt",
        "create special_ini",
    )
    .unwrap();
    w(
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt1/ini_groups/special_ini/luns/mgmt",
        "add d1 0 read_only=1",
    )
    .unwrap();
    w(
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt1/ini_groups/special_ini/initiators/mgmt",
        "add iqn.2005-03.org.open-iscsi:cacdcd2520",
    )
    .unwrap();
    w(
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt1/enabled",
        "1",
    )
    .unwrap();
    w("/sys/kernel/scst_tgt/targets/iscsi/enabled", "1").unwrap();
    let c = m.config();
    let t = c.target("iqn.2006-10.net.vlnb:tgt1").unwrap();
    assert!(t.enabled);
    assert_eq!(t.incoming_user1.as_ref().map(|a| a.user.as_str()), Some("joe2"), "IncomingUser1 as SCST lists it");
    assert_eq!(
        t.allowed_portals.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        vec!["10.170.7?.2"]
    );
    assert_eq!(t.header_digest.to_string(), "CRC32C,None");
    assert_eq!(t.luns[0].lun, 26);
    assert!(t.ini_groups[0].luns[0].read_only);
    assert_eq!(
        t.ini_groups[0].initiators,
        vec!["iqn.2005-03.org.open-iscsi:cacdcd2520"]
    );
    assert!(
        f.calls().iter().all(|c| c.starts_with("apply_target")),
        "the driver did not change"
    );
    // Errors name the mgmt file and say what is expected.
    let e = w(
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt1/luns/mgmt",
        "add d0",
    )
    .unwrap_err();
    assert!(e.to_string().contains("luns/mgmt: expected: add DEVICE LUN"), "{e}");
    let e = w(
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt1/luns/mgmt",
        "add nodev 3",
    )
    .unwrap_err();
    assert!(e.to_string().contains("nodev"), "{e}");
    let e = w(
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt1/ini_groups/special_ini/initiators/mgmt",
        "add bad name",
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    let e = w(
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt1/IncomingUser1",
        "x y",
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unsupported);
    // redirect and MaxSessions: SCST target attributes, written as sysfs files (or set at add_target).
    w(
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt1/redirect",
        "10.0.0.1 temp",
    )
    .unwrap();
    w(
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt1/MaxSessions",
        "2",
    )
    .unwrap();
    let t = m.config().target("iqn.2006-10.net.vlnb:tgt1").unwrap().clone();
    assert_eq!(t.redirect.map(|r| r.to_string()).as_deref(), Some("10.0.0.1:3260 temp"));
    assert_eq!(t.max_sessions, 2);
    let e = w(
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt1/redirect",
        "10.0.0.1",
    )
    .unwrap_err();
    assert_eq!((e.kind, e.attribute.as_deref()), (ErrorKind::Invalid, Some("redirect")));
    let e = w(
        "/sys/kernel/scst_tgt/targets/iscsi/mgmt",
        "add_target_attribute iqn.2006-10.net.vlnb:tgt1 no_such_attr 1",
    )
    .unwrap_err();
    assert_eq!(
        (e.kind, e.attribute.as_deref()),
        (ErrorKind::Unsupported, Some("no_such_attr"))
    );
}

#[test]
fn json_rpc_requests_notifications_batches_and_errors() {
    let (_f, m) = setup();
    let ok = polltgt_mgmt::rpc::handle(
        &m,
        json!({ "jsonrpc": "2.0", "id": 7, "method": "bdev_get_bdevs", "params": { "name": "d0" } }),
    )
    .unwrap();
    assert_eq!(ok["id"], 7);
    assert_eq!(ok["result"][0]["name"], "d0");
    assert_eq!(ok["result"][0]["state"]["size"], 1u64 << 30);
    assert!(polltgt_mgmt::rpc::handle(&m, json!({ "jsonrpc": "2.0", "method": "rpc_get_methods" })).is_none());
    let r = polltgt_mgmt::rpc::handle(&m, json!([{ "jsonrpc": "2.0", "method": "x" }])).map(|v| v.to_string());
    assert_eq!(r, None, "a batch of notifications has no answer");
    let e = polltgt_mgmt::rpc::handle(&m, json!({ "jsonrpc": "2.0", "id": 1, "method": "iscsi_delete_target_node", "params": { "name": "iqn.2026-11.io.x:none" } })).unwrap();
    assert_eq!(e["error"]["code"], -2);
    assert_eq!(e["error"]["data"]["object"], "targets/iscsi/iqn.2026-11.io.x:none");
    let y = polltgt_mgmt::rpc::handle(
        &m,
        json!({ "jsonrpc": "2.0", "id": 2, "method": "framework_get_config", "params": { "format": "yaml" } }),
    )
    .unwrap();
    let yaml = y["result"].as_str().unwrap();
    assert!(
        yaml.contains("MaxBurstLength: 131072") && !yaml.contains("ImmediateData"),
        "{yaml}"
    );
    assert_eq!(Config::from_yaml_str(yaml, "saved").unwrap(), m.config());
    let cfg: Value = polltgt_mgmt::rpc::handle(
        &m,
        json!({ "jsonrpc": "2.0", "id": 3, "method": "framework_get_config" }),
    )
    .unwrap();
    assert_eq!(
        serde_json::from_value::<Config>(cfg["result"].clone()).unwrap(),
        m.config()
    );
    let e = polltgt_mgmt::rpc::handle(
        &m,
        json!({ "jsonrpc": "2.0", "id": 4, "method": "framework_save_config" }),
    )
    .unwrap();
    assert_eq!(e["error"]["code"], -22, "no file to write back to: {e}");
}

#[test]
fn protocol_attributes_are_in_the_tree_settable_and_saved() {
    let (f, m) = setup();
    let t = node(&m, &format!("targets/iscsi/{T}"));
    let a = |n: &polltgt_mgmt::tree::Node, name: &str| n.attr(name).cloned().unwrap_or_else(|| panic!("no {name}"));
    assert_eq!(
        (
            a(&t, "redirect").value.as_str(),
            a(&t, "redirect").key,
            a(&t, "redirect").writable
        ),
        ("", false, true)
    );
    assert_eq!(
        (a(&t, "MaxSessions").value.as_str(), a(&t, "MaxSessions").key),
        ("0", false)
    );
    let driver = node(&m, "targets/iscsi");
    assert_eq!(
        (
            a(&driver, "iSNSServer").value.as_str(),
            a(&driver, "iSNSServer").writable
        ),
        ("", true)
    );
    f.calls();

    // Target attributes: plain writes, checked like the file, applied to the running target.
    tree::set(&m, &format!("targets/iscsi/{T}/redirect"), "[fd00::2]:3261 perm").unwrap();
    tree::set(&m, &format!("targets/iscsi/{T}/MaxSessions"), "3").unwrap();
    assert_eq!(
        f.calls(),
        vec![format!("apply_target {T}"), format!("apply_target {T}")]
    );
    let e = tree::set(&m, &format!("targets/iscsi/{T}/MaxSessions"), "70000").unwrap_err();
    assert_eq!(
        (e.kind, e.attribute.as_deref()),
        (ErrorKind::Invalid, Some("MaxSessions"))
    );
    let t = node(&m, &format!("targets/iscsi/{T}"));
    assert_eq!(
        (a(&t, "redirect").value.as_str(), a(&t, "redirect").key),
        ("[fd00::2]:3261 perm", true)
    );
    assert_eq!(
        (a(&t, "MaxSessions").value.as_str(), a(&t, "MaxSessions").key),
        ("3", true)
    );

    // The driver's iSNSServer: set, shown, refused when malformed, cleared.
    tree::set(&m, "targets/iscsi/iSNSServer", "192.0.2.16 AccessControl").unwrap();
    assert_eq!(f.calls(), vec!["apply_driver enabled=true".to_string()]);
    assert_eq!(
        a(&node(&m, "targets/iscsi"), "iSNSServer").value,
        "192.0.2.16:3205 AccessControl"
    );
    let e = tree::set(&m, "targets/iscsi/iSNSServer", "isns:99999").unwrap_err();
    assert_eq!(
        (e.kind, e.attribute.as_deref()),
        (ErrorKind::Invalid, Some("iSNSServer"))
    );

    // The driver's LoginTimeout: default 30 (not marked), set, shown and marked, refused out of range.
    let login = a(&node(&m, "targets/iscsi"), "LoginTimeout");
    assert_eq!((login.value.as_str(), login.key, login.writable), ("30", false, true));
    tree::set(&m, "targets/iscsi/LoginTimeout", "5").unwrap();
    assert_eq!(m.config().iscsi.login_timeout, 5);
    let login = a(&node(&m, "targets/iscsi"), "LoginTimeout");
    assert_eq!((login.value.as_str(), login.key), ("5", true));
    for bad in ["0", "3601", "soon"] {
        let e = tree::set(&m, "targets/iscsi/LoginTimeout", bad).unwrap_err();
        assert_eq!((e.kind, e.attribute.as_deref()), (ErrorKind::Invalid, Some("LoginTimeout")), "{bad}");
    }
    assert_eq!(m.config().iscsi.login_timeout, 5, "a refused value changes nothing");

    // Numbered accounts keep their names; the list takes the free ones; deleting by user finds either.
    m.edit_target(T, |t| {
        t.incoming_user1 = Some(polltgt_mgmt::ChapAccount::new("one", "12charsecret1"));
        Ok(())
    })
    .unwrap();
    let w = |v: &str| scst::write(&m, "/sys/kernel/scst_tgt/targets/iscsi/mgmt", v);
    w(&format!("add_target_attribute {T} IncomingUser joe 12charsecret")).unwrap();
    w(&format!("add_target_attribute {T} IncomingUser jim 12charsecret2")).unwrap();
    let t = node(&m, &format!("targets/iscsi/{T}"));
    // The tree names the accounts, never their secrets (no secret in any RPC output).
    assert_eq!(a(&t, "IncomingUser").value, "joe <hidden secret>");
    assert_eq!(a(&t, "IncomingUser1").value, "one <hidden secret>");
    assert_eq!(a(&t, "IncomingUser2").value, "jim <hidden secret>");
    for request in [
        json!({ "jsonrpc": "2.0", "id": 1, "method": "object_walk", "params": { "path": "" } }),
        json!({ "jsonrpc": "2.0", "id": 2, "method": "framework_get_config" }),
        json!({ "jsonrpc": "2.0", "id": 3, "method": "framework_get_config", "params": { "format": "yaml" } }),
        json!({ "jsonrpc": "2.0", "id": 4, "method": "iscsi_get_target_nodes" }),
    ] {
        let answer = polltgt_mgmt::rpc::handle(&m, request.clone()).unwrap().to_string();
        assert!(!answer.contains("12charsecret") && answer.contains("jim"), "{request}: {answer}");
    }
    w(&format!("del_target_attribute {T} IncomingUser one 12charsecret1")).unwrap();
    assert!(m.config().target(T).unwrap().incoming_user1.is_none());

    // save-config writes them back, and they load again.
    let yaml = m.config_yaml().unwrap();
    assert!(
        yaml.contains("redirect: '[fd00::2]:3261 perm'") || yaml.contains("redirect: \"[fd00::2]:3261 perm\""),
        "{yaml}"
    );
    assert!(
        yaml.contains("MaxSessions: 3")
            && yaml.contains("iSNSServer: 192.0.2.16:3205 AccessControl")
            && yaml.contains("LoginTimeout: 5"),
        "{yaml}"
    );
    let again = Config::from_yaml_str(&yaml, "saved.yaml").unwrap();
    assert_eq!(again, m.config());
}

#[test]
fn placement_and_provisioning_attributes_are_in_the_tree() {
    let (f, m) = setup();
    let a = |n: &polltgt_mgmt::tree::Node, name: &str| n.attr(name).cloned().unwrap_or_else(|| panic!("no {name}"));
    let t = node(&m, &format!("targets/iscsi/{T}"));
    assert_eq!((a(&t, "cpu_mask").value.as_str(), a(&t, "cpu_mask").key, a(&t, "cpu_mask").writable), ("", false, true));
    assert_eq!(a(&t, "per_sess_dedicated_tgt_threads").value, "0");
    f.calls();
    // Settable like SCST's sysfs files; new sessions use them.
    tree::set(&m, &format!("targets/iscsi/{T}/cpu_mask"), "0x2").unwrap();
    tree::set(&m, &format!("targets/iscsi/{T}/per_sess_dedicated_tgt_threads"), "1").unwrap();
    assert_eq!(f.calls(), vec![format!("apply_target {T}"), format!("apply_target {T}")]);
    let t = node(&m, &format!("targets/iscsi/{T}"));
    assert_eq!((a(&t, "cpu_mask").value.as_str(), a(&t, "cpu_mask").key), ("0x2", true));
    assert_eq!((a(&t, "per_sess_dedicated_tgt_threads").value.as_str(), a(&t, "per_sess_dedicated_tgt_threads").key), ("1", true));
    let c = m.config();
    let tc = c.target(T).unwrap();
    assert_eq!(tc.cpu_mask.as_ref().map(|m| m.cpus().to_vec()), Some(vec![1]));
    assert!(tc.per_sess_dedicated_tgt_threads);
    let e = tree::set(&m, &format!("targets/iscsi/{T}/cpu_mask"), "zz").unwrap_err();
    assert_eq!((e.kind, e.attribute.as_deref()), (ErrorKind::Invalid, Some("cpu_mask")));
    // Empty: any reactor again.
    tree::set(&m, &format!("targets/iscsi/{T}/cpu_mask"), "").unwrap();
    assert!(m.config().target(T).unwrap().cpu_mask.is_none());
    // Devices show thin_provisioned (a creation-time attribute, as in SCST).
    let d = node(&m, "devices/d0");
    assert_eq!((a(&d, "thin_provisioned").value.as_str(), a(&d, "thin_provisioned").writable), ("0", false));
    scst::write(&m, "/sys/kernel/scst_tgt/handlers/vdisk_nullio/mgmt", "add_device thin0 size=1G; thin_provisioned=1")
        .unwrap();
    let d = node(&m, "devices/thin0");
    assert_eq!((a(&d, "thin_provisioned").value.as_str(), a(&d, "thin_provisioned").key), ("1", true));
}

/// An initiator group's `cpu_mask` and `per_sess_dedicated_tgt_threads` (SCST `ini_groups/<g>/...`): they show what
/// applies to the group's sessions (its own setting, else the target's; `key` only for its own), are set through the
/// tree, SCST sysfs writes and JSON-RPC like the target's, reach the dataplane (apply_target), and save-config
/// writes only what the group sets.
#[test]
fn initiator_group_placement_attributes_are_in_the_tree_and_settable() {
    let (f, m) = setup();
    let a = |n: &polltgt_mgmt::tree::Node, name: &str| n.attr(name).cloned().unwrap_or_else(|| panic!("no {name}"));
    let g = format!("targets/iscsi/{T}/ini_groups/g1");
    scst::write(&m, &format!("/sys/kernel/scst_tgt/targets/iscsi/{T}/ini_groups/mgmt"), "create g1").unwrap();
    let n = node(&m, &g);
    assert_eq!(n.children, vec!["initiators", "luns"]);
    let view = |n: &polltgt_mgmt::tree::Node, k: &str| (a(n, k).value, a(n, k).key, a(n, k).writable);
    assert_eq!(view(&n, "cpu_mask"), ("".into(), false, true), "no mask anywhere: any reactor");
    assert_eq!(view(&n, "per_sess_dedicated_tgt_threads"), ("0".into(), false, true));
    // Unset, the group shows the target's settings.
    tree::set(&m, &format!("targets/iscsi/{T}/cpu_mask"), "0x1").unwrap();
    tree::set(&m, &format!("targets/iscsi/{T}/per_sess_dedicated_tgt_threads"), "1").unwrap();
    let n = node(&m, &g);
    assert_eq!(view(&n, "cpu_mask"), ("0x1".into(), false, true));
    assert_eq!(view(&n, "per_sess_dedicated_tgt_threads"), ("1".into(), false, true));
    assert!(!m.config_yaml().unwrap().contains("      cpu_mask"), "the group sets nothing yet");

    // Its own settings: through the tree, an SCST sysfs write, and JSON-RPC.
    f.calls();
    tree::set(&m, &format!("{g}/cpu_mask"), "0x2").unwrap();
    scst::write(&m, &format!("/sys/kernel/scst_tgt/{g}/per_sess_dedicated_tgt_threads"), "0").unwrap();
    assert_eq!(f.calls(), vec![format!("apply_target {T}"), format!("apply_target {T}")], "live: the dataplane gets them");
    let n = node(&m, &g);
    assert_eq!(view(&n, "cpu_mask"), ("0x2".into(), true, true));
    assert_eq!(view(&n, "per_sess_dedicated_tgt_threads"), ("0".into(), true, true));
    let c = m.config();
    let gc = c.target(T).unwrap().group("g1").unwrap();
    assert_eq!(gc.cpu_mask.as_ref().map(|m| m.cpus().to_vec()), Some(vec![1]));
    assert_eq!(gc.per_sess_dedicated_tgt_threads, Some(false));
    let yaml = m.config_yaml().unwrap();
    assert!(yaml.contains("cpu_mask: '0x2'") && yaml.contains("per_sess_dedicated_tgt_threads: false"), "{yaml}");
    assert_eq!(Config::from_yaml_str(&yaml, "saved.yaml").unwrap(), m.config());

    let rpc = |params: Value| {
        polltgt_mgmt::rpc::handle(
            &m,
            json!({ "jsonrpc": "2.0", "id": 1, "method": "iscsi_initiator_group_set_attribute", "params": params }),
        )
        .unwrap()
    };
    let ok = rpc(json!({ "name": T, "group": "g1", "attribute": "per_sess_dedicated_tgt_threads", "value": null }));
    assert_eq!(ok["result"], true, "{ok}");
    assert_eq!(m.config().target(T).unwrap().group("g1").unwrap().per_sess_dedicated_tgt_threads, None, "null: the target's");
    assert_eq!(view(&node(&m, &g), "per_sess_dedicated_tgt_threads"), ("1".into(), false, true));
    // Errors name the attribute and change nothing.
    let e = rpc(json!({ "name": T, "group": "g1", "attribute": "cpu_mask", "value": "zz" }));
    assert_eq!((e["error"]["code"].as_i64(), e["error"]["data"]["attribute"].as_str()), (Some(-22), Some("cpu_mask")), "{e}");
    let e = rpc(json!({ "name": T, "group": "nope", "attribute": "cpu_mask", "value": "0x1" }));
    assert_eq!(e["error"]["code"], -2, "no such group: {e}");
    let e = rpc(json!({ "name": T, "group": "g1/..", "attribute": "cpu_mask", "value": "0x1" }));
    assert_eq!(e["error"]["code"], -32602, "{e}");
    let e = tree::set(&m, &format!("{g}/per_sess_dedicated_tgt_threads"), "maybe").unwrap_err();
    assert_eq!((e.kind, e.attribute.as_deref()), (ErrorKind::Invalid, Some("per_sess_dedicated_tgt_threads")));
    assert_eq!(m.config().target(T).unwrap().group("g1").unwrap().cpu_mask.as_ref().map(|m| m.cpus().to_vec()), Some(vec![1]));
    // Empty (or 0): the target's mask again.
    tree::set(&m, &format!("{g}/cpu_mask"), "0").unwrap();
    assert_eq!(view(&node(&m, &g), "cpu_mask"), ("0x1".into(), false, true));
}

#[test]
fn vcdrom_filename_changes_the_medium() {
    let (f, m) = setup();
    scst::execute(&m, "handlers/vcdrom", "add_device cd").unwrap();
    assert_eq!(f.calls(), ["create_device cd"]);
    assert_eq!(node(&m, "handlers/vcdrom").children, vec!["cd"]);
    let cd = node(&m, "devices/cd");
    assert_eq!(cd.attr("type").unwrap().value, "5");
    let fname = cd.attr("filename").unwrap();
    assert_eq!((fname.value.as_str(), fname.writable), ("", true));
    assert!(!cd.attr("size").unwrap().writable);
    // Writing filename loads a medium; an empty value ejects.
    tree::set(&m, "devices/cd/filename", "/a.iso").unwrap();
    assert_eq!(f.calls(), ["change_medium cd Some(\"/a.iso\")"]);
    assert_eq!(node(&m, "devices/cd").attr("filename").unwrap().value, "/a.iso");
    tree::set(&m, "/sys/kernel/scst_tgt/handlers/vcdrom/cd/filename", "").unwrap();
    assert_eq!(f.calls(), ["change_medium cd None"]);
    // Refused by the target (removal prevented): the configuration keeps the old medium.
    tree::set(&m, "devices/cd/filename", "/b.iso").unwrap();
    f.calls();
    let e = tree::set(&m, "devices/cd/filename", "/locked.iso").unwrap_err();
    assert_eq!((e.kind, e.attribute.as_deref()), (ErrorKind::Busy, Some("filename")));
    assert_eq!(m.config().device("cd").unwrap().filename.as_deref(), Some(std::path::Path::new("/b.iso")));
    // A null device has no filename; a relative path is refused.
    assert_eq!(tree::set(&m, "devices/d0/filename", "/x").unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(tree::set(&m, "devices/cd/filename", "x.iso").unwrap_err().kind, ErrorKind::Invalid);
    assert!(f.calls().is_empty());
}

fn session_on(initiator: &str, sid: &str, portal: &str) -> SessionInfo {
    SessionInfo {
        target: T.into(),
        initiator_name: initiator.into(),
        initiator_alias: None,
        sid: sid.into(),
        tsih: 1,
        reinstating: false,
        group: None,
        luns: vec![0],
        params: BTreeMap::new(),
        active_commands: 0,
        commands: 0,
        read_commands: 0,
        write_commands: 0,
        read_bytes: 0,
        write_bytes: 0,
        errors: 0,
        connections: vec![ConnectionInfo {
            reactor: 0,
            cid: Some(0),
            ip: "127.0.0.9:50000".parse().unwrap(),
            portal: portal.parse().unwrap(),
            state: "full_feature".into(),
            session_type: Some("normal".into()),
            initiator_name: Some(initiator.into()),
            target_name: Some(T.into()),
            pdus_received: 0,
            pdus_sent: 0,
        }],
    }
}

/// Identity, write protection, caches and threads_num change live (one backend call, the tree follows); creation
/// attributes are refused naming themselves; an empty identity value returns to the default.
#[test]
fn device_attributes_change_live_or_are_refused_by_name() {
    let (f, m) = setup();
    tree::set(&m, "devices/d0/usn", "SN-42").unwrap();
    tree::set(&m, "/sys/kernel/scst_tgt/handlers/vdisk_nullio/d0/read_only", "1").unwrap();
    scst::write(&m, "/sys/kernel/scst_tgt/devices/d1/t10_vend_id", "ACME").unwrap();
    for (a, v) in [("nv_cache", "1"), ("write_through", "1"), ("rotational", "0"), ("removable", "1"), ("prod_id", "ROCKET"), ("prod_rev_lvl", "0042"), ("t10_dev_id", "dev-0")] {
        tree::set(&m, &format!("devices/d0/{a}"), v).unwrap_or_else(|e| panic!("{a}: {e}"));
    }
    let calls = f.calls();
    assert_eq!(calls.len(), 10, "{calls:?}");
    assert_eq!(calls[0], "update_device d0 read_only=false->false usn=Some(\"SN-42\")");
    assert_eq!(calls[1], "update_device d0 read_only=false->true usn=Some(\"SN-42\")");
    let d0 = node(&m, "devices/d0");
    for (a, v) in [("usn", "SN-42"), ("read_only", "1"), ("nv_cache", "1"), ("write_through", "1"), ("removable", "1"), ("prod_id", "ROCKET")] {
        let at = d0.attr(a).unwrap();
        assert_eq!((at.value.as_str(), at.key, at.writable), (v, true, true), "{a}");
    }
    // Back to the default with an empty value.
    tree::set(&m, "devices/d0/usn", "").unwrap();
    assert_eq!(m.config().device("d0").unwrap().usn, None);
    assert!(!node(&m, "devices/d0").attr("usn").unwrap().key);
    // Creation attributes: refused, naming object and attribute, nothing applied.
    f.calls();
    for (a, v) in [("blocksize", "4096"), ("thin_provisioned", "1"), ("o_direct", "1")] {
        let e = tree::set(&m, &format!("devices/d0/{a}"), v).unwrap_err();
        assert_eq!((e.kind, e.object.as_deref(), e.attribute.as_deref()), (ErrorKind::Unsupported, Some("devices/d0"), Some(a)), "{e}");
    }
    // threads_num is the I/O thread pool of file and block devices; a null device has none.
    let e = tree::set(&m, "devices/d0/threads_num", "8").unwrap_err();
    assert!(e.to_string().contains("devices/d0: threads_num: not writable for a vdisk_nullio device"), "{e}");
    assert!(f.calls().is_empty());
    // The same through the configuration: an edit touching a fixed attribute names it.
    let e = m
        .edit(|c| {
            c.devices[0].blocksize = polltgt_mgmt::BlockSize::B4096;
            Ok(())
        })
        .unwrap_err();
    assert_eq!(e.attribute.as_deref(), Some("blocksize"), "{e}");
    // A backend refusal leaves the configuration as it was.
    m.add_device(polltgt_mgmt::scst::device_from_params("f", polltgt_mgmt::Handler::VdiskFileio, &scst::parse_params("filename=/f.img").unwrap()).unwrap()).unwrap();
    tree::set(&m, "devices/f/threads_num", "8").unwrap();
    assert_eq!(node(&m, "devices/f").attr("threads_pool_type").unwrap().value, "shared");
    let e = tree::set(&m, "devices/f/threads_num", "99").unwrap_err();
    assert_eq!(e.to_string(), "devices/f: threads_num: too many");
    let e = m
        .edit(|c| {
            c.devices.iter_mut().find(|d| d.name == "f").unwrap().threads_num = Some(99);
            Ok(())
        })
        .unwrap_err();
    assert_eq!((e.object.as_deref(), e.attribute.as_deref()), (Some("devices/f"), Some("threads_num")), "{e}");
    assert_eq!(m.config().device("f").unwrap().threads_num, Some(8));
    let e = tree::set(&m, "devices/f/threads_num", "200").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
    // Saved and read back.
    let yaml = m.config_yaml().unwrap();
    assert!(yaml.contains("threads_num: 8") && yaml.contains("nv_cache: true") && yaml.contains("prod_id: ROCKET"), "{yaml}");
    assert_eq!(Config::from_yaml_str(&yaml, "saved.yaml").unwrap(), m.config());
}

/// Portals: added and removed at run time through the SCST-style directory and JSON-RPC, port 0 recorded as bound,
/// the last one kept, a tpgt fixed; reactors and the mgmt section only at the next start, naming the attribute.
#[test]
fn portals_change_live_and_restart_only_attributes_are_named() {
    let (f, m) = setup();
    f.calls();
    scst::write(&m, "targets/iscsi/portals/mgmt", "add 127.0.0.2:0 tpgt=2").unwrap();
    assert_eq!(f.calls(), vec!["add_portal 127.0.0.2:0 2"]);
    assert_eq!(
        node(&m, "targets/iscsi/portals").children,
        vec!["127.0.0.1:3260".to_string(), "127.0.0.2:40000".to_string()]
    );
    assert_eq!(node(&m, "targets/iscsi/portals/127.0.0.2:40000").attr("tpgt").unwrap().value, "2");
    let r = polltgt_mgmt::rpc::call(&m, "iscsi_add_portal", json!({ "address": "[::1]:3261" })).unwrap();
    assert_eq!(r, json!({ "address": "[::1]:3261" }));
    let e = polltgt_mgmt::rpc::call(&m, "iscsi_add_portal", json!({ "address": "[::1]:3261" })).unwrap_err();
    assert_eq!(e.code, -17);
    let groups = polltgt_mgmt::rpc::call(&m, "iscsi_get_portal_groups", json!({})).unwrap();
    assert_eq!(groups[1]["tag"], 2, "{groups}");
    f.calls();
    scst::write(&m, "targets/iscsi/portals/mgmt", "del 127.0.0.1:3260").unwrap();
    polltgt_mgmt::rpc::call(&m, "iscsi_delete_portal", json!({ "address": "[::1]:3261" })).unwrap();
    assert_eq!(f.calls(), vec!["remove_portal 127.0.0.1:3260", "remove_portal [::1]:3261"]);
    let e = scst::write(&m, "targets/iscsi/portals/mgmt", "del 127.0.0.2:40000").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Busy, "the last portal stays: {e}");
    let e = scst::write(&m, "targets/iscsi/portals/mgmt", "del 127.0.0.3").unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    let e = m.edit(|c| {
        c.portals[0].tpgt = 7;
        Ok(())
    });
    assert_eq!(e.unwrap_err().attribute.as_deref(), Some("tpgt"));
    let yaml = m.config_yaml().unwrap();
    assert!(yaml.contains("127.0.0.2:40000") && yaml.contains("tpgt: 2"), "{yaml}");
    // What only a restart changes.
    let e = m
        .edit(|c| {
            c.reactors.count = Some(2);
            Ok(())
        })
        .unwrap_err();
    assert_eq!((e.kind, e.object.as_deref(), e.attribute.as_deref()), (ErrorKind::Unsupported, Some("reactors"), Some("count")));
    let e = tree::set(&m, "threads", "4").unwrap_err();
    assert_eq!((e.kind, e.attribute.as_deref()), (ErrorKind::Unsupported, Some("threads")));
    assert!(e.to_string().contains("reactors.count"), "{e}");
    assert!(f.calls().is_empty());
}

/// In per-portal mode the session directory is `initiator#portal_ip`, as SCST registers the initiator.
#[test]
fn per_portal_sessions_are_named_initiator_hash_portal() {
    let (f, m) = setup();
    f.sessions.lock().unwrap().extend([
        session_on("iqn.2026-11.io.x:a", "0000000000000001", "127.0.0.1:3260"),
        session_on("iqn.2026-11.io.x:a", "0000000000000002", "127.0.0.2:3260"),
        session_on("iqn.2026-11.io.x:b", "0000000000000003", "127.0.0.2:3260"),
    ]);
    let sessions = format!("targets/iscsi/{T}/sessions");
    assert_eq!(
        node(&m, &sessions).children,
        vec!["iqn.2026-11.io.x:a.0000000000000001", "iqn.2026-11.io.x:a.0000000000000002", "iqn.2026-11.io.x:b"]
    );
    tree::set(&m, &format!("targets/iscsi/{T}/per_portal_acl"), "1").unwrap();
    assert_eq!(
        node(&m, &sessions).children,
        vec!["iqn.2026-11.io.x:a#127.0.0.1", "iqn.2026-11.io.x:a#127.0.0.2", "iqn.2026-11.io.x:b#127.0.0.2"]
    );
    let s = node(&m, &format!("{sessions}/iqn.2026-11.io.x:a#127.0.0.2"));
    assert_eq!(s.attr("sid").unwrap().value, "0000000000000002");
    assert!(s.attr("thread_pid").is_some());
    f.calls();
    tree::set(&m, &format!("{sessions}/iqn.2026-11.io.x:a#127.0.0.2/force_close"), "1").unwrap();
    assert_eq!(f.calls(), vec!["force_close 2"]);
}
