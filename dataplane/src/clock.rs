//! The reactor's clock: a cheap tick counter for busy/idle accounting (SPDK's `spdk_get_ticks`) and the `Instant`
//! handed to pollers, derived from it.
//!
//! Where the CPU has an invariant TSC (`constant_tsc` and `nonstop_tsc` in /proc/cpuinfo), ticks are TSC cycles: one
//! RDTSC per loop iteration (a few nanoseconds) instead of a clock_gettime. The tick rate is calibrated once per
//! process against the monotonic clock. Elsewhere (or with `POLLTGT_CLOCK=monotonic`) ticks are nanoseconds of
//! `Instant`. The `Instant` given to pollers is extrapolated from the ticks and re-anchored on the real monotonic
//! clock at least every [`REANCHOR`], so it never drifts by more than the calibration error over that interval, and
//! it never goes backwards.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::sys;

/// How often a reactor re-reads the monotonic clock to anchor its extrapolated `Instant`.
pub const REANCHOR: Duration = Duration::from_millis(50);

/// Where ticks come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickKind {
    /// The CPU's invariant time stamp counter.
    Tsc,
    /// Nanoseconds of the monotonic clock.
    Monotonic,
}

/// The process-wide tick source: its kind and its rate.
#[derive(Debug, Clone, Copy)]
pub struct Calibration {
    pub kind: TickKind,
    /// Ticks per second.
    pub rate: u64,
    /// `ns = ticks * mult >> 32`, for tick deltas below a few seconds.
    mult: u64,
    origin: Instant,
}

static CALIBRATION: OnceLock<Calibration> = OnceLock::new();

fn invariant_tsc() -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else { return false };
    let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    has("constant_tsc") && has("nonstop_tsc")
}

fn calibrate() -> Calibration {
    let origin = Instant::now();
    let forced = std::env::var("POLLTGT_CLOCK").map(|v| v == "monotonic").unwrap_or(false);
    if !forced && invariant_tsc() {
        if let Some(c0) = sys::rdtsc() {
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_millis(20));
            let c1 = sys::rdtsc().unwrap_or(c0);
            let ns = t0.elapsed().as_nanos().max(1);
            let rate = ((u128::from(c1.wrapping_sub(c0)) * 1_000_000_000) / ns) as u64;
            if rate >= 1_000_000 {
                return Calibration { kind: TickKind::Tsc, rate, mult: mult_for(rate), origin };
            }
        }
    }
    Calibration { kind: TickKind::Monotonic, rate: 1_000_000_000, mult: 1 << 32, origin }
}

fn mult_for(rate: u64) -> u64 {
    ((1_000_000_000u128 << 32) / u128::from(rate.max(1))) as u64
}

impl Calibration {
    /// The process-wide calibration (the first call takes about 20 ms on a TSC machine).
    pub fn get() -> &'static Calibration {
        CALIBRATION.get_or_init(calibrate)
    }

    /// The current tick count.
    #[inline]
    pub fn ticks(&self) -> u64 {
        match self.kind {
            TickKind::Tsc => sys::rdtsc().unwrap_or(0),
            TickKind::Monotonic => self.origin.elapsed().as_nanos() as u64,
        }
    }

    /// Converts a tick count (any size) to nanoseconds.
    pub fn to_ns(&self, ticks: u64) -> u64 {
        ((u128::from(ticks) * 1_000_000_000) / u128::from(self.rate.max(1))) as u64
    }

    /// Converts a small tick delta (below ~4 s) to nanoseconds with one multiply.
    #[inline]
    fn delta_ns(&self, ticks: u64) -> u64 {
        if ticks > self.rate.saturating_mul(4) {
            return self.to_ns(ticks);
        }
        ((u128::from(ticks) * u128::from(self.mult)) >> 32) as u64
    }
}

/// A reactor's clock: ticks plus an extrapolated `Instant`.
#[derive(Debug)]
pub struct ReactorClock {
    cal: &'static Calibration,
    anchor: Instant,
    anchor_tick: u64,
    reanchor_ticks: u64,
    last: Instant,
}

impl ReactorClock {
    pub fn new() -> ReactorClock {
        let cal = Calibration::get();
        let anchor = Instant::now();
        let anchor_tick = cal.ticks();
        let reanchor_ticks = ((u128::from(cal.rate) * REANCHOR.as_nanos()) / 1_000_000_000) as u64;
        ReactorClock { cal, anchor, anchor_tick, reanchor_ticks, last: anchor }
    }

    pub fn calibration(&self) -> &'static Calibration {
        self.cal
    }

    #[inline]
    pub fn ticks(&self) -> u64 {
        self.cal.ticks()
    }

    /// The `Instant` at tick `tick` (a value returned by [`ReactorClock::ticks`] just now): extrapolated from the
    /// last anchor, re-anchored on the monotonic clock every [`REANCHOR`]. Never earlier than a previous answer.
    pub fn now_at(&mut self, tick: u64) -> Instant {
        let delta = tick.wrapping_sub(self.anchor_tick);
        let now = if self.cal.kind == TickKind::Monotonic || delta >= self.reanchor_ticks {
            self.anchor = Instant::now();
            self.anchor_tick = tick;
            self.anchor
        } else {
            self.anchor + Duration::from_nanos(self.cal.delta_ns(delta))
        };
        if now > self.last {
            self.last = now;
        }
        self.last
    }
}

impl Default for ReactorClock {
    fn default() -> Self {
        ReactorClock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_advance_at_the_calibrated_rate() {
        let cal = Calibration::get();
        assert!(cal.rate >= 1_000_000);
        let t0 = Instant::now();
        let c0 = cal.ticks();
        std::thread::sleep(Duration::from_millis(30));
        let c1 = cal.ticks();
        let real = t0.elapsed().as_nanos() as u64;
        let measured = cal.to_ns(c1 - c0);
        // Generous bounds: this checks the units (ticks vs ns vs rate), not the machine's timing.
        assert!(measured >= real / 2 && measured <= real * 2, "measured {measured} ns, real {real} ns");
    }

    #[test]
    fn extrapolated_instants_are_monotonic_and_close_to_the_real_clock() {
        let mut clock = ReactorClock::new();
        let mut prev = clock.now_at(clock.ticks());
        for _ in 0..1000 {
            let now = clock.now_at(clock.ticks());
            assert!(now >= prev);
            prev = now;
        }
        std::thread::sleep(REANCHOR + Duration::from_millis(5));
        let now = clock.now_at(clock.ticks());
        let real = Instant::now();
        let diff = if real > now { real - now } else { now - real };
        assert!(diff < Duration::from_millis(20), "extrapolated clock off by {diff:?}");
    }

    #[test]
    fn small_delta_conversion_matches_exact_conversion() {
        let cal = Calibration::get();
        for ticks in [0, 1, 1000, cal.rate / 3, cal.rate] {
            let a = cal.delta_ns(ticks);
            let b = cal.to_ns(ticks);
            assert!(a.abs_diff(b) <= 1 + b / 1_000_000, "{ticks}: {a} vs {b}");
        }
    }
}
