//! Per-partner, per-route rate limits for the partner gateway.
//!
//! This crate owns the decision "may this partner call this route now?" and everything a
//! partner sees of it: the `429` answer, `Retry-After`, and the IETF `RateLimit-Policy` /
//! `RateLimit` header fields. It does **not** own the limits themselves (they live in the
//! partner configuration; the integrator looks them up per request, so a hot reload applies to
//! the very next request) nor the protection of the listener (slowloris, connection caps, load
//! shedding: `gateway-http`).
//!
//! # Layout
//!
//! - [`Limiter`]: the decision API ([`CheckQuota`]). Two tiers:
//!   - the **local tier**, a `governor` GCRA limiter per (partner, route) key, for single-node
//!     deployments and as the fallback of the cluster tier;
//!   - the **cluster tier**, GCRA in Redis as one Lua script per decision (one round trip,
//!     Redis's own clock), exact across any number of gateway instances.
//! - The **outage policy** of the cluster tier: every Redis call has a short timeout (default
//!   20 ms) and a circuit breaker stops calling a dead Redis; meanwhile each decision follows the
//!   route class's [`OutagePolicy`].
//! - [`Decision`]: what was decided, by which [`Tier`], with the numbers the headers show.
//! - [`headers`]: rendering of `RateLimit-Policy`, `RateLimit` and `Retry-After`
//!   (draft-ietf-httpapi-ratelimit-headers-11), and the `rate-limited` problem.
//! - [`RateLimitLayer`]: the tower middleware that puts it on the request path.
//! - [`Metrics`]: decision counters by tier and outcome, Redis call counters, breaker state.
//!
//! # The algorithm
//!
//! Both tiers run the generic cell rate algorithm (GCRA) with the same parameters: a limit of
//! `rate_per_sec` requests per second with a `burst` admits at most `burst + rate·t` requests in
//! any interval of `t` seconds, and a client that pauses gets back at most `burst` requests of
//! credit. The state of a key is one timestamp (the "theoretical arrival time"), so a decision is
//! one read-modify-write: cheap in memory (`governor`, ~0.06 µs) and atomic in Redis (one
//! `EVALSHA`).
//!
//! # Limit changes (hot reload)
//!
//! The limit is an argument of every [`CheckQuota::check`] call, so a changed limit applies to
//! the next request. Keys are independent: a change for one (partner, route) never touches the
//! state of another.
//!
//! - **Cluster tier: adapts.** The key's stored timestamp is kept and read under the new limit.
//!   Raising the limit grants the extra capacity at once; lowering it may deny until the
//!   already-admitted requests are paid for at the new rate. No free burst is handed out.
//! - **Local tier: starts afresh.** `governor` keeps one quota per limiter, so a changed limit
//!   replaces that key's limiter with a new, full one: one extra burst at most, once per change
//!   of that key.
//!
//! # Ordering
//!
//! [`RateLimitLayer`] sits **after `RequireToken`** (limits are per partner, and only requests
//! with a valid token should spend a partner's quota) and **before `ConsentFilter`** and the
//! router (a refused request never costs a consent lookup or an upstream call). Layers outside it
//! (`Rescue`, `InteractionId`, `Audit`) see its `429` like any other response; see
//! [`middleware`] for the details.
#![warn(missing_docs)]

use std::num::NonZeroU32;
use std::time::Duration;

mod breaker;
mod cluster;
mod decision;
pub mod headers;
mod limiter;
mod local;
mod metrics;
pub mod middleware;

pub use breaker::BreakerState;
pub use cluster::{ClusterError, GCRA_SCRIPT, cluster_key, redis_connection};
pub use decision::{CheckFuture, CheckQuota, Decision, Outcome, Tier};
pub use limiter::Limiter;
pub use metrics::{Metrics, MetricsSnapshot};
pub use middleware::{LookupLimit, RateLimit, RateLimitLayer};

/// A GCRA limit: a sustained rate and a burst.
///
/// The integrator fills it from the partner configuration (`gateway_config::Limit` has the same
/// two fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limit {
    /// Requests per second, sustained.
    pub rate_per_sec: NonZeroU32,
    /// Requests allowed at once (the bucket size).
    pub burst: NonZeroU32,
}

impl Limit {
    /// A limit of `rate_per_sec` requests per second with a burst of `burst`.
    pub const fn new(rate_per_sec: NonZeroU32, burst: NonZeroU32) -> Limit {
        Limit {
            rate_per_sec,
            burst,
        }
    }

    /// This instance's share of the limit when `instances` gateways share it without
    /// coordination: the rate divided exactly (a longer emission interval) and the burst divided
    /// rounding down, but never below one request.
    pub(crate) fn share(self, instances: NonZeroU32) -> (Duration, NonZeroU32) {
        let emission = emission_interval(self.rate_per_sec, instances);
        let burst = NonZeroU32::new(self.burst.get() / instances.get()).unwrap_or(NonZeroU32::MIN);
        (emission, burst)
    }
}

/// The time one request "costs": `instances / rate` seconds, rounded up to the nanosecond so the
/// admitted rate never exceeds the configured one.
pub(crate) fn emission_interval(rate_per_sec: NonZeroU32, instances: NonZeroU32) -> Duration {
    let numerator = 1_000_000_000u64 * u64::from(instances.get());
    Duration::from_nanos(numerator.div_ceil(u64::from(rate_per_sec.get())))
}

/// What a route class does while the cluster limiter (Redis) is unreachable.
///
/// The integrator passes it per call: customer-data routes and the other routes each have their
/// own policy in the configuration (`rate_limits.customer_data_outage` / `default_outage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutagePolicy {
    /// Admit every request (decided by [`Tier::FailOpen`]).
    FailOpen,
    /// Refuse every request with `503` and `Retry-After` (decided by [`Tier::FailClosed`]).
    FailClosed,
    /// Decide locally with this instance's share of the limit: the quota divided by
    /// [`LimiterSettings::instances`] (decided by [`Tier::Fallback`]).
    Local,
}

/// How the limiter runs. The integrator fills it from `gateway_config::RateLimitSettings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterSettings {
    /// Gateway instances sharing one quota; the local fallback gives each instance
    /// `1 / instances` of every limit.
    pub instances: NonZeroU32,
    /// The longest one Redis decision may take before it counts as failed (default 20 ms).
    pub redis_timeout: Duration,
    /// When to stop calling Redis and when to try it again.
    pub breaker: BreakerSettings,
}

impl Default for LimiterSettings {
    fn default() -> Self {
        LimiterSettings {
            instances: NonZeroU32::MIN,
            redis_timeout: Duration::from_millis(20),
            breaker: BreakerSettings::default(),
        }
    }
}

/// The circuit breaker in front of Redis.
///
/// It opens after [`failures_to_open`](Self::failures_to_open) consecutive errors or after a
/// single timeout (a slow Redis costs every request the full timeout, so one is enough). While
/// open, no request calls Redis. After [`backoff`](Self::backoff) one request probes Redis; a
/// success closes the breaker, a failure doubles the backoff up to
/// [`max_backoff`](Self::max_backoff).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive errors (not timeouts) that open the breaker (default 3).
    pub failures_to_open: NonZeroU32,
    /// Time from opening to the first probe (default 250 ms).
    pub backoff: Duration,
    /// Upper bound of the doubled backoff after failed probes (default 5 s).
    pub max_backoff: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failures_to_open: NonZeroU32::new(3).unwrap_or(NonZeroU32::MIN),
            backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    #[test]
    fn emission_interval_rounds_up_so_the_rate_is_never_exceeded() {
        assert_eq!(emission_interval(nz(1), nz(1)), Duration::from_secs(1));
        assert_eq!(emission_interval(nz(100), nz(1)), Duration::from_millis(10));
        assert_eq!(
            emission_interval(nz(3), nz(1)),
            Duration::from_nanos(333_333_334)
        );
        assert_eq!(emission_interval(nz(10), nz(3)), Duration::from_millis(300));
    }

    #[test]
    fn an_instance_share_divides_rate_and_burst_but_keeps_one_request() {
        let limit = Limit::new(nz(30), nz(10));
        assert_eq!(
            limit.share(nz(1)),
            (Duration::from_nanos(33_333_334), nz(10))
        );
        assert_eq!(limit.share(nz(3)), (Duration::from_millis(100), nz(3)));
        assert_eq!(limit.share(nz(20)).1, nz(1));
    }
}
