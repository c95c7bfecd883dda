//! The Prometheus text exposition format (version 0.0.4) of the figures the RPC methods report: reactor busy/idle
//! time and poller counters, buffer pool statistics, per-session and per-LUN I/O counters, authentication failures.

use std::fmt::Write;

use crate::manager::Manager;

/// Escape a label value (backslash, double quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out {
    text: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", esc(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }
}

/// All metrics as Prometheus text. Figures the dataplane could not report (a reactor did not answer) are left out.
pub fn render(m: &Manager) -> String {
    let b = m.backend();
    let mut o = Out { text: String::new() };
    let stats = b.dataplane_stats().ok();
    if let Some(st) = &stats {
        let reactors = &st.reactors;
        type ReactorGet = fn(&crate::backend::ReactorInfo) -> f64;
        let fields: [(&str, &str, &str, ReactorGet); 8] = [
            (
                "polltgt_reactor_busy_seconds_total",
                "counter",
                "Time reactors spent in iterations where a poller did work (TSC accounting).",
                |r| r.busy_ns as f64 / 1e9,
            ),
            (
                "polltgt_reactor_idle_seconds_total",
                "counter",
                "Time reactors spent in idle iterations and asleep (TSC accounting).",
                |r| r.idle_ns as f64 / 1e9,
            ),
            ("polltgt_reactor_iterations_total", "counter", "Reactor loop iterations.", |r| r.iterations as f64),
            ("polltgt_reactor_sleeps_total", "counter", "Times a reactor slept in epoll (interrupt mode).", |r| {
                r.sleeps as f64
            }),
            ("polltgt_reactor_connections", "gauge", "Open connections per reactor.", |r| r.connections as f64),
            ("polltgt_reactor_sessions", "gauge", "Normal sessions running on the reactor.", |r| r.sessions as f64),
            (
                "polltgt_reactor_sessions_moved_in_total",
                "counter",
                "Sessions moved to the reactor after login (target cpu_mask, dedicated reactors).",
                |r| r.sessions_moved_in as f64,
            ),
            ("polltgt_reactor_commands_total", "counter", "SCSI commands received per reactor.", |r| {
                r.datapath.commands as f64
            }),
        ];
        for (name, kind, help, get) in fields {
            o.family(name, kind, help);
            for r in reactors {
                o.sample(name, &[("reactor", &r.id.to_string())], get(r));
            }
        }
        o.family("polltgt_reactor_dedicated", "gauge", "1 while a dedicated session holds the reactor.");
        for r in reactors {
            o.sample("polltgt_reactor_dedicated", &[("reactor", &r.id.to_string())], u64::from(r.dedicated));
        }
        o.family("polltgt_poller_runs_total", "counter", "Poller calls.");
        for r in reactors {
            for p in &r.pollers {
                o.sample(
                    "polltgt_poller_runs_total",
                    &[("reactor", &r.id.to_string()), ("poller", &p.name)],
                    p.runs,
                );
            }
        }
        o.family(
            "polltgt_poller_busy_runs_total",
            "counter",
            "Poller calls that found work.",
        );
        for r in reactors {
            for p in &r.pollers {
                o.sample(
                    "polltgt_poller_busy_runs_total",
                    &[("reactor", &r.id.to_string()), ("poller", &p.name)],
                    p.busy_runs,
                );
            }
        }
        let d = &st.datapath;
        for (name, kind, help, v) in [
            ("polltgt_read_bytes_by_reference_total", "counter", "READ data sent from pool buffers without a copy.", d.read_bytes_by_reference),
            ("polltgt_tx_zerocopy_bytes_total", "counter", "Bytes sent with MSG_ZEROCOPY.", d.tx_bytes_zerocopy),
            ("polltgt_tx_copied_bytes_total", "counter", "Bytes copied into sockets.", d.tx_bytes_copied),
            ("polltgt_tx_zerocopy_notifications_total", "counter", "MSG_ZEROCOPY completions.", d.tx_zerocopy_notifications),
            ("polltgt_tx_zerocopy_copied_total", "counter", "MSG_ZEROCOPY sends the kernel copied anyway.", d.tx_zerocopy_copied),
            ("polltgt_tx_zerocopy_fallbacks_total", "counter", "MSG_ZEROCOPY sends that fell back to copying.", d.tx_zerocopy_fallbacks),
            ("polltgt_rx_placed_bytes_total", "counter", "Write data read straight into pool buffers.", d.rx_bytes_placed),
            ("polltgt_rx_copied_bytes_total", "counter", "Write data copied from receive buffers.", d.rx_bytes_copied),
            ("polltgt_rx_write_claims_total", "counter", "Write commands that claimed a pool buffer at arrival.", d.rx_write_claims),
            ("polltgt_rx_claim_failures_total", "counter", "Write commands that could not claim a pool buffer.", d.rx_claim_failures),
            ("polltgt_buffer_waits_total", "counter", "Commands that waited for pool buffers (back-pressure).", d.buffer_waits),
            ("polltgt_buffer_waiting", "gauge", "Commands waiting for pool buffers now.", d.buffer_waiting),
        ] {
            o.family(name, kind, help);
            o.sample(name, &[], v);
        }
    }
    let p = stats.map_or_else(|| b.pool(), |st| st.pool);
    for (name, kind, help, v) in [
        (
            "polltgt_pool_allocations_total",
            "counter",
            "Buffer pool allocations.",
            p.allocations as f64,
        ),
        (
            "polltgt_pool_frees_total",
            "counter",
            "Buffers returned to the pool.",
            p.frees as f64,
        ),
        (
            "polltgt_pool_cache_hits_total",
            "counter",
            "Allocations served from a free list.",
            p.cache_hits as f64,
        ),
        (
            "polltgt_pool_cache_misses_total",
            "counter",
            "Allocations that found the free list empty.",
            p.cache_misses as f64,
        ),
        (
            "polltgt_pool_large_allocations_total",
            "counter",
            "Allocations above the largest size class.",
            p.large_allocations as f64,
        ),
        (
            "polltgt_pool_exhausted_total",
            "counter",
            "Allocations refused because the pool was at its cap.",
            p.exhausted as f64,
        ),
        (
            "polltgt_pool_bytes_in_use",
            "gauge",
            "Bytes handed out.",
            p.bytes_in_use as f64,
        ),
        (
            "polltgt_pool_high_water_bytes",
            "gauge",
            "Highest bytes in use.",
            p.high_water as f64,
        ),
        (
            "polltgt_pool_mapped_bytes",
            "gauge",
            "Bytes mapped by the pool.",
            p.bytes_mapped as f64,
        ),
        (
            "polltgt_pool_cached_bytes",
            "gauge",
            "Bytes held in the reactors' buffer caches.",
            p.bytes_cached as f64,
        ),
        (
            "polltgt_pool_thread_caches",
            "gauge",
            "Reactor buffer caches.",
            p.thread_caches as f64,
        ),
    ] {
        o.family(name, kind, help);
        o.sample(name, &[], v);
    }
    if let Some(max) = p.max_bytes {
        o.family("polltgt_pool_max_bytes", "gauge", "The pool's cap (reactors.buffer_pool_max).");
        o.sample("polltgt_pool_max_bytes", &[], max as f64);
    }
    o.family("polltgt_pool_class_cached", "gauge", "Buffers of a size class held in the reactors' caches.");
    for c in &p.classes {
        o.sample("polltgt_pool_class_cached", &[("size", &c.size.to_string())], c.cached as f64);
    }
    o.family(
        "polltgt_auth_failures_total",
        "counter",
        "Logins refused with authentication failure.",
    );
    o.sample("polltgt_auth_failures_total", &[], b.auth_failures());
    if let Ok(sessions) = b.sessions() {
        type Get = fn(&crate::backend::SessionInfo) -> u64;
        let fields: [(&str, &str, &str, Get); 7] = [
            (
                "polltgt_session_commands_total",
                "counter",
                "SCSI commands of the session.",
                |s| s.commands,
            ),
            (
                "polltgt_session_read_commands_total",
                "counter",
                "READ-type commands completed.",
                |s| s.read_commands,
            ),
            (
                "polltgt_session_write_commands_total",
                "counter",
                "WRITE-type commands completed.",
                |s| s.write_commands,
            ),
            ("polltgt_session_read_bytes_total", "counter", "Bytes read.", |s| {
                s.read_bytes
            }),
            ("polltgt_session_write_bytes_total", "counter", "Bytes written.", |s| {
                s.write_bytes
            }),
            (
                "polltgt_session_errors_total",
                "counter",
                "Block commands that did not end GOOD.",
                |s| s.errors,
            ),
            (
                "polltgt_session_active_commands",
                "gauge",
                "Commands received and not yet answered.",
                |s| s.active_commands,
            ),
        ];
        for (name, kind, help, get) in fields {
            o.family(name, kind, help);
            for s in &sessions {
                o.sample(
                    name,
                    &[("target", &s.target), ("initiator", &s.initiator_name), ("sid", &s.sid)],
                    get(s),
                );
            }
        }
    }
    let luns = b.lun_stats();
    type LunGet = fn(&crate::backend::LunStatsInfo) -> u64;
    let fields: [(&str, &str, LunGet); 6] = [
        (
            "polltgt_lun_read_commands_total",
            "READ-type commands completed on the LUN.",
            |l| l.read_commands,
        ),
        (
            "polltgt_lun_write_commands_total",
            "WRITE-type commands completed on the LUN.",
            |l| l.write_commands,
        ),
        (
            "polltgt_lun_other_commands_total",
            "Other block commands completed on the LUN.",
            |l| l.other_commands,
        ),
        ("polltgt_lun_read_bytes_total", "Bytes read from the LUN.", |l| {
            l.read_bytes
        }),
        ("polltgt_lun_write_bytes_total", "Bytes written to the LUN.", |l| {
            l.write_bytes
        }),
        (
            "polltgt_lun_errors_total",
            "Block commands on the LUN that did not end GOOD.",
            |l| l.errors,
        ),
    ];
    for (name, help, get) in fields {
        o.family(name, "counter", help);
        for l in &luns {
            let lun = l.lun.to_string();
            let group = l.group.clone().unwrap_or_default();
            o.sample(
                name,
                &[
                    ("target", &l.target),
                    ("group", &group),
                    ("lun", &lun),
                    ("device", &l.device),
                ],
                get(l),
            );
        }
    }
    o.text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut o = Out { text: String::new() };
        o.family("x_total", "counter", "X.");
        o.sample("x_total", &[("a", "1"), ("b", "q\"")], 5);
        o.sample("x_total", &[], 1.5);
        assert_eq!(
            o.text,
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"\"} 5\nx_total 1.5\n"
        );
    }
}
