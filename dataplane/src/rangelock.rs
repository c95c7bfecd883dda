//! A per-device range lock that makes COMPARE AND WRITE, ORWRITE and WRITE ATOMIC atomic with respect to every
//! other command on their blocks, from any reactor (SBC-3 §5.2: no other command may touch the blocks between the
//! compare and the write), while costing ordinary READ/WRITE one atomic load when no such command is in flight.
//!
//! Two paths:
//! - **Fast path** (the gate is zero: no exclusive request anywhere): the reactor submits at once and only counts
//!   the I/O in its own, non-shared state. Nothing is written to the lock.
//! - **Slow path** (the gate is up): the I/O registers its byte range as a shared holder under the mutex, or waits
//!   while an exclusive request overlaps it.
//!
//! An exclusive request raises the gate, bumps the generation and queues itself. It is granted once (a) every
//! reactor registered with the lock has acknowledged the new generation, which a reactor does from its poll loop
//! once none of its fast-path I/Os on the device is in flight (after seeing the generation no new fast-path I/O
//! can start there: the gate was raised before the generation, and the acknowledging reactor read the generation
//! with acquire ordering), (b) no registered shared holder overlaps it and (c) no overlapping exclusive request
//! queued before it is still there (first come, first served). Waiters are polled by their reactor; [`RangeLock::
//! epoch`] changes whenever something was released or acknowledged, so a waiter only retries when that can help.
//! Cross-reactor coordination is by atomics the owner writes and others read, plus the mutex on the slow path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Reactor slots per lock; a reactor beyond them always takes the slow path.
pub const MAX_SLOTS: usize = 256;

/// Marks an unused slot.
const UNUSED: u64 = u64::MAX;
/// Marks the slot of a reactor that sleeps (interrupt mode) with no fast-path I/O on the device: it acknowledges
/// every generation until it calls [`RangeLock::resume`].
const IDLE: u64 = u64::MAX - 1;

/// A holding registered under the mutex (slow-path shared holder or exclusive request), released by
/// [`RangeLock::release`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

#[derive(Debug)]
struct Shared {
    id: u64,
    start: u64,
    end: u64,
}

#[derive(Debug)]
struct Exclusive {
    id: u64,
    start: u64,
    end: u64,
    generation: u64,
    granted: bool,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    shared: Vec<Shared>,
    exclusive: VecDeque<Exclusive>,
}

/// The range lock of one device.
#[derive(Debug)]
pub struct RangeLock {
    /// Exclusive requests queued or granted. Zero: fast path.
    gate: AtomicUsize,
    /// Bumped (after the gate) by every new exclusive request.
    generation: AtomicU64,
    /// Changes whenever a holding is released or a reactor acknowledges.
    epoch: AtomicU64,
    /// Per reactor slot: the generation it acknowledged, or `UNUSED`.
    acks: Box<[AtomicU64]>,
    inner: Mutex<Inner>,
}

impl Default for RangeLock {
    fn default() -> Self {
        Self::new()
    }
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

impl RangeLock {
    pub fn new() -> RangeLock {
        RangeLock {
            gate: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            acks: (0..MAX_SLOTS).map(|_| AtomicU64::new(UNUSED)).collect(),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a reactor that is about to do I/O on the device; `None` when every slot is taken (that reactor
    /// then never takes the fast path). Call it before the reactor's first [`RangeLock::quiet`].
    pub fn register(&self) -> Option<usize> {
        let _inner = self.lock();
        let generation = self.generation.load(Ordering::Acquire);
        for (i, a) in self.acks.iter().enumerate() {
            if a.load(Ordering::Acquire) == UNUSED {
                a.store(generation, Ordering::Release);
                return Some(i);
            }
        }
        None
    }

    /// Gives a slot back (the reactor has no fast-path I/O on the device in flight).
    pub fn unregister(&self, slot: usize) {
        let _inner = self.lock();
        if let Some(a) = self.acks.get(slot) {
            a.store(UNUSED, Ordering::Release);
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The fast-path check: no exclusive request is queued or held, so an I/O may go ahead without registering
    /// (counted by its reactor). One atomic load.
    #[inline]
    pub fn quiet(&self) -> bool {
        self.gate.load(Ordering::Acquire) == 0
    }

    /// The current generation, for [`RangeLock::acknowledge`].
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Changes whenever retrying a wait may succeed.
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Reactor `slot` has no fast-path I/O on the device in flight and has seen `generation` (read with
    /// [`RangeLock::generation`]).
    pub fn acknowledge(&self, slot: usize, generation: u64) {
        if let Some(a) = self.acks.get(slot) {
            if a.load(Ordering::Acquire) != UNUSED {
                a.store(generation, Ordering::Release);
                self.epoch.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Reactor `slot` goes to sleep with no fast-path I/O on the device in flight: until [`RangeLock::resume`] it
    /// counts as having acknowledged every generation, so exclusive requests need not wait for it to wake up.
    pub fn idle(&self, slot: usize) {
        if let Some(a) = self.acks.get(slot) {
            if a.load(Ordering::Acquire) != UNUSED {
                a.store(IDLE, Ordering::Release);
                self.epoch.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Reactor `slot` is awake again and about to do I/O on the device: it acknowledges the current generation,
    /// which it returns. Under the mutex, so that an exclusive request either saw the reactor idle before this
    /// (and its generation bump, made under the same mutex, is visible here: the reactor then sees the gate up
    /// and takes the slow path), or sees the acknowledgment after it (and waits for the next one).
    pub fn resume(&self, slot: usize) -> u64 {
        let _inner = self.lock();
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(a) = self.acks.get(slot) {
            if a.load(Ordering::Acquire) != UNUSED {
                a.store(generation, Ordering::Release);
            }
        }
        generation
    }

    /// Slow path of a shared access to `start..end`: registered unless an exclusive request overlaps it.
    pub fn try_shared(&self, start: u64, end: u64) -> Option<Ticket> {
        let mut inner = self.lock();
        if inner.exclusive.iter().any(|x| overlaps((x.start, x.end), (start, end))) {
            return None;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        inner.shared.push(Shared { id, start, end });
        Some(Ticket(id))
    }

    /// Queues an exclusive request for `start..end`; poll [`RangeLock::try_grant`] until it is granted, then
    /// [`RangeLock::release`] it (also to give up waiting).
    pub fn request_exclusive(&self, start: u64, end: u64) -> Ticket {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        // The gate goes up before the generation: a reactor that sees the new generation sees the gate.
        self.gate.fetch_add(1, Ordering::AcqRel);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        inner.exclusive.push_back(Exclusive { id, start, end, generation, granted: false });
        Ticket(id)
    }

    /// Whether the exclusive request `ticket` holds the range now (granting it when it can be).
    pub fn try_grant(&self, ticket: Ticket) -> bool {
        let mut inner = self.lock();
        let Some(pos) = inner.exclusive.iter().position(|x| x.id == ticket.0) else {
            return false;
        };
        let me = &inner.exclusive[pos];
        if me.granted {
            return true;
        }
        let range = (me.start, me.end);
        let generation = me.generation;
        let acked = self.acks.iter().all(|a| {
            let v = a.load(Ordering::Acquire);
            v == UNUSED || v >= generation
        });
        if !acked
            || inner.shared.iter().any(|s| overlaps((s.start, s.end), range))
            || inner.exclusive.iter().take(pos).any(|x| overlaps((x.start, x.end), range))
        {
            return false;
        }
        inner.exclusive[pos].granted = true;
        true
    }

    /// Releases a shared registration or an exclusive request (granted or still waiting).
    pub fn release(&self, ticket: Ticket) {
        let mut inner = self.lock();
        if let Some(pos) = inner.shared.iter().position(|s| s.id == ticket.0) {
            inner.shared.swap_remove(pos);
        } else if let Some(pos) = inner.exclusive.iter().position(|x| x.id == ticket.0) {
            inner.exclusive.remove(pos);
            self.gate.fetch_sub(1, Ordering::AcqRel);
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// (registered shared holders, exclusive requests) — for tests and statistics.
    pub fn holders(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.shared.len(), inner.exclusive.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn quiet_until_an_exclusive_request() {
        let l = RangeLock::new();
        let slot = l.register().expect("slot");
        assert!(l.quiet());
        let t = l.request_exclusive(0, 4096);
        assert!(!l.quiet());
        // The registered reactor has not acknowledged: not granted yet.
        assert!(!l.try_grant(t));
        let e = l.epoch();
        l.acknowledge(slot, l.generation());
        assert_ne!(l.epoch(), e);
        assert!(l.try_grant(t));
        assert!(l.try_grant(t), "stays granted");
        l.release(t);
        assert!(l.quiet());
        assert_eq!(l.holders(), (0, 0));
    }

    #[test]
    fn shared_and_exclusive_exclude_each_other_only_when_overlapping() {
        let l = RangeLock::new();
        let x = l.request_exclusive(4096, 8192);
        assert!(l.try_grant(x), "no reactor registered, nothing shared");
        assert!(l.try_shared(0, 4096).is_some(), "disjoint");
        assert!(l.try_shared(8192, 9000).is_some(), "disjoint");
        assert!(l.try_shared(4000, 4097).is_none(), "overlaps");
        l.release(x);
        let s = l.try_shared(4000, 5000).expect("free now");
        let x = l.request_exclusive(4096, 8192);
        assert!(!l.try_grant(x), "a registered shared holder overlaps");
        // A new shared request queues behind the waiting exclusive one (no starvation).
        assert!(l.try_shared(6000, 6001).is_none());
        l.release(s);
        assert!(l.try_grant(x));
        l.release(x);
    }

    #[test]
    fn exclusive_requests_are_first_come_first_served_per_range() {
        let l = RangeLock::new();
        let a = l.request_exclusive(0, 100);
        let b = l.request_exclusive(50, 150);
        let c = l.request_exclusive(200, 300);
        assert!(!l.try_grant(b), "a is ahead and overlaps");
        assert!(l.try_grant(c), "c overlaps nothing ahead of it");
        assert!(l.try_grant(a));
        assert!(!l.try_grant(b));
        l.release(a);
        assert!(l.try_grant(b));
        // Giving up a waiting request is a release too.
        let d = l.request_exclusive(0, 1000);
        assert!(!l.try_grant(d));
        l.release(d);
        l.release(b);
        l.release(c);
        assert!(l.quiet());
    }

    #[test]
    fn an_idle_reactor_does_not_hold_up_exclusive_requests() {
        let l = RangeLock::new();
        let busy = l.register().expect("slot");
        let sleeper = l.register().expect("slot");
        l.idle(sleeper);
        let x = l.request_exclusive(0, 512);
        l.acknowledge(busy, l.generation());
        assert!(l.try_grant(x), "the sleeping reactor counts as acknowledged");
        // Waking up while the range is held: the reactor acknowledges the current generation and sees the gate.
        let g = l.resume(sleeper);
        assert_eq!(g, l.generation());
        assert!(!l.quiet(), "a resumed reactor takes the slow path while the exclusive request is there");
        assert!(l.try_shared(0, 512).is_none());
        l.release(x);
        // A request made after the reactor resumed waits for its acknowledgment again.
        let y = l.request_exclusive(0, 512);
        l.acknowledge(busy, l.generation());
        assert!(!l.try_grant(y));
        l.acknowledge(sleeper, l.generation());
        assert!(l.try_grant(y));
        l.release(y);
    }

    #[test]
    fn unregistered_and_late_registered_reactors() {
        let l = RangeLock::new();
        let s0 = l.register().expect("slot");
        let x = l.request_exclusive(0, 1);
        // A reactor that registers after the request starts acknowledged (it has no I/O in flight).
        let s1 = l.register().expect("slot");
        assert_ne!(s0, s1);
        assert!(!l.try_grant(x));
        l.unregister(s0);
        assert!(l.try_grant(x));
        l.release(x);
        let slots: Vec<_> = (0..MAX_SLOTS).map(|_| l.register()).collect();
        assert_eq!(slots.iter().filter(|s| s.is_some()).count(), MAX_SLOTS - 1);
    }

    /// Many threads: ordinary writers take the fast path (counted locally, acknowledged from their "poll loop")
    /// or the slow path; read-modify-write threads take the range exclusively and check that nobody changed the
    /// block between their read and their write.
    #[test]
    fn exclusive_holders_see_no_concurrent_writer() {
        use std::sync::atomic::AtomicBool;
        let l = Arc::new(RangeLock::new());
        let value = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..3 {
            let (l, value, stop) = (l.clone(), value.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let slot = l.register().expect("slot");
                let mut acked = l.generation();
                let mut writes = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // One "I/O".
                    if l.quiet() {
                        value.fetch_add(1, Ordering::SeqCst);
                    } else if let Some(t) = l.try_shared(0, 10) {
                        value.fetch_add(1, Ordering::SeqCst);
                        l.release(t);
                    }
                    writes += 1;
                    // The poll loop: nothing of ours in flight now.
                    let g = l.generation();
                    if g != acked {
                        l.acknowledge(slot, g);
                        acked = g;
                    }
                }
                writes
            }));
        }
        let mut rmw = Vec::new();
        for _ in 0..2 {
            let (l, value) = (l.clone(), value.clone());
            rmw.push(std::thread::spawn(move || {
                for _ in 0..200 {
                    let t = l.request_exclusive(0, 10);
                    while !l.try_grant(t) {
                        std::thread::yield_now();
                    }
                    let before = value.load(Ordering::SeqCst);
                    std::thread::yield_now();
                    let after = value.load(Ordering::SeqCst);
                    assert_eq!(before, after, "a write slipped in while the range was held exclusively");
                    value.fetch_add(1_000_000, Ordering::SeqCst);
                    l.release(t);
                }
            }));
        }
        for t in rmw {
            t.join().expect("rmw thread");
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            assert!(t.join().expect("writer") > 0);
        }
        assert!(l.quiet());
        assert_eq!(l.holders(), (0, 0));
    }
}
