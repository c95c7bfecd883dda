//! The data path against real initiators (libiscsi's iscsi-perf and the iscsi-rw load tool), read through the
//! management RPC's `dataplane_get_stats` (the snapshot the binary also prints as `polltgt-stats: {json}` on SIGUSR1):
//! pool buffers all come back after a READ-heavy run, READ data goes out by reference, MSG_ZEROCOPY and the
//! zero-copy receive of write data are used, and a pool capped far below what the queue depth needs makes commands
//! wait (back-pressure) without any of them failing.

mod common;

use std::time::{Duration, Instant};

use common::{iscsi_perf, iscsi_rw, run_ok, Target, IQN};

const MIN: Duration = Duration::from_secs(60);

fn start(reactors: &str) -> Target {
    let yaml = format!(
        "reactors:\n{reactors}portals:\n  - address: \"127.0.0.1:0\"\ndevices:\n  - name: ram0\n    handler: ram\n    size: 64M\n    blocksize: 512\ntargets:\n  - name: {IQN}\n    luns:\n      - {{ lun: 0, device: ram0 }}\n"
    );
    Target::start_with_yaml(tempfile::tempdir().expect("tempdir"), &yaml)
}

/// The dataplane statistics as the management RPC serves them (`dataplane_get_stats`).
fn stats(t: &Target) -> serde_json::Value {
    t.rpc_ok("dataplane_get_stats", serde_json::json!({}))
}

/// The statistics line the binary prints on SIGUSR1 (`polltgt-stats: {json}`), parsed (the newest line after the
/// signal).
fn stats_line(t: &Target) -> serde_json::Value {
    let before = t.output().lines().filter(|l| l.starts_with("polltgt-stats: ")).count();
    // kill(1) keeps the test free of unsafe code.
    let status = std::process::Command::new("kill").args(["-USR1", &t.pid().to_string()]).status().expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = t.output();
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("polltgt-stats: ")).collect();
        if lines.len() > before {
            let json = lines[lines.len() - 1].trim_start_matches("polltgt-stats: ");
            return serde_json::from_str(json).expect("statistics line is JSON");
        }
        assert!(Instant::now() < deadline, "no statistics line after SIGUSR1:\n{out}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls the statistics until `f` holds (connections close asynchronously after the tools exit).
fn stats_until(t: &Target, what: &str, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(t);
        if f(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} never held; last statistics:\n{s:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn u(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut x = v;
    for p in path {
        x = &x[*p];
    }
    x.as_u64().unwrap_or_else(|| panic!("{path:?} missing in {v:#}"))
}

#[test]
fn buffers_return_to_the_pool_and_zero_copy_counters_move() {
    let mut t = start("  count: 1\n  zerocopy_threshold: 64K\n");
    let url = t.url(0);
    let tool = iscsi_rw();
    // Writes of 128 KiB (immediate data and Data-Out, received into claimed pool buffers), read back and verified.
    let w = run_ok(&tool, &["-q", "8", "-b", "256", "-s", "3", &url, "write", "0", "32768"], MIN);
    assert!(w.contains("OK"), "{w}");
    let r = run_ok(&tool, &["-q", "8", "-b", "256", "-s", "3", &url, "verify", "0", "32768"], MIN);
    assert!(r.contains("OK"), "{r}");
    // READ-heavy: 4 KiB random reads at queue depth 32.
    iscsi_perf(&["-m", "32", "-r"], 2, &url);
    assert!(t.alive(), "target died:\n{}", t.output());
    let s = stats_until(&t, "all connections closed", |s| {
        u(s, &["datapath", "connections_closed"]) == u(s, &["datapath", "connections_accepted"])
    });
    assert_eq!(u(&s, &["pool", "bytes_in_use"]), 0, "every buffer is back in the pool: {s:#}");
    assert!(u(&s, &["pool", "allocations"]) > 1000, "{s:#}");
    assert_eq!(u(&s, &["pool", "allocations"]), u(&s, &["pool", "frees"]), "{s:#}");
    assert!(u(&s, &["pool", "high_water"]) > 0);
    let dp = |k: &str| u(&s, &["datapath", k]);
    assert_eq!(dp("read_bytes_by_reference"), dp("bytes_read"), "READ data is never copied: {s:#}");
    assert!(dp("bytes_read") >= 16 << 20, "{s:#}");
    assert!(dp("tx_bytes_zerocopy") > 0, "large Data-In went out with MSG_ZEROCOPY: {s:#}");
    assert!(dp("tx_bytes_copied") > 0, "small PDUs are copied: {s:#}");
    assert!(dp("tx_zerocopy_notifications") > 0, "{s:#}");
    assert!(dp("rx_write_claims") >= 128, "{s:#}");
    assert!(dp("rx_bytes_placed") > 0, "write data read straight into pool buffers: {s:#}");
    assert_eq!(dp("rx_bytes_placed") + dp("rx_bytes_copied"), 16 << 20, "{s:#}");
    let r0 = &s["reactors"][0];
    assert!(u(r0, &["busy_tsc"]) > 0 && u(r0, &["tick_rate"]) > 0, "{s:#}");
    assert_eq!(u(r0, &["datapath", "commands"]), dp("commands"), "one reactor: its counters are the totals: {s:#}");
    // The SIGUSR1 line prints the same snapshot: with every connection closed its data path and pool counters
    // match the RPC's.
    let line = stats_line(&t);
    assert_eq!(line["datapath"], s["datapath"], "{line:#}\n{s:#}");
    assert_eq!(line["pool"]["allocations"], s["pool"]["allocations"], "{line:#}\n{s:#}");
    assert_eq!(line["reactors"][0]["datapath"], s["reactors"][0]["datapath"], "{line:#}");
}

#[test]
fn a_capped_pool_makes_commands_wait_and_none_fails() {
    // 1 MiB of buffers for 32 commands of 128 KiB in flight in each direction.
    let mut t = start("  count: 1\n  buffer_pool_max: 1M\n");
    let url = t.url(0);
    let tool = iscsi_rw();
    let w = run_ok(&tool, &["-q", "32", "-b", "256", "-s", "5", &url, "write", "0", "32768"], MIN);
    assert!(w.contains("OK"), "{w}");
    let r = run_ok(&tool, &["-q", "32", "-b", "256", "-s", "5", &url, "verify", "0", "32768"], MIN);
    assert!(r.contains("OK"), "{r}");
    assert!(t.alive(), "target died:\n{}", t.output());
    let s = stats_until(&t, "all connections closed", |s| {
        u(s, &["datapath", "connections_closed"]) == u(s, &["datapath", "connections_accepted"])
    });
    assert!(u(&s, &["datapath", "buffer_waits"]) > 0, "commands waited for buffers: {s:#}");
    assert_eq!(u(&s, &["datapath", "buffer_waiting"]), 0, "{s:#}");
    assert!(u(&s, &["pool", "exhausted"]) > 0, "{s:#}");
    assert!(u(&s, &["pool", "bytes_mapped"]) <= 1 << 20, "the cap holds: {s:#}");
    assert_eq!(u(&s, &["pool", "bytes_in_use"]), 0, "{s:#}");
}

fn start_two_reactors(target_extra: &str) -> Target {
    let yaml = format!(
        "reactors:\n  cpu_mask: \"0x3\"\nportals:\n  - address: \"127.0.0.1:0\"\ndevices:\n  - name: ram0\n    handler: ram\n    size: 16M\n    blocksize: 512\ntargets:\n  - name: {IQN}\n    luns:\n      - {{ lun: 0, device: ram0 }}\n{target_extra}"
    );
    Target::start_with_yaml(tempfile::tempdir().expect("tempdir"), &yaml)
}

fn reactor_on_core(s: &serde_json::Value, core: u64) -> &serde_json::Value {
    s["reactors"].as_array().and_then(|a| a.iter().find(|r| r["core"].as_u64() == Some(core))).expect("reactor")
}

#[test]
fn a_target_cpu_mask_moves_its_sessions_to_those_reactors() {
    if std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) < 2 {
        eprintln!("one CPU: nothing to test");
        return;
    }
    let t = start_two_reactors("    cpu_mask: \"0x2\"\n");
    for _ in 0..4 {
        run_ok("iscsi-inq", &[&t.url(0)], MIN);
    }
    let s = stats_until(&t, "all connections closed", |s| {
        u(s, &["datapath", "connections_closed"]) == u(s, &["datapath", "connections_accepted"])
    });
    let (r0, r1) = (reactor_on_core(&s, 0), reactor_on_core(&s, 1));
    assert_eq!(u(r1, &["sessions_total"]), 4, "every session ran on the reactor of CPU 1: {s:#}");
    assert_eq!(u(r0, &["sessions_total"]), 0, "{s:#}");
    assert!(u(r1, &["sessions_moved_in"]) >= 1, "connections accepted on reactor 0 moved: {s:#}");
    assert_eq!(u(r1, &["sessions"]), 0, "{s:#}");
}

#[test]
fn a_dedicated_session_keeps_its_reactor_to_itself() {
    if std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) < 2 {
        eprintln!("one CPU: nothing to test");
        return;
    }
    // Target 1 (IQN) plain, target 2 with dedicated reactors.
    let iqn2 = "iqn.2026-11.io.polltgt:dedicated";
    let t = start_two_reactors(&format!(
        "  - name: {iqn2}\n    per_sess_dedicated_tgt_threads: true\n    luns:\n      - {{ lun: 0, device: ram0 }}\n"
    ));
    let url1 = t.url(0);
    let url2 = format!("iscsi://{}/{iqn2}/0", t.addr);
    let long = |url: String| {
        std::thread::spawn(move || iscsi_perf(&["-m", "2", "-r"], 4, &url))
    };
    // Connections are accepted round robin: the plain session on reactor 0, the dedicated one on reactor 1.
    let a = long(url1.clone());
    stats_until(&t, "the first session", |s| u(s, &["datapath", "connections_accepted"]) >= 1);
    let b = long(url2);
    let s = stats_until(&t, "the dedicated session", |s| reactor_on_core(s, 1)["dedicated"] == true);
    assert_eq!(u(reactor_on_core(&s, 1), &["sessions"]), 1, "{s:#}");
    // Two short plain sessions: one is accepted on reactor 1, which is taken, so it moves to reactor 0.
    run_ok("iscsi-inq", &[&url1], MIN);
    run_ok("iscsi-inq", &[&url1], MIN);
    let s = stats(&t);
    let (r0, r1) = (reactor_on_core(&s, 0), reactor_on_core(&s, 1));
    assert_eq!(u(r1, &["sessions_total"]), 1, "only the dedicated session ran on reactor 1: {s:#}");
    assert_eq!(u(r0, &["sessions_total"]), 3, "{s:#}");
    assert!(u(r0, &["sessions_moved_in"]) >= 1, "{s:#}");
    a.join().expect("iscsi-perf");
    b.join().expect("iscsi-perf");
    let s = stats_until(&t, "all connections closed", |s| {
        u(s, &["datapath", "connections_closed"]) == u(s, &["datapath", "connections_accepted"])
    });
    assert_eq!(reactor_on_core(&s, 1)["dedicated"], false, "the claim ends with the session: {s:#}");
}
