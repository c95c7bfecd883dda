//! Reservations against the real binary: libiscsi's conformance suites for persistent reservations and RESERVE(6)
//! with two initiator names and a second path to the same LUN; APTPL state surviving a restart; a damaged state
//! file stopping the start; PREEMPT AND ABORT across reactors.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{c_tool, parse_test_cu, run, run_ok, summarize, CuResult, Lun, Target, IQN};

const LIMIT: Duration = Duration::from_secs(60);
const INIT_A: &str = "iqn.2026-11.io.polltgt:init-a";
const INIT_B: &str = "iqn.2026-11.io.polltgt:init-b";

/// Every test of these suites must run and pass: none is skipped (the features exist), none fails.
#[test]
fn iscsi_test_cu_reservation_suites_with_two_initiators_and_two_paths() {
    let mut t = Target::start(&[Lun::File { size_mb: 64, blocksize: 512 }], "");
    let url = t.url(0);
    let mut all = Vec::new();
    let mut report = String::new();
    for suite in ["SCSI.Prin*", "SCSI.Prout*", "SCSI.Reserve6*"] {
        let out = run(
            "iscsi-test-cu",
            &["-d", "-v", "-i", INIT_A, "-I", INIT_B, "-t", suite, &url, &url],
            Duration::from_secs(300),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("found matching LU device identifier for all (2) paths"),
            "the second URL was not used as a second path to the LU:\n{text}"
        );
        assert!(text.contains("Run Summary"), "iscsi-test-cu -t {suite} did not complete:\n{text}");
        let results = parse_test_cu(&text);
        for (name, r) in &results {
            report.push_str(&format!("  {r:?} {name}\n"));
        }
        assert!(!results.is_empty(), "no test of {suite} ran:\n{text}");
        if results.iter().any(|(_, r)| *r != CuResult::Pass) {
            panic!("{suite}: not every test passed:\n{report}\n{text}");
        }
        all.extend(results);
    }
    let _ = std::io::stderr().lock().write_all(format!("reservation suites:\n{report}").as_bytes());
    let (pass, fail, skip) = summarize(&all);
    assert_eq!((fail, skip), (0, 0));
    // PrinReadKeys (2), PrinServiceactionRange (1), PrinReportCapabilities (1), ProutRegister (1),
    // ProutReserve (13), ProutClear (1), ProutPreempt (1), Reserve6 (7).
    assert_eq!(pass, 27, "{report}");
    assert!(t.alive(), "polltgt died:\n{}", t.output());
}

fn yaml(state: &Path, disk: &Path, reactors: u32) -> String {
    format!(
        "reactors: {{ count: {reactors} }}\nstate_dir: {}\nportals:\n  - address: \"127.0.0.1:0\"\ndevices:\n  - name: file0\n    handler: vdisk_fileio\n    filename: {}\n    blocksize: 512\ntargets:\n  - name: {IQN}\n    luns:\n      - {{ lun: 0, device: file0 }}\n",
        state.display(),
        disk.display()
    )
}

/// A directory with a 16 MiB backing file that outlives the targets started on it.
fn workdir() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk0.img");
    std::fs::File::create(&disk).unwrap().set_len(16 << 20).unwrap();
    let state = dir.path().join("state");
    (dir, state, disk)
}

/// iscsi-pr as initiator `name` with ISID qualifier `q`; one output line per command.
fn pr(t: &Target, name: &str, q: u32, cmds: &[&str]) -> Vec<String> {
    let tool = c_tool("iscsi-pr");
    let q = q.to_string();
    let url = t.url(0);
    let mut args = vec!["-i", name, "-e", &q, &url];
    args.extend_from_slice(cmds);
    run_ok(&tool, &args, LIMIT).lines().map(str::to_string).collect()
}

#[test]
fn aptpl_registration_and_reservation_survive_a_restart() {
    let (_keep, state, disk) = workdir();
    let cfg = yaml(&state, &disk, 1);
    let t = Target::start_with_yaml(tempfile::tempdir().unwrap(), &cfg);
    assert_eq!(
        pr(&t, INIT_A, 1, &["register", "a1", "aptpl", "reserve", "a1", "1", "caps", "write"]),
        ["register GOOD", "reserve GOOD", "caps 1", "write GOOD"]
    );
    let file = state.join("pr/file0.pr");
    assert!(file.exists(), "APTPL state not stored in {}", file.display());
    drop(t);

    let t = Target::start_with_yaml(tempfile::tempdir().unwrap(), &cfg);
    assert!(t.output().contains("persistent reservations restored"), "{}", t.output());
    // Another initiator sees the registration and the Write Exclusive reservation.
    let b = pr(&t, INIT_B, 2, &["keys", "reservation", "read", "write", "caps"]);
    assert_eq!(b[0].split(' ').nth(2), Some("a1"), "{b:?}");
    assert_eq!(&b[1..], ["reservation a1 1", "read GOOD", "write RESERVATION_CONFLICT", "caps 1"]);
    // The same initiator port (name and ISID) is still the holder; another port of the same initiator is not.
    assert_eq!(pr(&t, INIT_A, 1, &["write"]), ["write GOOD"]);
    assert_eq!(pr(&t, INIT_A, 3, &["write"]), ["write RESERVATION_CONFLICT"]);
    // Registering again without APTPL ends persistence: the stored state goes.
    assert_eq!(pr(&t, INIT_A, 1, &["register", "a2", "caps"]), ["register GOOD", "caps 0"]);
    assert!(!file.exists(), "APTPL off must remove {}", file.display());
    drop(t);

    let t = Target::start_with_yaml(tempfile::tempdir().unwrap(), &cfg);
    assert_eq!(pr(&t, INIT_B, 2, &["reservation", "write"]), ["reservation none", "write GOOD"]);
    let keys = pr(&t, INIT_B, 2, &["keys"]);
    assert_eq!(keys[0].split(' ').count(), 2, "no registration survives without APTPL: {keys:?}");
}

#[test]
fn damaged_reservation_state_stops_the_start() {
    let (keep, state, disk) = workdir();
    std::fs::create_dir_all(state.join("pr")).unwrap();
    let file = state.join("pr/file0.pr");
    std::fs::write(&file, "polltgt-persistent-reservations 1\ngeneration 3\nregistration 0x01 x\n").unwrap();
    let cfg = keep.path().join("polltgt.yaml");
    std::fs::write(&cfg, yaml(&state, &disk, 1)).unwrap();
    let out = run(env!("CARGO_BIN_EXE_polltgt"), &["serve", "--config", cfg.to_str().unwrap()], LIMIT);
    assert!(!out.status.success(), "a damaged state file must stop the start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&file.display().to_string()) && err.contains("line 3"), "{err}");
    // The file is left for the administrator.
    assert!(file.exists());
}

/// B holds an Exclusive Access reservation; A, on the other reactor, preempts it with PREEMPT AND ABORT. The
/// command completes once every reactor has aborted B's tasks; B then learns of the preemption and is shut out.
#[test]
fn preempt_and_abort_across_reactors() {
    let (_keep, state, disk) = workdir();
    let t = Target::start_with_yaml(tempfile::tempdir().unwrap(), &yaml(&state, &disk, 2));
    preempt_and_abort(&t);
    let log = strip_ansi(&t.output());
    let logins = |r: &str| log.lines().any(|l| l.contains("login complete") && l.contains(&format!("reactor={r}")));
    assert!(logins("0") && logins("1"), "the two initiators were not on different reactors:\n{log}");
}

/// The same with the target's sessions placed on the reactor of CPU 1 (target `cpu_mask`): the session accepted
/// on reactor 0 moves there after login, and PREEMPT AND ABORT still finds B's session where it runs.
#[test]
fn preempt_and_abort_reaches_sessions_moved_after_login() {
    if std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) < 2 {
        eprintln!("one CPU: no second reactor to move to");
        return;
    }
    let (_keep, state, disk) = workdir();
    let cfg = yaml(&state, &disk, 2).replace("reactors: { count: 2 }", "reactors: { cpu_mask: \"0x3\" }")
        + "    cpu_mask: \"0x2\"\n";
    let t = Target::start_with_yaml(tempfile::tempdir().unwrap(), &cfg);
    preempt_and_abort(&t);
    let log = strip_ansi(&t.output());
    assert!(log.contains("session moves to its target's reactor"), "no session moved:\n{log}");
    assert!(
        log.lines().filter(|l| l.contains("login complete") && l.contains("reactor=")).all(|l| l.contains("reactor=1")),
        "every session runs on the reactor of CPU 1:\n{log}"
    );
}

fn preempt_and_abort(t: &Target) {
    let tool = c_tool("iscsi-pr");
    let url = t.url(0);
    let mut b = Command::new(&tool)
        .args(["-i", INIT_B, "-e", "2", &url, "register", "b1", "reserve", "b1", "3", "wait", "tur", "tur", "write"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run iscsi-pr");
    let mut lines = BufReader::new(b.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("iscsi-pr output").expect("read");
    assert_eq!(next(), "register GOOD");
    assert_eq!(next(), "reserve GOOD");
    assert_eq!(next(), "waiting");
    assert_eq!(
        pr(t, INIT_A, 1, &["read", "register", "a1", "preempt-abort", "a1", "b1", "1", "write", "reservation"]),
        ["read RESERVATION_CONFLICT", "register GOOD", "preempt-abort GOOD", "write GOOD", "reservation a1 1"]
    );
    b.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(next(), "tur CHECK_CONDITION/2A/05", "REGISTRATIONS PREEMPTED");
    assert_eq!(next(), "tur GOOD");
    assert_eq!(next(), "write RESERVATION_CONFLICT");
    assert!(b.wait().unwrap().success());
}

/// The log without terminal colour sequences (ESC [ ... m).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
