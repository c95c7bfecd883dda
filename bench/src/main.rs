//! `polltgt-bench`: runs the same initiator workloads against polltgt and tgt (Linux SCSI target framework, user
//! space) on this machine over loopback, one target at a time, and prints IOPS, MB/s and target CPU microseconds per
//! I/O for both, with the ratios; plus iperf3 over the same loopback as the ceiling for streaming reads.
//!
//! Layout on a 2-core machine: the target on CPU `--target-cpu` (polltgt: one reactor pinned there, once per idle
//! mode of `--idle`, poll and interrupt by default; tgtd and all its threads pinned there with taskset), the
//! initiator on `--client-cpu`.
//! CPU per I/O, both for polltgt: its reactor busy time (the `busy_ns` of its statistics line, read with SIGUSR1
//! before and after each workload: the loop iterations that moved work) and its process CPU time from
//! /proc/<pid>/stat like tgt's (utime + stime of all threads). A polling reactor spins on its core whether there is
//! work or not, so in poll mode the process figure is the whole core divided by the I/Os; the table gives the ratio
//! to tgt for both. Results are appended to `--out` with the load average of the machine.
//!
//! Workloads: libiscsi's iscsi-perf 4 KiB random read at queue depth 1 and 32, 128 KiB sequential read at queue
//! depth 8, and 4 KiB sequential writes at queue depth 32 with the iscsi-rw load generator of the tests
//! (tests/tools/iscsi-rw.c, built with cc against libiscsi).
//!
//! `bash bench/run.sh` builds everything in release mode and runs this with the defaults.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "polltgt vs tgt on the same machine: IOPS, MB/s, CPU per I/O")]
struct Args {
    /// The polltgt binary (release build).
    #[arg(long, default_value = "target/release/polltgt")]
    polltgt: PathBuf,
    /// Seconds per workload.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// CPU the targets run on.
    #[arg(long, default_value_t = 1)]
    target_cpu: usize,
    /// CPU the initiator runs on.
    #[arg(long, default_value_t = 0)]
    client_cpu: usize,
    /// LUN size in MiB (RAM disk for polltgt, a file in /dev/shm for tgt).
    #[arg(long, default_value_t = 1024)]
    lun_mib: u64,
    /// Where the results go (Markdown).
    #[arg(long, default_value = "bench/results.md")]
    out: PathBuf,
    /// Skip tgt (when it is not installed).
    #[arg(long)]
    no_tgt: bool,
    /// polltgt's reactor idle modes to run, each a full pass (poll: spin; interrupt: sleep in epoll when idle).
    #[arg(long, value_delimiter = ',', default_value = "poll,interrupt")]
    idle: Vec<String>,
    /// Rounds of the whole set (every polltgt mode, then tgt): the tables give each figure's median over the rounds
    /// and the CPU/IO ratio of every round, since one run of either target moves by several percent.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

const IQN: &str = "iqn.2026-11.io.polltgt:bench";
const TGT_IQN: &str = "iqn.2026-11.org.tgt:bench";

#[derive(Debug, Clone, Copy)]
enum Load {
    /// iscsi-perf: queue depth, blocks of 512 bytes per I/O, random.
    Perf { depth: u32, blocks: u32, random: bool },
    /// iscsi-rw write: queue depth, blocks per command, total blocks.
    Write { depth: u32, blocks: u32 },
}

struct Workload {
    name: &'static str,
    load: Load,
}

const WORKLOADS: &[Workload] = &[
    Workload { name: "4 KiB random read QD1", load: Load::Perf { depth: 1, blocks: 8, random: true } },
    Workload { name: "4 KiB random read QD32", load: Load::Perf { depth: 32, blocks: 8, random: true } },
    Workload { name: "128 KiB sequential read QD8", load: Load::Perf { depth: 8, blocks: 256, random: false } },
    Workload { name: "4 KiB sequential write QD32", load: Load::Write { depth: 32, blocks: 8 } },
];

#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    iops: f64,
    mbps: f64,
    /// Target CPU µs per I/O (polltgt: reactor busy time; tgt: process CPU time).
    cpu_us: f64,
    /// Process CPU µs per I/O from /proc (for polltgt in poll mode: the whole core while running).
    proc_cpu_us: f64,
}

/// utime + stime of a process in seconds (all threads), from /proc/<pid>/stat.
fn proc_cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).context("bad /proc stat")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is index 0, utime is field 14 overall (index 11 here), stime 12.
    let utime: f64 = f.get(11).context("utime")?.parse()?;
    let stime: f64 = f.get(12).context("stime")?.parse()?;
    // /proc reports clock ticks of USER_HZ, which Linux fixes at 100 for user space.
    Ok((utime + stime) / 100.0)
}

/// Sends a signal with kill(1) (no unsafe code in the harness).
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// A child process whose output lines are collected.
struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Result<Proc> {
        let mut child =
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().with_context(|| format!("cannot start {cmd:?}"))?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        for s in [
            Box::new(child.stdout.take().context("stdout")?) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().context("stderr")?),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(s).lines().map_while(Result::ok) {
                    if let Ok(mut v) = lines.lock() {
                        v.push(l);
                    }
                }
            });
        }
        Ok(Proc { child, lines })
    }

    fn output(&self) -> Vec<String> {
        self.lines.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn wait_for_line(&self, what: &str, pred: impl Fn(&str) -> bool, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.output().into_iter().rev().find(|l| pred(l)) {
                return Ok(l);
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}; output:\n{}", self.output().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        signal(self.child.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The target under test.
trait Target {
    fn url(&self) -> String;
    /// CPU time counter in seconds: (attributed CPU, process CPU).
    fn cpu(&mut self) -> Result<(f64, f64)>;
}

struct Polltgt {
    proc: Proc,
    addr: String,
    stats_seen: usize,
}

impl Polltgt {
    fn start(bin: &Path, cpu: usize, lun_mib: u64, dir: &Path, idle: &str) -> Result<Polltgt> {
        let cfg = dir.join("polltgt-bench.yaml");
        std::fs::write(
            &cfg,
            format!(
                "reactors:\n  cpu_mask: \"{:#x}\"\n  idle: {idle}\n  zerocopy_threshold: 64K\nportals:\n  - address: \"127.0.0.1:0\"\n\
                 devices:\n  - name: ram0\n    handler: ram\n    size: {lun_mib}M\n    blocksize: 512\n\
                 targets:\n  - name: {IQN}\n    luns:\n      - {{ lun: 0, device: ram0 }}\n",
                1u64 << cpu
            ),
        )?;
        let proc = Proc::spawn(Command::new(bin).args(["serve", "--config"]).arg(&cfg).env("RUST_LOG", "warn"))?;
        let line = proc.wait_for_line("polltgt's listening line", |l| l.contains("listening on"), Duration::from_secs(30))?;
        let addr = line.split("listening on ").nth(1).and_then(|r| r.split_whitespace().next()).context("address")?;
        Ok(Polltgt { addr: addr.to_string(), proc, stats_seen: 0 })
    }

    fn stats(&mut self) -> Result<serde_json::Value> {
        // polltgt prints its statistics line on SIGUSR1.
        signal(self.proc.child.id(), "-USR1");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines: Vec<String> =
                self.proc.output().into_iter().filter(|l| l.starts_with("polltgt-stats: ")).collect();
            if lines.len() > self.stats_seen {
                self.stats_seen = lines.len();
                let json = lines[lines.len() - 1].trim_start_matches("polltgt-stats: ").to_string();
                return Ok(serde_json::from_str(&json)?);
            }
            if Instant::now() > deadline {
                bail!("polltgt printed no statistics line");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Target for Polltgt {
    fn url(&self) -> String {
        format!("iscsi://{}/{IQN}/0", self.addr)
    }
    fn cpu(&mut self) -> Result<(f64, f64)> {
        let s = self.stats()?;
        let busy: u64 = s["reactors"].as_array().map(|a| a.iter().filter_map(|r| r["busy_ns"].as_u64()).sum()).unwrap_or(0);
        Ok((busy as f64 / 1e9, proc_cpu_seconds(self.proc.child.id())?))
    }
}

struct Tgt {
    proc: Proc,
    port: u16,
    control: u32,
    _file: PathBuf,
}

impl Tgt {
    fn start(cpu: usize, lun_mib: u64) -> Result<Tgt> {
        let port = free_port()?;
        let control = 100 + std::process::id() % 1000;
        let file = PathBuf::from(format!("/dev/shm/polltgt-bench-tgt-{}.img", std::process::id()));
        std::fs::File::create(&file)?.set_len(lun_mib << 20)?;
        let proc = Proc::spawn(Command::new("taskset").args([
            "-c".to_string(),
            cpu.to_string(),
            "tgtd".into(),
            "-f".into(),
            "--iscsi".into(),
            format!("portal=127.0.0.1:{port}"),
            "-C".into(),
            control.to_string(),
        ]))?;
        let t = Tgt { proc, port, control, _file: file.clone() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.tgtadm(&["--op", "show", "--mode", "target"]).is_err() {
            if Instant::now() > deadline {
                bail!("tgtd did not answer tgtadm; output:\n{}", t.proc.output().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        t.tgtadm(&["--op", "new", "--mode", "target", "--tid", "1", "-T", TGT_IQN])?;
        t.tgtadm(&["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1", "-b", &file.to_string_lossy()])?;
        t.tgtadm(&["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"])?;
        Ok(t)
    }

    fn tgtadm(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("tgtadm").args(["--lld", "iscsi", "-C", &self.control.to_string()]).args(args).output()?;
        if !out.status.success() {
            bail!("tgtadm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn pid(&self) -> u32 {
        // taskset execs tgtd: the child's pid is tgtd's.
        self.proc.child.id()
    }
}

impl Drop for Tgt {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self._file);
    }
}

impl Target for Tgt {
    fn url(&self) -> String {
        format!("iscsi://127.0.0.1:{}/{TGT_IQN}/1", self.port)
    }
    fn cpu(&mut self) -> Result<(f64, f64)> {
        let c = proc_cpu_seconds(self.pid())?;
        Ok((c, c))
    }
}

/// The last "iops average N (M MB/s)" of iscsi-perf's output.
fn parse_perf(out: &str) -> Option<(f64, f64)> {
    let mut last = None;
    let mut rest = out;
    while let Some(i) = rest.find("iops average ") {
        rest = &rest[i + "iops average ".len()..];
        let iops: f64 = rest.split_whitespace().next()?.parse().ok()?;
        let mbps: f64 = rest.split('(').nth(1)?.split_whitespace().next()?.parse().ok()?;
        last = Some((iops, mbps));
    }
    last
}

/// Runs an iscsi-perf command line (`-t seconds` in it) to its end. iscsi-perf ends by itself only when its
/// countdown, checked at most once a second, lands exactly on zero; on a loaded machine it can step over zero and
/// run on. So about 7 s after its run time it gets SIGINT (by pid, through kill(1); taskset execs it, so the pid
/// is iscsi-perf's), on which it drains its reads, prints its final "iops average" and exits.
fn run_perf(cmd: &mut Command, seconds: u64) -> Result<std::process::Output> {
    let child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn()?;
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(seconds + 7);
            while Instant::now() < deadline {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !done.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
            }
        })
    };
    let out = child.wait_with_output();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watchdog.join();
    Ok(out?)
}

fn run_load(t: &mut dyn Target, load: Load, args: &Args, rw_tool: &Path) -> Result<Measure> {
    let url = t.url();
    let (cpu0, proc0) = t.cpu()?;
    let start = Instant::now();
    let (ios, bytes) = match load {
        Load::Perf { depth, blocks, random } => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &args.client_cpu.to_string(), "iscsi-perf", "-m", &depth.to_string(), "-b"])
                .arg(blocks.to_string())
                .args(["-t", &args.seconds.to_string()]);
            if random {
                cmd.arg("-r");
            }
            let out = run_perf(cmd.arg(&url), args.seconds)?;
            let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
            let (iops, mbps) = parse_perf(&text).with_context(|| format!("no result from iscsi-perf:\n{text}"))?;
            let secs = args.seconds as f64;
            (iops * secs, mbps * 1e6 * secs)
        }
        Load::Write { depth, blocks } => {
            // Sized to run about `seconds` at 50k IOPS; the measured time is what counts.
            let total_blocks = (50_000 * args.seconds * u64::from(blocks)).min(args.lun_mib * 2048 - 8);
            let out = Command::new("taskset")
                .args(["-c", &args.client_cpu.to_string()])
                .arg(rw_tool)
                .args(["-q", &depth.to_string(), "-b", &blocks.to_string(), "-s", "1", &url, "write", "0"])
                .arg(total_blocks.to_string())
                .output()?;
            if !out.status.success() {
                bail!("iscsi-rw failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            ((total_blocks / u64::from(blocks)) as f64, (total_blocks * 512) as f64)
        }
    };
    let wall = start.elapsed().as_secs_f64();
    let (cpu1, proc1) = t.cpu()?;
    let (iops, mbps) = match load {
        Load::Perf { .. } => (ios / args.seconds as f64, bytes / 1e6 / args.seconds as f64),
        Load::Write { .. } => (ios / wall, bytes / 1e6 / wall),
    };
    Ok(Measure {
        iops,
        mbps,
        cpu_us: (cpu1 - cpu0) * 1e6 / ios.max(1.0),
        proc_cpu_us: (proc1 - proc0) * 1e6 / ios.max(1.0),
    })
}

fn iperf3(args: &Args) -> Result<f64> {
    let port = free_port()?.to_string();
    let _server = Proc::spawn(Command::new("taskset").args([
        "-c",
        &args.target_cpu.to_string(),
        "iperf3",
        "-s",
        "-1",
        "-p",
        &port,
    ]))?;
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new("taskset")
        .args(["-c", &args.client_cpu.to_string(), "iperf3", "-c", "127.0.0.1", "-p", &port, "-J", "-t"])
        .arg(args.seconds.min(10).to_string())
        .args(["-R"]) // the server (target CPU) sends, like a target answering reads
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 -J output")?;
    let bps = v["end"]["sum_received"]["bits_per_second"].as_f64().context("iperf3 result")?;
    Ok(bps / 8e6)
}

fn build_rw_tool(dir: &Path) -> Result<PathBuf> {
    let out = dir.join("iscsi-rw");
    let src = Path::new("tests/tools/iscsi-rw.c");
    let st = Command::new("cc").args(["-O2", "-o"]).arg(&out).arg(src).arg("-liscsi").status()?;
    if !st.success() {
        bail!("cannot build {} (needs libiscsi-dev)", src.display());
    }
    Ok(out)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !args.polltgt.exists() {
        bail!("{} not found: build it first with `cargo build --release`", args.polltgt.display());
    }
    let dir = std::env::temp_dir().join(format!("polltgt-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let rw_tool = build_rw_tool(&dir)?;
    let load_before = load_average();
    let rounds = args.rounds.max(1);
    // Per idle mode and per workload, the polltgt measures of every round; the same for tgt.
    let mut polltgt_runs: Vec<Vec<Vec<Measure>>> = vec![vec![Vec::new(); WORKLOADS.len()]; args.idle.len()];
    let mut tgt_runs: Vec<Vec<Measure>> = vec![Vec::new(); WORKLOADS.len()];
    for round in 1..=rounds {
        for (mode, idle) in args.idle.iter().enumerate() {
            let mut p = Polltgt::start(&args.polltgt, args.target_cpu, args.lun_mib, &dir, idle)?;
            for (i, w) in WORKLOADS.iter().enumerate() {
                let m = run_load(&mut p, w.load, &args, &rw_tool).with_context(|| format!("polltgt ({idle}): {}", w.name))?;
                eprintln!(
                    "[{round}/{rounds}] polltgt {:9} {:32} {:>10.0} IOPS {:>8.1} MB/s {:>7.2} us/IO busy {:>7.2} us/IO process",
                    idle, w.name, m.iops, m.mbps, m.cpu_us, m.proc_cpu_us
                );
                polltgt_runs[mode][i].push(m);
            }
        }
        if !args.no_tgt {
            let mut t = Tgt::start(args.target_cpu, args.lun_mib)?;
            for (i, w) in WORKLOADS.iter().enumerate() {
                let m = run_load(&mut t, w.load, &args, &rw_tool).with_context(|| format!("tgt: {}", w.name))?;
                eprintln!(
                    "[{round}/{rounds}] tgt               {:32} {:>10.0} IOPS {:>8.1} MB/s {:>7.2} us/IO",
                    w.name, m.iops, m.mbps, m.cpu_us
                );
                tgt_runs[i].push(m);
            }
        }
    }
    let modes: Vec<(String, Vec<Measure>)> = args
        .idle
        .iter()
        .zip(&polltgt_runs)
        .map(|(idle, per_load)| (idle.clone(), per_load.iter().map(|r| median_measure(r)).collect()))
        .collect();
    let tgt: Vec<Option<Measure>> =
        tgt_runs.iter().map(|r| (!r.is_empty()).then(|| median_measure(r))).collect();
    let iperf = iperf3(&args).ok();
    let load_after = load_average();
    let _ = std::fs::remove_dir_all(&dir);

    let mut md = String::new();
    let cmdline: Vec<String> = std::env::args().collect();
    md.push_str(&format!(
        "\n## polltgt vs tgt ({})\n\nCommand: `bash bench/run.sh` (= `{}`), {} s per workload, {}target on CPU {}, initiator on \
         CPU {}, {} MiB LUN (polltgt: RAM disk, one reactor; tgt: file in /dev/shm), loopback. Load average of the \
         machine (1/5/15 min) before: {}, after: {}.\n",
        unix_date(),
        cmdline.join(" "),
        args.seconds,
        if rounds > 1 { format!("{rounds} rounds (every figure is the median of its rounds), ") } else { String::new() },
        args.target_cpu,
        args.client_cpu,
        args.lun_mib,
        load_before,
        load_after
    ));
    for (mode, (idle, ms)) in modes.iter().enumerate() {
        md.push_str(&format!(
            "\npolltgt reactor in {idle} mode. CPU/IO ratios to tgt from polltgt's reactor busy time and from its \
             process CPU time (/proc, like tgt's){}.\n\n",
            if idle == "poll" { "; in poll mode the process spins on its core, so its process figure is the whole core" } else { "" }
        ));
        md.push_str("| workload | polltgt IOPS | polltgt MB/s | polltgt CPU µs/IO (reactor busy) | polltgt process CPU µs/IO | tgt IOPS | tgt MB/s | tgt CPU µs/IO | IOPS ratio | CPU/IO ratio (busy) | CPU/IO ratio (process) |\n");
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for ((w, p), t) in WORKLOADS.iter().zip(ms).zip(&tgt) {
            match t {
                Some(t) => md.push_str(&format!(
                    // Three decimals for the CPU ratios: the target is 0.2, and 0.205 must not print as 0.20.
                    "| {} | {:.0} | {:.1} | {:.2} | {:.2} | {:.0} | {:.1} | {:.2} | {:.2}x | {:.3} | {:.3} |\n",
                    w.name,
                    p.iops,
                    p.mbps,
                    p.cpu_us,
                    p.proc_cpu_us,
                    t.iops,
                    t.mbps,
                    t.cpu_us,
                    p.iops / t.iops.max(1e-9),
                    p.cpu_us / t.cpu_us.max(1e-9),
                    p.proc_cpu_us / t.cpu_us.max(1e-9)
                )),
                None => md.push_str(&format!(
                    "| {} | {:.0} | {:.1} | {:.2} | {:.2} | - | - | - | - | - | - |\n",
                    w.name, p.iops, p.mbps, p.cpu_us, p.proc_cpu_us
                )),
            }
        }
        if rounds > 1 && !args.no_tgt {
            md.push_str("\nCPU/IO ratio (busy) of each round, in order:\n\n");
            for (i, w) in WORKLOADS.iter().enumerate() {
                let per_round: Vec<String> = polltgt_runs[mode][i]
                    .iter()
                    .zip(&tgt_runs[i])
                    .map(|(p, t)| format!("{:.3}", p.cpu_us / t.cpu_us.max(1e-9)))
                    .collect();
                md.push_str(&format!("- {}: {}\n", w.name, per_round.join(", ")));
            }
        }
        if let Some(bw) = iperf {
            let seq = ms.get(2).map(|m| m.mbps).unwrap_or(0.0);
            md.push_str(&format!("\npolltgt ({idle}) 128 KiB sequential read: {:.0}% of iperf3.\n", seq / bw * 100.0));
        }
    }
    if let Some(bw) = iperf {
        md.push_str(&format!(
            "\niperf3 on the same loopback (server on the target CPU sending, client on the initiator CPU): {bw:.0} MB/s.\n"
        ));
    }
    print!("{md}");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new().create(true).append(true).open(&args.out)?.write_all(md.as_bytes())?;
    eprintln!("results appended to {}", args.out.display());
    Ok(())
}

/// The median of one value over rounds (the mean of the middle two for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Each field's median over the rounds of one workload.
fn median_measure(runs: &[Measure]) -> Measure {
    let field = |f: fn(&Measure) -> f64| median(runs.iter().map(f).collect());
    Measure {
        iops: field(|m| m.iops),
        mbps: field(|m| m.mbps),
        cpu_us: field(|m| m.cpu_us),
        proc_cpu_us: field(|m| m.proc_cpu_us),
    }
}

/// The machine's load averages (1, 5, 15 minutes) from /proc/loadavg.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The current date and time (UTC), from date(1).
fn unix_date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty_rounds() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
        let runs = [
            Measure { iops: 10.0, mbps: 1.0, cpu_us: 3.0, proc_cpu_us: 9.0 },
            Measure { iops: 30.0, mbps: 3.0, cpu_us: 1.0, proc_cpu_us: 7.0 },
            Measure { iops: 20.0, mbps: 2.0, cpu_us: 2.0, proc_cpu_us: 8.0 },
        ];
        let m = median_measure(&runs);
        assert_eq!((m.iops, m.mbps, m.cpu_us, m.proc_cpu_us), (20.0, 2.0, 2.0, 8.0));
    }
}
