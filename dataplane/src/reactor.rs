//! Reactors: one thread per core, pinned, busy-polling a list of pollers (SPDK's `spdk_reactor`/`spdk_poller`).
//!
//! A reactor owns a state value `S` (its connections, bdev channels, buffer caches) and a list of pollers that get
//! `&mut S` in turn. Each poller reports whether it did work ([`PollStatus::Busy`]) or not, and the reactor accounts
//! busy and idle time like SPDK's thread statistics. Other threads talk to a reactor only by message: a closure that
//! runs on the reactor with `&mut S` ([`ReactorHandle::send`]). The reactor is the only place that reads the clock:
//! it reads `Instant::now()` once per loop iteration and hands it to every poller.
//!
//! Idle handling: [`IdleMode::Poll`] spins like SPDK; [`IdleMode::Sleep`] lets an idle reactor nap (a poor man's
//! interrupt mode) so a laptop or a 2-core CI box running the initiator on the same machine is not starved.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

/// What one call of a poller did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollStatus {
    /// The poller found and did work.
    Busy,
    /// Nothing to do.
    Idle,
}

impl PollStatus {
    /// `Busy` if either is.
    pub fn or(self, other: PollStatus) -> PollStatus {
        if self == PollStatus::Busy || other == PollStatus::Busy {
            PollStatus::Busy
        } else {
            PollStatus::Idle
        }
    }
}

/// A unit of work a reactor calls on every loop iteration.
pub trait Poller<S>: Send {
    /// Name shown in statistics (`thread_get_stats`).
    fn name(&self) -> &str;
    /// Do a bounded amount of work and say whether there was any.
    fn poll(&mut self, state: &mut S, now: Instant) -> PollStatus;
}

/// A message: a closure run on the reactor thread with its state.
pub type Message<S> = Box<dyn FnOnce(&mut S, Instant) + Send>;

/// What an idle reactor does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleMode {
    /// Spin: lowest latency, one core at 100% per reactor.
    Poll,
    /// After `after_idle_loops` consecutive idle iterations, sleep `nap` per iteration until work appears.
    Sleep { after_idle_loops: u32, nap: Duration },
}

impl Default for IdleMode {
    fn default() -> Self {
        IdleMode::Sleep { after_idle_loops: 2000, nap: Duration::from_micros(50) }
    }
}

/// Counters of one poller, readable from any thread.
#[derive(Debug, Default)]
pub struct PollerCounters {
    pub name: String,
    pub runs: AtomicU64,
    pub busy_runs: AtomicU64,
}

/// Counters of one reactor, readable from any thread (SPDK `framework_get_reactors` / `thread_get_stats`).
#[derive(Debug, Default)]
pub struct ReactorStats {
    pub id: usize,
    pub core: Option<usize>,
    /// Nanoseconds spent in iterations where some poller was busy.
    pub busy_ns: AtomicU64,
    /// Nanoseconds spent in idle iterations (including naps).
    pub idle_ns: AtomicU64,
    pub iterations: AtomicU64,
    pub messages: AtomicU64,
    pub pollers: std::sync::Mutex<Vec<Arc<PollerCounters>>>,
}

/// A handle to send messages to a reactor and read its statistics.
pub struct ReactorHandle<S> {
    tx: Sender<Message<S>>,
    stats: Arc<ReactorStats>,
}

impl<S> Clone for ReactorHandle<S> {
    fn clone(&self) -> Self {
        ReactorHandle { tx: self.tx.clone(), stats: self.stats.clone() }
    }
}

impl<S> ReactorHandle<S> {
    /// Queue a closure to run on the reactor. Returns false when the reactor has stopped.
    pub fn send(&self, msg: impl FnOnce(&mut S, Instant) + Send + 'static) -> bool {
        self.tx.send(Box::new(msg)).is_ok()
    }

    pub fn stats(&self) -> &Arc<ReactorStats> {
        &self.stats
    }
}

/// One reactor: its state, pollers and inbox. Runs on its own thread via [`ReactorSet::spawn`], or inline in tests
/// via [`Reactor::run_once`].
pub struct Reactor<S> {
    state: S,
    pollers: Vec<(Box<dyn Poller<S>>, Arc<PollerCounters>)>,
    inbox: Receiver<Message<S>>,
    stats: Arc<ReactorStats>,
    idle: IdleMode,
    idle_loops: u32,
}

impl<S> Reactor<S> {
    /// A reactor with no pollers yet, and the handle to reach it.
    pub fn new(id: usize, core: Option<usize>, state: S, idle: IdleMode) -> (Reactor<S>, ReactorHandle<S>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stats = Arc::new(ReactorStats { id, core, ..Default::default() });
        let handle = ReactorHandle { tx, stats: stats.clone() };
        (Reactor { state, pollers: Vec::new(), inbox: rx, stats, idle, idle_loops: 0 }, handle)
    }

    pub fn add_poller(&mut self, poller: Box<dyn Poller<S>>) {
        let counters = Arc::new(PollerCounters { name: poller.name().to_string(), ..Default::default() });
        if let Ok(mut list) = self.stats.pollers.lock() {
            list.push(counters.clone());
        }
        self.pollers.push((poller, counters));
    }

    pub fn state(&self) -> &S {
        &self.state
    }

    pub fn state_mut(&mut self) -> &mut S {
        &mut self.state
    }

    /// One loop iteration at time `now`: drain messages, run every poller once. Returns whether anything was busy.
    pub fn run_once(&mut self, now: Instant) -> PollStatus {
        let mut status = PollStatus::Idle;
        // Bound the messages handled per iteration so a flood cannot starve the pollers.
        for _ in 0..64 {
            match self.inbox.try_recv() {
                Ok(msg) => {
                    msg(&mut self.state, now);
                    self.stats.messages.fetch_add(1, Ordering::Relaxed);
                    status = PollStatus::Busy;
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }
        for (poller, counters) in &mut self.pollers {
            let s = poller.poll(&mut self.state, now);
            counters.runs.fetch_add(1, Ordering::Relaxed);
            if s == PollStatus::Busy {
                counters.busy_runs.fetch_add(1, Ordering::Relaxed);
            }
            status = status.or(s);
        }
        status
    }

    /// Run until `stop` is set. Reads the clock once per iteration and accounts busy/idle time.
    pub fn run(&mut self, stop: &AtomicBool) {
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let status = self.run_once(last);
            if status == PollStatus::Idle {
                self.idle_loops = self.idle_loops.saturating_add(1);
                if let IdleMode::Sleep { after_idle_loops, nap } = self.idle {
                    if self.idle_loops >= after_idle_loops {
                        std::thread::sleep(nap);
                    }
                }
            } else {
                self.idle_loops = 0;
            }
            let now = Instant::now();
            let ns = now.saturating_duration_since(last).as_nanos() as u64;
            match status {
                PollStatus::Busy => self.stats.busy_ns.fetch_add(ns, Ordering::Relaxed),
                PollStatus::Idle => self.stats.idle_ns.fetch_add(ns, Ordering::Relaxed),
            };
            self.stats.iterations.fetch_add(1, Ordering::Relaxed);
            last = now;
        }
    }
}

/// Error starting reactors.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    #[error("cannot start reactor thread {id}: {source}")]
    Spawn { id: usize, source: std::io::Error },
    #[error("cpu {0} is not available on this machine (available: {1:?})")]
    NoSuchCpu(usize, Vec<usize>),
    #[error("a reactor set needs at least one reactor")]
    Empty,
}

/// Which cores reactors run on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReactorConfig {
    /// Number of reactors when `cpus` is empty (default 1).
    pub count: usize,
    /// Explicit core ids (from a cpu mask); reactor i is pinned to `cpus[i]`.
    pub cpus: Vec<usize>,
    /// Pin threads to cores (default true when cores are given or count > 1).
    pub pin: bool,
    pub idle: IdleMode,
}

/// Running reactor threads.
pub struct ReactorSet<S> {
    handles: Vec<ReactorHandle<S>>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl<S: 'static> ReactorSet<S> {
    /// Start one thread per reactor. `build(i)` runs on reactor thread i to create its state and pollers (so
    /// per-thread resources such as io_uring rings are created on the thread that uses them).
    pub fn spawn<F>(cfg: &ReactorConfig, build: F) -> Result<ReactorSet<S>, ReactorError>
    where
        F: Fn(usize) -> (S, Vec<Box<dyn Poller<S>>>) + Send + Sync + 'static,
    {
        let available: Vec<usize> =
            core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
        let cores: Vec<Option<usize>> = if cfg.cpus.is_empty() {
            let n = cfg.count.max(1);
            (0..n).map(|i| if cfg.pin && !available.is_empty() { Some(available[i % available.len()]) } else { None }).collect()
        } else {
            for c in &cfg.cpus {
                if !available.is_empty() && !available.contains(c) {
                    return Err(ReactorError::NoSuchCpu(*c, available));
                }
            }
            cfg.cpus.iter().map(|c| if cfg.pin { Some(*c) } else { None }).collect()
        };
        if cores.is_empty() {
            return Err(ReactorError::Empty);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let build = Arc::new(build);
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for (id, core) in cores.into_iter().enumerate() {
            let (htx, hrx) = std::sync::mpsc::channel();
            let stop2 = stop.clone();
            let build2 = build.clone();
            let idle = cfg.idle;
            let t = std::thread::Builder::new()
                .name(format!("reactor_{id}"))
                .spawn(move || {
                    if let Some(c) = core {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
                            tracing::warn!(reactor = id, core = c, "could not pin reactor thread");
                        }
                    }
                    let (state, pollers) = build2(id);
                    let (mut reactor, handle) = Reactor::new(id, core, state, idle);
                    for p in pollers {
                        reactor.add_poller(p);
                    }
                    if htx.send(handle).is_err() {
                        return;
                    }
                    tracing::debug!(reactor = id, core = ?core, "reactor running");
                    reactor.run(&stop2);
                })
                .map_err(|source| ReactorError::Spawn { id, source })?;
            threads.push(t);
            match hrx.recv() {
                Ok(h) => handles.push(h),
                Err(_) => {
                    return Err(ReactorError::Spawn {
                        id,
                        source: std::io::Error::other("reactor thread exited during start-up"),
                    })
                }
            }
        }
        Ok(ReactorSet { handles, threads, stop })
    }

    pub fn handles(&self) -> &[ReactorHandle<S>] {
        &self.handles
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Ask every reactor to stop and wait for the threads.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl<S> Drop for ReactorSet<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter {
        left: u32,
    }

    impl Poller<Vec<u32>> for Counter {
        fn name(&self) -> &str {
            "counter"
        }
        fn poll(&mut self, state: &mut Vec<u32>, _now: Instant) -> PollStatus {
            if self.left == 0 {
                return PollStatus::Idle;
            }
            self.left -= 1;
            state.push(self.left);
            PollStatus::Busy
        }
    }

    #[test]
    fn pollers_run_and_report_busy_then_idle() {
        let (mut r, h) = Reactor::new(0, None, Vec::new(), IdleMode::Poll);
        r.add_poller(Box::new(Counter { left: 2 }));
        let t = Instant::now();
        assert_eq!(r.run_once(t), PollStatus::Busy);
        assert_eq!(r.run_once(t), PollStatus::Busy);
        assert_eq!(r.run_once(t), PollStatus::Idle);
        assert_eq!(r.state(), &vec![1, 0]);
        let counters = h.stats().pollers.lock().unwrap()[0].clone();
        assert_eq!(counters.runs.load(Ordering::Relaxed), 3);
        assert_eq!(counters.busy_runs.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn messages_run_on_the_reactor_with_its_state() {
        let (mut r, h) = Reactor::new(0, None, Vec::<u32>::new(), IdleMode::Poll);
        assert!(h.send(|s: &mut Vec<u32>, _| s.push(7)));
        assert_eq!(r.run_once(Instant::now()), PollStatus::Busy);
        assert_eq!(r.state(), &vec![7]);
        assert_eq!(h.stats().messages.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn spawned_reactors_answer_messages_and_stop() {
        let cfg = ReactorConfig { count: 2, ..Default::default() };
        let set = ReactorSet::spawn(&cfg, |id| (id, Vec::new())).unwrap();
        assert_eq!(set.len(), 2);
        let (tx, rx) = crossbeam_channel::unbounded();
        for h in set.handles() {
            let tx = tx.clone();
            h.send(move |s: &mut usize, _| {
                let _ = tx.send(*s);
            });
        }
        let mut got: Vec<usize> = (0..2).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
        got.sort();
        assert_eq!(got, vec![0, 1]);
        let stats = set.handles()[0].stats().clone();
        set.shutdown();
        assert!(stats.iterations.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn unknown_cpu_is_refused() {
        let cfg = ReactorConfig { cpus: vec![100_000], pin: true, ..Default::default() };
        match ReactorSet::spawn(&cfg, |id| (id, Vec::new())) {
            Err(ReactorError::NoSuchCpu(100_000, _)) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("cpu 100000 accepted"),
        }
    }
}
