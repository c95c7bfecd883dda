//! Live management with libiscsi sessions open: LUN map changes reach running sessions with the unit attentions
//! SPC-4 calls for, devices resize with CAPACITY DATA HAS CHANGED, access control by initiator name patterns (also
//! changed while sessions run), force_close drops exactly one session, and the protocol attributes (MaxSessions,
//! redirect, iSNSServer) are set live, as is an initiator group's session placement (cpu_mask).

mod common;

use common::mgmt::Session;
use common::{run, Target};
use serde_json::json;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);
const T: &str = "iqn.2026-11.io.polltgt:live";
const INI_A: &str = "iqn.2026-11.io.test:host-a";
const INI_B: &str = "iqn.2026-11.io.test:host-b";

fn start(extra_devices: &str, target_extra: &str) -> Target {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk).unwrap().set_len(16 << 20).unwrap();
    let yaml = format!(
        "portals: [ {{ address: \"127.0.0.1:0\" }} ]\n\
         devices:\n  - {{ name: ram0, handler: ram, size: 16M }}\n  - {{ name: null1, handler: vdisk_nullio, size: 32M }}\n  \
         - {{ name: file2, handler: vdisk_fileio, filename: {} }}\n{extra_devices}\
         targets:\n  - name: {T}\n    luns: [ {{ lun: 0, device: ram0 }} ]\n{target_extra}",
        disk.display()
    );
    Target::start_with_yaml(dir, &yaml)
}

fn url(t: &Target, lun: u32) -> String {
    format!("iscsi://{}/{T}/{lun}", t.addr)
}

#[test]
fn a_lun_added_live_shows_in_report_luns_after_the_unit_attention() {
    let t = start("", "");
    let mut s = Session::open(&url(&t, 0), INI_A);
    assert_eq!(s.cmd("tur 0"), "GOOD");
    assert_eq!(s.cmd("reportluns"), "LUNS 0");

    // SCST's command string through the CLI, as the README writes it.
    t.cli_ok(&[
        "scst",
        &format!("/sys/kernel/scst_tgt/targets/iscsi/{T}/luns/mgmt"),
        "add null1 1",
    ]);
    assert_eq!(
        s.cmd("tur 0"),
        "CHECK 06 3f 0e",
        "REPORTED LUNS DATA HAS CHANGED expected"
    );
    assert_eq!(s.cmd("tur 0"), "GOOD", "the unit attention is reported once");
    assert_eq!(s.cmd("reportluns"), "LUNS 0 1");
    // The new LUN is a new I_T nexus for its logical unit: POWER ON first, then it works.
    assert_eq!(s.cmd("tur 1"), "CHECK 06 29 00");
    assert_eq!(s.cmd("readcap 1"), format!("CAP {} 512", (32u64 << 20) / 512));

    // REPORT LUNS clears a pending REPORTED LUNS DATA HAS CHANGED (SCST does the same).
    t.rpc_ok(
        "iscsi_target_node_add_lun",
        json!({ "name": T, "lun": 2, "device": "file2", "read_only": true }),
    );
    assert_eq!(s.cmd("reportluns"), "LUNS 0 1 2");
    assert_eq!(s.cmd("tur 0"), "GOOD");
    // A read-only LUN mapping refuses writes with DATA PROTECT / WRITE PROTECTED.
    assert_eq!(s.cmd("tur 2"), "CHECK 06 29 00");
    assert_eq!(s.cmd("write 2 0"), "CHECK 07 27 00");
    assert_eq!(s.cmd("read 2 0"), "GOOD");

    // Removing a LUN: unit attention, and it is gone.
    t.rpc_ok("iscsi_target_node_remove_lun", json!({ "name": T, "lun": 1 }));
    assert_eq!(s.cmd("tur 0"), "CHECK 06 3f 0e");
    assert_eq!(s.cmd("reportluns"), "LUNS 0 2");
    assert_eq!(s.cmd("tur 1"), "CHECK 05 25 00", "LOGICAL UNIT NOT SUPPORTED");

    // Replacing a LUN's device: INQUIRY DATA HAS CHANGED on that LUN only.
    t.cli_ok(&[
        "scst",
        &format!("/sys/kernel/scst_tgt/targets/iscsi/{T}/luns/mgmt"),
        "replace null1 2",
    ]);
    assert_eq!(s.cmd("tur 0"), "GOOD");
    assert_eq!(s.cmd("tur 2"), "CHECK 06 3f 03");
    assert_eq!(
        s.cmd("write 2 0"),
        "CHECK 06 29 00",
        "null1 is a new logical unit for this session"
    );
    assert_eq!(s.cmd("write 2 0"), "GOOD", "the replacement is writable");

    // Per-session and per-LUN counters saw the I/O.
    let sessions = t.rpc_ok("iscsi_get_sessions", json!({ "name": T }));
    assert_eq!(sessions.as_array().map(Vec::len), Some(1), "{sessions}");
    assert!(sessions[0]["write_commands"].as_u64() >= Some(1), "{sessions}");
    assert!(sessions[0]["read_commands"].as_u64() >= Some(1), "{sessions}");
    let iostat = t.rpc_ok("bdev_get_iostat", json!({}));
    let lun2 = iostat
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lun"] == 2)
        .unwrap()
        .clone();
    assert_eq!(lun2["device"], "null1");
    assert_eq!(lun2["write_commands"], 1, "{iostat}");
}

#[test]
fn resizing_raises_capacity_data_has_changed_and_in_use_devices_are_protected() {
    let t = start("", "");
    t.rpc_ok(
        "iscsi_target_node_add_lun",
        json!({ "name": T, "lun": 1, "device": "null1" }),
    );
    t.rpc_ok(
        "iscsi_target_node_add_lun",
        json!({ "name": T, "lun": 2, "device": "file2" }),
    );
    let mut s = Session::open(&url(&t, 0), INI_A);
    assert_eq!(s.cmd("tur 1"), "CHECK 06 29 00");
    assert_eq!(s.cmd("readcap 1"), format!("CAP {} 512", (32u64 << 20) / 512));

    t.cli_ok(&["set", "devices/null1/size", "64M"]);
    assert_eq!(
        s.cmd("readcap 1"),
        "CHECK 06 2a 09",
        "CAPACITY DATA HAS CHANGED expected"
    );
    assert_eq!(s.cmd("readcap 1"), format!("CAP {} 512", (64u64 << 20) / 512));
    let shown = t.cli_ok(&["show", "devices/null1/size"]);
    assert!(
        shown.starts_with(&(64u64 << 20).to_string()) && shown.contains("[key]"),
        "{shown}"
    );

    // A file grown behind the target's back: resync_size (SCST) picks the new size up.
    assert_eq!(s.cmd("tur 2"), "CHECK 06 29 00");
    let path = t.dir.path().join("disk.img");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(24 << 20)
        .unwrap();
    t.cli_ok(&["scst", "/sys/kernel/scst_tgt/devices/file2/resync_size", "1"]);
    assert_eq!(s.cmd("readcap 2"), "CHECK 06 2a 09");
    assert_eq!(s.cmd("readcap 2"), format!("CAP {} 512", (24u64 << 20) / 512));
    assert_eq!(s.cmd("write 2 49000"), "GOOD", "a block beyond the old end is writable");

    // Creation-time attributes cannot change; a RAM disk keeps its size.
    let out = t.cli(&["set", "devices/null1/blocksize", "4096"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("devices/null1: blocksize:"),
        "errors name object and attribute: {err}"
    );
    // So is the physical block size; a device created with one (SCST add_device, SPDK's bdev_malloc_create)
    // shows it.
    assert!(t.cli_ok(&["show", "devices/null1/physical_blocksize"]).starts_with("512"));
    assert!(!t.cli(&["set", "devices/null1/physical_blocksize", "4096"]).status.success());
    t.cli_ok(&["scst", "/sys/kernel/scst_tgt/handlers/vdisk_nullio/mgmt", "add_device pb4k size_mb=16; physical_blocksize=4096"]);
    let shown = t.cli_ok(&["show", "devices/pb4k/physical_blocksize"]);
    assert!(shown.starts_with("4096") && shown.contains("[key]"), "{shown}");
    t.rpc_ok("bdev_malloc_create", json!({ "name": "pb8k", "num_blocks": 64, "block_size": 512, "physical_block_size": 8192 }));
    assert!(t.cli_ok(&["show", "devices/pb8k/physical_blocksize"]).starts_with("8192"));
    let e = t
        .rpc("bdev_malloc_create", json!({ "name": "pbx", "num_blocks": 64, "physical_block_size": 1000 }))
        .unwrap_err();
    assert!(e["message"].as_str().unwrap_or("").contains("physical_blocksize"), "{e}");
    let e = t
        .rpc("bdev_resize", json!({ "name": "ram0", "size": "32M" }))
        .unwrap_err();
    assert_eq!(e["code"], -95, "{e}");

    // A mapped device is not removed unless forced; forcing unmaps it (with the unit attention) first.
    let e = t.rpc("bdev_delete", json!({ "name": "null1" })).unwrap_err();
    assert_eq!(e["code"], -16, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains(&format!("targets/iscsi/{T}/luns/1")),
        "{e}"
    );
    assert_eq!(s.cmd("tur 1"), "GOOD", "the refused removal changed nothing");
    t.rpc_ok("bdev_delete", json!({ "name": "null1", "force": true }));
    assert_eq!(s.cmd("tur 0"), "CHECK 06 3f 0e");
    assert_eq!(s.cmd("reportluns"), "LUNS 0 2");
    let devs = t.rpc_ok("bdev_get_bdevs", json!({}));
    assert!(devs.as_array().unwrap().iter().all(|d| d["name"] != "null1"), "{devs}");
}

#[test]
fn an_acl_denies_an_initiator_by_pattern_also_while_sessions_run() {
    // Only initiators matching iqn.2026-11.io.test:host-* may use the target (README recipe 2a: no default LUNs,
    // a group for the allowed ones).
    let target_extra = "    ini_groups:\n      - name: allowed\n        initiators: [ \"iqn.2026-11.io.test:host-*\" ]\n        luns: [ { lun: 0, device: ram0 } ]\n";
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "portals: [ {{ address: \"127.0.0.1:0\" }} ]\ndevices:\n  - {{ name: ram0, handler: ram, size: 16M }}\n  - {{ name: null1, handler: vdisk_nullio, size: 32M }}\ntargets:\n  - name: {T}\n{target_extra}"
    );
    let t = Target::start_with_yaml(dir, &yaml);
    let ok = common::run_ok("iscsi-inq", &["-i", INI_A, &url(&t, 0)], LIMIT);
    assert!(ok.contains("DIRECT_ACCESS"), "{ok}");
    let denied = run(
        "iscsi-inq",
        &["-i", "iqn.2026-11.io.other:intruder", &url(&t, 0)],
        LIMIT,
    );
    assert!(
        !denied.status.success(),
        "an initiator outside the group must be refused"
    );
    // Discovery hides the target from it too.
    let ls = common::run_ok(
        "iscsi-ls",
        &["-i", "iqn.2026-11.io.other:intruder", &format!("iscsi://{}", t.addr)],
        LIMIT,
    );
    assert!(!ls.contains(T), "{ls}");
    let ls = common::run_ok("iscsi-ls", &["-i", INI_A, &format!("iscsi://{}", t.addr)], LIMIT);
    assert!(ls.contains(T), "{ls}");

    // Two sessions run; then a blocking group (no LUNs) catches host-b by a '?' pattern, and a '!' pattern group
    // gives everybody but host-a another LUN set.
    let mut a = Session::open(&url(&t, 0), INI_A);
    let mut b = Session::open(&url(&t, 0), INI_B);
    assert_eq!(a.cmd("reportluns"), "LUNS 0");
    assert_eq!(b.cmd("reportluns"), "LUNS 0");
    t.rpc_ok("iscsi_create_initiator_group", json!({ "name": T, "group": "blocked" }));
    t.rpc_ok(
        "iscsi_initiator_group_add_initiators",
        json!({ "name": T, "group": "blocked", "initiators": ["iqn.2026-11.io.test:host-?"] }),
    );
    // Groups are searched in order: "allowed" still catches both.
    assert_eq!(b.cmd("tur 0"), "GOOD");
    t.rpc_ok("iscsi_delete_initiator_group", json!({ "name": T, "group": "allowed" }));
    // Now both match "blocked", which has no LUNs: their sessions lose every LUN.
    assert_eq!(b.cmd("tur 0"), "CHECK 05 25 00", "LUN 0 is gone for host-b");
    assert_eq!(b.cmd("reportluns"), "LUNS");
    t.cli_ok(&[
        "scst",
        &format!("/sys/kernel/scst_tgt/targets/iscsi/{T}/ini_groups/mgmt"),
        "create others",
    ]);
    t.cli_ok(&[
        "scst",
        &format!("/sys/kernel/scst_tgt/targets/iscsi/{T}/ini_groups/others/luns/mgmt"),
        "add null1 5",
    ]);
    t.cli_ok(&[
        "scst",
        &format!("/sys/kernel/scst_tgt/targets/iscsi/{T}/ini_groups/blocked/initiators/mgmt"),
        "move iqn.2026-11.io.test:host-? others",
    ]);
    t.cli_ok(&[
        "scst",
        &format!("/sys/kernel/scst_tgt/targets/iscsi/{T}/ini_groups/blocked/initiators/mgmt"),
        "add !iqn.2026-11.io.test:host-b",
    ]);
    // host-b matches "!...host-b"? no; it falls through to "others" (host-?) and sees LUN 5.
    assert_eq!(b.cmd("tur 5"), "CHECK 06 3f 0e");
    assert_eq!(b.cmd("reportluns"), "LUNS 5");
    // host-a matches "!iqn.2026-11.io.test:host-b" in "blocked": no LUNs, and new logins are refused.
    assert_eq!(a.cmd("reportluns"), "LUNS");
    let again = run("iscsi-inq", &["-i", INI_A, &url(&t, 0)], LIMIT);
    assert!(!again.status.success(), "host-a is blocked now");
    let sessions = t.cli_ok(&["list", "sessions"]);
    assert!(
        sessions.contains(INI_A) && sessions.contains("blocked") && sessions.contains("others"),
        "{sessions}"
    );
    let groups = t.cli_ok(&["list", "groups"]);
    assert!(
        groups.contains("!iqn.2026-11.io.test:host-b") && groups.contains("5=null1"),
        "{groups}"
    );
}

#[test]
fn force_close_drops_exactly_one_session() {
    let t = start("", "");
    let mut a = Session::open(&url(&t, 0), INI_A);
    let mut b = Session::open(&url(&t, 0), INI_B);
    assert_eq!(a.cmd("tur 0"), "GOOD");
    assert_eq!(b.cmd("tur 0"), "GOOD");
    let sessions = t.rpc_ok("iscsi_get_sessions", json!({}));
    let list = sessions.as_array().unwrap();
    assert_eq!(list.len(), 2, "{sessions}");
    let sid_a = list.iter().find(|s| s["initiator_name"] == INI_A).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_string();
    // The session directory shows negotiated parameters and the connection.
    let shown = t.cli_ok(&["show", &format!("targets/iscsi/{T}/sessions/{INI_A}")]);
    assert!(
        shown.contains(&sid_a) && shown.contains("MaxBurstLength") && shown.contains("127.0.0.1/"),
        "{shown}"
    );

    t.cli_ok(&["force-close", &sid_a]);
    let r = a.cmd("tur 0");
    assert!(r.starts_with("ERROR"), "the closed session must fail: {r}");
    assert_eq!(b.cmd("tur 0"), "GOOD", "the other session is untouched");
    let left = t.rpc_ok("iscsi_get_sessions", json!({}));
    let left = left.as_array().unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["initiator_name"], INI_B);
    // SCST's way: write to the session's force_close attribute.
    t.cli_ok(&[
        "scst",
        &format!("/sys/kernel/scst_tgt/targets/iscsi/{T}/sessions/{INI_B}/force_close"),
        "1",
    ]);
    assert!(b.cmd("tur 0").starts_with("ERROR"));
    let e = t.rpc("iscsi_session_force_close", json!({ "sid": sid_a })).unwrap_err();
    assert_eq!(e["code"], -2, "an unknown sid is not found: {e}");
}

#[test]
fn targets_are_added_enabled_and_removed_live() {
    let t = start("", "");
    let t2 = "iqn.2026-11.io.polltgt:second";
    // SCST's sequence: add_target (disabled), add a LUN, enable.
    t.cli_ok(&[
        "scst",
        "/sys/kernel/scst_tgt/targets/iscsi/mgmt",
        &format!("add_target {t2}"),
    ]);
    t.cli_ok(&[
        "scst",
        &format!("/sys/kernel/scst_tgt/targets/iscsi/{t2}/luns/mgmt"),
        "add null1 0",
    ]);
    let ls = common::run_ok("iscsi-ls", &[&format!("iscsi://{}", t.addr)], LIMIT);
    assert!(!ls.contains(t2), "a disabled target is not reported: {ls}");
    t.cli_ok(&["scst", &format!("/sys/kernel/scst_tgt/targets/iscsi/{t2}/enabled"), "1"]);
    let ls = common::run_ok("iscsi-ls", &[&format!("iscsi://{}", t.addr)], LIMIT);
    assert!(ls.contains(t2), "{ls}");
    let mut s = Session::open(&format!("iscsi://{}/{t2}/0", t.addr), INI_A);
    assert_eq!(s.cmd("reportluns"), "LUNS 0");
    // A target with sessions is removed only when forced; its sessions are closed.
    let e = t.rpc("iscsi_delete_target_node", json!({ "name": t2 })).unwrap_err();
    assert_eq!(e["code"], -16, "{e}");
    t.rpc_ok("iscsi_delete_target_node", json!({ "name": t2, "force": true }));
    assert!(s.cmd("tur 0").starts_with("ERROR"));
    // The driver-level switch refuses every new login.
    t.cli_ok(&["set", "targets/iscsi/enabled", "0"]);
    assert!(!run("iscsi-inq", &[&url(&t, 0)], LIMIT).status.success());
    t.cli_ok(&["set", "targets/iscsi/enabled", "1"]);
    assert!(run("iscsi-inq", &[&url(&t, 0)], LIMIT).status.success());
}

/// The protocol attributes of the merged work through the management plane: MaxSessions and redirect set live over
/// RPC, the one session directory (reinstatement replaces a session in the listing, force_close drops exactly one),
/// iSNSServer started and stopped live, and save-config writing the attributes back.
#[test]
fn max_sessions_redirect_isns_and_the_session_directory_over_rpc() {
    use common::isns_server::IsnsServer;
    use common::raw::{self, RawConn};

    let t = start("", "");
    let sessions = |t: &Target| {
        t.rpc_ok("iscsi_get_sessions", json!({ "name": T }))
            .as_array()
            .unwrap()
            .clone()
    };
    // MaxSessions, set live: a second initiator is refused "out of resources", a reinstating login is not.
    t.rpc_ok(
        "iscsi_target_node_set_attribute",
        json!({ "name": T, "attribute": "MaxSessions", "value": 1 }),
    );
    let mut first = RawConn::connect(&t.addr);
    first.login(Some(T), &[]);
    let mut other = RawConn::connect(&t.addr);
    other.isid[5] = 9;
    let (r, _) = other.try_login(raw::INITIATOR, Some(T), &[]);
    assert_eq!(
        (r.status_class, r.status_detail),
        (3, 2),
        "MaxSessions=1: out of resources"
    );
    let listed = sessions(&t);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0]["tsih"].as_u64(), listed[0]["reinstating"].as_bool()),
        (Some(first.tsih.into()), Some(false))
    );
    let mut again = RawConn::connect(&t.addr);
    again.login(Some(T), &[]);
    assert!(first.closed_within(LIMIT), "reinstatement closes the old session");
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let listed = sessions(&t);
        if listed.len() == 1 && listed[0]["tsih"].as_u64() == Some(again.tsih.into()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the directory never showed only the new session: {listed:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let shown = t.cli_ok(&["show", &format!("targets/iscsi/{T}/sessions/{}", raw::INITIATOR)]);
    assert!(
        shown.contains("reinstating") && shown.contains(&format!("{:04x}", again.tsih)),
        "{shown}"
    );
    // force_close through the directory: that session goes, the listing is empty, MaxSessions admits a new one.
    let sid = sessions(&t)[0]["sid"].as_str().unwrap().to_string();
    t.rpc_ok("iscsi_session_force_close", json!({ "sid": sid }));
    assert!(again.closed_within(LIMIT));
    assert!(sessions(&t).is_empty());
    let mut third = RawConn::connect(&t.addr);
    third.isid[5] = 3;
    third.login(Some(T), &[]);
    third.logout();

    // redirect, set live: new normal-session logins are redirected; a malformed value is refused, naming it.
    t.cli_ok(&[
        "scst",
        &format!("/sys/kernel/scst_tgt/targets/iscsi/{T}/redirect"),
        "[fd00::7]:3261 perm",
    ]);
    let mut c = RawConn::connect(&t.addr);
    let (r, data) = c.try_login(raw::INITIATOR, Some(T), &[]);
    assert_eq!((r.status_class, r.status_detail), (1, 2));
    assert_eq!(raw::value(&data, "TargetAddress").as_deref(), Some("[fd00::7]:3261"));
    let e = t
        .rpc(
            "iscsi_target_node_set_attribute",
            json!({ "name": T, "attribute": "redirect", "value": "fd00::7 perm" }),
        )
        .unwrap_err();
    assert_eq!(
        (e["code"].as_i64(), e["data"]["attribute"].as_str()),
        (Some(-22), Some("redirect")),
        "{e}"
    );

    // iSNSServer, set live: the target registers; cleared: it deregisters.
    let isns = IsnsServer::start();
    t.rpc_ok("iscsi_set_options", json!({ "iSNSServer": isns.addr }));
    isns.wait("the registration", LIMIT, |s| s.nodes.contains_key(T));
    let opts = t.rpc_ok("iscsi_get_options", json!({}));
    assert_eq!(opts["iSNSServer"].as_str(), Some(isns.addr.as_str()), "{opts}");

    // save-config writes the attributes back.
    let saved = t.dir.path().join("saved.yaml");
    t.rpc_ok("framework_save_config", json!({ "path": saved }));
    let yaml = std::fs::read_to_string(&saved).unwrap();
    assert!(
        yaml.contains("MaxSessions: 1") && yaml.contains("[fd00::7]:3261 perm") && yaml.contains("iSNSServer"),
        "{yaml}"
    );
    t.cli_ok(&["set", "targets/iscsi/iSNSServer", ""]);
    isns.wait("the deregistration", LIMIT, |s| s.nodes.is_empty());
}

/// Initiator groups place their sessions like targets do (SCST's cpu_mask "of their targets or security groups"):
/// two reactors on CPUs 0 and 1, the target's sessions on CPU 0, the group `pinned` (host-a*) on CPU 1. A session of
/// the group runs on the reactor of CPU 1, one outside it on the target's, as the management plane reports (the
/// session's connection reactor, the reactors' cores). Changing the group's cpu_mask live (CLI, then RPC) places the
/// sessions that log in afterwards and leaves the running ones where they are.
#[test]
fn an_initiator_groups_sessions_run_on_the_reactors_of_its_cpu_mask() {
    if std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) < 2 {
        eprintln!("one CPU: no second reactor to place sessions on");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "reactors: {{ cpu_mask: \"0x3\" }}\nportals: [ {{ address: \"127.0.0.1:0\" }} ]\n\
         devices:\n  - {{ name: ram0, handler: ram, size: 16M }}\n\
         targets:\n  - name: {T}\n    luns: [ {{ lun: 0, device: ram0 }} ]\n    cpu_mask: \"0x1\"\n    ini_groups:\n      \
         - name: pinned\n        initiators: [ \"iqn.2026-11.io.test:host-a*\" ]\n        luns: [ {{ lun: 0, device: ram0 }} ]\n        \
         cpu_mask: \"0x2\"\n"
    );
    let t = Target::start_with_yaml(dir, &yaml);
    let reactors = t.rpc_ok("framework_get_reactors", json!({}))["reactors"].as_array().unwrap().clone();
    let core_of = |reactor: u64| {
        reactors.iter().find(|r| r["id"].as_u64() == Some(reactor)).and_then(|r| r["core"].as_u64())
    };
    // The CPU of the reactor running `initiator`'s session, and its group, once the session is listed.
    let placed = |initiator: &str| {
        let deadline = std::time::Instant::now() + LIMIT;
        loop {
            let list = t.rpc_ok("iscsi_get_sessions", json!({ "name": T }));
            if let Some(s) = list.as_array().unwrap().iter().find(|s| s["initiator_name"] == initiator) {
                let reactor = s["connections"][0]["reactor"].as_u64().expect("connection reactor");
                return (core_of(reactor), s["group"].as_str().map(str::to_string));
            }
            assert!(std::time::Instant::now() < deadline, "no session of {initiator}: {list}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let pinned = Some("pinned".to_string());
    let mut a = Session::open(&url(&t, 0), INI_A);
    let mut b = Session::open(&url(&t, 0), INI_B);
    assert_eq!(placed(INI_A), (Some(1), pinned.clone()), "the group's session runs on its cpu_mask");
    assert_eq!(placed(INI_B), (Some(0), None), "a session outside the group runs on the target's");
    assert_eq!(a.cmd("write 0 0"), "GOOD");
    assert_eq!(b.cmd("read 0 0"), "GOOD");
    let shown = t.cli_ok(&["show", &format!("targets/iscsi/{T}/ini_groups/pinned")]);
    assert!(shown.lines().any(|l| l.contains("cpu_mask") && l.contains("0x2")), "{shown}");
    let listed = t.cli_ok(&["list", "groups"]);
    let row = listed.lines().find(|l| l.split_whitespace().nth(1) == Some("pinned")).unwrap_or_default();
    assert_eq!(row.split_whitespace().rev().take(2).collect::<Vec<_>>(), ["-", "0x2"], "{listed}");

    // Live, through the CLI: the group follows the target's mask again ("0" = unset); new sessions go there.
    t.cli_ok(&["set", &format!("targets/iscsi/{T}/ini_groups/pinned/cpu_mask"), "0"]);
    let shown = t.cli_ok(&["show", &format!("targets/iscsi/{T}/ini_groups/pinned/cpu_mask")]);
    assert_eq!(shown, "0x1\n", "the group shows the target's mask it now follows, not marked [key]");
    let mut a2 = Session::open(&url(&t, 0), "iqn.2026-11.io.test:host-a2");
    assert_eq!(placed("iqn.2026-11.io.test:host-a2"), (Some(0), pinned.clone()));
    assert_eq!(placed(INI_A), (Some(1), pinned.clone()), "a running session keeps its reactor");
    assert_eq!(a.cmd("read 0 0"), "GOOD");
    // ...and through JSON-RPC, back to CPU 1.
    t.rpc_ok(
        "iscsi_initiator_group_set_attribute",
        json!({ "name": T, "group": "pinned", "attribute": "cpu_mask", "value": "0x2" }),
    );
    let mut a3 = Session::open(&url(&t, 0), "iqn.2026-11.io.test:host-a3");
    assert_eq!(placed("iqn.2026-11.io.test:host-a3"), (Some(1), pinned));
    assert_eq!(a2.cmd("read 0 0"), "GOOD");
    assert_eq!(a3.cmd("read 0 0"), "GOOD");
    // save-config writes the group's own mask back.
    let saved = t.dir.path().join("saved.yaml");
    t.cli_ok(&["save-config", "-o", saved.to_str().unwrap()]);
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(text.contains("  - name: pinned\n") && text.contains("    cpu_mask: '0x2'\n"), "{text}");
}
