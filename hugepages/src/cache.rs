//! Per-thread (per-reactor) buffer caches in front of a [`crate::BufPool`]'s shared free lists, like SPDK's mempool
//! per-lcore caches: a reactor thread that calls [`crate::BufPool::enable_thread_cache`] allocates from and frees to
//! its own LIFO lists without taking the class lock, refilling and spilling in batches.
//!
//! A cached slot is free for users but still counted as taken at its slab (so the slab is never unmapped under
//! it). When the pool runs into its cap it bumps a pressure generation; every cache that sees a new generation
//! (at its next allocation or free, or at [`crate::BufPool::maintain_thread_cache`]) hands all its slots back, so a
//! waiting allocation on another reactor can be served. The thread's caches are flushed when the thread exits.
//!
//! Statistics are per cache, written only by the owning thread with plain stores (no shared cache line bounces on
//! the fast path) and summed by [`crate::BufPool::stats`].

use std::cell::RefCell;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::pool::PoolInner;

/// One cached slot of a size class.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub(crate) slab: u32,
    pub(crate) index: u32,
    pub(crate) ptr: NonNull<u8>,
}

/// Counters of one thread cache; written by its thread only.
#[derive(Debug, Default)]
pub(crate) struct CacheCounters {
    pub(crate) allocations: AtomicU64,
    pub(crate) frees: AtomicU64,
    pub(crate) hits: AtomicU64,
    pub(crate) bytes_allocated: AtomicU64,
    pub(crate) bytes_freed: AtomicU64,
    /// Bytes sitting in the cache now.
    pub(crate) cached_bytes: AtomicU64,
    /// Slots per class in the cache now.
    pub(crate) cached: Vec<AtomicU64>,
}

fn bump(a: &AtomicU64, by: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

/// The caches of one thread, one per pool.
pub(crate) struct ThreadCache {
    pub(crate) pool: Arc<PoolInner>,
    lists: Vec<Vec<Slot>>,
    limits: Vec<usize>,
    pressure_seen: u64,
    pub(crate) counters: Arc<CacheCounters>,
}

thread_local! {
    static CACHES: RefCell<Vec<ThreadCache>> = const { RefCell::new(Vec::new()) };
}

impl ThreadCache {
    pub(crate) fn new(pool: Arc<PoolInner>, budget_bytes: usize) -> ThreadCache {
        let sizes = pool.class_sizes().to_vec();
        let limits = sizes.iter().map(|&s| (budget_bytes / s.max(1)).clamp(2, 256)).collect();
        let counters = Arc::new(CacheCounters {
            cached: sizes.iter().map(|_| AtomicU64::new(0)).collect(),
            ..Default::default()
        });
        let pressure_seen = pool.pressure();
        ThreadCache { pool, lists: sizes.iter().map(|_| Vec::new()).collect(), limits, pressure_seen, counters }
    }

    fn publish(&self, class: usize) {
        if let Some(c) = self.counters.cached.get(class) {
            c.store(self.lists.get(class).map_or(0, Vec::len) as u64, Ordering::Relaxed);
        }
        let bytes: usize =
            self.lists.iter().zip(self.pool.class_sizes()).map(|(l, &s)| l.len() * s).sum();
        self.counters.cached_bytes.store(bytes as u64, Ordering::Relaxed);
    }

    /// Hands every cached slot back to the shared lists.
    pub(crate) fn flush(&mut self) {
        for class in 0..self.lists.len() {
            let slots = std::mem::take(&mut self.lists[class]);
            if !slots.is_empty() {
                self.pool.give_back(class, &slots);
            }
            self.publish(class);
        }
    }

    fn check_pressure(&mut self) {
        let p = self.pool.pressure();
        if p != self.pressure_seen {
            self.pressure_seen = p;
            self.flush();
        }
    }
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Runs `f` with this thread's cache of `pool`, if it has one.
fn with_cache<R>(pool: &PoolInner, f: impl FnOnce(&mut ThreadCache) -> R) -> Option<R> {
    CACHES
        .try_with(|c| {
            let mut caches = c.try_borrow_mut().ok()?;
            let cache = caches.iter_mut().find(|tc| std::ptr::eq(Arc::as_ptr(&tc.pool), pool))?;
            Some(f(cache))
        })
        .ok()
        .flatten()
}

/// Installs a cache of `pool` for the calling thread (idempotent).
pub(crate) fn install(pool: &Arc<PoolInner>, budget_bytes: usize) -> bool {
    CACHES
        .try_with(|c| {
            let Ok(mut caches) = c.try_borrow_mut() else { return false };
            if caches.iter().any(|tc| Arc::ptr_eq(&tc.pool, pool)) {
                return true;
            }
            let tc = ThreadCache::new(Arc::clone(pool), budget_bytes);
            pool.register_cache(Arc::clone(&tc.counters));
            caches.push(tc);
            true
        })
        .unwrap_or(false)
}

/// Takes a slot of `class` from this thread's cache, refilling it from the shared list (one lock for a batch).
/// `None` when the thread has no cache for the pool or the shared list is empty too.
pub(crate) fn take(pool: &PoolInner, class: usize) -> Option<Slot> {
    with_cache(pool, |tc| {
        tc.check_pressure();
        let size = pool.class_sizes().get(class).copied()? as u64;
        let mut hit = true;
        if tc.lists.get(class)?.is_empty() {
            hit = false;
            let batch = tc.limits.get(class).copied().unwrap_or(2).div_ceil(2);
            let list = tc.lists.get_mut(class)?;
            pool.take_batch(class, batch, list);
        }
        let slot = tc.lists.get_mut(class)?.pop()?;
        bump(&tc.counters.allocations, 1);
        bump(&tc.counters.bytes_allocated, size);
        if hit {
            bump(&tc.counters.hits, 1);
        }
        tc.publish(class);
        Some(slot)
    })
    .flatten()
}

/// Puts a freed slot into this thread's cache (spilling half of the list when it is full). False when the thread
/// has no cache for the pool: the caller returns the slot to the shared list.
pub(crate) fn put(pool: &PoolInner, class: usize, slot: Slot) -> bool {
    with_cache(pool, |tc| {
        let size = pool.class_sizes().get(class).copied().unwrap_or(0) as u64;
        let limit = tc.limits.get(class).copied().unwrap_or(2);
        let Some(list) = tc.lists.get_mut(class) else { return false };
        list.push(slot);
        if list.len() > limit {
            let spill: Vec<Slot> = list.drain(..list.len() / 2).collect();
            pool.give_back(class, &spill);
        }
        bump(&tc.counters.frees, 1);
        bump(&tc.counters.bytes_freed, size);
        tc.check_pressure();
        tc.publish(class);
        true
    })
    .unwrap_or(false)
}

/// Flushes this thread's cache of `pool` if the pool asked for it (pressure), or unconditionally with `force`.
pub(crate) fn maintain(pool: &PoolInner, force: bool) {
    with_cache(pool, |tc| {
        if force {
            tc.flush();
        } else {
            tc.check_pressure();
        }
    });
}
