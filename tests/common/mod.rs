//! Shared harness of the integration tests: start the real `polltgt` binary with a YAML configuration, find the port
//! it listens on, run libiscsi's tools against it with time limits, and parse their output.
#![allow(dead_code)]

pub mod mgmt;
pub mod isns_server;
pub mod raw;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running polltgt process, killed when dropped.
pub struct Target {
    child: Child,
    pub addr: String,
    /// Every portal address the target reported, in configuration order.
    pub addrs: Vec<String>,
    pub dir: tempfile::TempDir,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// The target name every test configuration uses.
pub const IQN: &str = "iqn.2026-11.io.polltgt:test";

/// Devices for a test configuration.
pub enum Lun {
    Ram { size_mb: u64, blocksize: u32 },
    File { size_mb: u64, blocksize: u32 },
    Null { size_mb: u64 },
}

impl Target {
    /// Start polltgt serving one target ([`IQN`]) with the given LUNs (LUN i = `luns[i]`) on 127.0.0.1, port chosen
    /// by the kernel. Extra YAML for the target (negotiation keys) can be appended with `target_extra`. Its state
    /// directory (persistent reservations) is `dir/state`.
    pub fn start(luns: &[Lun], target_extra: &str) -> Target {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut devices = String::new();
        let mut lun_map = String::new();
        for (i, l) in luns.iter().enumerate() {
            match l {
                Lun::Ram { size_mb, blocksize } => devices.push_str(&format!(
                    "  - name: ram{i}\n    handler: ram\n    size: {size_mb}M\n    blocksize: {blocksize}\n"
                )),
                Lun::File { size_mb, blocksize } => {
                    let path = dir.path().join(format!("disk{i}.img"));
                    let f = std::fs::File::create(&path).expect("create backing file");
                    f.set_len(size_mb << 20).expect("size backing file");
                    devices.push_str(&format!(
                        "  - name: file{i}\n    handler: vdisk_fileio\n    filename: {}\n    blocksize: {blocksize}\n",
                        path.display()
                    ));
                }
                Lun::Null { size_mb } => devices
                    .push_str(&format!("  - name: null{i}\n    handler: vdisk_nullio\n    size: {size_mb}M\n")),
            }
            let dev = match l {
                Lun::Ram { .. } => format!("ram{i}"),
                Lun::File { .. } => format!("file{i}"),
                Lun::Null { .. } => format!("null{i}"),
            };
            lun_map.push_str(&format!("      - lun: {i}\n        device: {dev}\n"));
        }
        let state = dir.path().join("state");
        let yaml = format!(
            "state_dir: {}\nportals:\n  - address: \"127.0.0.1:0\"\ndevices:\n{devices}targets:\n  - name: {IQN}\n    enabled: true\n    luns:\n{lun_map}{target_extra}",
            state.display()
        );
        Self::start_with_yaml(dir, &yaml)
    }

    /// Start polltgt with a complete YAML configuration written into `dir`.
    pub fn start_with_yaml(dir: tempfile::TempDir, yaml: &str) -> Target {
        Self::start_with_yaml_portals(dir, yaml, 1)
    }

    /// Start polltgt with a complete YAML configuration listing `portals` portals, and wait until it reported the
    /// address of each.
    pub fn start_with_yaml_portals(dir: tempfile::TempDir, yaml: &str, portals: usize) -> Target {
        let cfg = dir.path().join("polltgt.yaml");
        std::fs::write(&cfg, yaml).expect("write config");
        let args = vec!["serve".into(), "--config".into(), cfg.into_os_string()];
        Self::spawn(dir, &args, portals)
    }

    /// Start polltgt without a configuration: the embedded default.
    pub fn start_default() -> Target {
        Self::spawn(tempfile::tempdir().expect("tempdir"), &["serve".into()], 1)
    }

    /// Send SIGTERM (graceful shutdown).
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Wait up to `limit` for the process to exit; its status, or None if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn(dir: tempfile::TempDir, args: &[std::ffi::OsString], portals: usize) -> Target {
        // Every test target has its own RPC socket (the default path is shared by the machine).
        let mut args = args.to_vec();
        if args.first().is_some_and(|a| a == "serve") && !args.iter().any(|a| a == "--rpc-socket") {
            args.push("--rpc-socket".into());
            args.push(dir.path().join("rpc.sock").into_os_string());
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_polltgt"))
            .args(&args)
            .env("RUST_LOG", std::env::var("POLLTGT_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start polltgt");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let line = strip_ansi(&line);
                    if let Ok(mut l) = log.lock() {
                        l.push(line.clone());
                    }
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut addrs = Vec::new();
        while addrs.len() < portals.max(1) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        addrs.push(rest.split_whitespace().next().unwrap_or_default().to_string());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let out = log.lock().map(|l| l.join("\n")).unwrap_or_default();
                    panic!("polltgt did not report a listening address within 30 s; its output:\n{out}");
                }
            }
        }
        let addr = addrs[0].clone();
        Target { child, addr, addrs, dir, log }
    }

    /// `iscsi://127.0.0.1:PORT/IQN/LUN`
    pub fn url(&self, lun: u32) -> String {
        format!("iscsi://{}/{IQN}/{lun}", self.addr)
    }

    /// The process id (to send signals, e.g. SIGUSR1 for a statistics line).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the target printed so far.
    pub fn output(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Waits up to `limit` for a line of the target's output containing `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.output().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the target said (its last lines), so a failure in CI can be understood.
        if std::thread::panicking() {
            let out = self.output();
            let lines: Vec<&str> = out.lines().collect();
            let from = lines.len().saturating_sub(200);
            eprintln!("--- the target's last {} output lines ---", lines.len() - from);
            for l in &lines[from..] {
                eprintln!("{}", strip_ansi(l));
            }
        }
    }
}

/// A log line without its terminal colour sequences (`ESC [ ... m`).
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// Run a command with a time limit; panics (with its output) if it does not finish in time.
pub fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str], limit: Duration) -> Output {
    let program = program.as_ref().to_owned();
    let mut child = Command::new(&program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program:?}: {e} (run scripts/setup.sh --test)"));
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect output");
                panic!(
                    "{program:?} {args:?} did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    child.wait_with_output().expect("collect output")
}

/// Runs libiscsi's `iscsi-perf ARGS -t SECS URL` and returns its output (stdout and stderr). iscsi-perf ends by
/// itself only when its countdown, checked at most once a second, lands exactly on zero: on a loaded machine it
/// can step over zero and run on forever. So if it has not exited about 7 s after its run time it gets SIGINT (by
/// its pid, through kill(1)), on which it stops issuing reads, drains them, prints its final "iops average" and
/// exits. Panics when it fails, does not stop, or never printed an "iops average" line.
pub fn iscsi_perf(args: &[&str], secs: u64, url: &str) -> String {
    let secs_text = secs.to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend_from_slice(&["-t", &secs_text, url]);
    let mut child = Command::new("iscsi-perf")
        .args(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run iscsi-perf: {e} (run scripts/setup.sh --test)"));
    let interrupt_at = Instant::now() + Duration::from_secs(secs + 7);
    let mut interrupted = false;
    let give_up = interrupt_at + Duration::from_secs(20);
    let status = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Some(status);
        }
        let now = Instant::now();
        if !interrupted && now >= interrupt_at {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-INT", &pid]).status();
            interrupted = true;
        }
        if now >= give_up {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("collect iscsi-perf output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(status.is_some(), "iscsi-perf {all:?} did not stop even after SIGINT:\n{text}");
    assert!(out.status.success(), "iscsi-perf {all:?} failed ({:?}):\n{text}", out.status);
    assert!(text.contains("iops average"), "iscsi-perf {all:?} printed no \"iops average\":\n{text}");
    text
}

/// Run a command for at most `limit`: its exit status, or None when it had to be killed.
pub fn run_bounded(
    program: impl AsRef<std::ffi::OsStr>,
    args: &[&str],
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let mut child =
        Command::new(program.as_ref()).args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run and require exit status 0; returns stdout.
pub fn run_ok(program: impl AsRef<std::ffi::OsStr>, args: &[&str], limit: Duration) -> String {
    let name = program.as_ref().to_string_lossy().into_owned();
    let out = run(program, args, limit);
    assert!(
        out.status.success(),
        "{name} {args:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Build tests/tools/iscsi-rw.c against libiscsi (once per test binary) and return its path.
pub fn iscsi_rw() -> PathBuf {
    c_tool("iscsi-rw")
}

/// Build `tests/tools/NAME.c` against libiscsi (once per test binary and tool) and return its path.
pub fn c_tool(name: &str) -> PathBuf {
    static TOOLS: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut tools = TOOLS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, p)) = tools.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/tools/{name}.c"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let out = dir.join(name);
    // Several test binaries may build it at once: build under a unique name, then rename atomically.
    let tmp = dir.join(format!("{name}.{}", std::process::id()));
    let status = Command::new("gcc")
        .args(["-O2", "-Wall", "-o"])
        .arg(&tmp)
        .arg(&src)
        .arg("-liscsi")
        .status()
        .expect("run gcc (scripts/setup.sh --test installs it)");
    assert!(status.success(), "building {name} failed (libiscsi-dev missing? run scripts/setup.sh --test)");
    std::fs::rename(&tmp, &out).unwrap_or_else(|e| panic!("install {name}: {e}"));
    tools.push((name.to_string(), out.clone()));
    out
}

/// Outcome of one iscsi-test-cu test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CuResult {
    Pass,
    Fail,
    Skip,
}

/// Parse `iscsi-test-cu -v` output into (Suite.Test, result), one entry per distinct test. A test that printed
/// `[SKIPPED]` and passed counts as skipped (libiscsi reports skips as passes). iscsi-test-cu runs some tests more
/// than once (in several families); a test counts as failed if any run failed.
///
/// The verbose format: `Suite: NAME`, then per test `  Test: NAME ...` followed, on the same or later lines, by log
/// lines (`[SKIPPED] ...`, `[FAILED] ...` messages of expected failures) and finally `passed` or `FAILED` at the start
/// of what remains of a line (suite-level messages may follow on the same line).
pub fn parse_test_cu(output: &str) -> Vec<(String, CuResult)> {
    let mut results: Vec<(String, CuResult)> = Vec::new();
    let mut suite = String::new();
    let mut current: Option<(String, bool)> = None;
    for line in output.lines() {
        let t = line.trim_start();
        if let Some(s) = t.strip_prefix("Suite: ") {
            suite = s.trim().to_string();
            current = None;
            continue;
        }
        let mut rest = t;
        if let Some(s) = t.strip_prefix("Test: ") {
            let (name, after) = s.split_once(" ...").unwrap_or((s, ""));
            current = Some((format!("{suite}.{}", name.trim()), false));
            rest = after;
        }
        let Some((name, skipped)) = current.as_mut() else { continue };
        let r = rest.trim_start();
        let outcome = if r.starts_with("passed") {
            Some(if *skipped { CuResult::Skip } else { CuResult::Pass })
        } else if r.starts_with("FAILED") {
            Some(CuResult::Fail)
        } else {
            if r.contains("[SKIPPED]") {
                *skipped = true;
            }
            None
        };
        if let Some(o) = outcome {
            let name = std::mem::take(name);
            current = None;
            match results.iter_mut().find(|(n, _)| *n == name) {
                Some((_, prev)) => {
                    if o == CuResult::Fail || *prev == CuResult::Fail {
                        *prev = CuResult::Fail;
                    } else if o == CuResult::Pass {
                        *prev = CuResult::Pass;
                    }
                }
                None => results.push((name, o)),
            }
        }
    }
    results
}

/// Counts of (pass, fail, skip).
pub fn summarize(results: &[(String, CuResult)]) -> (usize, usize, usize) {
    let count = |r| results.iter().filter(|(_, x)| *x == r).count();
    (count(CuResult::Pass), count(CuResult::Fail), count(CuResult::Skip))
}

#[cfg(test)]
mod parser_tests {
    use super::*;

    #[test]
    fn parses_pass_fail_skip() {
        let out = "Suite: Read10\n  Test: Simple ...passed\n  Test: Skippy ...    [SKIPPED] nope\n    [SKIPPED] nope\npassed\n  Test: Bad ...    [FAILED] x\nFAILED\n    1. f.c:3 - CU_ASSERT\n  Test: Logs ...    [FAILED] expected failure logged\npassed    [SKIPPED] suite-level note\n\nSuite: Other\n  Test: A ...passed\nSuite: Read10\n  Test: Simple ...FAILED\n  Test: Bad ...passed\n";
        let r = parse_test_cu(out);
        assert_eq!(
            r,
            vec![
                ("Read10.Simple".to_string(), CuResult::Fail),
                ("Read10.Skippy".to_string(), CuResult::Skip),
                ("Read10.Bad".to_string(), CuResult::Fail),
                ("Read10.Logs".to_string(), CuResult::Pass),
                ("Other.A".to_string(), CuResult::Pass),
            ]
        );
        assert_eq!(summarize(&r), (2, 2, 1));
    }
}
