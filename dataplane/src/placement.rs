//! Where sessions run. Connections are accepted round robin over the reactors (per connection, not per target);
//! once the login names the target, the connection moves to a reactor its target allows: one pinned to a CPU of the
//! target's `cpu_mask` (SPDK's per-target cpumask), or, for targets with dedicated reactors, a reactor no other
//! session uses (SCST's per_sess_dedicated_tgt_threads). An initiator group may set either for its initiators
//! ([`crate::registry::TargetEntry::reactor_policy_for`]). A move is a message carrying the whole connection to the
//! other reactor: the socket, the iSCSI state machine, the receive buffer; nothing is in flight at that point.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::driver::ReactorState;
use crate::reactor::ReactorHandle;
use crate::registry::ReactorPolicy;

/// One reactor as the others see it.
pub struct ReactorSlot {
    pub id: usize,
    pub core: Option<usize>,
    pub handle: ReactorHandle<ReactorState>,
    /// Normal sessions running there now, and since start.
    pub sessions: AtomicUsize,
    pub sessions_total: AtomicU64,
    /// Claimed by a session of a target with dedicated reactors.
    pub dedicated: AtomicBool,
    /// Connections moved there after login.
    pub migrations_in: AtomicU64,
}

/// Every reactor, shared by all of them (set once the reactors run; kept by the registry,
/// [`crate::registry::Registry::placement`]).
#[derive(Default)]
pub struct Directory {
    pub reactors: Vec<ReactorSlot>,
}

/// Where a new session goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub reactor: usize,
    /// The session holds the reactor's dedicated claim (released when it ends).
    pub dedicated: bool,
}

impl Directory {
    pub fn new(reactors: Vec<(usize, Option<usize>, ReactorHandle<ReactorState>)>) -> Directory {
        Directory {
            reactors: reactors
                .into_iter()
                .map(|(id, core, handle)| ReactorSlot {
                    id,
                    core,
                    handle,
                    sessions: AtomicUsize::new(0),
                    sessions_total: AtomicU64::new(0),
                    dedicated: AtomicBool::new(false),
                    migrations_in: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    pub fn get(&self, id: usize) -> Option<&ReactorSlot> {
        self.reactors.iter().find(|r| r.id == id)
    }

    /// Chooses the reactor for a session that logged in on reactor `here`, and counts the session there.
    pub fn choose(&self, here: usize, policy: &ReactorPolicy) -> Choice {
        let allowed = |r: &&ReactorSlot| match &policy.cpus {
            None => true,
            Some(cpus) => r.core.is_some_and(|c| cpus.contains(&c)),
        };
        let eligible: Vec<&ReactorSlot> = self.reactors.iter().filter(allowed).collect();
        let choice = if eligible.is_empty() {
            tracing::warn!(cpus = ?policy.cpus, "no reactor runs on the cpu_mask of the target (or group); the session stays where it is");
            Choice { reactor: here, dedicated: false }
        } else if policy.dedicated {
            self.claim_free(here, &eligible).unwrap_or_else(|| {
                tracing::warn!("no free reactor for a dedicated session; sharing one");
                Choice { reactor: least_loaded(here, &eligible, false), dedicated: false }
            })
        } else {
            let here_ok = eligible.iter().any(|r| r.id == here && !r.dedicated.load(Ordering::Relaxed));
            let reactor = if here_ok { here } else { least_loaded(here, &eligible, true) };
            Choice { reactor, dedicated: false }
        };
        if let Some(r) = self.get(choice.reactor) {
            r.sessions.fetch_add(1, Ordering::Relaxed);
            r.sessions_total.fetch_add(1, Ordering::Relaxed);
        }
        choice
    }

    fn claim_free(&self, here: usize, eligible: &[&ReactorSlot]) -> Option<Choice> {
        let mut order: Vec<&&ReactorSlot> = eligible.iter().collect();
        // Prefer staying (no move), then the least loaded.
        order.sort_by_key(|r| (r.id != here, r.sessions.load(Ordering::Relaxed)));
        for r in order {
            if r.sessions.load(Ordering::Relaxed) == 0
                && r.dedicated.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                return Some(Choice { reactor: r.id, dedicated: true });
            }
        }
        None
    }

    /// A session placed by [`Directory::choose`] on `reactor` ended.
    pub fn session_ended(&self, reactor: usize, dedicated: bool) {
        if let Some(r) = self.get(reactor) {
            let _ = r.sessions.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            if dedicated {
                r.dedicated.store(false, Ordering::Release);
            }
        }
    }
}

/// The eligible reactor with the fewest sessions (avoiding dedicated ones when `skip_dedicated` and possible),
/// preferring `here` on ties.
fn least_loaded(here: usize, eligible: &[&ReactorSlot], skip_dedicated: bool) -> usize {
    let pick = |skip: bool| {
        eligible
            .iter()
            .filter(|r| !(skip && r.dedicated.load(Ordering::Relaxed)))
            .min_by_key(|r| (r.sessions.load(Ordering::Relaxed), r.id != here))
            .map(|r| r.id)
    };
    pick(skip_dedicated).or_else(|| pick(false)).unwrap_or(here)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::{IdleMode, Reactor};

    fn directory(cores: &[Option<usize>]) -> Directory {
        let reg = crate::registry::Registry::new();
        let pool = polltgt_hugepages::BufPool::with_defaults();
        let slots = cores
            .iter()
            .enumerate()
            .map(|(id, core)| {
                let (_r, h) = Reactor::new(id, *core, ReactorState::new(id, reg.clone(), pool.clone()), IdleMode::Poll);
                (id, *core, h)
            })
            .collect();
        Directory::new(slots)
    }

    #[test]
    fn cpu_mask_moves_sessions_to_allowed_reactors() {
        let d = directory(&[Some(0), Some(1), Some(2)]);
        let policy = ReactorPolicy { cpus: Some(vec![1, 2]), dedicated: false };
        assert_eq!(d.choose(0, &policy).reactor, 1);
        assert_eq!(d.choose(0, &policy).reactor, 2, "least loaded of the allowed");
        assert_eq!(d.choose(2, &policy).reactor, 2, "stays when allowed");
        let none = ReactorPolicy { cpus: Some(vec![7]), dedicated: false };
        assert_eq!(d.choose(0, &none).reactor, 0, "a mask matching no reactor leaves the session where it is");
    }

    #[test]
    fn dedicated_sessions_get_a_reactor_each_while_one_is_free() {
        let d = directory(&[Some(0), Some(1)]);
        let ded = ReactorPolicy { cpus: None, dedicated: true };
        let a = d.choose(0, &ded);
        assert_eq!(a, Choice { reactor: 0, dedicated: true });
        let b = d.choose(0, &ded);
        assert_eq!(b, Choice { reactor: 1, dedicated: true });
        let c = d.choose(1, &ded);
        assert!(!c.dedicated, "no reactor left: shared");
        // A plain session avoids dedicated reactors when it can; here it cannot.
        d.session_ended(a.reactor, a.dedicated);
        let plain = d.choose(1, &ReactorPolicy::default());
        assert_eq!(plain.reactor, 0, "moves off the dedicated reactor 1 to the released reactor 0");
        d.session_ended(plain.reactor, plain.dedicated);
        let again = d.choose(1, &ded);
        assert_eq!(again, Choice { reactor: 0, dedicated: true }, "a released reactor can be claimed again");
    }
}
