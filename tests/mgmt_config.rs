//! Configuration write-back and SCST compatibility against the real binary: `save-config` round-trips a tree changed
//! at run time to an identical tree after a restart; `import-scst` translates the SCST README's advanced sample
//! (tests/data/scst-advanced.conf) into a configuration that serves what the sample describes; an SCST script runs
//! line by line.

mod common;

use common::{run, run_ok, Target};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);
const T: &str = "iqn.2026-11.io.polltgt:save";

/// The whole object tree, without what is run time by nature (statistics, assigned ids, thread ids, sessions).
fn tree(t: &Target) -> Vec<Value> {
    let nodes = t.rpc_ok("object_walk", json!({ "path": "" }));
    nodes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| !n["path"].as_str().is_some_and(|p| p == "sgv" || p.starts_with("sgv/")))
        .map(|n| {
            let mut n = n.clone();
            if let Some(attrs) = n["attributes"].as_array_mut() {
                attrs.retain(|a| {
                    !(a["name"] == "tid"
                        || a["name"] == "thread_pid"
                        || (a["name"] == "rel_tgt_id" && a["key"] == false))
                });
            }
            n
        })
        .collect()
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_polltgt")
}

#[test]
fn save_config_round_trips_to_an_identical_running_tree() {
    let files = tempfile::tempdir().unwrap();
    let disk = files.path().join("disk.img");
    std::fs::File::create(&disk).unwrap().set_len(8 << 20).unwrap();
    let yaml = format!(
        "portals: [ {{ address: \"127.0.0.1:0\" }} ]\n\
         devices:\n  - {{ name: ram0, handler: ram, size: 16M, usn: ram0serial }}\n  - {{ name: file1, handler: vdisk_fileio, filename: {} }}\n\
         targets:\n  - name: {T}\n    luns: [ {{ lun: 0, device: ram0 }} ]\n",
        disk.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let t = Target::start_with_yaml(dir, &yaml);
    // Change a bit of everything at run time, through every interface.
    t.rpc_ok(
        "bdev_null_create",
        json!({ "name": "null1", "num_blocks": 65536, "block_size": 4096 }),
    );
    t.cli_ok(&[
        "scst",
        "/sys/kernel/scst_tgt/handlers/vdisk_nullio/mgmt",
        "add_device null2 size_mb=64; t10_vend_id=ACME; rotational=0",
    ]);
    t.cli_ok(&["set", "devices/null2/size_mb", "128"]);
    t.cli_ok(&[
        "scst",
        "/sys/kernel/scst_tgt/targets/iscsi/mgmt",
        "add_target iqn.2026-11.io.polltgt:two",
    ]);
    t.cli_ok(&[
        "scst",
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2026-11.io.polltgt:two/luns/mgmt",
        "add null2 3 read_only=1",
    ]);
    t.cli_ok(&[
        "scst",
        "/sys/kernel/scst_tgt/targets/iscsi/mgmt",
        "add_target_attribute iqn.2026-11.io.polltgt:two IncomingUser joe 12charsecret",
    ]);
    t.cli_ok(&[
        "scst",
        "/sys/kernel/scst_tgt/targets/iscsi/mgmt",
        "add_target_attribute iqn.2026-11.io.polltgt:two allowed_portal 127.0.0.?",
    ]);
    t.cli_ok(&[
        "scst",
        "/sys/kernel/scst_tgt/targets/iscsi/mgmt",
        "add_attribute IncomingUser disc 12charsecret9",
    ]);
    t.cli_ok(&[
        "scst",
        "/sys/kernel/scst_tgt/targets/iscsi/iqn.2026-11.io.polltgt:two/enabled",
        "1",
    ]);
    // FirstBurstLength may not exceed MaxBurstLength (RFC 7143 §13.14): one set explicitly is not lowered behind
    // the administrator's back (one left at its default follows MaxBurstLength down, for SCST scripts).
    t.cli_ok(&["set", &format!("targets/iscsi/{T}/FirstBurstLength"), "262144"]);
    let out = t.cli(&["set", &format!("targets/iscsi/{T}/MaxBurstLength"), "131072"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "targets/iscsi/{T}: FirstBurstLength: 262144 exceeds MaxBurstLength 131072"
        )),
        "{err}"
    );
    t.cli_ok(&["set", &format!("targets/iscsi/{T}/FirstBurstLength"), "65536"]);
    t.cli_ok(&["set", &format!("targets/iscsi/{T}/MaxBurstLength"), "131072"]);
    t.cli_ok(&["set", &format!("targets/iscsi/{T}/HeaderDigest"), "CRC32C,None"]);
    t.cli_ok(&["set", &format!("targets/iscsi/{T}/per_portal_acl"), "1"]);
    t.rpc_ok(
        "iscsi_target_node_add_lun",
        json!({ "name": T, "lun": 1, "device": "null1" }),
    );
    t.rpc_ok(
        "iscsi_target_node_add_lun",
        json!({ "name": T, "lun": 2, "device": "file1" }),
    );
    t.rpc_ok("iscsi_create_initiator_group", json!({ "name": T, "group": "g1" }));
    t.rpc_ok(
        "iscsi_initiator_group_add_initiators",
        json!({ "name": T, "group": "g1", "initiators": ["iqn.2026-11.io.a:*#127.0.0.1", "!iqn.2026-11.io.b:?"] }),
    );
    t.cli_ok(&[
        "scst",
        &format!("/sys/kernel/scst_tgt/targets/iscsi/{T}/ini_groups/g1/luns/mgmt"),
        "add file1 0",
    ]);
    t.cli_ok(&[
        "scst",
        &format!("/sys/kernel/scst_tgt/targets/iscsi/{T}/ini_groups/mgmt"),
        "create empty",
    ]);
    t.cli_ok(&[
        "scst",
        &format!("/sys/kernel/scst_tgt/targets/iscsi/{T}/luns/mgmt"),
        "del 1",
    ]);
    let before = tree(&t);
    assert!(before.len() > 20, "{before:?}");

    // save-config writes back to the file the target was started from, atomically and keeping its mode.
    let cfg_path = t.dir.path().join("polltgt.yaml");
    let out = t.cli_ok(&["save-config"]);
    assert!(out.contains("polltgt.yaml"), "{out}");
    let saved = std::fs::read_to_string(&cfg_path).unwrap();
    for absent in ["ImmediateData", "QueuedCommands", "nv_cache", "blocksize: 512"] {
        assert!(
            !saved.contains(absent),
            "{absent} is at its default and must not be written:\n{saved}"
        );
    }
    for present in [
        "MaxBurstLength: 131072",
        "per_portal_acl: true",
        "name: empty",
        "t10_vend_id: ACME",
        "size: 128M",
        "read_only: true",
        "'!iqn.2026-11.io.b:?'",
    ] {
        assert!(saved.contains(present), "{present} missing:\n{saved}");
    }
    // To another file too.
    let other = files.path().join("copy.yaml");
    t.cli_ok(&["save-config", "--output", other.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&other).unwrap(), saved);
    drop(t);

    let t2 = Target::start_with_yaml(tempfile::tempdir().unwrap(), &saved);
    let after = tree(&t2);
    assert_eq!(before.len(), after.len());
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a, b, "the tree differs after the restart");
    }
    // And the restarted target serves what the tree says.
    assert!(
        !run("iscsi-ls", &[&format!("iscsi://{}", t2.addr)], LIMIT)
            .status
            .success(),
        "discovery CHAP is required"
    );
    let ls = run_ok("iscsi-ls", &[&format!("iscsi://disc%12charsecret9@{}", t2.addr)], LIMIT);
    assert!(ls.contains(T) && ls.contains("iqn.2026-11.io.polltgt:two"), "{ls}");
}

fn substitute(conf: &str, dir: &Path) -> String {
    let mut c = conf.to_string();
    for (from, name, size) in [
        ("/disk1", "disk1", 8u64 << 20),
        ("/disk2", "disk2", 8 << 20),
        ("/dev/sda5", "sda5", 4 << 20),
    ] {
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().set_len(size).unwrap();
        c = c.replace(&format!("filename {from}\n"), &format!("filename {}\n", p.display()));
    }
    c
}

#[test]
fn import_scst_translates_the_readme_advanced_sample() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/scst-advanced.conf");
    // Strict: everything in the sample has a polltgt equivalent (the vcdrom device included, an empty drive).
    let out = run(bin(), &["import-scst", fixture.to_str().unwrap()], LIMIT);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let strict = String::from_utf8_lossy(&out.stdout);
    assert!(strict.contains("name: cdrom\n  handler: vcdrom"), "{strict}");

    // With the sample's backing files replaced by scratch files (--lenient changes nothing: no problems).
    let files = tempfile::tempdir().unwrap();
    let conf = files.path().join("scst.conf");
    std::fs::write(
        &conf,
        substitute(&std::fs::read_to_string(&fixture).unwrap(), files.path()),
    )
    .unwrap();
    let yaml_path = files.path().join("imported.yaml");
    let out = run(
        bin(),
        &[
            "import-scst",
            "--lenient",
            conf.to_str().unwrap(),
            "-o",
            yaml_path.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr).matches("(left out)").count(), 0);
    let yaml = std::fs::read_to_string(&yaml_path).unwrap();
    run_ok(bin(), &["check-config", yaml_path.to_str().unwrap()], LIMIT);
    assert!(yaml.contains("iSNSServer: 192.168.1.16:3205 AccessControl"), "{yaml}");
    // The sample's iSNS server is not on this machine: serve without it (tests talk to loopback only).
    let yaml: String = yaml.lines().filter(|l| !l.contains("iSNSServer")).map(|l| format!("{l}\n")).collect();
    for present in [
        "name: disk2",
        "blocksize: 4096",
        "nv_cache: true",
        "handler: vdisk_blockio",
        "size_mb: 2621440",
        "user: joeD",
        "user: jim1",
        "user: joe2",
        "HeaderDigest: CRC32C,None",
        "MaxRecvDataSegmentLength: 8192",
        "FirstBurstLength: 32768",
        "MaxOutstandingR2T: 1",
        "lun: 26",
        "name: special_ini",
        "iqn.2005-03.org.open-iscsi:cacdcd2520",
    ] {
        assert!(yaml.contains(present), "{present} missing:\n{yaml}");
    }
    assert!(yaml.contains("handler: vcdrom"), "{yaml}");

    // Serve it (on a free port) and check the sample's behaviour with libiscsi.
    let t = Target::start_with_yaml(
        tempfile::tempdir().unwrap(),
        &format!("{yaml}portals: [ {{ address: \"127.0.0.1:0\" }} ]\n"),
    );
    let ls = run_ok("iscsi-ls", &[&format!("iscsi://joeD%12charsecret@{}", t.addr)], LIMIT);
    assert!(
        ls.contains("iqn.2006-10.net.vlnb:tgt ") && ls.contains("iqn.2006-10.net.vlnb:tgt1"),
        "discovery with CHAP:\n{ls}"
    );
    assert!(
        !run("iscsi-ls", &[&format!("iscsi://{}", t.addr)], LIMIT)
            .status
            .success(),
        "discovery needs CHAP"
    );
    let tgt = format!("iscsi://{}/iqn.2006-10.net.vlnb:tgt/0", t.addr);
    assert!(run_ok("iscsi-inq", &[&tgt], LIMIT).contains("DIRECT_ACCESS"));
    // LUN 1 of tgt is the sample's vcdrom: a CD-ROM drive without a medium.
    let cd = format!("iscsi://{}/iqn.2006-10.net.vlnb:tgt/1", t.addr);
    let inq = run_ok("iscsi-inq", &[&cd], LIMIT);
    assert!(inq.contains("MMC") && inq.contains("Removable:1"), "{inq}");
    // tgt1 wants CHAP (joe or joe2); the default LUN 0 is disk2 with 4 KiB blocks.
    let tgt1 = |lun: u32, creds: &str| format!("iscsi://{creds}@{}/iqn.2006-10.net.vlnb:tgt1/{lun}", t.addr);
    let cap = run_ok("iscsi-readcapacity16", &[&tgt1(0, "joe2%12charsecret2")], LIMIT);
    assert!(cap.contains("LOGICAL BLOCK LENGTH IN BYTES:4096"), "{cap}");
    let cap = run_ok("iscsi-readcapacity16", &[&tgt1(26, "joe%12charsecret")], LIMIT);
    assert!(
        cap.contains(&format!("Total size:{}", 5u64 << 39)),
        "nullio has SCST's default size: {cap}"
    );
    // The special initiator sees blockio (4 MiB, 512-byte blocks) as its LUN 0 instead.
    let cap = run_ok(
        "iscsi-readcapacity16",
        &[
            "-i",
            "iqn.2005-03.org.open-iscsi:cacdcd2520",
            &tgt1(0, "joe%12charsecret"),
        ],
        LIMIT,
    );
    assert!(
        cap.contains(&format!("Total size:{}", 4u64 << 20)) && cap.contains("LENGTH IN BYTES:512"),
        "{cap}"
    );
}

#[test]
fn an_scst_script_runs_line_for_line() {
    let files = tempfile::tempdir().unwrap();
    let disk = files.path().join("disk1");
    std::fs::File::create(&disk).unwrap().set_len(8 << 20).unwrap();
    // The iSCSI-SCST README's first sample script, with the image path replaced.
    let script = format!(
        "#!/bin/bash\nmodprobe scst\nmodprobe scst_vdisk\n\
         echo \"add_device disk1 filename={}; nv_cache=1\" >/sys/kernel/scst_tgt/handlers/vdisk_fileio/mgmt\n\
         service iscsi-scst start\n\
         echo \"add_target iqn.2006-10.net.vlnb:tgt\" >/sys/kernel/scst_tgt/targets/iscsi/mgmt\n\
         echo \"add disk1 0\" >/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt/luns/mgmt\n\
         echo 1 >/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt/enabled\n\
         echo 1 >/sys/kernel/scst_tgt/targets/iscsi/enabled\n",
        disk.display()
    );
    let path = files.path().join("setup.sh");
    std::fs::write(&path, script).unwrap();
    let t = Target::start_with_yaml(
        tempfile::tempdir().unwrap(),
        "portals: [ { address: \"127.0.0.1:0\" } ]\n",
    );
    let out = t.cli_ok(&["scst-script", path.to_str().unwrap()]);
    assert!(out.contains("5 line(s) applied, 3 skipped"), "{out}");
    let inq = run_ok(
        "iscsi-inq",
        &[&format!("iscsi://{}/iqn.2006-10.net.vlnb:tgt/0", t.addr)],
        LIMIT,
    );
    assert!(inq.contains("DIRECT_ACCESS"), "{inq}");
    let show = t.cli_ok(&["show", "devices/disk1"]);
    assert!(
        show.lines().any(|l| l.starts_with("*nv_cache") && l.contains(" 1 ")),
        "{show}"
    );
    // A failing line stops the script and is named.
    std::fs::write(
        &path,
        "echo \"add disk9 1\" >/sys/kernel/scst_tgt/targets/iscsi/iqn.2006-10.net.vlnb:tgt/luns/mgmt\n",
    )
    .unwrap();
    let out = t.cli(&["scst-script", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("setup.sh:line 1:") && err.contains("disk9"), "{err}");
}
