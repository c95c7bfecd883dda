//! The configuration model: the embedded default, the full example, round trips, and one test per error kind with
//! the exact message (file:line:column: path: message).

use std::path::{Path, PathBuf};
use std::time::Duration;

use polltgt_iscsi::chap::{ChapUser, Credentials, Secret};
use polltgt_iscsi::params::{Digest, TargetParams};
use polltgt_mgmt::{
    BlockSize, ChapAccount, Config, ConfigError, DeviceConfig, FieldPath, Handler, IscsiConfig,
    LunConfig, Size, TargetConfig, TargetName, DEFAULT_TARGET_NAME,
};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/polltgt.yaml")
}

/// The error message for `text` loaded as `polltgt.yaml`.
fn err(text: &str) -> String {
    match Config::from_yaml_str(text, "polltgt.yaml") {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// A RAM disk `disk1` and a target `iqn.2026-11.io.polltgt:a` whose body follows (indented by 4).
fn with_target(body: &str) -> String {
    format!(
        "devices:\n  - name: disk1\n    handler: ram\n    size: 1G\ntargets:\n  - name: iqn.2026-11.io.polltgt:a\n{body}"
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Valid configurations

#[test]
fn embedded_default_is_one_target_with_a_1g_ram_disk_on_localhost() {
    let c = Config::embedded_default();
    c.validate().unwrap();
    assert_eq!(c.reactors.reactor_count(), 1);
    assert_eq!(c.portals.len(), 1);
    assert_eq!(c.portals[0].address, "127.0.0.1:3260".parse().unwrap());
    assert_eq!(c.portals[0].tpgt, 1);
    assert_eq!(c.devices.len(), 1);
    let ram0 = &c.devices[0];
    assert_eq!(ram0.name, "ram0");
    assert_eq!(ram0.handler, Handler::Ram);
    assert_eq!(ram0.size_bytes(), Some(1 << 30));
    assert_eq!(ram0.blocksize, BlockSize::B512);
    assert!(!ram0.read_only);
    assert_eq!(c.targets.len(), 1);
    let t = &c.targets[0];
    assert_eq!(t.name.as_str(), DEFAULT_TARGET_NAME);
    assert!(TargetName::new(DEFAULT_TARGET_NAME).is_ok());
    assert!(t.enabled);
    assert_eq!(t.luns, vec![LunConfig::new(0, "ram0")]);
    assert_eq!(t.target_params(), TargetParams::default());

    let yaml = c.to_yaml().unwrap();
    assert_eq!(Config::from_yaml_str(&yaml, "default.yaml").unwrap(), c);
}

#[test]
fn an_empty_file_is_no_targets_on_the_default_portal() {
    let c = Config::from_yaml_str("", "empty.yaml").unwrap();
    assert!(c.devices.is_empty() && c.targets.is_empty());
    assert_eq!(c.portals[0].address, "127.0.0.1:3260".parse().unwrap());
    assert_eq!(c.reactors.reactor_count(), 1);
}

#[test]
fn full_example_loads_with_every_key() {
    let c = Config::load(example_path()).unwrap();
    assert_eq!(c.reactors.count, None);
    assert_eq!(c.reactors.cpu_mask.as_ref().unwrap().cpus(), &[0, 1]);
    assert_eq!(c.reactors.reactor_count(), 2);
    let addrs: Vec<String> = c.portals.iter().map(|p| p.address.to_string()).collect();
    assert_eq!(addrs, ["127.0.0.1:3260", "[::1]:3260"]);

    let names: Vec<&str> = c.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["ram0", "null0", "disk1", "sdb"]);
    let ram0 = c.device("ram0").unwrap();
    assert_eq!(ram0.size, Some(Size::GIB));
    assert!(!ram0.rotational);
    let null0 = c.device("null0").unwrap();
    assert_eq!(null0.handler, Handler::VdiskNullio);
    assert_eq!(null0.size_mb, Some(1 << 20));
    assert_eq!(null0.size_bytes(), Some(1 << 40));
    assert_eq!(null0.blocksize.bytes(), 4096);
    let disk1 = c.device("disk1").unwrap();
    assert_eq!(disk1.handler, Handler::VdiskFileio);
    assert_eq!((disk1.physical_blocksize, disk1.physical_block_bytes()), (Some(4096), 4096));
    assert_eq!(ram0.physical_block_bytes(), 512, "default: the logical block size");
    assert_eq!(
        disk1.filename.as_deref(),
        Some(Path::new("/var/lib/polltgt/disk1.img"))
    );
    assert!(
        disk1.o_direct
            && disk1.rotational
            && !disk1.nv_cache
            && !disk1.write_through
            && !disk1.removable
    );
    assert_eq!(disk1.size_bytes(), None);
    assert_eq!(disk1.t10_vend_id.as_deref(), Some("POLLTGT"));
    assert_eq!(disk1.prod_id.as_deref(), Some("FILEDISK"));
    assert_eq!(disk1.prod_rev_lvl.as_deref(), Some("0100"));
    assert_eq!(disk1.t10_dev_id.as_deref(), Some("disk1-0001"));
    assert_eq!(disk1.usn.as_deref(), Some("3f2a0001"));
    let sdb = c.device("sdb").unwrap();
    assert_eq!(sdb.handler, Handler::VdiskBlockio);
    assert!(sdb.write_through, "SCST-style 1 is true");

    let default = c.target("iqn.2026-11.io.polltgt:default").unwrap();
    assert!(default.enabled);
    assert_eq!(default.luns.len(), 2);
    assert!(default.luns[1].read_only);
    assert_eq!(
        default.target_params(),
        TargetParams::default(),
        "the example spells out SCST's defaults"
    );

    let tuned = c.target("iqn.2026-11.io.polltgt:tuned").unwrap();
    assert!(!tuned.enabled);
    assert_eq!(tuned.luns[1], LunConfig::new(26, "sdb"));
    let p = tuned.target_params();
    assert!(p.initial_r2t && p.immediate_data);
    assert_eq!(p.max_recv_data_segment_length, 8192);
    assert_eq!(p.max_xmit_data_segment_length, 262_144);
    assert_eq!(p.max_burst_length, 131_072);
    assert_eq!(p.first_burst_length, 32_768);
    assert_eq!(p.max_outstanding_r2t, 1);
    assert_eq!(p.header_digest, vec![Digest::Crc32c, Digest::None]);
    assert_eq!(p.data_digest, vec![Digest::Crc32c]);
    assert_eq!(p.queued_commands, 128);
    assert_eq!(p.nop_in_interval, None, "0 disables NOP-In");
    assert_eq!(p.nop_in_timeout, Duration::from_secs(30));
    assert_eq!(p.rsp_timeout, Duration::from_secs(30));
    assert_eq!(
        tuned.incoming_users,
        vec![
            ChapAccount::new("joe", "12charsecret"),
            ChapAccount::new("joe2", "12charsecret2")
        ]
    );
    assert_eq!(
        tuned.outgoing_user,
        Some(ChapAccount::new("jim1", "12charpasswd"))
    );
    assert!(tuned.credentials().required());
    assert!(
        !default.credentials().required(),
        "no IncomingUser: no CHAP"
    );
    assert_eq!(
        c.iscsi,
        IscsiConfig {
            enabled: true,
            incoming_users: vec![ChapAccount::new("joeD", "12charsecret")],
            outgoing_user: Some(ChapAccount::new("jackD", "12charsecret1")),
            ..IscsiConfig::default()
        }
    );
    let core = TargetParams::default();
    assert_eq!(
        (
            p.default_time2wait,
            p.default_time2retain,
            p.max_connections,
            p.error_recovery_level
        ),
        (
            core.default_time2wait,
            core.default_time2retain,
            core.max_connections,
            core.error_recovery_level
        )
    );
}

#[test]
fn round_trip_through_yaml_is_lossless_and_stable() {
    let c = Config::load(example_path()).unwrap();
    let yaml = c.to_yaml().unwrap();
    let again = Config::from_yaml_str(&yaml, "written.yaml").unwrap();
    assert_eq!(again, c);
    assert_eq!(again.to_yaml().unwrap(), yaml);
    // Sizes are written with the largest exact unit.
    assert!(yaml.contains("size: 1G\n"), "{yaml}");
    assert!(yaml.contains("HeaderDigest: CRC32C,None\n"), "{yaml}");
    assert!(yaml.contains("cpu_mask: '0x3'\n"), "{yaml}");
    // CHAP accounts are written in the structured form, whatever form they were read in.
    assert!(
        yaml.contains("  IncomingUser:\n  - user: joeD\n    secret: 12charsecret\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("  - user: joe2\n    secret: 12charsecret2\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("  OutgoingUser:\n    user: jim1\n    secret: 12charpasswd\n"),
        "{yaml}"
    );
    // The default writes no CHAP keys at all.
    let plain = Config::embedded_default().to_yaml().unwrap();
    assert!(
        !plain.contains("iscsi")
            && !plain.contains("IncomingUser")
            && !plain.contains("OutgoingUser"),
        "{plain}"
    );
}

#[test]
fn the_same_model_reads_json_rpc_parameters() {
    let c = Config::load(example_path()).unwrap();
    let json = serde_json::to_string(&c).unwrap();
    let back: Config = serde_json::from_str(&json).unwrap();
    assert_eq!(back, c);
    back.validate().unwrap();
    let bad = r#"{"targets":[{"name":"iqn.2026-11.io.polltgt:a","MaxBurstLength":100}]}"#;
    let e = serde_json::from_str::<Config>(bad).unwrap_err().to_string();
    assert!(e.starts_with("100 is out of range 512..16777215"), "{e}");
}

#[test]
fn handler_names_are_scst_names() {
    for h in [
        Handler::Ram,
        Handler::VdiskNullio,
        Handler::VdiskFileio,
        Handler::VdiskBlockio,
    ] {
        assert_eq!(
            serde_json::to_value(h).unwrap(),
            serde_json::Value::from(h.as_str())
        );
    }
}

#[test]
fn flags_accept_scst_spellings_and_values_have_defaults() {
    let c = Config::from_yaml_str(
        &with_target(
            "    enabled: 0\n    InitialR2T: Yes\n    ImmediateData: no\n    luns: [ { lun: 3, device: disk1, read_only: on } ]\n",
        ),
        "flags.yaml",
    )
    .unwrap();
    let t = &c.targets[0];
    assert!(!t.enabled && t.initial_r2t && !t.immediate_data && t.luns[0].read_only);
    assert_eq!(t.max_burst_length, 1 << 20);
    assert_eq!(t.queued_commands, 32);
    assert_eq!(t.nop_in_interval, 30);
    assert_eq!(t.rsp_timeout, 90);
    let d = &c.devices[0];
    assert!(d.rotational && !d.nv_cache);
    assert_eq!(d.blocksize, BlockSize::B512);

    let c = Config::from_yaml_str(
        "portals: [ { address: \"::1\" }, { address: 10.1.2.3, tpgt: 7 } ]\n",
        "p.yaml",
    )
    .unwrap();
    assert_eq!(c.portals[0].address, "[::1]:3260".parse().unwrap());
    assert_eq!(c.portals[0].tpgt, 1);
    assert_eq!(c.portals[1].address, "10.1.2.3:3260".parse().unwrap());
    assert_eq!(c.portals[1].tpgt, 7);
    let c = Config::from_yaml_str("reactors: { count: 4 }\n", "r.yaml").unwrap();
    assert_eq!(c.reactors.reactor_count(), 4);
}

#[test]
fn loading_names_the_file_as_given() {
    let dir = std::env::temp_dir().join(format!("polltgt-mgmt-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(
        &file,
        "devices:\n  - name: d\n    handler: ram\n    size: 1G\n    blocksize: 4000\n",
    )
    .unwrap();
    let e = Config::load(&file).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:5:16: devices[0].blocksize: 4000 is not a supported block size (512, 1024, 2048 or 4096)",
            file.display()
        )
    );
    let missing = dir.join("missing.yaml");
    let e = Config::load(&missing).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string().starts_with(&format!(
            "{}: cannot read the configuration: ",
            missing.display()
        )),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------------------------
// Errors found by the parser

#[test]
fn error_yaml_syntax() {
    assert_eq!(
        err("targets:\n  - name: iqn.2026-11.io.polltgt:a\n   bad: [\n"),
        "polltgt.yaml:3:4: targets: did not find expected '-' indicator, while parsing a block collection at line 2 column 3"
    );
    assert_eq!(
        err("devices:\n\t- name: a\n"),
        "polltgt.yaml:2:1: devices: found character that cannot start any token, while scanning for the next token"
    );
}

#[test]
fn error_unknown_key() {
    assert_eq!(
        err(&with_target("    MaxBurstLenght: 4096\n")),
        "polltgt.yaml:7:5: targets[0].MaxBurstLenght: unknown field `MaxBurstLenght`, expected one of `name`, \
         `enabled`, `luns`, `InitialR2T`, `ImmediateData`, `MaxRecvDataSegmentLength`, `MaxXmitDataSegmentLength`, \
         `MaxBurstLength`, `FirstBurstLength`, `MaxOutstandingR2T`, `HeaderDigest`, `DataDigest`, `QueuedCommands`, \
         `NopInInterval`, `NopInTimeout`, `RspTimeout`, `IncomingUser`, `OutgoingUser`, `IncomingUser1`, \
         `IncomingUser2`, `IncomingUser3`, `IncomingUser4`, `IncomingUser5`, `IncomingUser6`, `IncomingUser7`, \
         `IncomingUser8`, `redirect`, `per_portal_acl`, `allowed_portal`, `MaxSessions`, `rel_tgt_id`, `ini_groups`, \
         `cpu_mask`, `per_sess_dedicated_tgt_threads`"
    );
    assert_eq!(
        err("portal:\n  - address: 1.2.3.4\n"),
        "polltgt.yaml:1:1: portal: unknown field `portal`, expected one of `reactors`, `state_dir`, `portals`, `iscsi`, `devices`, `targets`, `mgmt`"
    );
    assert_eq!(
        err("devices:\n  - { name: d, handler: ram, size: 1G, readonly: true }\n"),
        "polltgt.yaml:2:40: devices[0].readonly: unknown field `readonly`, expected one of `name`, `handler`, `size`, \
         `size_mb`, `filename`, `blocksize`, `physical_blocksize`, `read_only`, `nv_cache`, `o_direct`, `iopoll`, `threads_num`, `rotational`, \
         `write_through`, `removable`, `thin_provisioned`, `t10_vend_id`, `prod_id`, `prod_rev_lvl`, `t10_dev_id`, `usn`"
    );
}

#[test]
fn error_wrong_type() {
    assert_eq!(
        err(&with_target("    MaxBurstLength: lots\n")),
        "polltgt.yaml:7:21: targets[0].MaxBurstLength: invalid type: string \"lots\", expected an integer in 512..16777215"
    );
    assert_eq!(
        err("targets: 3\n"),
        "polltgt.yaml:1:10: targets: invalid type: integer `3`, expected a sequence"
    );
    assert_eq!(
        err("hello\n"),
        "polltgt.yaml:1:1: invalid type: string \"hello\", expected struct Config"
    );
}

#[test]
fn error_missing_required_key() {
    assert_eq!(
        err("devices:\n  - handler: ram\n    size: 1G\n"),
        "polltgt.yaml:2:5: devices[0]: missing field `name`"
    );
    assert_eq!(
        err("targets:\n  - luns: []\n"),
        "polltgt.yaml:2:5: targets[0]: missing field `name`"
    );
}

#[test]
fn error_duplicate_key() {
    assert_eq!(
        err("devices:\n  - name: d\n    name: e\n    handler: ram\n    size: 1G\n"),
        "polltgt.yaml:2:5: devices[0]: duplicate field `name`"
    );
}

#[test]
fn error_out_of_range() {
    assert_eq!(
        err(&with_target("    MaxBurstLength: 0\n")),
        "polltgt.yaml:7:21: targets[0].MaxBurstLength: 0 is out of range 512..16777215"
    );
    assert_eq!(
        err(&with_target("    MaxRecvDataSegmentLength: 16777216\n")),
        "polltgt.yaml:7:31: targets[0].MaxRecvDataSegmentLength: 16777216 is out of range 512..16777215"
    );
    assert_eq!(
        err(&with_target("    MaxOutstandingR2T: -1\n")),
        "polltgt.yaml:7:24: targets[0].MaxOutstandingR2T: -1 is out of range 1..65535"
    );
    assert_eq!(
        err(&with_target("    QueuedCommands: 4096\n")),
        "polltgt.yaml:7:21: targets[0].QueuedCommands: 4096 is out of range 1..2048"
    );
    assert_eq!(
        err(&with_target("    NopInTimeout: 1\n")),
        "polltgt.yaml:7:19: targets[0].NopInTimeout: 1 is out of range 2..65535"
    );
    assert_eq!(
        err(&with_target(
            "    luns:\n      - lun: 16384\n        device: disk1\n"
        )),
        "polltgt.yaml:8:14: targets[0].luns[0].lun: 16384 is out of range 0..16383"
    );
    assert_eq!(
        err("portals: [ { address: 127.0.0.1, tpgt: 65536 } ]\n"),
        "polltgt.yaml:1:40: portals[0].tpgt: 65536 is out of range 0..65535"
    );
    assert_eq!(
        err("reactors: { count: 0 }\n"),
        "polltgt.yaml:1:20: reactors.count: 0 is out of range 1..1024"
    );
}

#[test]
fn error_unknown_handler() {
    assert_eq!(
        err("devices:\n  - name: cd\n    handler: dev_disk\n"),
        "polltgt.yaml:3:14: devices[0].handler: unknown variant `dev_disk`, expected one of `ram`, `vdisk_nullio`, \
         `vdisk_fileio`, `vdisk_blockio`, `vcdrom`"
    );
}

#[test]
fn vcdrom_devices() {
    // An empty drive, and one with an image; the size comes from the image, the blocks are 2048 bytes.
    for yaml in ["devices:\n  - name: cd\n    handler: vcdrom\n", "devices:\n  - { name: cd, handler: vcdrom, filename: /x.iso }\n"]
    {
        let c = Config::from_yaml_str(yaml, "polltgt.yaml").unwrap_or_else(|e| panic!("{yaml}: {e}"));
        assert_eq!(c.devices[0].handler, Handler::Vcdrom);
    }
    assert_eq!(
        err("devices:\n  - { name: cd, handler: vcdrom, size: 1G }\n"),
        "polltgt.yaml:2:40: devices[0].size: a vcdrom device takes its size from the image in filename"
    );
    assert_eq!(
        err("devices:\n  - { name: cd, handler: vcdrom, blocksize: 4096 }\n"),
        "polltgt.yaml:2:45: devices[0].blocksize: a vcdrom device has 2048-byte blocks"
    );
    assert_eq!(
        err("devices:\n  - { name: cd, handler: vcdrom, thin_provisioned: true }\n"),
        "polltgt.yaml:2:52: devices[0].thin_provisioned: a vcdrom device is read-only"
    );
}

#[test]
fn error_block_size() {
    assert_eq!(
        err("devices:\n  - name: d\n    handler: ram\n    size: 1G\n    blocksize: 520\n"),
        "polltgt.yaml:5:16: devices[0].blocksize: 520 is not a supported block size (512, 1024, 2048 or 4096)"
    );
}

#[test]
fn physical_block_size() {
    let dev = |extra: &str| format!("devices:\n  - name: d\n    handler: ram\n    size: 1G\n{extra}");
    for (extra, bytes) in [("", 512), ("    physical_blocksize: 4096\n", 4096), ("    blocksize: 4096\n    physical_blocksize: 4096\n", 4096)] {
        let c = Config::from_yaml_str(&dev(extra), "polltgt.yaml").unwrap_or_else(|e| panic!("{extra}: {e}"));
        assert_eq!(c.devices[0].physical_block_bytes(), bytes);
    }
    assert_eq!(
        err(&dev("    physical_blocksize: 1536\n")),
        "polltgt.yaml:5:25: devices[0].physical_blocksize: 1536 is not a power of two multiple of blocksize 512 \
         (at most 16777216 bytes)"
    );
    assert_eq!(
        err(&dev("    blocksize: 4096\n    physical_blocksize: 2048\n")),
        "polltgt.yaml:6:25: devices[0].physical_blocksize: 2048 is not a power of two multiple of blocksize 4096 \
         (at most 134217728 bytes)"
    );
    assert_eq!(
        err(&dev("    physical_blocksize: 33554432\n")),
        "polltgt.yaml:5:25: devices[0].physical_blocksize: 33554432 is not a power of two multiple of blocksize 512 \
         (at most 16777216 bytes)"
    );
    assert!(err(&dev("    physical_blocksize: 256\n")).contains("devices[0].physical_blocksize"));
    assert_eq!(
        err("devices:\n  - { name: cd, handler: vcdrom, physical_blocksize: 4096 }\n"),
        "polltgt.yaml:2:54: devices[0].physical_blocksize: a vcdrom device has 2048-byte blocks"
    );
}

#[test]
fn error_size_syntax() {
    assert_eq!(
        err("devices:\n  - name: d\n    handler: ram\n    size: 1.5G\n"),
        "polltgt.yaml:4:11: devices[0].size: \"1.5G\" is not a size (expected bytes, or a number with K, M, G or T, \
         e.g. 512M or 1G)"
    );
    assert_eq!(
        err("devices:\n  - name: d\n    handler: ram\n    size: 0\n"),
        "polltgt.yaml:4:11: devices[0].size: a size must be greater than 0"
    );
}

#[test]
fn error_digest() {
    assert_eq!(
        err(&with_target("    HeaderDigest: CRC32C,MD5\n")),
        "polltgt.yaml:7:19: targets[0].HeaderDigest: \"MD5\" is not a digest (None or CRC32C, or a list such as \
         CRC32C,None)"
    );
    assert_eq!(
        err(&with_target("    DataDigest: None,None\n")),
        "polltgt.yaml:7:17: targets[0].DataDigest: None is listed twice"
    );
}

#[test]
fn error_iscsi_name() {
    assert_eq!(
        err("targets:\n  - name: iqn.2026-11.io.polltgt:Disk1\n"),
        "polltgt.yaml:2:11: targets[0].name: \"iqn.2026-11.io.polltgt:Disk1\" contains uppercase 'D'; iSCSI names \
         are lowercase (RFC 3722 stringprep)"
    );
    assert_eq!(
        err("targets:\n  - name: iqn.2026-11.io.polltgt:disk_1\n"),
        "polltgt.yaml:2:11: targets[0].name: \"iqn.2026-11.io.polltgt:disk_1\" contains '_'; an iSCSI name may \
         contain a-z, 0-9, '-', '.' and ':' (RFC 3722)"
    );
    assert_eq!(
        err("targets:\n  - name: iqn.2026-13.io.polltgt:disk1\n"),
        "polltgt.yaml:2:11: targets[0].name: \"iqn.2026-13.io.polltgt:disk1\": expected a date yyyy-mm and a dot \
         after \"iqn.\" (RFC 7143 §4.2.7.3, e.g. iqn.2026-11.io.polltgt)"
    );
    assert_eq!(
        err("targets:\n  - name: \"iqn.2026-11.:disk1\"\n"),
        "polltgt.yaml:2:11: targets[0].name: \"iqn.2026-11.:disk1\": the naming authority after the date must be a \
         reversed domain name such as io.polltgt (RFC 7143 §4.2.7.3)"
    );
    assert_eq!(
        err("targets:\n  - name: eui.0123\n"),
        "polltgt.yaml:2:11: targets[0].name: \"eui.0123\": eui. names carry an EUI-64: 16 hex digits (RFC 7143 \
         §4.2.7.4)"
    );
    assert_eq!(
        err("targets:\n  - name: tgt1\n"),
        "polltgt.yaml:2:11: targets[0].name: \"tgt1\" must start with \"iqn.\", \"eui.\" or \"naa.\" (RFC 7143 §4.2.7.2)"
    );
}

#[test]
fn error_portal_syntax() {
    assert_eq!(
        err("portals:\n  - address: localhost:3260\n"),
        "polltgt.yaml:2:14: portals[0].address: \"localhost:3260\" is not a portal address (expected IPv4:port or \
         [IPv6]:port, e.g. 127.0.0.1:3260 or [::1]:3260)"
    );
}

#[test]
fn error_cpu_mask() {
    assert_eq!(
        err("reactors:\n  cpu_mask: \"0x0\"\n"),
        "polltgt.yaml:2:13: reactors.cpu_mask: \"0x0\": a cpu_mask must select at least one CPU"
    );
    assert_eq!(
        err("reactors:\n  cpu_mask: zz\n"),
        "polltgt.yaml:2:13: reactors.cpu_mask: \"zz\" is not a hexadecimal CPU mask such as \"0x3\""
    );
}

#[test]
fn error_flag() {
    assert_eq!(
        err("devices:\n  - name: d\n    handler: ram\n    size: 1G\n    read_only: maybe\n"),
        "polltgt.yaml:5:16: devices[0].read_only: \"maybe\" is not a boolean (true/false, yes/no, 1/0)"
    );
}

#[test]
fn error_inquiry_identity() {
    assert_eq!(
        err("devices:\n  - name: d\n    handler: ram\n    size: 1G\n    t10_vend_id: VERYLONGVENDOR\n"),
        "polltgt.yaml:5:18: devices[0].t10_vend_id: \"VERYLONGVENDOR\" is 14 characters long, at most 8 fit"
    );
    assert_eq!(
        err("devices:\n  - name: d\n    handler: ram\n    size: 1G\n    usn: \"tab\\there\"\n"),
        "polltgt.yaml:5:10: devices[0].usn: \"tab\\there\" contains '\\t'; only printable ASCII is allowed (SPC-4 \
         §4.3.1)"
    );
}

#[test]
fn error_device_name() {
    assert_eq!(
        err("devices:\n  - name: my/disk\n    handler: ram\n    size: 1G\n"),
        "polltgt.yaml:2:11: devices[0].name: character '/' is not allowed in device name \"my/disk\" (allowed: \
         letters, digits, '_', '-', '.', ':')"
    );
}

#[test]
fn error_relative_filename() {
    assert_eq!(
        err("devices:\n  - name: d\n    handler: vdisk_fileio\n    filename: disk.img\n"),
        "polltgt.yaml:4:15: devices[0].filename: \"disk.img\" is not an absolute path"
    );
}

#[test]
fn error_more_than_one_document() {
    assert_eq!(
        err("devices: []\n---\ntargets: []\n"),
        "polltgt.yaml: deserializing from YAML containing more than one document is not supported"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Errors found after parsing (located by path)

#[test]
fn error_duplicate_device_name() {
    assert_eq!(
        err("devices:\n  - name: d\n    handler: ram\n    size: 1G\n  - name: d\n    handler: vdisk_nullio\n    size: 1G\n"),
        "polltgt.yaml:5:11: devices[1].name: device name \"d\" is already used by devices[0]"
    );
}

#[test]
fn error_duplicate_target_name() {
    assert_eq!(
        err("targets:\n  - name: iqn.2026-11.io.polltgt:a\n  - name: iqn.2026-11.io.polltgt:a\n"),
        "polltgt.yaml:3:11: targets[1].name: target name iqn.2026-11.io.polltgt:a is already used by targets[0]"
    );
}

#[test]
fn error_duplicate_lun() {
    assert_eq!(
        err(&with_target(
            "    luns:\n      - { lun: 0, device: disk1 }\n      - { lun: 0, device: disk1 }\n"
        )),
        "polltgt.yaml:9:16: targets[0].luns[1].lun: LUN 0 is already mapped by targets[0].luns[0]"
    );
}

#[test]
fn error_lun_device_unknown() {
    assert_eq!(
        err(&with_target(
            "    luns:\n      - lun: 0\n        device: disk2\n"
        )),
        "polltgt.yaml:9:17: targets[0].luns[0].device: no device named \"disk2\" (devices: disk1)"
    );
    assert_eq!(
        err("targets: [ { name: \"iqn.2026-11.io.polltgt:a\", luns: [ { lun: 0, device: nope } ] } ]\n"),
        "polltgt.yaml:1:74: targets[0].luns[0].device: no device named \"nope\" (devices: none)"
    );
}

#[test]
fn error_first_burst_exceeds_max_burst() {
    assert_eq!(
        err(&with_target("    MaxBurstLength: 65536\n    FirstBurstLength: 262144\n")),
        "polltgt.yaml:8:23: targets[0].FirstBurstLength: 262144 exceeds MaxBurstLength 65536 (RFC 7143 §13.14)"
    );
    // Against the default MaxBurstLength: the key is not written, the error still points at FirstBurstLength.
    assert_eq!(
        err(&with_target("    FirstBurstLength: 2097152\n")),
        "polltgt.yaml:7:23: targets[0].FirstBurstLength: 2097152 exceeds MaxBurstLength 1048576 (RFC 7143 §13.14)"
    );
}

#[test]
fn error_handler_requirements() {
    assert_eq!(
        err("devices:\n  - name: d\n    handler: vdisk_fileio\n"),
        "polltgt.yaml:2:5: devices[0].filename: handler vdisk_fileio needs filename"
    );
    assert_eq!(
        err("devices:\n  - name: d\n    handler: ram\n"),
        "polltgt.yaml:2:5: devices[0].size: handler ram needs size (or size_mb)"
    );
    assert_eq!(
        err("devices:\n  - name: d\n    handler: ram\n    size: 1G\n    filename: /tmp/x\n"),
        "polltgt.yaml:5:15: devices[0].filename: handler ram does not use filename"
    );
    assert_eq!(
        err("devices:\n  - name: d\n    handler: vdisk_blockio\n    filename: /dev/sdb\n    o_direct: true\n"),
        "polltgt.yaml:5:15: devices[0].o_direct: o_direct applies to vdisk_fileio, not vdisk_blockio"
    );
}

#[test]
fn error_size_and_size_mb() {
    assert_eq!(
        err("devices:\n  - name: d\n    handler: ram\n    size: 1G\n    size_mb: 1024\n"),
        "polltgt.yaml:5:14: devices[0].size_mb: give either size or size_mb, not both"
    );
}

#[test]
fn error_size_not_a_multiple_of_the_block_size() {
    assert_eq!(
        err("devices:\n  - name: d\n    handler: ram\n    size: 1000\n"),
        "polltgt.yaml:4:11: devices[0].size: 1000 bytes is not a multiple of blocksize 512"
    );
    assert_eq!(
        err("devices:\n  - name: d\n    handler: ram\n    size: 6K\n    blocksize: 4096\n"),
        "polltgt.yaml:4:11: devices[0].size: 6144 bytes is not a multiple of blocksize 4096"
    );
}

#[test]
fn error_count_and_cpu_mask() {
    assert_eq!(
        err("reactors: { count: 2, cpu_mask: \"0x3\" }\n"),
        "polltgt.yaml:1:33: reactors.cpu_mask: give either count or cpu_mask, not both"
    );
}

/// Initiator groups with their own session placement: `cpu_mask` and `per_sess_dedicated_tgt_threads`, each unset
/// (the target's) unless given; save-config writes only what is set, `false` included (it differs from "the
/// target's").
#[test]
fn initiator_groups_take_their_own_cpu_mask_and_dedicated_reactors() {
    let text = format!(
        "reactors: {{ cpu_mask: \"0x3\" }}\n{}",
        with_target(
            "    cpu_mask: \"0x1\"\n    per_sess_dedicated_tgt_threads: yes\n    ini_groups:\n      \
             - name: pinned\n        initiators: [ \"iqn.x:a*\" ]\n        cpu_mask: 0x2\n      \
             - name: shared\n        per_sess_dedicated_tgt_threads: 0\n      \
             - name: plain\n"
        )
    );
    let c = Config::from_yaml_str(&text, "polltgt.yaml").unwrap();
    let g = &c.targets[0].ini_groups;
    assert_eq!(g[0].cpu_mask.as_ref().map(|m| m.cpus().to_vec()), Some(vec![1]));
    assert_eq!(g[0].per_sess_dedicated_tgt_threads, None, "unset: the target's");
    assert_eq!((g[1].cpu_mask.as_ref(), g[1].per_sess_dedicated_tgt_threads), (None, Some(false)));
    assert_eq!((g[2].cpu_mask.as_ref(), g[2].per_sess_dedicated_tgt_threads), (None, None));

    let saved = polltgt_mgmt::save::minimal_yaml(&c).unwrap();
    assert_eq!(Config::from_yaml_str(&saved, "saved.yaml").unwrap(), c);
    // Group keys are indented by 4 in the saved file.
    let group_lines = |key: &str| saved.lines().filter(|l| l.starts_with(&format!("    {key}:"))).collect::<Vec<_>>();
    assert_eq!(group_lines("cpu_mask"), ["    cpu_mask: '0x2'"], "only the pinned group's mask:\n{saved}");
    assert_eq!(group_lines("per_sess_dedicated_tgt_threads"), ["    per_sess_dedicated_tgt_threads: false"], "{saved}");
}

#[test]
fn error_initiator_group_placement() {
    let group = |body: &str| with_target(&format!("    ini_groups:\n      - name: g\n{body}"));
    assert_eq!(
        err(&group("        cpu_mask: zz\n")),
        "polltgt.yaml:9:19: targets[0].ini_groups[0].cpu_mask: \"zz\" is not a hexadecimal CPU mask such as \"0x3\""
    );
    assert_eq!(
        err(&group("        cpu_mask: \"0x0\"\n")),
        "polltgt.yaml:9:19: targets[0].ini_groups[0].cpu_mask: \"0x0\": a cpu_mask must select at least one CPU"
    );
    assert_eq!(
        err(&group("        per_sess_dedicated_tgt_threads: maybe\n")),
        "polltgt.yaml:9:41: targets[0].ini_groups[0].per_sess_dedicated_tgt_threads: \"maybe\" is not a boolean \
         (true/false, yes/no, 1/0)"
    );
    assert_eq!(
        err(&group("        cpumask: 0x1\n")),
        "polltgt.yaml:9:9: targets[0].ini_groups[0].cpumask: unknown field `cpumask`, expected one of `name`, \
         `initiators`, `luns`, `cpu_mask`, `per_sess_dedicated_tgt_threads`"
    );
    // With the reactors given by a mask, a target's or group's mask must name one of their CPUs.
    let on = |body: &str| format!("reactors: {{ cpu_mask: \"0x3\" }}\n{}", group(body));
    assert_eq!(
        err(&on("        cpu_mask: \"0x4\"\n")),
        "polltgt.yaml:10:19: targets[0].ini_groups[0].cpu_mask: 0x4 selects no CPU a reactor runs on \
         (reactors.cpu_mask is 0x3)"
    );
    assert_eq!(
        err(&format!("reactors: {{ cpu_mask: \"0x3\" }}\n{}", with_target("    cpu_mask: \"0xc\"\n"))),
        "polltgt.yaml:8:15: targets[0].cpu_mask: 0xc selects no CPU a reactor runs on (reactors.cpu_mask is 0x3)"
    );
    Config::from_yaml_str(&on("        cpu_mask: \"0x6\"\n"), "polltgt.yaml").expect("one CPU of the mask has a reactor");
}

#[test]
fn error_portals() {
    assert_eq!(
        err("portals:\n  - address: 127.0.0.1:3260\n  - address: \"127.0.0.1\"\n"),
        "polltgt.yaml:3:14: portals[1].address: portal 127.0.0.1:3260 is already listed as portals[0]"
    );
    assert_eq!(
        err("portals: []\n"),
        "polltgt.yaml:1:10: portals: at least one portal is required"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Configurations built in code

#[test]
fn validate_checks_configurations_built_in_code() {
    let mut c = Config::embedded_default();
    c.targets[0].max_burst_length = 0;
    let e = c.validate().unwrap_err();
    assert_eq!(
        e.to_string(),
        "config: targets[0].MaxBurstLength: 0 is out of range 512..16777215"
    );
    let d = e.diagnostic().unwrap();
    assert_eq!(d.location, None);
    assert_eq!(
        d.path,
        FieldPath::root()
            .key("targets")
            .index(0)
            .key("MaxBurstLength")
    );

    let mut c = Config::embedded_default();
    c.targets.push(TargetConfig::new(
        TargetName::new("iqn.2026-11.io.polltgt:b").unwrap(),
    ));
    c.targets[1].luns.push(LunConfig::new(20000, "ram0"));
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "config: targets[1].luns[0].lun: 20000 is out of range 0..16383"
    );

    let mut c = Config::embedded_default();
    let mut disk = DeviceConfig::new("disk1", Handler::VdiskFileio);
    disk.filename = Some(PathBuf::from("relative.img"));
    disk.prod_id = Some("A PRODUCT NAME TOO LONG".into());
    c.devices.push(disk);
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "config: devices[1].filename: \"relative.img\" is not an absolute path"
    );
    c.devices[1].filename = Some(PathBuf::from("/srv/disk1.img"));
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "config: devices[1].prod_id: \"A PRODUCT NAME TOO LONG\" is 23 characters long, at most 16 fit"
    );
    c.devices[1].prod_id = None;
    c.validate().unwrap();
    // What validates also loads after writing.
    let yaml = c.to_yaml().unwrap();
    assert_eq!(Config::from_yaml_str(&yaml, "rpc.yaml").unwrap(), c);
}

// ---------------------------------------------------------------------------------------------------------------
// CHAP accounts

#[test]
fn chap_accounts_in_both_forms_become_core_credentials() {
    let c = Config::from_yaml_str(
        &with_target(
            "    IncomingUser:\n      - \"joe 12charsecret\"\n      - { user: ann, secret: \"with spaces ok!\" }\n      \
             - user: bob\n        secret: '123456789012'\n    OutgoingUser: \"tgt   target-secret\"\n",
        ),
        "polltgt.yaml",
    )
    .unwrap();
    let t = &c.targets[0];
    assert_eq!(
        t.incoming_users,
        vec![
            ChapAccount::new("joe", "12charsecret"),
            ChapAccount::new("ann", "with spaces ok!"),
            ChapAccount::new("bob", "123456789012"),
        ]
    );
    assert_eq!(
        t.outgoing_user,
        Some(ChapAccount::new("tgt", "target-secret"))
    );
    let creds = t.credentials();
    assert_eq!(
        creds,
        Credentials {
            incoming: vec![
                ChapUser::new("joe", "12charsecret"),
                ChapUser::new("ann", "with spaces ok!"),
                ChapUser::new("bob", "123456789012"),
            ],
            outgoing: Some(ChapUser::new("tgt", "target-secret")),
        }
    );
    creds.check().unwrap();
    assert!(c.discovery_credentials() == Credentials::none());

    // A single account needs no list; the discovery section takes the same forms.
    let c = Config::from_yaml_str(
        "iscsi:\n  IncomingUser: { user: disc, secret: discovery-secret }\ntargets:\n  \
         - name: iqn.2026-11.io.polltgt:a\n    IncomingUser: \"joe 12charsecret\"\n",
        "polltgt.yaml",
    )
    .unwrap();
    assert_eq!(
        c.discovery_credentials(),
        Credentials {
            incoming: vec![ChapUser::new("disc", "discovery-secret")],
            outgoing: None,
        }
    );
    assert_eq!(
        c.targets[0].incoming_users,
        vec![ChapAccount::new("joe", "12charsecret")]
    );
    // Round trip, YAML and JSON.
    let yaml = c.to_yaml().unwrap();
    assert_eq!(Config::from_yaml_str(&yaml, "written.yaml").unwrap(), c);
    let json = serde_json::to_string(&c).unwrap();
    assert!(
        json.contains(r#""IncomingUser":[{"user":"joe","secret":"12charsecret"}]"#),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), c);
    // An empty list is no CHAP.
    let c = Config::from_yaml_str(&with_target("    IncomingUser: []\n"), "polltgt.yaml").unwrap();
    assert!(c.targets[0].incoming_users.is_empty());
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let c = Config::load(example_path()).unwrap();
    let dbg = format!("{c:?} {c:#?}");
    for secret in ["12charsecret", "12charpasswd"] {
        assert!(!dbg.contains(secret), "{secret} in {dbg}");
    }
    assert!(dbg.contains("joe2") && dbg.contains("<redacted>"));
}

#[test]
fn error_chap_secret_too_short() {
    let rule = "the CHAP secret is 8 bytes long; at least 12 bytes are required (RFC 7143 §9.2.1)";
    assert_eq!(
        err(&with_target("    IncomingUser: \"joe shortpwd\"\n")),
        format!("polltgt.yaml:7:19: targets[0].IncomingUser: {rule}")
    );
    assert_eq!(
        err(&with_target(
            "    IncomingUser:\n      - \"joe 12charsecret\"\n      - user: ann\n        secret: shortpwd\n"
        )),
        format!("polltgt.yaml:10:17: targets[0].IncomingUser[1].secret: {rule}")
    );
    assert_eq!(
        err(&with_target(
            "    OutgoingUser: { user: jim, secret: shortpwd }\n"
        )),
        format!("polltgt.yaml:7:40: targets[0].OutgoingUser.secret: {rule}")
    );
    assert_eq!(
        err("iscsi:\n  IncomingUser: [ \"disc shortpwd\" ]\n"),
        format!("polltgt.yaml:2:19: iscsi.IncomingUser[0]: {rule}")
    );
    let long = "s".repeat(256);
    assert_eq!(
        err(&with_target(&format!("    IncomingUser: \"joe {long}\"\n"))),
        "polltgt.yaml:7:19: targets[0].IncomingUser: the CHAP secret is 256 bytes long; at most 255 bytes are allowed"
    );
}

#[test]
fn error_chap_account_syntax() {
    let cases: &[(&str, &str)] = &[
        (
            "    IncomingUser: \"joe\"\n",
            "polltgt.yaml:7:19: targets[0].IncomingUser: expected \"USER SECRET\" (two words), found 1 word; use \
             { user: USER, secret: SECRET } for secrets with spaces",
        ),
        (
            "    IncomingUser: \"joe my 12charsecret\"\n",
            "polltgt.yaml:7:19: targets[0].IncomingUser: expected \"USER SECRET\" (two words), found 3 words; use \
             { user: USER, secret: SECRET } for secrets with spaces",
        ),
        (
            "    IncomingUser: [ { user: joe, secret: 123456789012345 } ]\n",
            "polltgt.yaml:7:42: targets[0].IncomingUser[0].secret: the CHAP secret must be a string (quote it)",
        ),
        (
            "    IncomingUser: [ { user: joe, secret: 12charsecret, password: x } ]\n",
            "polltgt.yaml:7:21: targets[0].IncomingUser[0]: unknown field `password`, expected `user` or `secret`",
        ),
        (
            "    IncomingUser: [ { user: joe } ]\n",
            "polltgt.yaml:7:21: targets[0].IncomingUser[0]: missing field `secret`",
        ),
        (
            "    IncomingUser: [ { secret: 12charsecret } ]\n",
            "polltgt.yaml:7:21: targets[0].IncomingUser[0]: missing field `user`",
        ),
        (
            "    IncomingUser: [ { user: \"\", secret: 12charsecret } ]\n",
            "polltgt.yaml:7:29: targets[0].IncomingUser[0].user: a CHAP user name must not be empty",
        ),
        (
            "    IncomingUser: [ { user: joe, secret: 12charsecret, secret: 12charsecret } ]\n",
            "polltgt.yaml:7:21: targets[0].IncomingUser[0]: duplicate field `secret`",
        ),
        (
            "    IncomingUser: 123456789012\n",
            "polltgt.yaml:7:19: targets[0].IncomingUser: expected a CHAP account: { user: USER, secret: SECRET } or \
             \"USER SECRET\"",
        ),
        (
            "    OutgoingUser: [ \"jim 12charsecret\" ]\n",
            "polltgt.yaml:7:19: targets[0].OutgoingUser: invalid type: sequence, expected a CHAP account: { user: \
             USER, secret: SECRET } or \"USER SECRET\"",
        ),
    ];
    for (body, want) in cases {
        let e = err(&with_target(body));
        assert_eq!(&e, want);
        for secret in ["12charsecret", "123456789012"] {
            assert!(!e.contains(secret), "{e}");
        }
    }
}

#[test]
fn error_chap_duplicate_user() {
    assert_eq!(
        err(&with_target(
            "    IncomingUser: [ \"joe 12charsecret\", \"joe 12charsecret2\" ]\n"
        )),
        "polltgt.yaml:7:41: targets[0].IncomingUser[1]: CHAP user \"joe\" is already listed as targets[0].IncomingUser[0]"
    );
}

#[test]
fn error_chap_secret_in_both_directions() {
    // Within one target.
    assert_eq!(
        err(&with_target(
            "    IncomingUser: [ \"joe 12charsecret\", \"ann 12charsecret2\" ]\n    \
             OutgoingUser: { user: jim, secret: 12charsecret2 }\n"
        )),
        "polltgt.yaml:8:19: targets[0].OutgoingUser: OutgoingUser \"jim\" has the secret of IncomingUser \"ann\" \
         (targets[0].IncomingUser[1]); RFC 7143 §9.2.1 forbids using a CHAP secret in both directions"
    );
    // Across sections: a discovery account's secret as a target's outgoing secret.
    assert_eq!(
        err("iscsi:\n  IncomingUser: \"disc 12charsecret\"\ntargets:\n  - name: iqn.2026-11.io.polltgt:a\n    \
             OutgoingUser: \"jim 12charsecret\"\n"),
        "polltgt.yaml:5:19: targets[0].OutgoingUser: OutgoingUser \"jim\" has the secret of IncomingUser \"disc\" \
         (iscsi.IncomingUser[0]); RFC 7143 §9.2.1 forbids using a CHAP secret in both directions"
    );
    // ... and the other way round.
    assert_eq!(
        err("iscsi:\n  OutgoingUser: \"tgt 12charsecret\"\ntargets:\n  - name: iqn.2026-11.io.polltgt:a\n    \
             IncomingUser: \"joe 12charsecret\"\n"),
        "polltgt.yaml:2:17: iscsi.OutgoingUser: OutgoingUser \"tgt\" has the secret of IncomingUser \"joe\" \
         (targets[0].IncomingUser[0]); RFC 7143 §9.2.1 forbids using a CHAP secret in both directions"
    );
    // The same secret for two incoming accounts is allowed.
    Config::from_yaml_str(
        "iscsi:\n  IncomingUser: \"disc 12charsecret\"\ntargets:\n  - name: iqn.2026-11.io.polltgt:a\n    \
         IncomingUser: \"joe 12charsecret\"\n",
        "polltgt.yaml",
    )
    .unwrap();
}

#[test]
fn validate_checks_chap_accounts_built_in_code() {
    let mut c = Config::embedded_default();
    c.targets[0].incoming_users = vec![ChapAccount::new("joe", "short")];
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "config: targets[0].IncomingUser[0]: the CHAP secret is 5 bytes long; at least 12 bytes are required (RFC \
         7143 §9.2.1)"
    );
    c.targets[0].incoming_users = vec![ChapAccount::new("jo e\u{7}", "12charsecret")];
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "config: targets[0].IncomingUser[0]: the CHAP user name \"jo e\\u{7}\" contains a control character"
    );
    c.targets[0].incoming_users = vec![ChapAccount {
        user: "joe".into(),
        secret: Secret::new(vec![0xff; 12]),
    }];
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "config: targets[0].IncomingUser[0]: the CHAP secret must be UTF-8 text"
    );
    assert!(
        c.to_yaml().is_err(),
        "a secret that is not text cannot be written"
    );
    c.targets[0].incoming_users = vec![ChapAccount::new("joe", "12charsecret")];
    c.iscsi.outgoing_user = Some(ChapAccount::new("", "other-secret-1"));
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "config: iscsi.OutgoingUser: a CHAP user name must not be empty"
    );
    c.iscsi.outgoing_user = Some(ChapAccount::new("tgt", "12charsecret"));
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "config: iscsi.OutgoingUser: OutgoingUser \"tgt\" has the secret of IncomingUser \"joe\" \
         (targets[0].IncomingUser[0]); RFC 7143 §9.2.1 forbids using a CHAP secret in both directions"
    );
    c.iscsi.outgoing_user = Some(ChapAccount::new("tgt", "other-secret-1"));
    c.validate().unwrap();
    let yaml = c.to_yaml().unwrap();
    assert_eq!(Config::from_yaml_str(&yaml, "rpc.yaml").unwrap(), c);
}

// ---------------------------------------------------------------------------------------------------------------
// state_dir (persistent reservations with APTPL)

#[test]
fn state_dir_defaults_to_var_lib_polltgt_and_must_be_absolute() {
    let c = Config::from_yaml_str("", "polltgt.yaml").unwrap();
    assert_eq!(c.state_dir, Path::new(polltgt_mgmt::DEFAULT_STATE_DIR));
    assert_eq!(Config::embedded_default().state_dir, Path::new("/var/lib/polltgt"));
    assert!(!c.to_yaml().unwrap().contains("state_dir"), "the default is not written out");
    let c = Config::from_yaml_str("state_dir: /tmp/pt-state\n", "polltgt.yaml").unwrap();
    assert_eq!(c.state_dir, Path::new("/tmp/pt-state"));
    let back = Config::from_yaml_str(&c.to_yaml().unwrap(), "again.yaml").unwrap();
    assert_eq!(back, c);
    let e = err("reactors: { count: 1 }\nstate_dir: relative/dir\n");
    assert!(e.contains("polltgt.yaml:2:") && e.contains("state_dir") && e.contains("not an absolute path"), "{e}");
}
