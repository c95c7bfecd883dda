//! Shared harness of the integration tests: start the real `polltgt` binary with a YAML configuration, find the port
//! it listens on, run libiscsi's tools against it with time limits, and parse their output.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running polltgt process, killed when dropped.
pub struct Target {
    child: Child,
    pub addr: String,
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
    /// by the kernel. Extra YAML for the target (negotiation keys) can be appended with `target_extra`.
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
        let yaml = format!(
            "portals:\n  - address: \"127.0.0.1:0\"\ndevices:\n{devices}targets:\n  - name: {IQN}\n    enabled: true\n    luns:\n{lun_map}{target_extra}"
        );
        Self::start_with_yaml(dir, &yaml)
    }

    /// Start polltgt with a complete YAML configuration written into `dir`.
    pub fn start_with_yaml(dir: tempfile::TempDir, yaml: &str) -> Target {
        let cfg = dir.path().join("polltgt.yaml");
        std::fs::write(&cfg, yaml).expect("write config");
        let args = vec!["serve".into(), "--config".into(), cfg.into_os_string()];
        Self::spawn(dir, &args)
    }

    /// Start polltgt without a configuration: the embedded default.
    pub fn start_default() -> Target {
        Self::spawn(tempfile::tempdir().expect("tempdir"), &["serve".into()])
    }

    fn spawn(dir: tempfile::TempDir, args: &[std::ffi::OsString]) -> Target {
        let mut child = Command::new(env!("CARGO_BIN_EXE_polltgt"))
            .args(args)
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
                    if let Ok(mut l) = log.lock() {
                        l.push(line.clone());
                    }
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.split("listening on ").nth(1) {
                        break rest.split_whitespace().next().unwrap_or_default().to_string();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let out = log.lock().map(|l| l.join("\n")).unwrap_or_default();
                    panic!("polltgt did not report a listening address within 30 s; its output:\n{out}");
                }
            }
        };
        Target { child, addr, dir, log }
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
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    static TOOL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    TOOL.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/iscsi-rw.c");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join("iscsi-rw");
        // Several test binaries may build it at once: build under a unique name, then rename atomically.
        let tmp = dir.join(format!("iscsi-rw.{}", std::process::id()));
        let status = Command::new("gcc")
            .args(["-O2", "-Wall", "-o"])
            .arg(&tmp)
            .arg(&src)
            .arg("-liscsi")
            .status()
            .expect("run gcc (scripts/setup.sh --test installs it)");
        assert!(status.success(), "building iscsi-rw failed (libiscsi-dev missing? run scripts/setup.sh --test)");
        std::fs::rename(&tmp, &out).expect("install iscsi-rw");
        out
    })
    .clone()
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
