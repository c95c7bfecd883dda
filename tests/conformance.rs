//! libiscsi's conformance suite `iscsi-test-cu -d` against polltgt, on a RAM LUN and on a file LUN. The per-test
//! results are summarised in the test output. This test requires the suite to run to completion without the target
//! crashing or hanging; the SCSI conformance issue raises the bar to zero failures.

mod common;

use common::{parse_test_cu, run, summarize, CuResult, Lun, Target};
use std::time::Duration;

fn conformance(lun: Lun, label: &str) {
    let mut t = Target::start(&[lun], "");
    let out = run("iscsi-test-cu", &["-d", "-v", &t.url(0)], Duration::from_secs(1200));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let results = parse_test_cu(&text);
    let (pass, fail, skip) = summarize(&results);
    println!("iscsi-test-cu on {label}: {} tests: {pass} passed, {fail} failed, {skip} skipped", results.len());
    for (name, r) in &results {
        if *r == CuResult::Fail {
            println!("  FAIL {name}");
        }
    }
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
