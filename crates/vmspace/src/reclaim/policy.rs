//! When the reclaimer gives memory back: a byte budget, xnu's working-set estimate, a maximum age.
//!
//! Invariant: a policy only ever decides *how many of the oldest* entries or bytes to reclaim; it never
//! picks entries out of order, so the ring's protocol (reclaim from `head` upwards) is all it needs. Every
//! computation saturates: no report, clock step or trim can make a counter wrap.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What a ring's reclaimer does on its own (xnu's `vm_reclaim` policy, `vm_deferred_reclamation_*`
/// in `vm_reclaim.c`). Applied on every pass of a [`Reclaimer`](super::Reclaimer) thread and on every
/// [`ReclaimRing::update_kernel_accounting`](super::ReclaimRing::update_kernel_accounting). The default
/// does nothing: entries stay until a flush, memory pressure, or the ring is dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Policy {
    /// Byte budget (xnu legacy iOS's `vm_reclaim_max_threshold`, without its underflow): while the ring
    /// holds more reclaimable bytes than this, reclaim its oldest entries.
    pub budget: Option<u64>,
    /// xnu's working-set estimate (WSE): trim what stayed idle in the ring over sampling periods.
    pub working_set: Option<WorkingSet>,
    /// Reclaim entries older than this (not in xnu). Ages are measured from the first pass of the
    /// reclaimer (or accounting update) that saw the id, so they are exact to one pass.
    pub max_age: Option<Duration>,
}

/// xnu v2's working-set estimation parameters (`vm_reclaim_sampling_period_ns`,
/// `vm_reclaim_abandonment_threshold`, `vm_reclaim_autotrim_pct_*`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WorkingSet {
    /// The sampling period (xnu: 1 s on macOS v2; 10 s / 1 s / 0 by pressure in v3).
    pub period: Duration,
    /// Periods without a sample after which the ring counts as abandoned and all of it may go (xnu: 512).
    pub abandon_periods: u32,
    /// The smallest trim worth doing: `None` is xnu's autotrim threshold, 10 % of the process's peak
    /// resident set (`getrusage` `ru_maxrss`, Linux's lifetime-max footprint); `Some(bytes)` fixes it. A
    /// trim is also at least one page.
    pub min_trim: Option<u64>,
}

impl Default for WorkingSet {
    fn default() -> Self {
        WorkingSet { period: Duration::from_secs(1), abandon_periods: 512, min_trim: None }
    }
}

/// xnu's autotrim share of the lifetime-max footprint at normal pressure (`vm_reclaim_autotrim_pct_normal`).
pub const AUTOTRIM_PERCENT: u64 = 10;

/// The working-set estimator's state (xnu v2 `vm_deferred_reclamation_metadata_s`: `reclaimable_bytes_min`,
/// `working_set_ema`, `last_sample`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Estimator {
    /// The smallest reclaimable size seen in the current period.
    min: u64,
    /// The moving average of per-period minima, fixed point ×256 (xnu's `wma`).
    wma: u64,
    last: Option<Instant>,
}

impl Estimator {
    pub(crate) fn new() -> Estimator {
        Estimator { min: u64::MAX, wma: 0, last: None }
    }

    /// Feed the reclaimable bytes now; returns how many bytes to trim (0: none): xnu's
    /// `vm_deferred_reclamation_update_accounting` + `reclaim_chunks_trim`.
    ///
    /// Per elapsed period `wma = (3·wma + 256·min) / 4` (`k` times for `k` periods), then the trim is
    /// `min(min, wma/256)` rounded up to a page, kept only if at least a page and at least `threshold`;
    /// a gap of more than `abandon_periods` periods makes everything reclaimable trimmable. Then a new
    /// period starts at `estimated − trim`.
    pub(crate) fn sample(
        &mut self,
        now: Instant,
        estimated: u64,
        ws: &WorkingSet,
        page: u64,
        threshold: u64,
    ) -> u64 {
        self.min = self.min.min(estimated);
        let Some(last) = self.last else {
            self.last = Some(now);
            self.min = estimated;
            return 0;
        };
        let period = ws.period.max(Duration::from_nanos(1));
        let elapsed = now.saturating_duration_since(last);
        if elapsed < period {
            return 0;
        }
        let k = (elapsed.as_nanos() / period.as_nanos()).min(u64::MAX as u128) as u64;
        if k > ws.abandon_periods as u64 {
            // The intent of xnu's abandonment (its v2 code sets the field to the raw byte count): the
            // whole idle content is outside the working set.
            self.wma = estimated.saturating_mul(256);
        } else {
            for _ in 0..k.min(64) {
                self.wma = (self.wma.saturating_mul(3).saturating_add(self.min.saturating_mul(256))) / 4;
            }
        }
        self.last = Some(last + period.saturating_mul(k.min(u32::MAX as u64) as u32));
        let mut trim = self.min.min(self.wma / 256);
        trim = trim.checked_next_multiple_of(page.max(1)).unwrap_or(trim).min(estimated);
        if trim < page || trim < threshold {
            trim = 0;
        }
        self.min = estimated.saturating_sub(trim);
        trim
    }
}

/// When ids were first seen: `(time, tail)` records, oldest first. Every id below a record's `tail`
/// existed at its `time`.
#[derive(Debug, Default)]
pub(crate) struct AgeLog {
    records: VecDeque<(Instant, u64)>,
}

/// Records kept at most (older ones are thinned out by dropping every other one).
const AGE_LOG_MAX: usize = 1 << 16;

impl AgeLog {
    /// Note that every id below `tail` exists at `now`.
    pub(crate) fn record(&mut self, now: Instant, tail: u64) {
        if self.records.back().is_some_and(|&(_, t)| t >= tail) {
            return; // nothing new (or a cancel has tail pulled back for a moment)
        }
        if self.records.len() >= AGE_LOG_MAX {
            let kept: VecDeque<_> = self.records.iter().copied().step_by(2).collect();
            self.records = kept;
        }
        self.records.push_back((now, tail));
    }

    /// The id below which every entry is at least `max_age` old at `now`, if any; drops records no
    /// longer needed.
    pub(crate) fn expired_below(&mut self, now: Instant, max_age: Duration) -> Option<u64> {
        let cutoff = now.checked_sub(max_age)?;
        while self.records.len() >= 2 && self.records[1].0 <= cutoff {
            self.records.pop_front();
        }
        self.records.front().filter(|r| r.0 <= cutoff).map(|r| r.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimator_trims_idle_bytes_over_periods() {
        let ws = WorkingSet { period: Duration::from_millis(10), abandon_periods: 512, min_trim: Some(0) };
        let mut e = Estimator::new();
        let t0 = Instant::now();
        assert_eq!(e.sample(t0, 1 << 20, &ws, 4096, 0), 0);
        // One idle period: a quarter of the idle megabyte.
        assert_eq!(e.sample(t0 + Duration::from_millis(10), 1 << 20, &ws, 4096, 0), 1 << 18);
        // Two more (with the quarter gone): wma grows towards the minimum.
        let t = e.sample(t0 + Duration::from_millis(30), 3 << 18, &ws, 4096, 0);
        assert!(t > 0 && t <= 3 << 18, "{t}");
        // Within a period: nothing.
        assert_eq!(e.sample(t0 + Duration::from_millis(31), 1 << 20, &ws, 4096, 0), 0);
    }

    #[test]
    fn estimator_respects_threshold_and_abandonment() {
        let ws = WorkingSet { period: Duration::from_millis(1), abandon_periods: 4, min_trim: None };
        let mut e = Estimator::new();
        let t0 = Instant::now();
        e.sample(t0, 1 << 20, &ws, 4096, 0);
        assert_eq!(e.sample(t0 + Duration::from_millis(1), 1 << 20, &ws, 4096, 1 << 30), 0);
        // Abandoned: everything goes.
        assert_eq!(e.sample(t0 + Duration::from_millis(100), 1 << 20, &ws, 4096, 0), 1 << 20);
    }

    #[test]
    fn age_log_finds_the_expired_prefix() {
        let mut l = AgeLog::default();
        let t0 = Instant::now();
        l.record(t0, 3);
        l.record(t0 + Duration::from_millis(5), 7);
        l.record(t0 + Duration::from_millis(10), 9);
        assert_eq!(l.expired_below(t0 + Duration::from_millis(4), Duration::from_millis(5)), None);
        assert_eq!(l.expired_below(t0 + Duration::from_millis(5), Duration::from_millis(5)), Some(3));
        assert_eq!(l.expired_below(t0 + Duration::from_millis(11), Duration::from_millis(5)), Some(7));
        assert_eq!(l.expired_below(t0 + Duration::from_millis(100), Duration::from_millis(5)), Some(9));
    }
}
