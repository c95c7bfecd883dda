//! COMPARE AND WRITE is atomic across reactors (SBC-3 §5.2): initiators on different reactors increment one
//! counter block with read + COMPARE AND WRITE, retrying on MISCOMPARE, while another writes the neighbouring blocks
//! with ordinary WRITEs. The counter ends at the sum of their increments only if no two COMPARE AND WRITEs ever
//! compared against the same value, i.e. if the range lock held.

mod common;

use common::{iscsi_rw, run_ok, Target, IQN};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Build tests/tools/iscsi-caw.c against libiscsi (once per test binary).
fn iscsi_caw() -> PathBuf {
    static TOOL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    TOOL.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/iscsi-caw.c");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join("iscsi-caw");
        let tmp = dir.join(format!("iscsi-caw.{}", std::process::id()));
        let status = Command::new("gcc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-liscsi")
            .status()
            .expect("run gcc (scripts/setup.sh --test installs it)");
        assert!(status.success(), "building iscsi-caw failed (libiscsi-dev missing? run scripts/setup.sh --test)");
        std::fs::rename(&tmp, &out).expect("install iscsi-caw");
        out
    })
    .clone()
}

fn counter(out: &str) -> u64 {
    out.split_whitespace().last().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no counter in {out:?}"))
}

fn concurrent_increments(device: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let device = device.replace("DIR", &dir.path().display().to_string());
    if let Some(path) = device.lines().find_map(|l| l.trim().strip_prefix("filename: ")) {
        std::fs::File::create(path).and_then(|f| f.set_len(64 << 20)).expect("backing file");
    }
    let yaml = format!(
        "reactors:\n  count: 2\nportals:\n  - address: \"127.0.0.1:0\"\ndevices:\n{device}targets:\n  - name: {IQN}\n    enabled: true\n    luns:\n      - {{ lun: 0, device: d0 }}\n"
    );
    let mut t = Target::start_with_yaml(dir, &yaml);
    let url = t.url(0);
    let tool = iscsi_caw();
    const EACH: u64 = 300;
    const LBA: &str = "100";
    let base = counter(&run_ok(&tool, &[&url, LBA, "0"], Duration::from_secs(60)));
    let spawn = |program: &Path, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    // Connections are spread round robin over the reactors: the two incrementers land on different ones.
    let each = EACH.to_string();
    let incrementers: Vec<_> = (0..2).map(|_| spawn(&tool, &[&url, LBA, &each])).collect();
    // Ordinary writes next to the counter from a third session meanwhile: they take the fast path while no COMPARE
    // AND WRITE is in flight and register in the lock while one is.
    let writer = spawn(&iscsi_rw(), &["-q", "8", "-b", "8", &url, "write", "1000", "60000"]);
    for child in incrementers {
        let out = child.wait_with_output().expect("iscsi-caw");
        assert!(out.status.success(), "iscsi-caw failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = writer.wait_with_output().expect("iscsi-rw");
    assert!(out.status.success(), "iscsi-rw failed: {}", String::from_utf8_lossy(&out.stderr));
    let end = counter(&run_ok(&tool, &[&url, LBA, "0"], Duration::from_secs(60)));
    assert_eq!(end, base + 2 * EACH, "a COMPARE AND WRITE increment was lost");
    // The ordinary writes all landed too.
    run_ok(iscsi_rw(), &["-q", "8", "-b", "64", &url, "verify", "1000", "60000"], Duration::from_secs(120));
    assert!(t.alive(), "polltgt died:\n{}", t.output());
}

#[test]
fn compare_and_write_is_atomic_across_reactors_on_ram() {
    concurrent_increments("  - name: d0\n    handler: ram\n    size: 64M\n");
}

#[test]
fn compare_and_write_is_atomic_across_reactors_on_a_file() {
    concurrent_increments("  - name: d0\n    handler: vdisk_fileio\n    filename: DIR/disk.img\n");
}

/// Interrupt mode (the default): a reactor that wrote to the device and then went to sleep must not hold up a
/// COMPARE AND WRITE from another reactor. Before it sleeps it marks its range-lock slot idle; without that the
/// exclusive request would wait for its acknowledgment until something woke it (here nothing would: no NOP-Ins).
#[test]
fn a_sleeping_reactor_does_not_hold_up_compare_and_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = format!(
        "reactors:\n  count: 2\nportals:\n  - address: \"127.0.0.1:0\"\ndevices:\n  - name: d0\n    handler: ram\n    size: 16M\n    blocksize: 512\ntargets:\n  - name: {IQN}\n    NopInInterval: 0\n    luns:\n      - {{ lun: 0, device: d0 }}\n"
    );
    let mut t = Target::start_with_yaml(dir, &yaml);
    let url = t.url(0);
    // Accepted first: reactor 0. One write registers reactor 0 in the device's range lock; then it idles.
    let mut s = common::mgmt::Session::open(&url, "iqn.2026-11.io.polltgt:idle-writer");
    s.cmd("tur 0");
    assert_eq!(s.cmd("tur 0"), "GOOD");
    assert_eq!(s.cmd("write 0 7"), "GOOD");
    // The next connections alternate between reactor 1 and reactor 0; the first COMPARE AND WRITE runs on
    // reactor 1 while reactor 0 sleeps.
    let tool = iscsi_caw();
    for _ in 0..2 {
        let out = run_ok(&tool, &[&url, "7", "1"], Duration::from_secs(30));
        assert!(counter(&out) > 0, "{out}");
    }
    assert_eq!(s.cmd("tur 0"), "GOOD", "the idle session goes on");
    assert!(t.alive(), "target died:\n{}", t.output());
}
