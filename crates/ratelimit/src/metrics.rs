//! Counters of the limiter, as plain atomics the integrator exports (e.g. to Prometheus).

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use crate::breaker::BreakerState;
use crate::decision::{Decision, Outcome, Tier};

/// Counters of one [`Limiter`](crate::Limiter), shared by all its clones.
///
/// Labels stay low-cardinality: tier and outcome (see STYLE §8: partner and route labels belong
/// to the telemetry layer, which reads the [`Decision`] from the response extensions).
#[derive(Debug, Default)]
pub struct Metrics {
    /// `[tier][outcome]`: decisions made.
    decisions: [[AtomicU64; 2]; 5],
    /// Redis decisions attempted (including probes).
    redis_calls: AtomicU64,
    /// Redis decisions that failed with an error.
    redis_errors: AtomicU64,
    /// Redis decisions that hit the timeout.
    redis_timeouts: AtomicU64,
    /// Times the breaker opened (from closed or after a failed probe).
    breaker_opened: AtomicU64,
    /// Times the breaker closed after a successful probe.
    breaker_closed: AtomicU64,
    /// The breaker's current state ([`BreakerState`] as `u8`).
    breaker_state: AtomicU8,
}

/// A copy of every counter at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Decisions by `[Tier::index][Outcome]` (allow first); use [`MetricsSnapshot::decisions`].
    decisions: [[u64; 2]; 5],
    /// Redis decisions attempted (including probes).
    pub redis_calls: u64,
    /// Redis decisions that failed with an error.
    pub redis_errors: u64,
    /// Redis decisions that hit the timeout.
    pub redis_timeouts: u64,
    /// Times the breaker opened.
    pub breaker_opened: u64,
    /// Times the breaker closed after a successful probe.
    pub breaker_closed: u64,
    /// The breaker's state when the snapshot was taken.
    pub breaker_state: BreakerState,
}

impl Metrics {
    /// A copy of every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut decisions = [[0u64; 2]; 5];
        for (row, counters) in decisions.iter_mut().zip(&self.decisions) {
            for (value, counter) in row.iter_mut().zip(counters) {
                *value = counter.load(Ordering::Relaxed);
            }
        }
        MetricsSnapshot {
            decisions,
            redis_calls: self.redis_calls.load(Ordering::Relaxed),
            redis_errors: self.redis_errors.load(Ordering::Relaxed),
            redis_timeouts: self.redis_timeouts.load(Ordering::Relaxed),
            breaker_opened: self.breaker_opened.load(Ordering::Relaxed),
            breaker_closed: self.breaker_closed.load(Ordering::Relaxed),
            breaker_state: self.breaker_state(),
        }
    }

    /// Decisions made by `tier` with `outcome` so far.
    pub fn decisions(&self, tier: Tier, outcome: Outcome) -> u64 {
        self.decisions[tier.index()][outcome_index(outcome)].load(Ordering::Relaxed)
    }

    /// The breaker's current state (always [`BreakerState::Closed`] for a local limiter).
    pub fn breaker_state(&self) -> BreakerState {
        BreakerState::from_u8(self.breaker_state.load(Ordering::Relaxed))
    }

    pub(crate) fn record(&self, decision: &Decision) {
        self.decisions[decision.tier.index()][outcome_index(decision.outcome)]
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn redis_call(&self) {
        self.redis_calls.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn redis_error(&self) {
        self.redis_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn redis_timeout(&self) {
        self.redis_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_breaker_state(&self, state: BreakerState) {
        let old = self.breaker_state.swap(state as u8, Ordering::Relaxed);
        if old == state as u8 {
            return;
        }
        match state {
            BreakerState::Open => self.breaker_opened.fetch_add(1, Ordering::Relaxed),
            BreakerState::Closed => self.breaker_closed.fetch_add(1, Ordering::Relaxed),
            BreakerState::HalfOpen => 0,
        };
    }
}

impl MetricsSnapshot {
    /// Decisions made by `tier` with `outcome`.
    pub fn decisions(&self, tier: Tier, outcome: Outcome) -> u64 {
        self.decisions[tier.index()][outcome_index(outcome)]
    }

    /// Every `(tier, outcome, count)`, for an exporter.
    pub fn iter_decisions(&self) -> impl Iterator<Item = (Tier, Outcome, u64)> + '_ {
        Tier::ALL.into_iter().flat_map(move |tier| {
            [Outcome::Allow, Outcome::Deny]
                .into_iter()
                .map(move |outcome| (tier, outcome, self.decisions(tier, outcome)))
        })
    }
}

const fn outcome_index(outcome: Outcome) -> usize {
    match outcome {
        Outcome::Allow => 0,
        Outcome::Deny => 1,
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use gateway_core::Route;

    use super::*;
    use crate::Limit;

    #[test]
    fn decisions_are_counted_by_tier_and_outcome() {
        let metrics = Metrics::default();
        let limit = Limit::new(NonZeroU32::MIN, NonZeroU32::MIN);
        for (tier, outcome) in [
            (Tier::Cluster, Outcome::Allow),
            (Tier::Cluster, Outcome::Allow),
            (Tier::Cluster, Outcome::Deny),
            (Tier::FailOpen, Outcome::Allow),
        ] {
            metrics.record(&Decision::uncounted(outcome, tier, Route::Products, limit));
        }
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot.decisions(Tier::Cluster, Outcome::Allow), 2);
        assert_eq!(snapshot.decisions(Tier::Cluster, Outcome::Deny), 1);
        assert_eq!(snapshot.decisions(Tier::FailOpen, Outcome::Allow), 1);
        assert_eq!(snapshot.iter_decisions().map(|(_, _, n)| n).sum::<u64>(), 4);
        assert_eq!(snapshot.iter_decisions().count(), 10);
    }

    #[test]
    fn breaker_transitions_are_counted_once_per_change() {
        let metrics = Metrics::default();
        metrics.set_breaker_state(BreakerState::Open);
        metrics.set_breaker_state(BreakerState::Open);
        metrics.set_breaker_state(BreakerState::HalfOpen);
        metrics.set_breaker_state(BreakerState::Closed);
        let snapshot = metrics.snapshot();
        assert_eq!((snapshot.breaker_opened, snapshot.breaker_closed), (1, 1));
        assert_eq!(snapshot.breaker_state, BreakerState::Closed);
    }
}
