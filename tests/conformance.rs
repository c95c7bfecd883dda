//! libiscsi's conformance suite `iscsi-test-cu` against polltgt: `-d` (data-loss tests allowed) on a fully
//! provisioned file LUN, a thin provisioned file LUN and a thin provisioned RAM LUN, plus the suites that need a LUN
//! feature the others lack (removable medium, read-only, SANITIZE with `-S`) and the multipath suite with a second
//! URL to the same LUN (a second session through the same portal, and one through a second portal). Every run
//! prints its per-test results and fails on any FAIL, and on any skip that is not one of the documented reasons
//! (README, "Conformance").

mod common;

use common::{parse_test_cu, run, summarize, CuResult, Target, IQN};
use std::io::Write;
use std::time::Duration;

/// What a LUN of a run is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    ThickFile,
    ThinFile,
    ThinRam,
}

/// Why a test may be skipped; `None`: it must not be.
fn skip_reason(test: &str, kind: Kind, full: bool) -> Option<&'static str> {
    let suite = test.split('.').next().unwrap_or("");
    if full && suite == "MultipathIO" {
        return Some("one URL: the multipath runs give a second URL to the LUN and cover these");
    }
    // What the LUN deliberately lacks.
    if kind == Kind::ThickFile
        && matches!(
            test,
            "Unmap.Simple"
                | "Unmap.VPD"
                | "Unmap.ZeroBlocks"
                | "GetLBAStatus.UnmapSingle"
                | "Inquiry.BlockLimits"
                | "WriteSame10.Unmap"
                | "WriteSame10.UnmapUntilEnd"
                | "WriteSame16.Unmap"
                | "WriteSame16.UnmapUntilEnd"
        )
    {
        return Some("the LUN is fully provisioned (no UNMAP)");
    }
    if matches!(
        test,
        "CompareAndWrite.InvalidDataOutSize"
            | "WriteSame10.InvalidDataOutSize"
            | "WriteSame16.InvalidDataOutSize"
            | "WriteSame10.UnmapUnaligned"
            | "WriteSame16.UnmapUnaligned"
    ) {
        return Some("one logical block per physical block (LBPPB = 1); the suite runs these only for LBPPB > 1");
    }
    // Sanitize.Readonly and Sanitize.Reservations also try CRYPTOGRAPHIC ERASE after their other checks (which pass)
    // and report "[SKIPPED]" for it.
    if matches!(test, "Sanitize.CryptoErase" | "Sanitize.Readonly" | "Sanitize.Reservations") {
        return Some("no CRYPTOGRAPHIC ERASE (nothing is encrypted)");
    }
    if full {
        if suite == "PreventAllow" || test == "StartStopUnit.Simple" {
            return Some("the LUN is not removable (the removable run covers these)");
        }
        if test == "ReadOnly.ReadOnlySBC" {
            return Some("the LUN is writable (the read-only run covers this)");
        }
        if suite == "Sanitize" {
            return Some("SANITIZE tests need -S (the sanitize run covers them)");
        }
    }
    None
}

struct Run {
    label: &'static str,
    kind: Kind,
    /// Extra device attributes (YAML lines, 4-space indented).
    attributes: &'static str,
    /// Extra iscsi-test-cu arguments; empty: the whole suite.
    args: &'static [&'static str],
    /// A second URL to the same LUN (multipath): none, through the same portal, or through a second portal.
    second: Second,
}

/// The multipath variant of a run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Second {
    None,
    /// The same URL again: a second session (another ISID) through the same portal.
    Session,
    /// The same target and LUN through a second portal (127.0.0.2, its own target portal group).
    Portal,
}

fn device_yaml(dir: &std::path::Path, kind: Kind, attributes: &str) -> String {
    let base = match kind {
        Kind::ThinRam => "    handler: ram\n    size: 128M\n    thin_provisioned: true\n".to_string(),
        Kind::ThickFile | Kind::ThinFile => {
            let path = dir.join("disk0.img");
            let f = std::fs::File::create(&path).expect("create backing file");
            f.set_len(128 << 20).expect("size backing file");
            let thin = if kind == Kind::ThinFile { "    thin_provisioned: true\n" } else { "" };
            format!("    handler: vdisk_fileio\n    filename: {}\n{thin}", path.display())
        }
    };
    format!("  - name: d0\n    blocksize: 512\n{base}{attributes}")
}

fn conformance(r: Run) {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = device_yaml(dir.path(), r.kind, r.attributes);
    let portals = match r.second {
        Second::Portal => "  - address: \"127.0.0.1:0\"\n  - address: \"127.0.0.2:0\"\n    tpgt: 2\n",
        _ => "  - address: \"127.0.0.1:0\"\n",
    };
    let yaml = format!(
        "portals:\n{portals}devices:\n{device}targets:\n  - name: {IQN}\n    enabled: true\n    luns:\n      - {{ lun: 0, device: d0 }}\n"
    );
    let mut t = Target::start_with_yaml_portals(dir, &yaml, if r.second == Second::Portal { 2 } else { 1 });
    let url = t.url(0);
    let second = match r.second {
        Second::None => None,
        Second::Session => Some(url.clone()),
        Second::Portal => Some(format!("iscsi://{}/{IQN}/0", t.addrs[1])),
    };
    let mut args = vec!["-d", "-v"];
    args.extend_from_slice(r.args);
    args.push(&url);
    if let Some(s) = &second {
        args.push(s);
    }
    let out = run("iscsi-test-cu", &args, Duration::from_secs(1200));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let results = parse_test_cu(&text);
    let (pass, fail, skip) = summarize(&results);
    let full = r.args.is_empty();
    // Written to the process's stderr directly (not eprintln!, which the test harness captures) so that the counts
    // appear in every test run's output.
    let mut report = format!(
        "iscsi-test-cu on {}: {} distinct tests: {pass} passed, {fail} failed, {skip} skipped\n",
        r.label,
        results.len()
    );
    let mut unexplained = Vec::new();
    for (name, res) in &results {
        let line = match res {
            CuResult::Pass => format!("  pass {name}\n"),
            CuResult::Fail => format!("  FAIL {name}\n"),
            CuResult::Skip => match skip_reason(name, r.kind, full) {
                Some(why) => format!("  skip {name} ({why})\n"),
                None => {
                    unexplained.push(name.clone());
                    format!("  skip {name} (UNEXPECTED)\n")
                }
            },
        };
        report.push_str(&line);
    }
    let _ = std::io::stderr().lock().write_all(report.as_bytes());
    assert!(t.alive(), "polltgt died during iscsi-test-cu on {}:\n{}", r.label, t.output());
    assert!(text.contains("Run Summary"), "iscsi-test-cu did not complete on {}:\n{text}", r.label);
    if full {
        assert!(results.len() > 200, "iscsi-test-cu ran only {} tests on {}:\n{text}", results.len(), r.label);
    } else {
        assert!(!results.is_empty(), "iscsi-test-cu ran nothing on {}:\n{text}", r.label);
    }
    let failed: Vec<_> = results.iter().filter(|(_, x)| *x == CuResult::Fail).map(|(n, _)| n.as_str()).collect();
    assert!(failed.is_empty(), "iscsi-test-cu on {}: FAILED {failed:?}\n{report}", r.label);
    assert!(unexplained.is_empty(), "iscsi-test-cu on {}: skipped without a documented reason: {unexplained:?}", r.label);
}

#[test]
fn iscsi_test_cu_on_thick_file_lun() {
    conformance(Run { label: "thick file LUN", kind: Kind::ThickFile, attributes: "", args: &[], second: Second::None });
}

#[test]
fn iscsi_test_cu_on_thin_file_lun() {
    conformance(Run { label: "thin file LUN", kind: Kind::ThinFile, attributes: "", args: &[], second: Second::None });
}

#[test]
fn iscsi_test_cu_on_ram_lun() {
    conformance(Run { label: "thin RAM LUN", kind: Kind::ThinRam, attributes: "", args: &[], second: Second::None });
}

/// The suites that need a LUN feature the full runs' LUNs lack.
#[test]
fn iscsi_test_cu_feature_suites() {
    conformance(Run {
        label: "removable thin RAM LUN",
        kind: Kind::ThinRam,
        attributes: "    removable: true\n",
        args: &["-t", "SCSI.PreventAllow,SCSI.StartStopUnit,SCSI.NoMedia"],
        second: Second::None,
    });
    conformance(Run {
        label: "read-only thin file LUN",
        kind: Kind::ThinFile,
        attributes: "    read_only: true\n",
        args: &["-t", "SCSI.ReadOnly"],
        second: Second::None,
    });
    // Sanitize.Reset is left out: it expects a SANITIZE still running 3 s after it started (it sleeps, then wants
    // SANITIZE IN PROGRESS), which a 128 MiB LUN finishes long before.
    conformance(Run {
        label: "thin RAM LUN, SANITIZE (-S)",
        kind: Kind::ThinRam,
        attributes: "",
        args: &[
            "-S",
            "-t",
            "SCSI.Sanitize.BlockErase,SCSI.Sanitize.BlockEraseReserved,SCSI.Sanitize.CryptoErase,\
             SCSI.Sanitize.CryptoEraseReserved,SCSI.Sanitize.ExitFailureMode,SCSI.Sanitize.InvalidServiceAction,\
             SCSI.Sanitize.Overwrite,SCSI.Sanitize.OverwriteReserved,SCSI.Sanitize.Readonly,\
             SCSI.Sanitize.Reservations",
        ],
        second: Second::None,
    });
}

/// The multipath suite with a second URL to the same LUN, on a fresh LUN each time (MultipathIO.CompareAndWrite
/// compares block 256, which its setup never writes: it must start zeroed): a second session through the same
/// portal, and a second session through a second portal (another target port).
#[test]
fn iscsi_test_cu_multipath() {
    for (label, second) in
        [("thick file LUN, second session", Second::Session), ("thin RAM LUN, second portal", Second::Portal)]
    {
        let kind = if second == Second::Session { Kind::ThickFile } else { Kind::ThinRam };
        conformance(Run { label, kind, attributes: "", args: &["-t", "SCSI.MultipathIO"], second });
    }
}
