//! The circuit breaker in front of Redis.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use governor::clock::Reference;
use governor::nanos::Nanos;

use crate::BreakerSettings;
use crate::metrics::Metrics;

/// Whether the cluster tier is being called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum BreakerState {
    /// Redis answers: every decision calls it.
    #[default]
    Closed = 0,
    /// Redis failed: no decision calls it until the backoff has passed.
    Open = 1,
    /// One probe is calling Redis; other decisions still follow the outage policy.
    HalfOpen = 2,
}

impl BreakerState {
    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    pub(crate) fn from_u8(value: u8) -> BreakerState {
        match value {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

/// How a Redis call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// An error reply or a broken connection.
    Error,
    /// No answer within the timeout: one is enough to open.
    Timeout,
}

/// What a decision may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Call Redis (the breaker is closed).
    Call,
    /// Call Redis as the one probe of a half-open breaker; report the result.
    Probe,
    /// Do not call Redis; the next probe is due in the given time.
    Skip(Duration),
}

/// The breaker's state machine. The clock is the limiter's, so tests drive the backoff with a
/// `FakeRelativeClock` instead of waiting.
#[derive(Debug)]
pub(crate) struct Breaker<I> {
    settings: BreakerSettings,
    /// Held only for a few field updates, never across an await.
    state: Mutex<State<I>>,
}

#[derive(Debug, Clone, Copy)]
enum State<I> {
    Closed { failures: u32 },
    Open { probe_at: I, backoff: Duration },
    HalfOpen { backoff: Duration },
}

impl<I: Reference> Breaker<I> {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Breaker {
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// Whether a decision made at `now` may call Redis.
    pub(crate) fn admit(&self, now: I, metrics: &Metrics) -> Admit {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Admit::Call,
            State::Open { probe_at, backoff } if now >= probe_at => {
                *state = State::HalfOpen { backoff };
                metrics.set_breaker_state(BreakerState::HalfOpen);
                tracing::debug!(backoff_ms = backoff.as_millis() as u64, "Probing Redis.");
                Admit::Probe
            }
            State::Open { probe_at, .. } => {
                Admit::Skip(Duration::from(probe_at.duration_since(now)))
            }
            // The probe in flight answers within the Redis timeout.
            State::HalfOpen { .. } => Admit::Skip(Duration::ZERO),
        }
    }

    /// Redis answered.
    pub(crate) fn success(&self, metrics: &Metrics) {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => *state = State::Closed { failures: 0 },
            State::HalfOpen { .. } => {
                *state = State::Closed { failures: 0 };
                metrics.set_breaker_state(BreakerState::Closed);
                tracing::info!(
                    state = BreakerState::Closed.as_str(),
                    "Redis answers again; cluster rate limits restored."
                );
            }
            // A call that started before the breaker opened: only a probe may close it.
            State::Open { .. } => {}
        }
    }

    /// Redis failed at `now`; `cause` is logged when the breaker opens.
    pub(crate) fn failure(
        &self,
        now: I,
        failure: Failure,
        cause: &dyn std::fmt::Display,
        metrics: &Metrics,
    ) {
        let mut state = self.lock();
        let backoff = match *state {
            State::Closed { failures } => {
                let failures = failures + 1;
                if failure == Failure::Error && failures < self.settings.failures_to_open.get() {
                    *state = State::Closed { failures };
                    tracing::debug!(failures, error = %cause, "Redis rate-limit call failed.");
                    return;
                }
                self.settings.backoff
            }
            State::HalfOpen { backoff } => backoff
                .saturating_mul(2)
                .min(self.settings.max_backoff)
                .max(self.settings.backoff),
            // Calls that were in flight when the breaker opened.
            State::Open { .. } => return,
        };
        *state = State::Open {
            probe_at: now + Nanos::from(backoff),
            backoff,
        };
        metrics.set_breaker_state(BreakerState::Open);
        tracing::error!(
            state = BreakerState::Open.as_str(),
            failure = ?failure,
            backoff_ms = backoff.as_millis() as u64,
            error = %cause,
            "Redis unreachable; rate limits follow the outage policy."
        );
    }

    /// The probe was cancelled before it got an answer (its request went away): let the next
    /// decision probe instead, without changing the backoff.
    pub(crate) fn abandon_probe(&self, now: I, metrics: &Metrics) {
        let mut state = self.lock();
        if let State::HalfOpen { backoff } = *state {
            *state = State::Open {
                probe_at: now,
                backoff,
            };
            metrics.set_breaker_state(BreakerState::Open);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<I>> {
        // The state is a plain value replaced whole: a panic elsewhere cannot leave it torn.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use governor::clock::{Clock, FakeRelativeClock};

    use super::*;

    fn breaker() -> (Breaker<Nanos>, FakeRelativeClock, Metrics) {
        let settings = BreakerSettings {
            failures_to_open: NonZeroU32::new(3).unwrap(),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        (
            Breaker::new(settings),
            FakeRelativeClock::default(),
            Metrics::default(),
        )
    }

    #[test]
    fn opens_after_consecutive_errors_and_a_success_resets_the_count() {
        let (b, clock, m) = breaker();
        b.failure(clock.now(), Failure::Error, &"e", &m);
        b.failure(clock.now(), Failure::Error, &"e", &m);
        b.success(&m);
        b.failure(clock.now(), Failure::Error, &"e", &m);
        b.failure(clock.now(), Failure::Error, &"e", &m);
        assert_eq!(b.admit(clock.now(), &m), Admit::Call);
        b.failure(clock.now(), Failure::Error, &"e", &m);
        assert_eq!(
            b.admit(clock.now(), &m),
            Admit::Skip(Duration::from_millis(100))
        );
        assert_eq!(m.breaker_state(), BreakerState::Open);
    }

    #[test]
    fn one_timeout_opens_at_once() {
        let (b, clock, m) = breaker();
        b.failure(clock.now(), Failure::Timeout, &"t", &m);
        assert!(matches!(b.admit(clock.now(), &m), Admit::Skip(_)));
    }

    #[test]
    fn after_the_backoff_one_probe_runs_and_its_success_closes() {
        let (b, clock, m) = breaker();
        b.failure(clock.now(), Failure::Timeout, &"t", &m);
        clock.advance(Duration::from_millis(99));
        assert_eq!(
            b.admit(clock.now(), &m),
            Admit::Skip(Duration::from_millis(1))
        );
        clock.advance(Duration::from_millis(1));
        assert_eq!(b.admit(clock.now(), &m), Admit::Probe);
        assert_eq!(
            b.admit(clock.now(), &m),
            Admit::Skip(Duration::ZERO),
            "one probe at a time"
        );
        assert_eq!(m.breaker_state(), BreakerState::HalfOpen);
        b.success(&m);
        assert_eq!(b.admit(clock.now(), &m), Admit::Call);
        let snapshot = m.snapshot();
        assert_eq!((snapshot.breaker_opened, snapshot.breaker_closed), (1, 1));
    }

    #[test]
    fn failed_probes_double_the_backoff_up_to_the_maximum() {
        let (b, clock, m) = breaker();
        b.failure(clock.now(), Failure::Error, &"e", &m);
        b.failure(clock.now(), Failure::Error, &"e", &m);
        b.failure(clock.now(), Failure::Error, &"e", &m);
        for want_ms in [200, 350, 350] {
            clock.advance(Duration::from_secs(1));
            assert_eq!(b.admit(clock.now(), &m), Admit::Probe);
            b.failure(clock.now(), Failure::Error, &"e", &m);
            assert_eq!(
                b.admit(clock.now(), &m),
                Admit::Skip(Duration::from_millis(want_ms))
            );
        }
        assert_eq!(m.snapshot().breaker_opened, 4);
    }

    #[test]
    fn late_answers_of_calls_from_before_the_opening_change_nothing() {
        let (b, clock, m) = breaker();
        b.failure(clock.now(), Failure::Timeout, &"t", &m);
        b.success(&m);
        b.failure(clock.now(), Failure::Error, &"e", &m);
        assert_eq!(
            b.admit(clock.now(), &m),
            Admit::Skip(Duration::from_millis(100))
        );
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_decision_probe() {
        let (b, clock, m) = breaker();
        b.failure(clock.now(), Failure::Timeout, &"t", &m);
        clock.advance(Duration::from_millis(100));
        assert_eq!(b.admit(clock.now(), &m), Admit::Probe);
        b.abandon_probe(clock.now(), &m);
        assert_eq!(b.admit(clock.now(), &m), Admit::Probe);
    }
}
