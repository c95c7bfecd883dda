//! libiscsi's conformance suite `iscsi-test-cu` against polltgt: `-d` (data-loss tests allowed) on a fully
//! provisioned file LUN, a thin provisioned file LUN and a thin provisioned RAM LUN (one logical block per physical
//! block), the suites whose tests need more than one logical block per physical block on a thin file LUN with
//! 4096-byte physical blocks of 512-byte logical blocks (LBPPB 8), plus the suites that need a LUN feature the others
//! lack (removable medium, read-only, SANITIZE with `-S`) and the multipath suite with a second URL to the same LUN
//! (a second session through the same portal, and one through a second portal). Every run prints its per-test
//! results and fails on any FAIL and on any skip that is not one of the documented reasons (README, "Conformance").

mod common;

use common::{parse_test_cu, run, summarize, CuResult, Target, IQN};
use std::io::Write;
use std::time::Duration;

/// What a LUN of a run is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    ThickFile,
    ThinFile,
    /// Thin provisioned file, 4096-byte physical blocks (LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT 3).
    ThinFile4k,
    ThinRam,
    /// Fully provisioned 4 GiB file (the opt-in Sanitize.Reset run).
    LargeFile,
}

/// Why a test may be skipped; `None`: it must not be.
fn skip_reason(test: &str, kind: Kind, full: bool) -> Option<&'static str> {
    let suite = test.split('.').next().unwrap_or("");
    if full && suite == "MultipathIO" {
        return Some("one URL: the multipath runs give a second URL to the LUN and cover these");
    }
    // What the LUN deliberately lacks. The suite runs the last five only on a thin provisioned LUN with more than
    // one logical block per physical block.
    let lbppb_only = matches!(
        test,
        "CompareAndWrite.InvalidDataOutSize"
            | "WriteSame10.InvalidDataOutSize"
            | "WriteSame16.InvalidDataOutSize"
            | "WriteSame10.UnmapUnaligned"
            | "WriteSame16.UnmapUnaligned"
    );
    if kind == Kind::ThickFile
        && (lbppb_only
            || matches!(
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
            ))
    {
        return Some("the LUN is fully provisioned (no UNMAP)");
    }
    if lbppb_only && matches!(kind, Kind::ThinFile | Kind::ThinRam) {
        return Some(
            "one logical block per physical block (LBPPB = 1); the thin file run with 4096-byte physical blocks \
             covers these",
        );
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
        Kind::ThickFile | Kind::ThinFile | Kind::ThinFile4k | Kind::LargeFile => {
            let path = dir.join("disk0.img");
            let f = std::fs::File::create(&path).expect("create backing file");
            f.set_len(if kind == Kind::LargeFile { 4 << 30 } else { 128 << 20 }).expect("size backing file");
            let thin = match kind {
                Kind::ThinFile => "    thin_provisioned: true\n",
                Kind::ThinFile4k => "    thin_provisioned: true\n    physical_blocksize: 4096\n",
                _ => "",
            };
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
    let mut failed = Vec::new();
    for (name, res) in &results {
        let line = match res {
            CuResult::Pass => format!("  pass {name}\n"),
            CuResult::Fail => {
                failed.push(name.clone());
                format!("  FAIL {name}\n")
            }
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

/// The suites with tests that run only when a physical block holds more than one logical block (the five
/// `lbppb_only` tests of [`skip_reason`]), and the others that read the physical block size (READ CAPACITY (16),
/// the Block Limits and Logical Block Provisioning pages, UNMAP), on 4096-byte physical blocks of 512-byte logical
/// blocks. GetLBAStatus.UnmapSingle is left to the LBPPB = 1 runs, where it passes: for LBPPB > 1 its second loop
/// asks for the status of LBA i + 1 and wants the first descriptor to start at LBA i + LBPPB (libiscsi
/// test-tool/test_get_lba_status_unmap_single.c, lines 120 and 134), while SBC-3 §5.8.2 has the first descriptor
/// contain the requested LBA, as polltgt answers.
#[test]
fn iscsi_test_cu_on_thin_file_lun_with_4k_physical_blocks() {
    conformance(Run {
        label: "thin file LUN, 4096-byte physical blocks",
        kind: Kind::ThinFile4k,
        attributes: "",
        args: &[
            "-t",
            "SCSI.CompareAndWrite,SCSI.WriteSame10,SCSI.WriteSame16,SCSI.Unmap,SCSI.GetLBAStatus.Simple,\
             SCSI.GetLBAStatus.BeyondEol,SCSI.ReadCapacity16,SCSI.Inquiry,SCSI.Read10,SCSI.Write10,SCSI.Verify16",
        ],
        second: Second::None,
    });
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
    // Sanitize.Reset is left out: it passes only if the SANITIZE still runs after the test's sleeps (3 s, then the
    // task management functions, a reconnection and 1 s more), which depends on the machine's speed against the
    // LUN's size (a timing assumption of the test; see iscsi_test_cu_sanitize_reset_on_a_4g_file_lun).
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

/// Sanitize.Reset, opt-in (`cargo test --test conformance -- --ignored sanitize_reset`): it sends a SANITIZE
/// OVERWRITE, sleeps 3 s, expects SANITIZE IN PROGRESS, sends ABORT TASK, ABORT TASK SET, LOGICAL UNIT RESET and
/// target warm and cold resets, reconnects after 1 s more and expects the operation still in progress. That needs
/// an overwrite lasting longer than those sleeps: on a 4 GiB file LUN it took 23 s on the 2-core development VM
/// (debug build), and the test passes. It is not in the default run because whether it passes depends on the
/// machine's write speed (a faster disk finishes before the test looks) and it writes 4 GiB to the temporary
/// directory; tests/sanitize.rs checks the same behaviour without depending on time.
#[test]
#[ignore = "timing-dependent by design of the libiscsi test; writes 4 GiB"]
fn iscsi_test_cu_sanitize_reset_on_a_4g_file_lun() {
    conformance(Run {
        label: "4 GiB file LUN, Sanitize.Reset (-S)",
        kind: Kind::LargeFile,
        attributes: "",
        args: &["-S", "-t", "SCSI.Sanitize.Reset"],
        second: Second::None,
    });
}
