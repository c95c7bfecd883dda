//! The JSON-RPC socket against a running target: malformed and hostile requests get JSON-RPC errors and never take
//! the target down; the socket is private; observability (reactors, pollers, buffer pool, Prometheus, trace level).

mod common;

use common::mgmt::RawRpc;
use common::{run_ok, Lun, Target, IQN};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn code(v: &Value) -> i64 {
    v["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error response: {v}"))
}

#[test]
fn malformed_requests_get_json_rpc_errors_never_a_crash() {
    let mut t = Target::start(
        &[Lun::Ram {
            size_mb: 16,
            blocksize: 512,
        }],
        "",
    );
    let sock = t.socket();
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the RPC socket must be private to its owner");

    let mut c = RawRpc::connect(&sock);
    // Structurally wrong requests: -32600, with the id when there is one.
    let r = c.request(&json!([1, 2]));
    assert_eq!(r.as_array().map(Vec::len), Some(2), "{r}");
    assert_eq!(code(&r[0]), -32600);
    assert_eq!(
        code(&c.request(&json!({ "id": 1, "method": "rpc_get_methods" }))),
        -32600,
        "jsonrpc missing"
    );
    assert_eq!(
        code(&c.request(&json!({ "jsonrpc": "1.0", "id": 1, "method": "x" }))),
        -32600
    );
    assert_eq!(
        code(&c.request(&json!({ "jsonrpc": "2.0", "id": 1, "method": 7 }))),
        -32600
    );
    assert_eq!(
        code(&c.request(&json!({ "jsonrpc": "2.0", "id": [1], "method": "x" }))),
        -32600
    );
    assert_eq!(
        code(&c.request(&json!({ "jsonrpc": "2.0", "id": 1, "method": "x", "extra": 1 }))),
        -32600
    );
    assert_eq!(code(&c.request(&json!([]))), -32600, "empty batch");
    // Unknown method: -32601, id echoed.
    let r = c.request(&json!({ "jsonrpc": "2.0", "id": "abc", "method": "no_such_method" }));
    assert_eq!(code(&r), -32601);
    assert_eq!(r["id"], "abc");
    // Bad parameters: -32602.
    for (method, params) in [
        (
            "iscsi_target_node_add_lun",
            json!({ "name": IQN, "lun": "zero", "device": "ram0" }),
        ),
        (
            "iscsi_target_node_add_lun",
            json!({ "name": IQN, "lun": 70000, "device": "ram0" }),
        ),
        ("bdev_get_bdevs", json!({ "nmae": "x" })),
        ("bdev_create", json!({ "name": "x", "handler": "floppy", "size": "1M" })),
        ("bdev_create", json!({ "name": "x", "handler": "ram", "size": "1Q" })),
        ("iscsi_create_target_node", json!({ "name": "not an iqn" })),
        ("rpc_get_methods", json!([1, 2])),
        (
            "bdev_malloc_create",
            json!({ "name": "x", "num_blocks": 10, "block_size": 999 }),
        ),
    ] {
        let r = c.request(&json!({ "jsonrpc": "2.0", "id": 9, "method": method, "params": params }));
        assert_eq!(code(&r), -32602, "{method} {params}: {r}");
    }
    // Library errors: errno-style codes with the object and attribute in error.data.
    let r = c.request(&json!({ "jsonrpc": "2.0", "id": 2, "method": "iscsi_target_node_add_lun", "params": { "name": IQN, "lun": 0, "device": "ram0" } }));
    assert_eq!(code(&r), -17, "{r}");
    assert_eq!(r["error"]["data"]["object"], format!("targets/iscsi/{IQN}/luns"));
    let r = c.request(&json!({ "jsonrpc": "2.0", "id": 3, "method": "object_set", "params": { "path": format!("targets/iscsi/{IQN}/MaxBurstLength"), "value": 100 } }));
    assert_eq!(code(&r), -22, "{r}");
    assert_eq!(r["error"]["data"]["attribute"], "MaxBurstLength");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("100 is out of range"),
        "{r}"
    );
    let r = c.request(&json!({ "jsonrpc": "2.0", "id": 4, "method": "scst_write", "params": { "path": "/sys/kernel/scst_tgt/targets/iscsi/mgmt", "value": "frobnicate" } }));
    assert_eq!(code(&r), -22, "{r}");
    let r = c.request(&json!({ "jsonrpc": "2.0", "id": 5, "method": "object_get", "params": { "path": "targets/iscsi/iqn.2026-11.io.x:nope" } }));
    assert_eq!(code(&r), -2, "{r}");
    // Notifications get no answer; a batch answers only its requests.
    c.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"rpc_get_methods\"}\n");
    let r = c.request(&json!([
        { "jsonrpc": "2.0", "method": "rpc_get_methods" },
        { "jsonrpc": "2.0", "id": 10, "method": "log_get_level" },
        { "jsonrpc": "2.0", "id": 11, "method": "nope" }
    ]));
    let arr = r.as_array().unwrap_or_else(|| panic!("batch answer expected: {r}"));
    assert_eq!(arr.len(), 2, "{r}");
    assert_eq!(arr[0]["id"], 10);
    assert_eq!(arr[1]["error"]["code"], -32601);
    // Two requests in one write, and one split over two writes.
    c.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":20,\"method\":\"log_get_level\"}{\"jsonrpc\":\"2.0\",\"id\":21,");
    let a = c.read().unwrap();
    assert_eq!(a["id"], 20);
    c.send_raw(b"\"method\":\"log_get_level\"}");
    assert_eq!(c.read().unwrap()["id"], 21);
    // Not JSON at all: -32700, and the connection is closed (there is no next request to find).
    c.send_raw(b"{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": }\n");
    let r = c.read().unwrap();
    assert_eq!(code(&r), -32700, "{r}");
    assert_eq!(r["id"], Value::Null);
    assert!(c.read().is_none(), "the server closes a connection after a parse error");

    // Binary junk, a truncated request, and a request larger than the limit on fresh connections.
    let mut c = RawRpc::connect(&sock);
    c.send_raw(&[0xff, 0xfe, 0x00, 0x01, b'\n']);
    assert_eq!(code(&c.read().unwrap()), -32700);
    let mut c = RawRpc::connect(&sock);
    c.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"met");
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(code(&c.read().unwrap()), -32700);
    let mut c = RawRpc::connect(&sock);
    let huge = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{{\"a\":\"{}",
        "x".repeat(5 << 20)
    );
    let _ = c.stream.write_all(huge.as_bytes());
    let mut rest = Vec::new();
    let _ = c.stream.read_to_end(&mut rest);
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("-32700") && text.contains("too large"), "{text}");

    // Through all that the target kept serving: iSCSI and RPC both work.
    assert!(t.alive(), "target died:\n{}", t.output());
    let inq = run_ok("iscsi-inq", &[&t.url(0)], LIMIT);
    assert!(inq.contains("DIRECT_ACCESS"), "{inq}");
    let methods = t.rpc_ok("rpc_get_methods", json!({}));
    for m in [
        "bdev_get_bdevs",
        "iscsi_get_target_nodes",
        "framework_get_reactors",
        "thread_get_stats",
        "scst_write",
    ] {
        assert!(
            methods.as_array().unwrap().iter().any(|x| x == m),
            "{m} missing: {methods}"
        );
    }
}

#[test]
fn reactors_pollers_pool_and_prometheus_report_the_same_io() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "portals: [ {{ address: \"127.0.0.1:0\" }} ]\ndevices: [ {{ name: ram0, handler: ram, size: 16M }} ]\n\
         targets: [ {{ name: {IQN}, luns: [ {{ lun: 0, device: ram0 }} ] }} ]\nmgmt: {{ prometheus: \"127.0.0.1:0\" }}\n"
    );
    let t = Target::start_with_yaml(dir, &yaml);
    let metrics_addr = t
        .output()
        .lines()
        .find_map(|l| {
            l.split("metrics on http://")
                .nth(1)
                .map(|r| r.trim_end_matches("/metrics").to_string())
        })
        .expect("the metrics address is printed");
    let tool = common::iscsi_rw();
    run_ok(&tool, &["-q", "4", "-b", "8", &t.url(0), "write", "0", "256"], LIMIT);
    run_ok(&tool, &["-q", "4", "-b", "8", &t.url(0), "verify", "0", "256"], LIMIT);

    let reactors = t.rpc_ok("framework_get_reactors", json!({}));
    let r0 = &reactors["reactors"][0];
    assert!(
        r0["busy_ns"].as_u64() > Some(0) && r0["datapath"]["commands"].as_u64() >= Some(64),
        "{reactors}"
    );
    assert!(r0["busy_tsc"].as_u64() > Some(0) && r0["tick_rate"].as_u64() > Some(0), "TSC accounting: {reactors}");
    let pollers = r0["pollers"].as_array().unwrap();
    assert!(
        pollers
            .iter()
            .any(|p| p["name"] == "iscsi_conn" && p["busy_runs"].as_u64() > Some(0)),
        "{reactors}"
    );
    let threads = t.rpc_ok("thread_get_stats", json!({}));
    assert_eq!(threads["threads"][0]["name"], "reactor_0");
    assert_eq!(threads["tick_rate"], r0["tick_rate"], "busy/idle in the reactors' ticks: {threads}");
    assert!(threads["threads"][0]["busy"].as_u64() > Some(0), "{threads}");
    let pool = t.rpc_ok("iobuf_get_stats", json!({}));
    assert!(
        pool["allocations"].as_u64() >= Some(64) && pool["frees"].as_u64() >= Some(64),
        "{pool}"
    );
    assert!(pool["thread_caches"].as_u64() >= Some(1) && pool["bytes_cached"].is_u64(), "reactor caches: {pool}");
    // The whole snapshot (the SIGUSR1 line's): the totals are the sum of the reactors'.
    let all = t.rpc_ok("dataplane_get_stats", json!({}));
    let sum: u64 = all["reactors"].as_array().unwrap().iter().map(|r| r["datapath"]["commands"].as_u64().unwrap()).sum();
    assert_eq!(all["datapath"]["commands"].as_u64(), Some(sum), "{all}");
    assert!(all["datapath"]["read_bytes_by_reference"].as_u64() >= Some(256 * 512), "{all}");
    let tree = t.cli_ok(&["show", "sgv"]);
    assert!(tree.contains("global_stats") && tree.contains("allocations"), "{tree}");
    let table = t.cli_ok(&["list", "reactors"]);
    assert!(
        table.contains("iscsi_conn=") && table.contains("bdev_completions="),
        "{table}"
    );

    let mut http = std::net::TcpStream::connect(&metrics_addr).unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    for family in [
        "polltgt_reactor_busy_seconds_total{reactor=\"0\"}",
        "polltgt_poller_busy_runs_total{reactor=\"0\",poller=\"bdev_completions\"}",
        "polltgt_pool_allocations_total",
        "polltgt_pool_cached_bytes",
        "polltgt_reactor_sleeps_total{reactor=\"0\"}",
        "polltgt_read_bytes_by_reference_total",
        "polltgt_tx_zerocopy_bytes_total",
        "polltgt_rx_placed_bytes_total",
        "polltgt_buffer_waits_total",
        "polltgt_auth_failures_total 0",
    ] {
        assert!(body.contains(family), "{family} missing:\n{body}");
    }
    let writes = body
        .lines()
        .find(|l| l.starts_with("polltgt_lun_write_commands_total{") && l.contains("lun=\"0\""))
        .unwrap_or_else(|| panic!("no LUN write counter:\n{body}"));
    assert_eq!(
        writes.rsplit(' ').next(),
        Some("32"),
        "256 blocks in 8-block writes: {writes}"
    );
    let mut http = std::net::TcpStream::connect(&metrics_addr).unwrap();
    http.write_all(b"GET /nope HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 404"), "{body}");
}

#[test]
fn the_trace_level_changes_at_run_time() {
    let t = Target::start(
        &[Lun::Ram {
            size_mb: 16,
            blocksize: 512,
        }],
        "",
    );
    assert_eq!(t.rpc_ok("log_get_level", json!({}))["level"], "info");
    t.cli_ok(&["set", "targets/iscsi/trace_level", "warn"]);
    let before = t.output().matches("connection accepted").count();
    run_ok("iscsi-inq", &[&t.url(0)], LIMIT);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        t.output().matches("connection accepted").count(),
        before,
        "info lines must be filtered out at warn"
    );
    t.rpc_ok("log_set_level", json!({ "level": "info" }));
    run_ok("iscsi-inq", &[&t.url(0)], LIMIT);
    let deadline = std::time::Instant::now() + LIMIT;
    while t.output().matches("connection accepted").count() == before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        t.output().matches("connection accepted").count() > before,
        "info lines are back"
    );
    let e = t.rpc("log_set_level", json!({ "level": "[[[" })).unwrap_err();
    assert_eq!(e["code"], -22, "{e}");
}
