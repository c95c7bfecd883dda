//! Per-I_T-nexus state of a logical unit: pending unit attention conditions (SAM-5 §5.14) and the PREVENT
//! MEDIUM REMOVAL flag.
//!
//! Every nexus the logical unit has not seen yet starts with a pending 06/29/00 POWER ON, RESET, OR BUS DEVICE
//! RESET OCCURRED. The state lives behind a mutex, but the hot path (READ/WRITE) does not take it: a small
//! lock-free cache of known nexus ids answers "have I seen this nexus?" and an atomic counter answers "does any
//! nexus have a unit attention pending?". Only a first contact, a cache collision or a pending unit attention
//! sends a command to the locked slow path.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::sense::Sense;
use crate::NexusId;

/// Slots of the known-nexus cache (power of two).
const CACHE_SLOTS: usize = 64;
/// Slots probed per nexus (a small set-associative window).
const CACHE_WAYS: usize = 4;
/// Marker of an empty cache slot. `NexusId(u64::MAX)` is never cached and always takes the slow path.
const EMPTY: u64 = u64::MAX;
/// Unit attentions kept per nexus; further ones are dropped (SAM-5 lets a logical unit limit the queue).
pub(crate) const MAX_PENDING_UA: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct NexusState {
    /// Pending unit attentions, oldest first.
    pub(crate) pending: VecDeque<Sense>,
    /// PREVENT ALLOW MEDIUM REMOVAL: this nexus prevents removal.
    pub(crate) prevent: bool,
    /// The media event GET EVENT STATUS NOTIFICATION reports next (MMC-5 table 154; 0: no change).
    pub(crate) media_event: u8,
}

#[derive(Debug, Default)]
pub(crate) struct Inner {
    nexuses: HashMap<NexusId, NexusState>,
}

/// The per-nexus table of one logical unit.
#[derive(Debug)]
pub(crate) struct NexusTable {
    cache: [AtomicU64; CACHE_SLOTS],
    /// Round-robin victim choice when all ways of a cache set are taken.
    victim: AtomicUsize,
    /// Number of nexuses whose unit attention queue is not empty. Only changed with `inner` locked.
    with_pending: AtomicUsize,
    inner: Mutex<Inner>,
}

/// The table locked: the slow path. Every mutation goes through here so the pending counter stays exact.
pub(crate) struct Locked<'a> {
    table: &'a NexusTable,
    inner: MutexGuard<'a, Inner>,
}

fn cache_set(id: u64) -> usize {
    // Fibonacci hashing: the top bits of the product are well mixed.
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % CACHE_SLOTS
}

impl NexusTable {
    pub(crate) fn new() -> Self {
        Self {
            cache: std::array::from_fn(|_| AtomicU64::new(EMPTY)),
            victim: AtomicUsize::new(0),
            with_pending: AtomicUsize::new(0),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn cached(&self, nexus: NexusId) -> bool {
        if nexus.0 == EMPTY {
            return false;
        }
        let set = cache_set(nexus.0);
        (0..CACHE_WAYS).any(|w| self.cache[(set + w) % CACHE_SLOTS].load(Ordering::Acquire) == nexus.0)
    }

    fn cache_install(&self, nexus: NexusId) {
        if nexus.0 == EMPTY || self.cached(nexus) {
            return;
        }
        let set = cache_set(nexus.0);
        for w in 0..CACHE_WAYS {
            let slot = &self.cache[(set + w) % CACHE_SLOTS];
            if slot.compare_exchange(EMPTY, nexus.0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                return;
            }
        }
        let w = self.victim.fetch_add(1, Ordering::Relaxed) % CACHE_WAYS;
        self.cache[(set + w) % CACHE_SLOTS].store(nexus.0, Ordering::Release);
    }

    fn cache_remove(&self, nexus: NexusId) {
        let set = cache_set(nexus.0);
        for w in 0..CACHE_WAYS {
            let slot = &self.cache[(set + w) % CACHE_SLOTS];
            let _ = slot.compare_exchange(nexus.0, EMPTY, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// Locks the table (a poisoned lock is recovered: the state stays consistent because every mutation is
    /// completed before anything that could panic).
    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked { table: self, inner: self.inner.lock().unwrap_or_else(PoisonError::into_inner) }
    }

    /// Fast check for a command from `nexus`: `true` when it is a known nexus and no nexus has a unit attention
    /// pending, so nothing needs to be looked up. Lock-free.
    pub(crate) fn quiet(&self, nexus: NexusId) -> bool {
        self.cached(nexus) && self.with_pending.load(Ordering::Acquire) == 0
    }

    /// Registers `nexus` if it is new (with its POWER ON unit attention) and, when `take` is set, removes and
    /// returns its oldest pending unit attention.
    pub(crate) fn observe(&self, nexus: NexusId, take: bool) -> Option<Sense> {
        if self.quiet(nexus) {
            return None;
        }
        let mut locked = self.lock();
        locked.state(nexus);
        if take {
            locked.take_ua(nexus)
        } else {
            None
        }
    }
}

impl Locked<'_> {
    /// The state of `nexus`, created with a pending POWER ON unit attention on first contact.
    pub(crate) fn state(&mut self, nexus: NexusId) -> &mut NexusState {
        let table = self.table;
        let state = match self.inner.nexuses.entry(nexus) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                let mut s = NexusState::default();
                s.pending.push_back(Sense::power_on_reset());
                table.with_pending.fetch_add(1, Ordering::AcqRel);
                v.insert(s)
            }
        };
        table.cache_install(nexus);
        state
    }

    /// Removes and returns the oldest pending unit attention of `nexus`.
    pub(crate) fn take_ua(&mut self, nexus: NexusId) -> Option<Sense> {
        let table = self.table;
        let state = self.inner.nexuses.get_mut(&nexus)?;
        let ua = state.pending.pop_front()?;
        if state.pending.is_empty() {
            table.with_pending.fetch_sub(1, Ordering::AcqRel);
        }
        Some(ua)
    }

    /// Establishes unit attention `ua` for every known nexus except `except`. A reset-class condition (ASC 29h)
    /// replaces whatever was pending, since the reset supersedes it; a condition already pending is not queued
    /// twice.
    pub(crate) fn raise_all(&mut self, ua: Sense, except: Option<NexusId>) {
        let table = self.table;
        for (id, state) in self.inner.nexuses.iter_mut() {
            if Some(*id) == except {
                continue;
            }
            let was_empty = state.pending.is_empty();
            if ua.asc == 0x29 {
                state.pending.clear();
            }
            if state.pending.iter().any(|p| p.code() == ua.code()) || state.pending.len() >= MAX_PENDING_UA {
                continue;
            }
            state.pending.push_back(ua);
            if was_empty {
                table.with_pending.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// Establishes unit attention `ua` for the one nexus `nexus`, if the logical unit knows it (a nexus it has not
    /// seen yet starts with POWER ON, which supersedes it). A condition already pending is not queued twice.
    pub(crate) fn raise(&mut self, nexus: NexusId, ua: Sense) {
        let table = self.table;
        let Some(state) = self.inner.nexuses.get_mut(&nexus) else { return };
        if state.pending.iter().any(|p| p.code() == ua.code()) || state.pending.len() >= MAX_PENDING_UA {
            return;
        }
        if state.pending.is_empty() {
            table.with_pending.fetch_add(1, Ordering::AcqRel);
        }
        state.pending.push_back(ua);
    }

    /// Sets the media event every known nexus reports next with GET EVENT STATUS NOTIFICATION (a later event
    /// replaces one not yet reported).
    pub(crate) fn media_event_all(&mut self, event: u8) {
        for state in self.inner.nexuses.values_mut() {
            state.media_event = event;
        }
    }

    /// Clears the PREVENT flag of every nexus (logical unit reset, SPC-4 PREVENT ALLOW MEDIUM REMOVAL).
    pub(crate) fn clear_prevent(&mut self) {
        for state in self.inner.nexuses.values_mut() {
            state.prevent = false;
        }
    }

    /// Whether any nexus prevents medium removal.
    pub(crate) fn any_prevent(&self) -> bool {
        self.inner.nexuses.values().any(|s| s.prevent)
    }

    /// Forgets `nexus` (I_T nexus loss): its unit attentions and PREVENT flag go with it.
    pub(crate) fn remove(&mut self, nexus: NexusId) {
        let table = self.table;
        if let Some(state) = self.inner.nexuses.remove(&nexus) {
            if !state.pending.is_empty() {
                table.with_pending.fetch_sub(1, Ordering::AcqRel);
            }
        }
        table.cache_remove(nexus);
    }

    #[cfg(test)]
    pub(crate) fn pending(&self, nexus: NexusId) -> Vec<Sense> {
        self.inner.nexuses.get(&nexus).map(|s| s.pending.iter().copied().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_contact_gets_power_on_once() {
        let t = NexusTable::new();
        let n = NexusId(7);
        assert!(!t.quiet(n));
        assert_eq!(t.observe(n, true), Some(Sense::power_on_reset()));
        assert!(t.quiet(n));
        assert_eq!(t.observe(n, true), None);
    }

    #[test]
    fn observe_without_take_registers_and_keeps_pending() {
        let t = NexusTable::new();
        let n = NexusId(1);
        assert_eq!(t.observe(n, false), None);
        assert!(!t.quiet(n), "the POWER ON unit attention is pending");
        assert_eq!(t.observe(n, true), Some(Sense::power_on_reset()));
        assert!(t.quiet(n));
    }

    #[test]
    fn pending_for_one_nexus_sends_others_to_slow_path_without_effect() {
        let t = NexusTable::new();
        let (a, b) = (NexusId(1), NexusId(2));
        t.observe(a, true);
        t.observe(b, false);
        assert!(!t.quiet(a));
        assert_eq!(t.observe(a, true), None);
        assert_eq!(t.observe(b, true), Some(Sense::power_on_reset()));
        assert!(t.quiet(a) && t.quiet(b));
    }

    #[test]
    fn raise_all_dedups_and_reset_supersedes() {
        let t = NexusTable::new();
        let (a, b) = (NexusId(1), NexusId(2));
        t.observe(a, true);
        t.observe(b, true);
        {
            let mut l = t.lock();
            l.raise_all(Sense::capacity_data_changed(), None);
            l.raise_all(Sense::capacity_data_changed(), None);
            assert_eq!(l.pending(a), vec![Sense::capacity_data_changed()]);
            l.raise_all(Sense::medium_may_have_changed(), Some(b));
            assert_eq!(l.pending(a), vec![Sense::capacity_data_changed(), Sense::medium_may_have_changed()]);
            assert_eq!(l.pending(b), vec![Sense::capacity_data_changed()]);
            l.raise_all(Sense::bus_device_reset(), None);
            assert_eq!(l.pending(a), vec![Sense::bus_device_reset()]);
            assert_eq!(l.pending(b), vec![Sense::bus_device_reset()]);
        }
        assert_eq!(t.observe(a, true), Some(Sense::bus_device_reset()));
        assert_eq!(t.observe(b, true), Some(Sense::bus_device_reset()));
        assert!(t.quiet(a));
    }

    #[test]
    fn queue_is_bounded() {
        let t = NexusTable::new();
        let a = NexusId(1);
        t.observe(a, false);
        {
            let mut l = t.lock();
            for ascq in 0..40u8 {
                l.raise_all(Sense::new(crate::SenseKey::UnitAttention, 0x3F, ascq), None);
            }
            assert_eq!(l.pending(a).len(), MAX_PENDING_UA);
        }
        for _ in 0..MAX_PENDING_UA {
            assert!(t.observe(a, true).is_some());
        }
        assert_eq!(t.observe(a, true), None);
        assert!(t.quiet(a));
    }

    #[test]
    fn remove_forgets_nexus_and_its_pending() {
        let t = NexusTable::new();
        let a = NexusId(3);
        t.observe(a, false);
        t.lock().state(a).prevent = true;
        assert!(t.lock().any_prevent());
        t.lock().remove(a);
        assert!(!t.lock().any_prevent());
        assert_eq!(t.with_pending.load(Ordering::Acquire), 0);
        // It comes back as a new nexus.
        assert!(!t.quiet(a));
        assert_eq!(t.observe(a, true), Some(Sense::power_on_reset()));
    }

    #[test]
    fn cache_collisions_stay_correct() {
        let t = NexusTable::new();
        // Far more nexuses than cache slots: evicted ones take the slow path but are never "new" again.
        for id in 0..500u64 {
            assert_eq!(t.observe(NexusId(id), true), Some(Sense::power_on_reset()), "nexus {id}");
        }
        for id in 0..500u64 {
            assert_eq!(t.observe(NexusId(id), true), None, "nexus {id}");
        }
        assert_eq!(t.observe(NexusId(u64::MAX), true), Some(Sense::power_on_reset()));
        assert_eq!(t.observe(NexusId(u64::MAX), true), None);
        assert!(!t.quiet(NexusId(u64::MAX)), "the marker id is never cached");
    }
}
