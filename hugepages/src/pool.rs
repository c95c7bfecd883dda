//! `BufPool`: an SGV-style buffer pool (after SCST's `sgv_pool`) with power-of-two size classes.
//!
//! Each size class (default 4 KiB, 8 KiB, ... 1 MiB) keeps a LIFO free list of slots carved from *slabs*: regions
//! of `slab_size` bytes (default 2 MiB, one hugepage) mapped on demand when the class runs dry. Requests above the
//! largest class get a dedicated region each (counted in `large_allocations`). Every byte mapped counts against the
//! optional hard cap `max_bytes`; when a growth would exceed it, the pool first unmaps slabs that are entirely free
//! (in any class) and then, if still short, answers [`PoolError::Exhausted`].
//!
//! Per-reactor caches ([`crate::cache`], [`BufPool::enable_thread_cache`]) sit in front of the per-class free
//! lists. Back-pressure is the caller's: an allocation at the cap answers [`PoolError::Exhausted`] at once (and asks
//! every thread cache to hand its slots back); the dataplane parks the command and retries when buffers return.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::buf::{Backing, Buf};
use crate::cache::{self, CacheCounters, Slot};
use crate::region::{system_page_size, HugePolicy, Region, RegionError, RegionOptions};

/// Pool configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Smallest size class in bytes: a power of two and a multiple of the system page size (keeps every buffer
    /// page aligned). Default 4 KiB.
    pub min_class: usize,
    /// Largest size class: a power of two `>= min_class`. Default 1 MiB.
    pub max_class: usize,
    /// Bytes mapped per growth of a class (rounded up to a whole number of buffers). Default 2 MiB.
    pub slab_size: usize,
    /// Hard cap on the bytes the pool maps (slabs and large buffers). `None`: unlimited.
    pub max_bytes: Option<usize>,
    /// How regions are mapped (hugepages preferred by default).
    pub region: RegionOptions,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            min_class: 4096,
            max_class: 1 << 20,
            slab_size: 2 << 20,
            max_bytes: None,
            region: RegionOptions::default(),
        }
    }
}

/// Errors of the buffer pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The hard cap would be exceeded even after releasing all free slabs.
    #[error("buffer pool exhausted: {requested} bytes requested, {mapped} of {cap} bytes mapped")]
    Exhausted {
        /// Bytes of the request that failed.
        requested: usize,
        /// Bytes mapped by the pool at the time.
        mapped: usize,
        /// The configured cap.
        cap: usize,
    },
    /// Mapping memory failed.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// The configuration is inconsistent.
    #[error("invalid buffer pool configuration: {0}")]
    Config(&'static str),
}

/// Per-class statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Buffer size of the class.
    pub size: usize,
    /// Slabs currently mapped for the class.
    pub slabs: usize,
    /// Buffers on the free list.
    pub free: usize,
    /// Buffers handed out and not yet returned.
    pub in_use: usize,
    /// Free buffers sitting in per-reactor caches.
    pub cached: usize,
}

/// A snapshot of pool statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Successful allocations (size classes and large).
    pub allocations: u64,
    /// Buffers returned (size classes and large).
    pub frees: u64,
    /// Class allocations served from a free list.
    pub cache_hits: u64,
    /// Class allocations that found the free list empty (and grew the class, or failed).
    pub cache_misses: u64,
    /// Allocations above the largest class, served by a dedicated region.
    pub large_allocations: u64,
    /// Allocations refused with [`PoolError::Exhausted`].
    pub exhausted: u64,
    /// Bytes handed out now (class sizes, large regions' mapped lengths).
    pub bytes_in_use: usize,
    /// Highest `bytes_in_use` seen.
    pub high_water: usize,
    /// Bytes currently mapped by the pool (counted against the cap).
    pub bytes_mapped: usize,
    /// Free bytes held in per-reactor caches.
    pub bytes_cached: usize,
    /// Threads with a cache of this pool.
    pub thread_caches: usize,
    /// One entry per size class, smallest first.
    pub classes: Vec<ClassStats>,
}

struct Slab {
    region: Region,
    in_use: usize,
}

#[derive(Default)]
struct ClassState {
    /// Free slots as (slab id, slot index); LIFO so the most recently used (cache-warm) slot goes out first.
    free: Vec<(u32, u32)>,
    /// Slabs by id; `None` for ids freed by `shrink` (reused through `vacant`).
    slabs: Vec<Option<Slab>>,
    vacant: Vec<u32>,
}

pub(crate) struct PoolInner {
    cfg: PoolConfig,
    class_sizes: Box<[usize]>,
    classes: Box<[Mutex<ClassState>]>,
    mapped: AtomicUsize,
    /// Bytes in use through the shared path (signed: a buffer taken from a thread cache may be freed here).
    in_use: AtomicI64,
    high_water: AtomicUsize,
    /// Bumped when an allocation hits the cap: thread caches flush when they see a new value.
    pressure: AtomicU64,
    caches: Mutex<Vec<Arc<CacheCounters>>>,
    cache_count: AtomicUsize,
    allocations: AtomicU64,
    frees: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    large: AtomicU64,
    exhausted: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pool of page-aligned buffers in power-of-two size classes. Cheap to clone (an `Arc`), `Send + Sync`.
#[derive(Clone)]
pub struct BufPool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for BufPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufPool")
            .field("config", &self.inner.cfg)
            .field("bytes_mapped", &self.inner.mapped.load(Ordering::Relaxed))
            .finish()
    }
}

impl BufPool {
    /// Creates an empty pool; no memory is mapped until the first allocation.
    pub fn new(cfg: PoolConfig) -> Result<BufPool, PoolError> {
        if !cfg.min_class.is_power_of_two() || cfg.min_class % system_page_size() != 0 {
            return Err(PoolError::Config(
                "min_class must be a power of two and a multiple of the page size",
            ));
        }
        if !cfg.max_class.is_power_of_two() || cfg.max_class < cfg.min_class {
            return Err(PoolError::Config(
                "max_class must be a power of two >= min_class",
            ));
        }
        if cfg.slab_size == 0 {
            return Err(PoolError::Config("slab_size must not be zero"));
        }
        if cfg
            .region
            .hugetlbfs_path
            .as_ref()
            .is_some_and(|p| !p.is_dir())
        {
            // Every slab maps its own file; a single named file would make all slabs share the same pages.
            return Err(PoolError::Config(
                "a pool's hugetlbfs_path must be a directory",
            ));
        }
        Ok(BufPool {
            inner: Arc::new(PoolInner::new(cfg)),
        })
    }

    /// A pool with the default configuration (4 KiB..1 MiB classes, 2 MiB slabs, no cap).
    pub fn with_defaults() -> BufPool {
        // The default configuration is valid (unit test `default_config_is_valid`).
        BufPool {
            inner: Arc::new(PoolInner::new(PoolConfig::default())),
        }
    }

    /// The configuration the pool was built with.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.cfg
    }

    /// The size classes, smallest first.
    pub fn class_sizes(&self) -> &[usize] {
        &self.inner.class_sizes
    }

    /// Allocates a buffer of exactly `len` bytes (page aligned, contents unspecified). `len == 0` gives an empty
    /// heap buffer without touching the pool.
    pub fn alloc(&self, len: usize) -> Result<Buf, PoolError> {
        if len == 0 {
            return Ok(Buf::from_vec(Vec::new()));
        }
        match self.inner.class_sizes.iter().position(|&s| s >= len) {
            Some(class) => self.inner.alloc_class(&self.inner, class, len),
            None => self.inner.alloc_large(&self.inner, len),
        }
    }

    /// Gives the calling thread (a reactor) its own cache in front of the shared free lists, holding up to about
    /// `budget_bytes` per size class (between 2 and 256 buffers). Idempotent; flushed when the thread exits.
    pub fn enable_thread_cache(&self, budget_bytes: usize) -> bool {
        cache::install(&self.inner, budget_bytes)
    }

    /// Hands the calling thread's cached buffers back if the pool asked for them (an allocation hit the cap).
    /// Reactors call this once per iteration; it is one atomic load when there is nothing to do.
    pub fn maintain_thread_cache(&self) {
        cache::maintain(&self.inner, false);
    }

    /// Hands all of the calling thread's cached buffers back to the shared lists.
    pub fn flush_thread_cache(&self) {
        cache::maintain(&self.inner, true);
    }

    /// Like [`BufPool::alloc`], with the contents zeroed.
    pub fn alloc_zeroed(&self, len: usize) -> Result<Buf, PoolError> {
        let mut b = self.alloc(len)?;
        b.fill(0);
        Ok(b)
    }

    /// Unmaps every slab whose buffers are all free; returns the bytes unmapped.
    pub fn shrink(&self) -> usize {
        self.inner.shrink()
    }

    /// A statistics snapshot.
    pub fn stats(&self) -> PoolStats {
        let i = &self.inner;
        let classes = i
            .class_sizes
            .iter()
            .zip(i.classes.iter())
            .enumerate()
            .map(|(class, (&size, st))| {
                let st = lock(st);
                let slabs = st.slabs.iter().flatten().count();
                let taken: usize = st.slabs.iter().flatten().map(|s| s.in_use).sum();
                let cached: usize = lock(&i.caches)
                    .iter()
                    .map(|c| c.cached.get(class).map_or(0, |a| a.load(Ordering::Relaxed) as usize))
                    .sum();
                ClassStats {
                    size,
                    slabs,
                    free: st.free.len(),
                    in_use: taken.saturating_sub(cached),
                    cached,
                }
            })
            .collect();
        let caches = lock(&i.caches);
        let sum = |f: fn(&CacheCounters) -> &AtomicU64| -> u64 {
            caches.iter().map(|c| f(c).load(Ordering::Relaxed)).fold(0u64, u64::wrapping_add)
        };
        let cache_allocs = sum(|c| &c.allocations);
        let cache_frees = sum(|c| &c.frees);
        let cache_hits = sum(|c| &c.hits);
        let bytes_cached = sum(|c| &c.cached_bytes) as usize;
        let thread_caches = caches.len();
        drop(caches);
        let in_use = i.total_in_use().max(0) as usize;
        i.high_water.fetch_max(in_use, Ordering::Relaxed);
        PoolStats {
            allocations: i.allocations.load(Ordering::Relaxed) + cache_allocs,
            frees: i.frees.load(Ordering::Relaxed) + cache_frees,
            cache_hits: i.hits.load(Ordering::Relaxed) + cache_hits,
            cache_misses: i.misses.load(Ordering::Relaxed),
            large_allocations: i.large.load(Ordering::Relaxed),
            exhausted: i.exhausted.load(Ordering::Relaxed),
            bytes_in_use: in_use,
            high_water: i.high_water.load(Ordering::Relaxed),
            bytes_mapped: i.mapped.load(Ordering::Relaxed),
            bytes_cached,
            thread_caches,
            classes,
        }
    }
}

impl PoolInner {
    fn new(cfg: PoolConfig) -> PoolInner {
        let mut sizes = Vec::new();
        let mut s = Some(cfg.min_class).filter(|&s| s > 0);
        while let Some(size) = s.filter(|&size| size <= cfg.max_class) {
            sizes.push(size);
            s = size.checked_mul(2);
        }
        let classes = sizes
            .iter()
            .map(|_| Mutex::new(ClassState::default()))
            .collect();
        PoolInner {
            cfg,
            class_sizes: sizes.into_boxed_slice(),
            classes,
            mapped: AtomicUsize::new(0),
            in_use: AtomicI64::new(0),
            high_water: AtomicUsize::new(0),
            pressure: AtomicU64::new(0),
            caches: Mutex::new(Vec::new()),
            cache_count: AtomicUsize::new(0),
            allocations: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            large: AtomicU64::new(0),
            exhausted: AtomicU64::new(0),
        }
    }

    fn note_alloc(&self, bytes: usize) {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        let now = self.in_use.fetch_add(bytes as i64, Ordering::Relaxed) + bytes as i64;
        let total = if self.cache_count.load(Ordering::Relaxed) == 0 { now } else { self.total_in_use() };
        self.high_water.fetch_max(total.max(0) as usize, Ordering::Relaxed);
    }

    fn note_free(&self, bytes: usize) {
        self.frees.fetch_add(1, Ordering::Relaxed);
        self.in_use.fetch_sub(bytes as i64, Ordering::Relaxed);
    }

    /// Bytes handed out, over the shared path and every thread cache.
    fn total_in_use(&self) -> i64 {
        let mut total = self.in_use.load(Ordering::Relaxed);
        for c in lock(&self.caches).iter() {
            let a = c.bytes_allocated.load(Ordering::Relaxed);
            let f = c.bytes_freed.load(Ordering::Relaxed);
            total = total.wrapping_add(a.wrapping_sub(f) as i64);
        }
        total
    }

    pub(crate) fn class_sizes(&self) -> &[usize] {
        &self.class_sizes
    }

    pub(crate) fn pressure(&self) -> u64 {
        self.pressure.load(Ordering::Relaxed)
    }

    pub(crate) fn register_cache(&self, counters: Arc<CacheCounters>) {
        lock(&self.caches).push(counters);
        self.cache_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Returns slots of `class` from a thread cache to the shared free list (one lock for the batch).
    pub(crate) fn give_back(&self, class: usize, slots: &[Slot]) {
        if let Some(m) = self.classes.get(class) {
            let mut st = lock(m);
            for s in slots {
                if let Some(Some(slab)) = st.slabs.get_mut(s.slab as usize) {
                    slab.in_use = slab.in_use.saturating_sub(1);
                    st.free.push((s.slab, s.index));
                }
            }
        }
    }

    /// Moves up to `n` free slots of `class` from the shared list into a thread cache (one lock for the batch).
    pub(crate) fn take_batch(&self, class: usize, n: usize, out: &mut Vec<Slot>) {
        let Some(&size) = self.class_sizes.get(class) else { return };
        let Some(m) = self.classes.get(class) else { return };
        let mut st = lock(m);
        for _ in 0..n {
            let Some((slab_id, index)) = st.free.pop() else { break };
            let Some(Some(slab)) = st.slabs.get_mut(slab_id as usize) else { continue };
            slab.in_use += 1;
            let offset = index as usize * size;
            // SAFETY: slots are carved so that `offset + size <= region.len()`, so the pointer stays inside the
            // mapping; a mapping's base pointer is non-null and so is any in-bounds offset from it.
            let ptr = unsafe { std::ptr::NonNull::new_unchecked(slab.region.as_ptr().add(offset)) };
            out.push(Slot { slab: slab_id, index, ptr });
        }
    }

    /// Adds `bytes` to the mapped total unless that would pass the cap.
    fn reserve(&self, bytes: usize) -> bool {
        let cap = self.cfg.max_bytes.unwrap_or(usize::MAX);
        self.mapped
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |m| {
                m.checked_add(bytes).filter(|&n| n <= cap)
            })
            .is_ok()
    }

    fn unreserve(&self, bytes: usize) {
        self.mapped.fetch_sub(bytes, Ordering::AcqRel);
    }

    fn exhausted(&self, requested: usize) -> PoolError {
        self.exhausted.fetch_add(1, Ordering::Relaxed);
        self.pressure.fetch_add(1, Ordering::Relaxed);
        PoolError::Exhausted {
            requested,
            mapped: self.mapped.load(Ordering::Relaxed),
            cap: self.cfg.max_bytes.unwrap_or(usize::MAX),
        }
    }

    /// Maps a region of at least `len` bytes and accounts its mapped length against the cap. `Ok(None)` when the
    /// cap does not allow it.
    fn map_accounted(&self, len: usize) -> Result<Option<Region>, PoolError> {
        let cap = self.cfg.max_bytes.unwrap_or(usize::MAX);
        let small_len = len
            .checked_next_multiple_of(system_page_size())
            .ok_or(RegionError::TooLarge(len))?;
        if self
            .mapped
            .load(Ordering::Relaxed)
            .saturating_add(small_len)
            > cap
        {
            return Ok(None);
        }
        let region = Region::with_options(len, &self.cfg.region)?;
        if self.reserve(region.mapped_len()) {
            return Ok(Some(region));
        }
        // A hugepage mapping rounded up past the cap: small pages may still fit.
        if region.mapped_len() > small_len && self.cfg.region.hugetlbfs_path.is_none() {
            drop(region);
            let opts = RegionOptions {
                huge: HugePolicy::Never,
                hugetlbfs_path: None,
            };
            let region = Region::with_options(len, &opts)?;
            if self.reserve(region.mapped_len()) {
                return Ok(Some(region));
            }
        }
        Ok(None)
    }

    /// Pops a free slot of `class`; returns its buffer.
    fn take(&self, pool: &Arc<PoolInner>, class: usize, len: usize) -> Option<Buf> {
        let size = *self.class_sizes.get(class)?;
        let mut st = lock(self.classes.get(class)?);
        let (slab_id, index) = st.free.pop()?;
        let slab = st.slabs.get_mut(slab_id as usize)?.as_mut()?;
        slab.in_use += 1;
        let offset = index as usize * size;
        // SAFETY: slots are carved so that `offset + size <= region.len()`, so the pointer stays inside the
        // mapping; a mapping's base pointer is non-null and so is any in-bounds offset from it.
        let ptr = unsafe { std::ptr::NonNull::new_unchecked(slab.region.as_ptr().add(offset)) };
        drop(st);
        self.note_alloc(size);
        Some(Buf::from_backing(
            len,
            Backing::Pool {
                pool: Arc::clone(pool),
                ptr,
                class,
                slab: slab_id,
                index,
            },
        ))
    }

    fn alloc_class(
        &self,
        pool: &Arc<PoolInner>,
        class: usize,
        len: usize,
    ) -> Result<Buf, PoolError> {
        if let Some(slot) = cache::take(self, class) {
            return Ok(Buf::from_backing(
                len,
                Backing::Pool { pool: Arc::clone(pool), ptr: slot.ptr, class, slab: slot.slab, index: slot.index },
            ));
        }
        if let Some(b) = self.take(pool, class, len) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(b);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let size = self
            .class_sizes
            .get(class)
            .copied()
            .ok_or(PoolError::Config("no such class"))?;
        // Grow by a full slab, else by a single buffer, else after shrinking the other classes.
        let slab_bytes = self.cfg.slab_size.max(size).next_multiple_of(size);
        let mut region = self.map_accounted(slab_bytes)?;
        if region.is_none() && slab_bytes > size {
            region = self.map_accounted(size)?;
        }
        if region.is_none() {
            // At the cap: this thread's cached slots go back now, the other threads' at their next pool call.
            self.pressure.fetch_add(1, Ordering::Relaxed);
            cache::maintain(self, true);
            if let Some(b) = self.take(pool, class, len) {
                return Ok(b);
            }
        }
        if region.is_none() && self.shrink() > 0 {
            region = self.map_accounted(size)?;
        }
        let Some(region) = region else {
            // Another thread may have returned a buffer meanwhile.
            return self
                .take(pool, class, len)
                .ok_or_else(|| self.exhausted(len));
        };
        let slots = (region.len() / size) as u32;
        {
            let mut st = lock(
                self.classes
                    .get(class)
                    .ok_or(PoolError::Config("no such class"))?,
            );
            let id = match st.vacant.pop() {
                Some(id) => {
                    if let Some(entry) = st.slabs.get_mut(id as usize) {
                        *entry = Some(Slab { region, in_use: 0 });
                    }
                    id
                }
                None => {
                    st.slabs.push(Some(Slab { region, in_use: 0 }));
                    (st.slabs.len() - 1) as u32
                }
            };
            st.free.extend((0..slots).rev().map(|i| (id, i)));
        }
        self.take(pool, class, len)
            .ok_or_else(|| self.exhausted(len))
    }

    fn alloc_large(&self, pool: &Arc<PoolInner>, len: usize) -> Result<Buf, PoolError> {
        let region = match self.map_accounted(len)? {
            Some(r) => r,
            None => {
                self.shrink();
                self.map_accounted(len)?
                    .ok_or_else(|| self.exhausted(len))?
            }
        };
        self.large.fetch_add(1, Ordering::Relaxed);
        self.note_alloc(region.mapped_len());
        Ok(Buf::from_backing(
            len,
            Backing::Large {
                pool: Arc::clone(pool),
                region,
            },
        ))
    }

    /// Returns a class slot (called by `Buf::drop`): into this thread's cache when it has one.
    pub(crate) fn release(&self, class: usize, slab_id: u32, index: u32, ptr: std::ptr::NonNull<u8>) {
        if cache::put(self, class, Slot { slab: slab_id, index, ptr }) {
            return;
        }
        let size = self.class_sizes.get(class).copied().unwrap_or(0);
        if let Some(m) = self.classes.get(class) {
            let mut st = lock(m);
            if let Some(Some(slab)) = st.slabs.get_mut(slab_id as usize) {
                slab.in_use = slab.in_use.saturating_sub(1);
                st.free.push((slab_id, index));
            }
        }
        self.note_free(size);
    }

    /// Accounts for a large buffer's region being unmapped (called by `Buf::drop`).
    pub(crate) fn release_large(&self, mapped_len: usize) {
        self.note_free(mapped_len);
        self.unreserve(mapped_len);
    }

    fn shrink(&self) -> usize {
        let mut released = 0;
        for m in self.classes.iter() {
            let mut st = lock(m);
            let empty: Vec<u32> = st
                .slabs
                .iter()
                .enumerate()
                .filter(|(_, s)| s.as_ref().is_some_and(|s| s.in_use == 0))
                .map(|(id, _)| id as u32)
                .collect();
            if empty.is_empty() {
                continue;
            }
            st.free.retain(|(id, _)| !empty.contains(id));
            for id in empty {
                if let Some(slab) = st.slabs.get_mut(id as usize).and_then(Option::take) {
                    released += slab.region.mapped_len();
                    self.unreserve(slab.region.mapped_len());
                }
                st.vacant.push(id);
            }
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn small_pool(max_bytes: Option<usize>) -> BufPool {
        BufPool::new(PoolConfig {
            max_bytes,
            region: RegionOptions::small_pages(),
            ..PoolConfig::default()
        })
        .expect("pool")
    }

    #[test]
    fn default_config_is_valid() {
        let p = BufPool::new(PoolConfig::default()).expect("default config");
        assert_eq!(
            p.class_sizes(),
            &[
                4096,
                8192,
                16384,
                32768,
                65536,
                131072,
                262144,
                524288,
                1 << 20
            ]
        );
        assert_eq!(BufPool::with_defaults().class_sizes().len(), 9);
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = |cfg: PoolConfig| matches!(BufPool::new(cfg), Err(PoolError::Config(_)));
        assert!(bad(PoolConfig {
            min_class: 3000,
            ..PoolConfig::default()
        }));
        assert!(bad(PoolConfig {
            min_class: 512,
            ..PoolConfig::default()
        }));
        assert!(bad(PoolConfig {
            max_class: 2048,
            ..PoolConfig::default()
        }));
        assert!(bad(PoolConfig {
            max_class: 3 << 20,
            ..PoolConfig::default()
        }));
        assert!(bad(PoolConfig {
            slab_size: 0,
            ..PoolConfig::default()
        }));
        let file = std::env::temp_dir().join(format!("polltgt-pool-cfg-{}", std::process::id()));
        assert!(bad(PoolConfig {
            region: RegionOptions {
                huge: HugePolicy::Prefer,
                hugetlbfs_path: Some(file),
            },
            ..PoolConfig::default()
        }));
    }

    #[test]
    fn alloc_free_reuse_is_lifo() {
        let p = small_pool(None);
        let mut a = p.alloc(100).expect("alloc");
        assert_eq!(a.len(), 100);
        assert!(a.is_pooled());
        a.fill(0x5A);
        let addr = a.as_ptr() as usize;
        drop(a);
        let b = p.alloc(4096).expect("alloc");
        assert_eq!(b.as_ptr() as usize, addr, "freed slot is reused first");
        assert_eq!(b[0], 0x5A, "contents are not cleared (like malloc)");
        let z = p.alloc_zeroed(4096).expect("alloc");
        assert!(z.iter().all(|&x| x == 0));
        let s = p.stats();
        assert_eq!(s.allocations, 3);
        assert_eq!(s.frees, 1);
        assert_eq!(s.cache_misses, 1);
        assert_eq!(s.cache_hits, 2);
    }

    #[test]
    fn size_classes_and_alignment() {
        let p = small_pool(None);
        let page = system_page_size();
        for (len, class) in [
            (1, 4096),
            (4096, 4096),
            (4097, 8192),
            (65536, 65536),
            (700_000, 1 << 20),
        ] {
            let b = p.alloc(len).expect("alloc");
            assert_eq!(b.len(), len);
            assert_eq!(b.as_ptr() as usize % page, 0, "page aligned");
            let st = p.stats();
            let c = st.classes.iter().find(|c| c.size == class).expect("class");
            assert_eq!(c.in_use, 1, "len {len} in class {class}");
        }
        // Many live buffers of one class are distinct and aligned.
        let bufs: Vec<Buf> = (0..600).map(|_| p.alloc(512).expect("alloc")).collect();
        let addrs: HashSet<usize> = bufs.iter().map(|b| b.as_ptr() as usize).collect();
        assert_eq!(addrs.len(), 600);
        assert!(addrs.iter().all(|a| a % page == 0));
        assert_eq!(p.stats().classes[0].slabs, 2, "512 slots per 2 MiB slab");
    }

    #[test]
    fn zero_length_alloc_is_empty_and_unpooled() {
        let p = small_pool(Some(0));
        let b = p.alloc(0).expect("alloc");
        assert!(b.is_empty());
        assert_eq!(p.stats().allocations, 0);
    }

    #[test]
    fn large_allocations_are_dedicated_and_counted() {
        let p = small_pool(None);
        let mut b = p.alloc((3 << 20) + 5).expect("large");
        assert_eq!(b.len(), (3 << 20) + 5);
        b[(3 << 20) + 4] = 1;
        let s = p.stats();
        assert_eq!(s.large_allocations, 1);
        assert!(s.bytes_mapped >= (3 << 20) + 5);
        assert_eq!(s.bytes_in_use, s.bytes_mapped);
        drop(b);
        let s = p.stats();
        assert_eq!(s.bytes_mapped, 0, "large regions are unmapped on drop");
        assert_eq!(s.bytes_in_use, 0);
        assert_eq!(s.frees, 1);
    }

    #[test]
    fn freeze_clones_return_memory_on_last_drop() {
        let p = small_pool(None);
        let mut b = p.alloc(10_000).expect("alloc");
        b.fill(3);
        let addr = b.as_ptr() as usize;
        let bytes = b.freeze();
        let c1 = bytes.clone();
        let c2 = bytes.slice(100..200);
        assert_eq!(bytes.as_ptr() as usize, addr, "no copy");
        drop(bytes);
        drop(c1);
        assert_eq!(p.stats().bytes_in_use, 16384, "still referenced by a slice");
        assert_eq!(c2.len(), 100);
        assert!(c2.iter().all(|&x| x == 3));
        drop(c2);
        let s = p.stats();
        assert_eq!(s.bytes_in_use, 0);
        assert_eq!(s.frees, 1);
        assert_eq!(p.alloc(16384).expect("alloc").as_ptr() as usize, addr);
    }

    #[test]
    fn stats_track_in_use_and_high_water() {
        let p = small_pool(None);
        let a = p.alloc(4096).expect("alloc");
        let b = p.alloc(8192).expect("alloc");
        let c = p.alloc(100_000).expect("alloc"); // 128 KiB class
        assert_eq!(p.stats().bytes_in_use, 4096 + 8192 + 131072);
        drop(b);
        drop(c);
        let s = p.stats();
        assert_eq!(s.bytes_in_use, 4096);
        assert_eq!(s.high_water, 4096 + 8192 + 131072);
        assert_eq!(s.bytes_mapped, 3 * (2 << 20));
        drop(a);
        assert_eq!(p.stats().bytes_in_use, 0);
        assert_eq!(p.shrink(), 3 * (2 << 20));
        let s = p.stats();
        assert_eq!(s.bytes_mapped, 0);
        assert_eq!(s.high_water, 4096 + 8192 + 131072);
        assert!(s.classes.iter().all(|c| c.slabs == 0 && c.free == 0));
    }

    #[test]
    fn cap_exhaustion_and_recovery() {
        // 1 MiB cap: one 2 MiB slab does not fit, so the pool grows buffer by buffer.
        let p = small_pool(Some(1 << 20));
        let bufs: Vec<Buf> = (0..16).map(|_| p.alloc(65536).expect("fits")).collect();
        assert_eq!(p.stats().bytes_mapped, 1 << 20);
        match p.alloc(4096) {
            Err(PoolError::Exhausted { requested, cap, .. }) => {
                assert_eq!(requested, 4096);
                assert_eq!(cap, 1 << 20);
            }
            other => panic!("expected Exhausted, got {other:?}"),
        }
        assert!(matches!(p.alloc(2 << 20), Err(PoolError::Exhausted { .. })));
        assert_eq!(p.stats().exhausted, 2);
        drop(bufs);
        // The 64 KiB slabs are all free: exhaustion of another class shrinks them and succeeds.
        let big = p.alloc(1 << 20).expect("after shrink");
        assert_eq!(big.len(), 1 << 20);
        assert_eq!(p.stats().bytes_mapped, 1 << 20);
    }

    #[test]
    fn thread_cache_serves_frees_and_counts() {
        let p = small_pool(None);
        let t = {
            let p = p.clone();
            std::thread::spawn(move || {
                assert!(p.enable_thread_cache(1 << 20));
                let a = p.alloc(4096).expect("alloc");
                let addr = a.as_ptr() as usize;
                drop(a);
                let s = p.stats();
                assert_eq!(s.bytes_in_use, 0);
                assert_eq!(s.bytes_cached, s.classes[0].cached * 4096);
                assert!(s.classes[0].cached >= 1, "the freed buffer stays in the thread's cache");
                let b = p.alloc(4096).expect("alloc");
                assert_eq!(b.as_ptr() as usize, addr, "LIFO from the cache");
                // A buffer allocated here and freed on another thread (without a cache) is accounted once.
                std::thread::spawn(move || drop(b)).join().expect("join");
                let s = p.stats();
                assert_eq!(s.bytes_in_use, 0);
                assert_eq!(s.allocations, s.frees);
                assert!(s.cache_hits >= 1);
                assert_eq!(s.thread_caches, 1);
            })
        };
        t.join().expect("thread");
        // The thread's exit flushed its cache.
        let s = p.stats();
        assert_eq!(s.bytes_cached, 0);
        assert!(s.classes.iter().all(|c| c.cached == 0 && c.in_use == 0));
    }

    #[test]
    fn cap_pressure_makes_other_threads_hand_back_cached_buffers() {
        // Cap of two 64 KiB buffers, grown buffer by buffer.
        let p = small_pool(Some(128 << 10));
        let (to_owner, owner_rx) = std::sync::mpsc::channel::<&'static str>();
        let (to_main, main_rx) = std::sync::mpsc::channel::<()>();
        let owner = {
            let p = p.clone();
            std::thread::spawn(move || {
                p.enable_thread_cache(1 << 20);
                let bufs: Vec<Buf> = (0..2).map(|_| p.alloc(65536).expect("fits")).collect();
                drop(bufs); // both go to this thread's cache
                to_main.send(()).expect("send");
                while let Ok(cmd) = owner_rx.recv() {
                    if cmd == "maintain" {
                        p.maintain_thread_cache();
                        to_main.send(()).expect("send");
                    }
                }
            })
        };
        main_rx.recv().expect("owner ready");
        assert_eq!(p.stats().bytes_cached, 128 << 10);
        // The cap is reached and the free buffers sit in the other thread's cache: exhausted (back-pressure).
        assert!(matches!(p.alloc(65536), Err(PoolError::Exhausted { .. })));
        // The owner sees the pressure at its next pool call and hands its buffers back.
        to_owner.send("maintain").expect("send");
        main_rx.recv().expect("maintained");
        assert_eq!(p.stats().bytes_cached, 0);
        let b = p.alloc(65536).expect("served after the hand-back");
        assert_eq!(b.len(), 65536);
        drop(to_owner);
        owner.join().expect("owner");
    }

    #[test]
    fn exhaustion_then_release_of_frozen_clones_lets_allocation_resume() {
        let p = small_pool(Some(64 << 10));
        let b = p.alloc(65536).expect("fits");
        let bytes = b.freeze();
        let held_by_transport = bytes.slice(10..20);
        drop(bytes);
        assert!(matches!(p.alloc(4096), Err(PoolError::Exhausted { .. })));
        assert!(matches!(p.alloc(65536), Err(PoolError::Exhausted { .. })));
        // Transmit completion: the last reference goes, the buffer is back.
        drop(held_by_transport);
        assert_eq!(p.stats().bytes_in_use, 0);
        assert!(p.alloc(65536).is_ok());
        assert_eq!(p.stats().exhausted, 2);
    }

    #[test]
    fn pool_over_files_in_a_directory() {
        let dir = std::env::temp_dir();
        let p = BufPool::new(PoolConfig {
            region: RegionOptions {
                huge: HugePolicy::Prefer,
                hugetlbfs_path: Some(dir),
            },
            ..PoolConfig::default()
        })
        .expect("pool");
        let mut a = p.alloc(4096).expect("alloc");
        let mut b = p.alloc(4096).expect("alloc");
        a.fill(1);
        b.fill(2);
        assert!(a.iter().all(|&x| x == 1) && b.iter().all(|&x| x == 2));
        assert_eq!(a.as_ptr() as usize % 4096, 0);
    }

    #[test]
    fn default_pool_uses_hugepages_or_falls_back() {
        let p = BufPool::with_defaults();
        let b = p.alloc(4096).expect("alloc");
        assert_eq!(b.as_ptr() as usize % 4096, 0);
        assert_eq!(p.stats().bytes_mapped, 2 << 20);
    }

    #[test]
    fn many_threads_allocate_and_free() {
        let p = small_pool(Some(128 << 20));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for i in 0..2000usize {
                        let len = 1 + (i * 7919 + t * 104_729) % (300 * 1024);
                        let mut b = p.alloc(len).expect("alloc");
                        let tag = (t * 31 + i) as u8;
                        b.fill(tag);
                        held.push((b, tag));
                        if held.len() > 16 {
                            let (b, tag) = held.swap_remove(i % held.len());
                            assert!(b.iter().all(|&x| x == tag), "buffer shared between owners");
                            if i % 50 == 0 {
                                let frozen = b.freeze();
                                let c = frozen.clone();
                                std::thread::spawn(move || drop(c)).join().expect("join");
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let s = p.stats();
        assert_eq!(s.allocations, 8 * 2000);
        assert_eq!(s.frees, s.allocations);
        assert_eq!(s.bytes_in_use, 0);
        assert!(s.high_water > 0 && s.bytes_mapped <= 128 << 20);
        assert!(s.classes.iter().all(|c| c.in_use == 0));
    }
}
