//! [`Limiter`]: the local and the cluster tier behind one decision API.

use std::fmt;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use redis::aio::ConnectionLike;

use gateway_core::{PartnerId, Route};

use crate::breaker::{Admit, Breaker, Failure};
use crate::cluster::{ClusterError, ClusterTier};
use crate::decision::{CheckFuture, CheckQuota, Decision, Outcome, Tier};
use crate::local::{Counted, LocalTier};
use crate::metrics::Metrics;
use crate::{Limit, LimiterSettings, OutagePolicy};

/// The rate limiter: per (partner, route) GCRA, locally or across a cluster through Redis.
///
/// Cheap to clone (one `Arc`); all clones share state and [`Metrics`].
///
/// ```
/// # use std::num::NonZeroU32;
/// # use gateway_core::{PartnerId, Route};
/// # use gateway_ratelimit::{CheckQuota, Limit, Limiter, LimiterSettings, OutagePolicy, Tier};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limiter = Limiter::local(LimiterSettings::default());
/// let limit = Limit::new(NonZeroU32::new(10).unwrap(), NonZeroU32::new(2).unwrap());
/// let partner = PartnerId::parse("demo-bank").unwrap();
/// let first = limiter.check(&partner, Route::Products, limit, OutagePolicy::Local).await;
/// assert!(first.is_allowed());
/// assert_eq!((first.tier, first.remaining), (Tier::Local, Some(1)));
/// # }
/// ```
pub struct Limiter<C: Clock = DefaultClock> {
    shared: Arc<Shared<C>>,
}

struct Shared<C: Clock> {
    clock: C,
    metrics: Arc<Metrics>,
    mode: Mode<C>,
}

enum Mode<C: Clock> {
    /// A single node: the local tier with the full limits.
    Local(LocalTier<C>),
    /// Redis decides; the breaker and the fallback take over while it cannot.
    Cluster {
        redis: ClusterTier,
        breaker: Breaker<C::Instant>,
        /// Each key gets `1 / instances` of its limit here.
        fallback: LocalTier<C>,
    },
}

impl Limiter<DefaultClock> {
    /// A single-node limiter: every decision is local, with the full limit.
    pub fn local(settings: LimiterSettings) -> Self {
        Self::local_with_clock(settings, DefaultClock::default())
    }

    /// A cluster limiter deciding in Redis through `connection` (see
    /// [`redis_connection`](crate::redis_connection); a `ClusterConnection` works too), with the
    /// timeout, breaker and fallback of `settings`.
    pub fn cluster<T>(connection: T, settings: LimiterSettings) -> Self
    where
        T: ConnectionLike + Clone + Send + Sync + 'static,
    {
        Self::cluster_with_clock(connection, settings, DefaultClock::default())
    }
}

impl<C> Limiter<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// [`Limiter::local`] on another clock (tests use governor's `FakeRelativeClock`).
    pub fn local_with_clock(settings: LimiterSettings, clock: C) -> Self {
        let _ = settings; // one instance: nothing to divide, no Redis
        let mode = Mode::Local(LocalTier::new(clock.clone(), std::num::NonZeroU32::MIN));
        Limiter {
            shared: Arc::new(Shared {
                clock,
                metrics: Arc::default(),
                mode,
            }),
        }
    }

    /// [`Limiter::cluster`] on another clock. The clock drives the breaker's backoff and the
    /// fallback tier; cluster decisions always use Redis's clock.
    pub fn cluster_with_clock<T>(connection: T, settings: LimiterSettings, clock: C) -> Self
    where
        T: ConnectionLike + Clone + Send + Sync + 'static,
    {
        let mode = Mode::Cluster {
            redis: ClusterTier::new(connection, settings.redis_timeout),
            breaker: Breaker::new(settings.breaker.clone()),
            fallback: LocalTier::new(clock.clone(), settings.instances),
        };
        Limiter {
            shared: Arc::new(Shared {
                clock,
                metrics: Arc::default(),
                mode,
            }),
        }
    }

    /// The counters of this limiter (shared by all clones).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Decides without I/O if the limiter is local; `None` for a cluster limiter.
    ///
    /// For benchmarks and callers that cannot await; [`CheckQuota::check`] covers both.
    pub fn check_local(&self, partner: &PartnerId, route: Route, limit: Limit) -> Option<Decision> {
        match &self.shared.mode {
            Mode::Local(local) => {
                let counted = local.check(partner, route, limit);
                Some(
                    self.shared
                        .finish(counted_decision(counted, Tier::Local, route, limit)),
                )
            }
            Mode::Cluster { .. } => None,
        }
    }
}

impl<C> CheckQuota for Limiter<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    fn check(
        &self,
        partner: &PartnerId,
        route: Route,
        limit: Limit,
        outage: OutagePolicy,
    ) -> CheckFuture {
        let shared = &self.shared;
        let breaker = match &shared.mode {
            Mode::Local(local) => {
                let counted = local.check(partner, route, limit);
                return CheckFuture::ready(shared.finish(counted_decision(
                    counted,
                    Tier::Local,
                    route,
                    limit,
                )));
            }
            Mode::Cluster { breaker, .. } => breaker,
        };
        let probe = match breaker.admit(shared.clock.now(), &shared.metrics) {
            Admit::Call => false,
            Admit::Probe => true,
            // Open: Redis is not called at all, so a dead Redis costs nothing here.
            Admit::Skip(next_probe) => {
                let decision = shared.outage(partner, route, limit, outage, Some(next_probe));
                return CheckFuture::ready(shared.finish(decision));
            }
        };
        // Boxed: this decision awaits one Redis round trip (bounded by the timeout).
        let shared = Arc::clone(shared);
        let partner = partner.clone();
        // Made before the future so that dropping it unpolled also releases the probe.
        let guard = ProbeGuard {
            shared: probe.then(|| Arc::clone(&shared)),
        };
        CheckFuture::pending(async move {
            let decision = shared.cluster(&partner, route, limit, outage).await;
            guard.disarm();
            shared.finish(decision)
        })
    }
}

impl<C: Clock> Clone for Limiter<C> {
    fn clone(&self) -> Self {
        Limiter {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: Clock> fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.shared.mode {
            Mode::Local(_) => "local",
            Mode::Cluster { .. } => "cluster",
        };
        f.debug_struct("Limiter")
            .field("mode", &mode)
            .finish_non_exhaustive()
    }
}

// === impl Shared ===

impl<C> Shared<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    /// One Redis decision; on failure, the breaker hears of it and the outage policy decides.
    async fn cluster(
        &self,
        partner: &PartnerId,
        route: Route,
        limit: Limit,
        outage: OutagePolicy,
    ) -> Decision {
        let Mode::Cluster { redis, breaker, .. } = &self.mode else {
            return self.outage(partner, route, limit, outage, None);
        };
        self.metrics.redis_call();
        match redis.check(partner, route, limit).await {
            Ok(counted) => {
                breaker.success(&self.metrics);
                counted_decision(counted, Tier::Cluster, route, limit)
            }
            Err(error) => {
                let failure = match error {
                    ClusterError::Timeout { .. } => {
                        self.metrics.redis_timeout();
                        Failure::Timeout
                    }
                    ClusterError::Redis(_) | ClusterError::Reply { .. } => {
                        self.metrics.redis_error();
                        Failure::Error
                    }
                };
                breaker.failure(self.clock.now(), failure, &error, &self.metrics);
                self.outage(partner, route, limit, outage, None)
            }
        }
    }

    /// The decision while Redis cannot be used. `next_probe` is when Redis will be tried again
    /// (for `Retry-After` of a fail-closed refusal), if known.
    fn outage(
        &self,
        partner: &PartnerId,
        route: Route,
        limit: Limit,
        policy: OutagePolicy,
        next_probe: Option<std::time::Duration>,
    ) -> Decision {
        match (policy, &self.mode) {
            (OutagePolicy::Local, Mode::Cluster { fallback, .. }) => counted_decision(
                fallback.check(partner, route, limit),
                Tier::Fallback,
                route,
                limit,
            ),
            (OutagePolicy::Local, Mode::Local(local)) => counted_decision(
                local.check(partner, route, limit),
                Tier::Local,
                route,
                limit,
            ),
            (OutagePolicy::FailOpen, _) => {
                Decision::uncounted(Outcome::Allow, Tier::FailOpen, route, limit)
            }
            (OutagePolicy::FailClosed, _) => Decision {
                retry_after: Some(next_probe.unwrap_or_default()),
                ..Decision::uncounted(Outcome::Deny, Tier::FailClosed, route, limit)
            },
        }
    }

    fn finish(&self, decision: Decision) -> Decision {
        self.metrics.record(&decision);
        decision
    }
}

fn counted_decision(counted: Counted, tier: Tier, route: Route, limit: Limit) -> Decision {
    Decision {
        outcome: counted.outcome,
        tier,
        policy: route.name(),
        limit,
        remaining: Some(counted.remaining),
        reset_after: Some(counted.reset_after),
        retry_after: counted.retry_after,
    }
}

/// Reopens the breaker for the next probe if a probe's future is dropped before Redis answered
/// (the request was cancelled), so the breaker never stays half-open forever.
struct ProbeGuard<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    shared: Option<Arc<Shared<C>>>,
}

impl<C> ProbeGuard<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    fn disarm(mut self) {
        self.shared = None;
    }
}

impl<C> Drop for ProbeGuard<C>
where
    C: Clock + Clone + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take()
            && let Mode::Cluster { breaker, .. } = &shared.mode
        {
            breaker.abandon_probe(shared.clock.now(), &shared.metrics);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn the_local_tier_is_exact_under_concurrent_hammering() {
        // 8 threads hammer one key after every step of the fake clock: each step's credit is
        // taken (far more attempts than credit), so the total is exactly burst + rate * t
        // (less one where the rounded-up emission interval has not quite elapsed).
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::local_with_clock(LimiterSettings::default(), clock.clone());
        let (p, other) = (
            PartnerId::parse("bank-a").unwrap(),
            PartnerId::parse("bank-b").unwrap(),
        );
        let limit = Limit::new(nz(30), nz(10));
        let mut admitted = 0u64;
        for step in 0..50u64 {
            admitted += std::thread::scope(|scope| {
                let workers: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            (0..20)
                                .filter(|_| {
                                    limiter
                                        .check_local(&p, Route::Products, limit)
                                        .unwrap()
                                        .is_allowed()
                                })
                                .count() as u64
                        })
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().unwrap()).sum::<u64>()
            });
            let exact = 10 + step * 45 * 30 / 1000;
            assert!(
                admitted == exact || admitted + 1 == exact,
                "step {step}: {admitted} vs {exact}"
            );
            clock.advance(Duration::from_millis(45));
        }
        // Another partner was never touched by all that.
        let first = limiter.check_local(&other, Route::Products, limit).unwrap();
        assert_eq!(first.remaining, Some(9));
        let m = limiter.metrics().snapshot();
        assert_eq!(m.decisions(Tier::Local, Outcome::Allow), admitted + 1);
        assert_eq!(m.decisions(Tier::Local, Outcome::Deny), 50 * 160 - admitted);
    }

    #[tokio::test]
    async fn a_probe_dropped_unpolled_lets_the_next_decision_probe() {
        // Nothing listens on this port: every call fails at once.
        let settings = LimiterSettings {
            breaker: crate::BreakerSettings {
                failures_to_open: nz(1),
                ..Default::default()
            },
            ..LimiterSettings::default()
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let connection =
            crate::redis_connection(&format!("redis://127.0.0.1:{port}/"), &settings).unwrap();
        let clock = FakeRelativeClock::default();
        let limiter = Limiter::cluster_with_clock(connection, settings, clock.clone());
        let p = PartnerId::parse("bank-a").unwrap();
        let limit = Limit::new(nz(1), nz(1));
        let first = limiter
            .check(&p, Route::Products, limit, OutagePolicy::FailOpen)
            .await;
        assert_eq!(first.tier, Tier::FailOpen);
        assert_eq!(limiter.metrics().breaker_state(), crate::BreakerState::Open);

        clock.advance(std::time::Duration::from_secs(10));
        let probe = limiter.check(&p, Route::Products, limit, OutagePolicy::FailOpen);
        assert_eq!(
            limiter.metrics().breaker_state(),
            crate::BreakerState::HalfOpen
        );
        drop(probe);
        assert_eq!(limiter.metrics().breaker_state(), crate::BreakerState::Open);
        let next = limiter.check(&p, Route::Products, limit, OutagePolicy::FailOpen);
        assert!(next.into_ready().is_err(), "the next decision probes Redis");
    }

    #[tokio::test]
    async fn a_local_limiter_answers_every_policy_locally_and_at_once() {
        let limiter =
            Limiter::local_with_clock(LimiterSettings::default(), FakeRelativeClock::default());
        let p = PartnerId::parse("bank-a").unwrap();
        let limit = Limit::new(nz(1), nz(1));
        for outage in [
            OutagePolicy::FailOpen,
            OutagePolicy::FailClosed,
            OutagePolicy::Local,
        ] {
            let d = limiter
                .check(&p, Route::Consent, limit, outage)
                .into_ready()
                .unwrap();
            assert_eq!(d.tier, Tier::Local, "{outage:?}");
        }
        assert_eq!(
            limiter.metrics().breaker_state(),
            crate::BreakerState::Closed
        );
        assert!(limiter.check_local(&p, Route::Consent, limit).is_some());
    }
}
