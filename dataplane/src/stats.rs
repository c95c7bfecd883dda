//! A snapshot of the dataplane's statistics: reactors (busy/idle from the TSC accounting like SPDK's
//! `thread_get_stats`, pollers, session placement), the buffer pool (SCST's sgv statistics, per-reactor caches),
//! and the data path counters (READ data sent by reference, zero-copy transmit and receive, buffer back-pressure).
//! [`collect`] is the one collector: the management plane (RPC, Prometheus, the object tree) and the binary's
//! SIGUSR1 / shutdown line show what it returns. Serializes to JSON with serde.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use polltgt_hugepages::{BufPool, PoolStats};
use serde::Serialize;

use crate::driver::{DriverStats, ReactorState};
use crate::reactor::ReactorStats;
use crate::registry::Registry;

/// One poller's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PollerSnapshot {
    pub name: String,
    pub runs: u64,
    pub busy_runs: u64,
}

/// One reactor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReactorSnapshot {
    pub id: usize,
    pub core: Option<usize>,
    pub tick_rate: u64,
    pub busy_tsc: u64,
    pub idle_tsc: u64,
    pub busy_ns: u64,
    pub idle_ns: u64,
    pub iterations: u64,
    /// Iterations in which a poller or message was busy.
    pub busy_iterations: u64,
    pub messages: u64,
    pub sleeps: u64,
    /// The reactor thread's id (SCST `thread_pid`).
    pub tid: u64,
    pub pollers: Vec<PollerSnapshot>,
    /// Normal sessions running here now and since start, whether a dedicated session holds the reactor, and
    /// sessions moved here after login (see [`crate::placement`]).
    pub sessions: u64,
    pub sessions_total: u64,
    pub dedicated: bool,
    pub sessions_moved_in: u64,
    /// Open connections, and this reactor's data path counters (None: the reactor did not answer in time).
    pub connections: usize,
    pub datapath: Option<DataPathSnapshot>,
}

impl ReactorSnapshot {
    pub fn of(s: &ReactorStats) -> ReactorSnapshot {
        let pollers = s
            .pollers
            .lock()
            .map(|l| {
                l.iter()
                    .map(|p| PollerSnapshot {
                        name: p.name.clone(),
                        runs: p.runs.load(Ordering::Relaxed),
                        busy_runs: p.busy_runs.load(Ordering::Relaxed),
                    })
                    .collect()
            })
            .unwrap_or_default();
        ReactorSnapshot {
            id: s.id,
            core: s.core,
            tick_rate: s.tick_rate.load(Ordering::Relaxed),
            busy_tsc: s.busy_tsc.load(Ordering::Relaxed),
            idle_tsc: s.idle_tsc.load(Ordering::Relaxed),
            busy_ns: s.busy_ns.load(Ordering::Relaxed),
            idle_ns: s.idle_ns.load(Ordering::Relaxed),
            iterations: s.iterations.load(Ordering::Relaxed),
            busy_iterations: s.busy_iterations.load(Ordering::Relaxed),
            messages: s.messages.load(Ordering::Relaxed),
            sleeps: s.sleeps.load(Ordering::Relaxed),
            tid: s.tid.load(Ordering::Relaxed),
            pollers,
            ..Default::default()
        }
    }
}

/// One size class of the pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClassSnapshot {
    pub size: usize,
    pub slabs: usize,
    pub free: usize,
    pub in_use: usize,
    pub cached: usize,
}

/// The buffer pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PoolSnapshot {
    pub allocations: u64,
    pub frees: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub large_allocations: u64,
    pub exhausted: u64,
    pub bytes_in_use: usize,
    pub high_water: usize,
    pub bytes_mapped: usize,
    pub bytes_cached: usize,
    pub thread_caches: usize,
    pub max_bytes: Option<usize>,
    pub classes: Vec<ClassSnapshot>,
}

impl PoolSnapshot {
    pub fn of(s: &PoolStats, max_bytes: Option<usize>) -> PoolSnapshot {
        PoolSnapshot {
            allocations: s.allocations,
            frees: s.frees,
            cache_hits: s.cache_hits,
            cache_misses: s.cache_misses,
            large_allocations: s.large_allocations,
            exhausted: s.exhausted,
            bytes_in_use: s.bytes_in_use,
            high_water: s.high_water,
            bytes_mapped: s.bytes_mapped,
            bytes_cached: s.bytes_cached,
            thread_caches: s.thread_caches,
            max_bytes,
            classes: s
                .classes
                .iter()
                .map(|c| ClassSnapshot { size: c.size, slabs: c.slabs, free: c.free, in_use: c.in_use, cached: c.cached })
                .collect(),
        }
    }
}

/// Data path counters, summed over reactors (closed connections included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DataPathSnapshot {
    pub connections_accepted: u64,
    pub connections_closed: u64,
    pub commands: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// READ data handed to the transport as references to pool buffers.
    pub read_bytes_by_reference: u64,
    /// Transmit: bytes the kernel sent from our buffers by reference (MSG_ZEROCOPY) vs copied into the socket.
    pub tx_bytes_zerocopy: u64,
    pub tx_bytes_copied: u64,
    pub tx_zerocopy_notifications: u64,
    pub tx_zerocopy_copied: u64,
    pub tx_zerocopy_fallbacks: u64,
    /// Receive: write data read by the socket straight into pool buffers vs copied from the receive buffer.
    pub rx_bytes_placed: u64,
    pub rx_bytes_copied: u64,
    pub rx_write_claims: u64,
    pub rx_claim_failures: u64,
    /// Back-pressure: commands that waited for pool buffers, and those waiting now.
    pub buffer_waits: u64,
    pub buffer_waiting: u64,
}

impl DataPathSnapshot {
    pub fn add(&mut self, d: &DriverStats) {
        self.connections_accepted += d.connections_accepted;
        self.connections_closed += d.connections_closed;
        self.commands += d.commands;
        self.bytes_read += d.bytes_read;
        self.bytes_written += d.bytes_written;
        self.read_bytes_by_reference += d.read_bytes_by_reference;
        self.tx_bytes_zerocopy += d.tx.bytes_zerocopy;
        self.tx_bytes_copied += d.tx.bytes_copied;
        self.tx_zerocopy_notifications += d.tx.zerocopy_notifications;
        self.tx_zerocopy_copied += d.tx.zerocopy_copied;
        self.tx_zerocopy_fallbacks += d.tx.zerocopy_fallbacks;
        self.rx_bytes_placed += d.rx.bytes_placed;
        self.rx_bytes_copied += d.rx.bytes_copied;
        self.rx_write_claims += d.rx.claims;
        self.rx_claim_failures += d.rx.claim_failures;
        self.buffer_waits += d.buffer_waits;
        self.buffer_waiting += d.buffer_waiting;
    }
}

/// Everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DataplaneSnapshot {
    pub reactors: Vec<ReactorSnapshot>,
    pub pool: PoolSnapshot,
    pub datapath: DataPathSnapshot,
}

/// Takes a snapshot of the running dataplane: reactor counters read directly (the reactors' own totals),
/// connections and data path counters asked of each reactor by message (waiting at most `timeout` for all of them;
/// a reactor that does not answer in time has no `datapath`), placement counters from the registry's directory,
/// pool statistics. The snapshot's `datapath` is the sum over the reactors that answered.
pub fn collect(registry: &Registry, pool: &BufPool, timeout: Duration) -> DataplaneSnapshot {
    let handles = registry.reactors();
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut asked = 0;
    for h in handles {
        let tx = tx.clone();
        if h.send(move |s: &mut ReactorState, _| {
            let _ = tx.send((s.id, s.connections(), s.snapshot()));
        }) {
            asked += 1;
        }
    }
    let deadline = Instant::now() + timeout;
    let mut answers = Vec::with_capacity(asked);
    for _ in 0..asked {
        match rx.recv_deadline(deadline) {
            Ok(a) => answers.push(a),
            Err(_) => break,
        }
    }
    let mut datapath = DataPathSnapshot::default();
    let reactors = handles
        .iter()
        .map(|h| {
            let mut r = ReactorSnapshot::of(h.stats());
            if let Some(slot) = registry.placement().and_then(|d| d.get(r.id)) {
                r.sessions = slot.sessions.load(Ordering::Relaxed) as u64;
                r.sessions_total = slot.sessions_total.load(Ordering::Relaxed);
                r.dedicated = slot.dedicated.load(Ordering::Relaxed);
                r.sessions_moved_in = slot.migrations_in.load(Ordering::Relaxed);
            }
            if let Some((_, connections, d)) = answers.iter().find(|(id, _, _)| *id == r.id) {
                let mut mine = DataPathSnapshot::default();
                mine.add(d);
                datapath.add(d);
                r.connections = *connections;
                r.datapath = Some(mine);
            }
            r
        })
        .collect();
    DataplaneSnapshot { reactors, pool: PoolSnapshot::of(&pool.stats(), pool.config().max_bytes), datapath }
}

impl DataplaneSnapshot {
    /// One line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
