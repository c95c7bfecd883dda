//! SANITIZE on the real binary, driven by libiscsi (tests/tools/iscsi-sanitize.c): an OVERWRITE of a file LUN runs
//! in the background (SBC-3 §4.11). While it runs, other commands get 02/04/1B SANITIZE IN PROGRESS and REQUEST
//! SENSE reports a progress indication that only grows; an ABORT TASK of the SANITIZE, an ABORT TASK SET, a LOGICAL
//! UNIT RESET, a TARGET WARM RESET and the loss of the requesting I_T nexus end the command but not the operation,
//! which still overwrites the whole medium. With IMMED = 1 the command completes at once and the operation goes on.
//!
//! No assertion depends on how long the operation takes: the test waits (bounded) until the LUN is ready again and
//! then checks that every part of the medium holds the pattern, which an operation stopped by the task management
//! functions or the nexus loss would not have written.

mod common;

use common::mgmt::Session;
use common::{c_tool, Target, IQN};
use std::time::{Duration, Instant};

/// Size of each file LUN: with 31 passes, about 1 GiB of writes for the overwrite.
const LUN_BYTES: u64 = 32 << 20;
/// Longest wait for a sanitize operation to end.
const WAIT: Duration = Duration::from_secs(300);

fn target() -> Target {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut devices = String::new();
    for i in 0..2 {
        let path = dir.path().join(format!("disk{i}.img"));
        std::fs::File::create(&path).and_then(|f| f.set_len(LUN_BYTES)).expect("backing file");
        devices.push_str(&format!("  - {{ name: d{i}, handler: vdisk_fileio, filename: {} }}\n", path.display()));
    }
    let yaml = format!(
        "portals:\n  - address: \"127.0.0.1:0\"\ndevices:\n{devices}targets:\n  - name: {IQN}\n    luns:\n      \
         - {{ lun: 0, device: d0 }}\n      - {{ lun: 1, device: d1 }}\n"
    );
    Target::start_with_yaml(dir, &yaml)
}

fn session(t: &Target, lun: u32, initiator: &str) -> Session {
    let mut s = Session::start_tool(&c_tool("iscsi-sanitize"), &["-i", initiator, &t.url(lun)]);
    assert_eq!(s.next_line(), "READY", "login of {initiator}");
    s
}

/// The PROGRESS INDICATION of a "SENSE 02 04 1b <progress>" answer.
fn in_progress(line: &str) -> Option<i64> {
    line.strip_prefix("SENSE 02 04 1b ").and_then(|p| p.trim().parse().ok())
}

/// Polls REQUEST SENSE on `lun` until the sanitize operation is no longer in progress (unit attentions in between
/// are taken); returns the progress indications seen. Panics after [`WAIT`].
fn wait_until_done(s: &mut Session, lun: u64) -> Vec<i64> {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let line = s.cmd(&format!("sense {lun}"));
        match in_progress(&line) {
            Some(p) => seen.push(p),
            None if line.starts_with("SENSE 06 ") => {}
            None => {
                assert_eq!(line, "SENSE 00 00 00 -1", "after the sanitize: NO SENSE");
                return seen;
            }
        }
        assert!(Instant::now() < deadline, "the sanitize operation did not end within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every probed block of `lun` (first, middle, last) is all 0xa5, the pattern the last pass writes.
fn assert_overwritten(s: &mut Session, lun: u64) {
    let last = LUN_BYTES / 512 - 1;
    for lba in [0, last / 2, last] {
        assert_eq!(s.cmd(&format!("block {lun} {lba}")), "BYTE a5", "LUN {lun} block {lba}");
    }
}

#[test]
fn sanitize_survives_task_management_and_nexus_loss() {
    let mut t = target();
    let mut a = session(&t, 0, "iqn.2026-11.io.polltgt:sanitize-a");
    let mut b = session(&t, 0, "iqn.2026-11.io.polltgt:sanitize-b");
    assert_eq!(b.cmd("block 0 0"), "BYTE 00", "a new file reads as zeros");

    // IMMED = 0, not waited for: 31 passes, INVERT (the last pass writes 0xa5 itself).
    assert_eq!(a.cmd("overwrite 0 0 31"), "SENT");
    let deadline = Instant::now() + WAIT;
    let first = loop {
        let line = b.cmd("sense 0");
        if let Some(p) = in_progress(&line) {
            break p;
        }
        assert!(Instant::now() < deadline, "the sanitize never showed as in progress: {line}");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!((0..65536).contains(&first), "progress {first}");
    // Other commands are refused meanwhile; the other nexus too.
    assert!(b.cmd("tur 0").starts_with("CHECK 02 04 1b"));
    assert!(b.cmd("block 0 0").starts_with("CHECK 02 04 1b"));

    // Task management from both nexuses: they end the waiting command, not the operation.
    assert_eq!(a.cmd("abort"), "TMF done");
    assert_ne!(a.cmd("status"), "GOOD", "an aborted SANITIZE gets no GOOD status");
    assert_eq!(a.cmd("abortset 0"), "TMF done");
    assert_eq!(b.cmd("lunreset 0"), "TMF done");
    assert_eq!(b.cmd("warmreset"), "TMF done");
    // The requesting nexus goes away.
    assert_eq!(a.cmd("quit"), "EOF");
    drop(a);

    let seen = wait_until_done(&mut b, 0);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "the progress indication only grows: {seen:?}");
    assert!(seen.first().is_none_or(|&p| p >= first));
    assert_eq!(b.cmd("tur 0"), "GOOD");
    assert_overwritten(&mut b, 0);

    // IMMED = 1 on the other LUN: GOOD at once, the operation goes on and overwrites everything.
    let mut c = session(&t, 1, "iqn.2026-11.io.polltgt:sanitize-c");
    assert_eq!(c.cmd("block 1 0"), "BYTE 00");
    assert_eq!(c.cmd("overwrite 1 1 1"), "GOOD");
    wait_until_done(&mut c, 1);
    assert_overwritten(&mut c, 1);
    assert!(t.alive(), "polltgt died:\n{}", t.output());
}
