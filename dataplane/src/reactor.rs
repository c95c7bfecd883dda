//! Reactors: one thread per core, pinned, busy-polling a list of pollers (SPDK's `spdk_reactor`/`spdk_poller`).
//!
//! A reactor owns a state value `S` (its connections, bdev channels, buffer caches) and a list of pollers that get
//! `&mut S` in turn. Each poller reports whether it did work ([`PollStatus::Busy`]) or not, and the reactor accounts
//! busy and idle time in ticks like SPDK's thread statistics (`busy_tsc`/`idle_tsc`, see [`crate::clock`]): one
//! tick-counter read per loop iteration, no clock_gettime on the fast path. Other threads talk to a reactor only by
//! message: a closure that runs on the reactor with `&mut S` ([`ReactorHandle::send`]). The reactor is the only place
//! that reads the clock; pollers get the iteration's `now`.
//!
//! Idle handling ([`IdleMode`]): `Poll` spins like SPDK; `Interrupt` puts an idle reactor to sleep in epoll_wait on
//! the file descriptors its pollers name (sockets, listeners) and on an eventfd that [`ReactorHandle::send`] signals,
//! with the earliest timer of its pollers as the timeout (SPDK's interrupt mode); `Sleep` naps a fixed time.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::clock::ReactorClock;
use crate::sys::{Ctl, Epoll, EventFd};

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

/// The calling thread's id as the kernel numbers it (the target of `/proc/thread-self`, "PID/task/TID"); 0 when
/// it cannot be read.
fn thread_id() -> u64 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// What wakes a sleeping reactor (interrupt mode): file descriptors and the earliest deadline of its pollers.
#[derive(Debug, Default)]
pub struct WakeSet {
    fds: Vec<WakeFd>,
    deadline: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WakeFd {
    fd: RawFd,
    /// Distinguishes successive owners of a reused descriptor number (e.g. a connection generation).
    token: u64,
    readable: bool,
    writable: bool,
}

impl WakeSet {
    /// Wake when `fd` becomes readable and/or writable. `token` must change when the descriptor number is reused
    /// for another file (the reactor then registers it again).
    pub fn add_fd(&mut self, fd: RawFd, token: u64, readable: bool, writable: bool) {
        if readable || writable {
            self.fds.push(WakeFd { fd, token, readable, writable });
        }
    }

    /// Wake no later than `at`.
    pub fn wake_at(&mut self, at: Instant) {
        self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
    }

    fn clear(&mut self) {
        self.fds.clear();
        self.deadline = None;
    }
}

/// A unit of work a reactor calls on every loop iteration.
pub trait Poller<S>: Send {
    /// Name shown in statistics (`thread_get_stats`).
    fn name(&self) -> &str;
    /// Do a bounded amount of work and say whether there was any.
    fn poll(&mut self, state: &mut S, now: Instant) -> PollStatus;
    /// Interrupt mode: the reactor is about to sleep. Name what should wake it (fds, a deadline) in `wake`, or
    /// return false to keep it awake (work pending that no descriptor signals, such as I/O in flight on a polled
    /// device). The default names nothing: the reactor then wakes on messages and after its `max_sleep` only.
    fn prepare_sleep(&mut self, state: &mut S, now: Instant, wake: &mut WakeSet) -> bool {
        let _ = (state, now, wake);
        true
    }
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
    /// After `after_idle_loops` consecutive idle iterations, sleep in epoll_wait on the pollers' descriptors and
    /// the message eventfd until one is ready, the earliest poller deadline passes, or `max_sleep` elapses.
    Interrupt { after_idle_loops: u32, max_sleep: Duration },
}

impl IdleMode {
    /// Interrupt mode with the defaults: sleep after 1000 idle iterations, at most 100 ms at a time.
    pub const fn interrupt() -> IdleMode {
        IdleMode::Interrupt { after_idle_loops: 1000, max_sleep: Duration::from_millis(100) }
    }
}

impl Default for IdleMode {
    fn default() -> Self {
        IdleMode::interrupt()
    }
}

/// Counters of one poller, readable from any thread (written only by its reactor).
#[derive(Debug, Default)]
pub struct PollerCounters {
    pub name: String,
    pub runs: AtomicU64,
    pub busy_runs: AtomicU64,
}

/// Counters of one reactor, readable from any thread (SPDK `framework_get_reactors` / `thread_get_stats`). Written
/// only by the reactor thread (plain stores of its running totals, no read-modify-write on the fast path).
#[derive(Debug, Default)]
pub struct ReactorStats {
    pub id: usize,
    pub core: Option<usize>,
    /// Ticks per second of `busy_tsc`/`idle_tsc` (TSC frequency, or 1e9 for the monotonic clock fallback).
    pub tick_rate: AtomicU64,
    /// Ticks spent in iterations where some poller or message was busy.
    pub busy_tsc: AtomicU64,
    /// Ticks spent in idle iterations (including sleeps).
    pub idle_tsc: AtomicU64,
    /// `busy_tsc` in nanoseconds (updated with it).
    pub busy_ns: AtomicU64,
    /// `idle_tsc` in nanoseconds (updated with it).
    pub idle_ns: AtomicU64,
    pub iterations: AtomicU64,
    /// Iterations in which some poller or message was busy (the others were idle).
    pub busy_iterations: AtomicU64,
    pub messages: AtomicU64,
    /// Times the reactor went to sleep (interrupt or sleep mode).
    pub sleeps: AtomicU64,
    /// The operating system's id of the reactor thread (SCST's `thread_pid`); 0 until it runs or where
    /// /proc/thread-self cannot tell.
    pub tid: AtomicU64,
    /// The longest loop iteration so far, in nanoseconds (messages, pollers and any sleep): how long a message
    /// to this reactor may have waited at worst.
    pub max_iteration_ns: AtomicU64,
    pub pollers: std::sync::Mutex<Vec<Arc<PollerCounters>>>,
}

/// Shared between a reactor and its handles: how to wake it.
#[derive(Debug)]
struct Waker {
    sleeping: AtomicBool,
    event: Option<EventFd>,
}

impl Waker {
    fn wake(&self) {
        // SeqCst pairs with the reactor's store of `sleeping` followed by its inbox check: either the reactor sees
        // the message, or this load sees `sleeping` and the eventfd wakes it.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            if let Some(e) = &self.event {
                e.signal();
            }
        }
    }
}

/// A handle to send messages to a reactor and read its statistics.
pub struct ReactorHandle<S> {
    tx: Sender<Message<S>>,
    stats: Arc<ReactorStats>,
    waker: Arc<Waker>,
}

impl<S> Clone for ReactorHandle<S> {
    fn clone(&self) -> Self {
        ReactorHandle { tx: self.tx.clone(), stats: self.stats.clone(), waker: self.waker.clone() }
    }
}

impl<S> ReactorHandle<S> {
    /// Queue a closure to run on the reactor (waking it if it sleeps). Returns false when the reactor has stopped.
    pub fn send(&self, msg: impl FnOnce(&mut S, Instant) + Send + 'static) -> bool {
        let ok = self.tx.send(Box::new(msg)).is_ok();
        self.waker.wake();
        ok
    }

    pub fn stats(&self) -> &Arc<ReactorStats> {
        &self.stats
    }

    /// Wake the reactor if it sleeps (used by [`ReactorSet`] on shutdown).
    pub fn wake(&self) {
        self.waker.wake();
    }
}

/// Local (thread-owned) running totals, published to [`ReactorStats`] with plain stores.
#[derive(Debug, Default)]
struct Totals {
    busy: u64,
    idle: u64,
    iterations: u64,
    busy_iterations: u64,
    messages: u64,
    sleeps: u64,
    /// The longest loop iteration, in ticks.
    max_iteration: u64,
}

/// A poller with its shared counters and the reactor's local copies of them (runs, busy runs).
type PollerEntry<S> = (Box<dyn Poller<S>>, Arc<PollerCounters>, u64, u64);

/// One reactor: its state, pollers and inbox. Runs on its own thread via [`ReactorSet::spawn`], or inline in tests
/// via [`Reactor::run_once`].
pub struct Reactor<S> {
    state: S,
    pollers: Vec<PollerEntry<S>>,
    inbox: Receiver<Message<S>>,
    stats: Arc<ReactorStats>,
    waker: Arc<Waker>,
    idle: IdleMode,
    idle_loops: u32,
    totals: Totals,
    epoll: Option<Epoll>,
    registered: HashMap<RawFd, WakeFd>,
    wake: WakeSet,
}

/// A loop iteration at least this long (ns) is logged as a warning (when it is the longest so far).
const LONG_ITERATION_NS: u64 = 500_000_000;

/// Token of the message eventfd in the epoll set.
const EVENTFD_TOKEN: u64 = u64::MAX;

impl<S> Reactor<S> {
    /// A reactor with no pollers yet, and the handle to reach it.
    pub fn new(id: usize, core: Option<usize>, state: S, idle: IdleMode) -> (Reactor<S>, ReactorHandle<S>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stats = Arc::new(ReactorStats { id, core, ..Default::default() });
        let mut epoll = None;
        let mut event = None;
        if let IdleMode::Interrupt { .. } = idle {
            match (Epoll::new(), EventFd::new()) {
                (Ok(ep), Ok(ev)) => match ep.ctl(Ctl::Add, ev.raw(), true, false, EVENTFD_TOKEN) {
                    Ok(()) => {
                        epoll = Some(ep);
                        event = Some(ev);
                    }
                    Err(e) => tracing::warn!(reactor = id, error = %e, "epoll_ctl failed; interrupt mode off"),
                },
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(reactor = id, error = %e, "no epoll/eventfd; interrupt mode off")
                }
            }
        }
        let waker = Arc::new(Waker { sleeping: AtomicBool::new(false), event });
        let handle = ReactorHandle { tx, stats: stats.clone(), waker: waker.clone() };
        let reactor = Reactor {
            state,
            pollers: Vec::new(),
            inbox: rx,
            stats,
            waker,
            idle,
            idle_loops: 0,
            totals: Totals::default(),
            epoll,
            registered: HashMap::new(),
            wake: WakeSet::default(),
        };
        (reactor, handle)
    }

    pub fn add_poller(&mut self, poller: Box<dyn Poller<S>>) {
        let counters = Arc::new(PollerCounters { name: poller.name().to_string(), ..Default::default() });
        if let Ok(mut list) = self.stats.pollers.lock() {
            list.push(counters.clone());
        }
        self.pollers.push((poller, counters, 0, 0));
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
                    self.totals.messages += 1;
                    status = PollStatus::Busy;
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }
        for (poller, counters, runs, busy_runs) in &mut self.pollers {
            let s = poller.poll(&mut self.state, now);
            *runs += 1;
            counters.runs.store(*runs, Ordering::Relaxed);
            if s == PollStatus::Busy {
                *busy_runs += 1;
                counters.busy_runs.store(*busy_runs, Ordering::Relaxed);
            }
            status = status.or(s);
        }
        self.stats.messages.store(self.totals.messages, Ordering::Relaxed);
        status
    }

    /// Run until `stop` is set. Reads the tick counter once per iteration and accounts busy/idle ticks.
    pub fn run(&mut self, stop: &AtomicBool) {
        let mut clock = ReactorClock::new();
        let cal = clock.calibration();
        self.stats.tick_rate.store(cal.rate, Ordering::Relaxed);
        let mut tick = clock.ticks();
        let mut now = clock.now_at(tick);
        while !stop.load(Ordering::Relaxed) {
            let status = self.run_once(now);
            if status == PollStatus::Idle {
                self.idle_loops = self.idle_loops.saturating_add(1);
                self.idle(now);
            } else {
                self.idle_loops = 0;
            }
            let t = clock.ticks();
            let d = t.wrapping_sub(tick);
            match status {
                PollStatus::Busy => {
                    self.totals.busy += d;
                    self.totals.busy_iterations += 1;
                    self.stats.busy_iterations.store(self.totals.busy_iterations, Ordering::Relaxed);
                    self.stats.busy_tsc.store(self.totals.busy, Ordering::Relaxed);
                    self.stats.busy_ns.store(cal.to_ns(self.totals.busy), Ordering::Relaxed);
                }
                PollStatus::Idle => {
                    self.totals.idle += d;
                    self.stats.idle_tsc.store(self.totals.idle, Ordering::Relaxed);
                    self.stats.idle_ns.store(cal.to_ns(self.totals.idle), Ordering::Relaxed);
                }
            }
            self.totals.iterations += 1;
            self.stats.iterations.store(self.totals.iterations, Ordering::Relaxed);
            // Compared in ticks against the reactor's own total: the conversion and the store happen only on a
            // new longest iteration, not on every turn of the loop.
            if d > self.totals.max_iteration {
                self.totals.max_iteration = d;
                let ns = cal.to_ns(d);
                self.stats.max_iteration_ns.store(ns, Ordering::Relaxed);
                // An iteration is bounded work plus at most one sleep of `max_sleep`: one this long means the
                // thread did not run (an overloaded or throttled CPU) or a poller overran its budget.
                if ns >= LONG_ITERATION_NS {
                    tracing::warn!(reactor = self.stats.id, ms = ns / 1_000_000, ?status, "a reactor loop iteration took long");
                }
            }
            tick = t;
            now = clock.now_at(t);
        }
    }

    fn idle(&mut self, now: Instant) {
        match self.idle {
            IdleMode::Poll => {}
            IdleMode::Sleep { after_idle_loops, nap } => {
                if self.idle_loops >= after_idle_loops {
                    self.count_sleep();
                    std::thread::sleep(nap);
                }
            }
            IdleMode::Interrupt { after_idle_loops, max_sleep } => {
                if self.idle_loops >= after_idle_loops {
                    self.sleep_on_events(now, max_sleep);
                }
            }
        }
    }

    fn count_sleep(&mut self) {
        self.totals.sleeps += 1;
        self.stats.sleeps.store(self.totals.sleeps, Ordering::Relaxed);
    }

    /// Interrupt mode: collect what wakes each poller, bring the epoll set up to date, and sleep.
    fn sleep_on_events(&mut self, now: Instant, max_sleep: Duration) {
        if self.epoll.is_none() {
            // No epoll: fall back to a short nap so the reactor still yields the core.
            self.count_sleep();
            std::thread::sleep(Duration::from_micros(50));
            return;
        }
        self.wake.clear();
        let mut can_sleep = true;
        for (poller, ..) in &mut self.pollers {
            can_sleep &= poller.prepare_sleep(&mut self.state, now, &mut self.wake);
        }
        if !can_sleep {
            return;
        }
        let timeout = match self.wake.deadline {
            Some(d) if d <= now => return,
            Some(d) => (d - now).min(max_sleep),
            None => max_sleep,
        };
        self.sync_epoll();
        self.waker.sleeping.store(true, Ordering::SeqCst);
        if self.inbox.is_empty() {
            // Round up so a deadline 0.3 ms away does not become a busy loop of 0 ms waits.
            let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            self.count_sleep();
            if let Some(ep) = self.epoll.as_mut() {
                if let Err(e) = ep.wait(ms) {
                    tracing::warn!(reactor = self.stats.id, error = %e, "epoll_wait failed");
                }
            }
        }
        self.waker.sleeping.store(false, Ordering::SeqCst);
        if let Some(e) = &self.waker.event {
            e.drain();
        }
    }

    /// Registers the wake set's descriptors with epoll, changing only what differs from the previous sleep.
    fn sync_epoll(&mut self) {
        let Some(ep) = self.epoll.as_ref() else { return };
        let mut wanted: HashMap<RawFd, WakeFd> = HashMap::with_capacity(self.wake.fds.len());
        for w in &self.wake.fds {
            let e = wanted.entry(w.fd).or_insert(*w);
            e.readable |= w.readable;
            e.writable |= w.writable;
        }
        self.registered.retain(|fd, old| {
            if wanted.contains_key(fd) {
                true
            } else {
                // ENOENT/EBADF when the descriptor was closed meanwhile (the kernel dropped it then): fine.
                let _ = (ep.ctl(Ctl::Delete, *fd, false, false, 0), old);
                false
            }
        });
        for (fd, w) in wanted {
            match self.registered.get(&fd) {
                Some(old) if *old == w => continue,
                Some(old) if old.token == w.token => {
                    if ep.ctl(Ctl::Modify, fd, w.readable, w.writable, w.token).is_err() {
                        let _ = ep.ctl(Ctl::Add, fd, w.readable, w.writable, w.token);
                    }
                }
                _ => {
                    // New, or the number now belongs to another file: start over.
                    let _ = ep.ctl(Ctl::Delete, fd, false, false, 0);
                    if let Err(e) = ep.ctl(Ctl::Add, fd, w.readable, w.writable, w.token) {
                        tracing::debug!(fd, error = %e, "cannot watch descriptor");
                        continue;
                    }
                }
            }
            self.registered.insert(fd, w);
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
                    reactor.stats.tid.store(thread_id(), Ordering::Relaxed);
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
        for h in &self.handles {
            h.wake();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl<S> Drop for ReactorSet<S> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in &self.handles {
            h.wake();
        }
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
        // Each reactor thread reports its own kernel thread id (SCST's thread_pid), not the process id.
        let tids: Vec<u64> = set.handles().iter().map(|h| h.stats().tid.load(Ordering::Relaxed)).collect();
        assert!(tids.iter().all(|t| *t != 0 && *t != u64::from(std::process::id())), "{tids:?}");
        assert_ne!(tids[0], tids[1]);
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

    /// Reads one byte per poll from a Unix socket, names the socket as its wake source.
    struct SockPoller {
        sock: std::os::unix::net::UnixStream,
    }

    impl Poller<Vec<u32>> for SockPoller {
        fn name(&self) -> &str {
            "sock"
        }
        fn poll(&mut self, state: &mut Vec<u32>, _now: Instant) -> PollStatus {
            use std::io::Read;
            let mut b = [0u8; 1];
            match self.sock.read(&mut b) {
                Ok(1) => {
                    state.push(u32::from(b[0]));
                    PollStatus::Busy
                }
                _ => PollStatus::Idle,
            }
        }
        fn prepare_sleep(&mut self, _s: &mut Vec<u32>, _now: Instant, wake: &mut WakeSet) -> bool {
            use std::os::fd::AsRawFd;
            wake.add_fd(self.sock.as_raw_fd(), 1, true, false);
            true
        }
    }

    fn spawn_interrupt_reactor(
        sock: std::os::unix::net::UnixStream,
        max_sleep: Duration,
    ) -> (ReactorHandle<Vec<u32>>, Arc<AtomicBool>, JoinHandle<Vec<u32>>) {
        let (htx, hrx) = std::sync::mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let t = std::thread::spawn(move || {
            let mode = IdleMode::Interrupt { after_idle_loops: 10, max_sleep };
            let (mut r, h) = Reactor::new(0, None, Vec::new(), mode);
            r.add_poller(Box::new(SockPoller { sock }));
            htx.send(h).unwrap();
            r.run(&stop2);
            std::mem::take(r.state_mut())
        });
        (hrx.recv().unwrap(), stop, t)
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn interrupt_mode_sleeps_and_wakes_on_messages_and_descriptors() {
        use std::io::Write;
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        // A long max_sleep: only the eventfd or the socket can wake the reactor within the test's time limits.
        let (h, stop, t) = spawn_interrupt_reactor(a, Duration::from_secs(3600));
        let stats = h.stats().clone();
        wait_for("the reactor to sleep", || stats.sleeps.load(Ordering::Relaxed) > 0);
        let sleeps = stats.sleeps.load(Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded(1);
        assert!(h.send(move |s: &mut Vec<u32>, _| {
            s.push(1);
            let _ = tx.send(());
        }));
        rx.recv_timeout(Duration::from_secs(10)).expect("message woke the sleeping reactor");
        wait_for("the reactor to sleep again", || stats.sleeps.load(Ordering::Relaxed) > sleeps);
        b.write_all(&[9]).unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        wait_for("the socket byte to be read", || {
            let tx = tx.clone();
            h.send(move |s: &mut Vec<u32>, _| {
                let _ = tx.send(s.contains(&9));
            });
            rx.recv_timeout(Duration::from_secs(10)).unwrap_or(false)
        });
        stop.store(true, Ordering::Relaxed);
        h.wake();
        let state = t.join().unwrap();
        assert_eq!(&state[..2], &[1, 9]);
        assert!(stats.idle_tsc.load(Ordering::Relaxed) > 0);
        assert!(stats.busy_tsc.load(Ordering::Relaxed) > 0);
        assert!(stats.tick_rate.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn poll_mode_never_sleeps_and_accounts_busy_and_idle_ticks() {
        let cfg = ReactorConfig { count: 1, idle: IdleMode::Poll, ..Default::default() };
        let set = ReactorSet::spawn(&cfg, |_| (Vec::<u32>::new(), vec![Box::new(Counter { left: 1000 }) as _])).unwrap();
        let stats = set.handles()[0].stats().clone();
        wait_for("idle iterations", || stats.iterations.load(Ordering::Relaxed) > 5000);
        set.shutdown();
        assert_eq!(stats.sleeps.load(Ordering::Relaxed), 0);
        let busy = stats.busy_tsc.load(Ordering::Relaxed);
        let idle = stats.idle_tsc.load(Ordering::Relaxed);
        assert!(busy > 0 && idle > 0, "busy {busy} idle {idle}");
        let counters = stats.pollers.lock().unwrap()[0].clone();
        assert_eq!(counters.busy_runs.load(Ordering::Relaxed), 1000);
        assert!(counters.runs.load(Ordering::Relaxed) > 1000);
        let ns = stats.busy_ns.load(Ordering::Relaxed) + stats.idle_ns.load(Ordering::Relaxed);
        assert!(ns > 0);
    }

    #[test]
    fn a_poller_can_keep_the_reactor_awake() {
        struct Veto;
        impl Poller<Vec<u32>> for Veto {
            fn name(&self) -> &str {
                "veto"
            }
            fn poll(&mut self, _s: &mut Vec<u32>, _now: Instant) -> PollStatus {
                PollStatus::Idle
            }
            fn prepare_sleep(&mut self, _s: &mut Vec<u32>, _now: Instant, _w: &mut WakeSet) -> bool {
                false
            }
        }
        let (mut r, h) = Reactor::new(0, None, Vec::new(), IdleMode::Interrupt { after_idle_loops: 1, max_sleep: Duration::from_secs(60) });
        r.add_poller(Box::new(Veto));
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| r.run(&stop));
            wait_for("iterations", || h.stats().iterations.load(Ordering::Relaxed) > 1000);
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(h.stats().sleeps.load(Ordering::Relaxed), 0);
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
