//! The `polltgt` command line: configuration errors name the file, line and field and exit non-zero; the embedded
//! default serves a 1 GiB RAM LUN on 127.0.0.1:3260.

mod common;

use common::{run, run_ok, Target};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn invalid_config_names_file_line_and_field_and_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "devices:\n  - name: ram0\n    handler: ram\n    size: 64M\ntargets:\n  - name: iqn.2026-11.io.polltgt:t\n    MaxBurstLength: 0\n    luns:\n      - { lun: 0, device: ram0 }\n",
    )
    .unwrap();
    let out = run(env!("CARGO_BIN_EXE_polltgt"), &["serve", "--config", cfg.to_str().unwrap()], LIMIT);
    assert!(!out.status.success(), "a bad configuration must make polltgt exit non-zero");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml:7:") && err.contains("targets[0].MaxBurstLength") && err.contains("out of range"),
        "error must name file, line and field: {err}"
    );
}

#[test]
fn unknown_key_and_dangling_lun_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("typo.yaml");
    std::fs::write(&cfg, "devices:\n  - name: ram0\n    handler: ram\n    sise: 64M\n").unwrap();
    let out = run(env!("CARGO_BIN_EXE_polltgt"), &["check-config", cfg.to_str().unwrap()], LIMIT);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("typo.yaml:4:") && err.contains("sise"), "{err}");

    std::fs::write(
        &cfg,
        "targets:\n  - name: iqn.2026-11.io.polltgt:t\n    luns:\n      - { lun: 0, device: nowhere }\n",
    )
    .unwrap();
    let out = run(env!("CARGO_BIN_EXE_polltgt"), &["check-config", cfg.to_str().unwrap()], LIMIT);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("typo.yaml:4:") && err.contains("nowhere"), "{err}");
}

#[test]
fn missing_config_file_is_an_error() {
    let out = run(env!("CARGO_BIN_EXE_polltgt"), &["serve", "--config", "/nonexistent/polltgt.yaml"], LIMIT);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/polltgt.yaml"));
}

#[test]
fn check_config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ok.yaml");
    std::fs::write(&cfg, "devices:\n  - name: ram0\n    handler: ram\n    size: 64M\n").unwrap();
    let out = run_ok(env!("CARGO_BIN_EXE_polltgt"), &["check-config", cfg.to_str().unwrap()], LIMIT);
    assert!(out.contains("name: ram0") && out.contains("127.0.0.1:3260"), "{out}");
}

/// The README's run command serves the embedded default. Skipped (with a message) when something else already
/// listens on 127.0.0.1:3260.
#[test]
fn embedded_default_serves_the_default_target_on_3260() {
    if std::net::TcpStream::connect("127.0.0.1:3260").is_ok() {
        eprintln!("skipping: 127.0.0.1:3260 is already in use");
        return;
    }
    let t = Target::start_default();
    assert_eq!(t.addr, "127.0.0.1:3260");
    let out = run_ok("iscsi-ls", &["-s", "iscsi://127.0.0.1:3260"], LIMIT);
    assert!(out.contains("Target:iqn.2026-11.io.polltgt:default Portal:127.0.0.1:3260,1"), "{out}");
    assert!(out.contains("Lun:0") && out.contains("Size:1023M"), "{out}");
}
