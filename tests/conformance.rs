//! libiscsi's conformance suite `iscsi-test-cu -d` against polltgt, on a RAM LUN and on a file LUN. The per-test
//! results are summarised in the test output. This test requires the suite to run to completion without the target
//! crashing or hanging; the SCSI conformance issue raises the bar to zero failures.

mod common;

use common::{parse_test_cu, run, summarize, CuResult, Lun, Target};
use std::io::Write;
use std::time::Duration;

fn conformance(lun: Lun, label: &str) {
    let mut t = Target::start(&[lun], "");
    let out = run("iscsi-test-cu", &["-d", "-v", &t.url(0)], Duration::from_secs(1200));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let results = parse_test_cu(&text);
    let (pass, fail, skip) = summarize(&results);
    // Written to the process's stderr directly (not eprintln!, which the test harness captures) so that the counts
    // appear in every test run's output.
    let mut report = format!(
        "iscsi-test-cu on {label}: {} distinct tests: {pass} passed, {fail} failed, {skip} skipped\n",
        results.len()
    );
    for (name, r) in &results {
        let tag = match r {
            CuResult::Pass => "pass",
            CuResult::Fail => "FAIL",
            CuResult::Skip => "skip",
        };
        report.push_str(&format!("  {tag} {name}\n"));
    }
    let _ = std::io::stderr().lock().write_all(report.as_bytes());
    assert!(t.alive(), "polltgt died during iscsi-test-cu on {label}:\n{}", t.output());
    assert!(results.len() > 100, "iscsi-test-cu ran only {} tests on {label}:\n{text}", results.len());
    assert!(text.contains("Run Summary"), "iscsi-test-cu did not complete on {label}:\n{text}");
}

#[test]
fn iscsi_test_cu_on_ram_lun() {
    conformance(Lun::Ram { size_mb: 128, blocksize: 512 }, "RAM LUN");
}

#[test]
fn iscsi_test_cu_on_file_lun() {
    conformance(Lun::File { size_mb: 128, blocksize: 512 }, "file LUN");
}
