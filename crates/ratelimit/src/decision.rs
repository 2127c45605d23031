//! The decision API: [`CheckQuota`], its [`Decision`] and the [`CheckFuture`] that carries it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use gateway_core::{PartnerId, Route};

use crate::{Limit, OutagePolicy};

/// Decides whether a partner may call a route now.
///
/// The limit and the outage policy are arguments of every call: the integrator looks them up in
/// the configuration in force, so a hot-reloaded limit applies at once. Implemented by
/// [`Limiter`](crate::Limiter); tests and other deployments may plug their own.
pub trait CheckQuota: Send + Sync + 'static {
    /// Spends one request of `partner`'s quota on `route` under `limit`, or refuses it.
    ///
    /// `outage` says what to do when the cluster tier cannot be reached; a purely local limiter
    /// ignores it. The returned future is ready at once when no I/O is needed.
    fn check(
        &self,
        partner: &PartnerId,
        route: Route,
        limit: Limit,
        outage: OutagePolicy,
    ) -> CheckFuture;
}

impl<Q: CheckQuota> CheckQuota for std::sync::Arc<Q> {
    fn check(
        &self,
        partner: &PartnerId,
        route: Route,
        limit: Limit,
        outage: OutagePolicy,
    ) -> CheckFuture {
        (**self).check(partner, route, limit, outage)
    }
}

/// Whether a request was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The request may proceed; one request of the quota was spent.
    Allow,
    /// The request is refused (`429`, or `503` for [`Tier::FailClosed`]); nothing was spent.
    Deny,
}

impl Outcome {
    /// The metric label: `admitted` or `limited`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "admitted",
            Outcome::Deny => "limited",
        }
    }
}

/// Which part of the limiter made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// The in-process limiter of a single-node deployment, with the full limit.
    Local,
    /// The shared limiter in Redis: exact across all instances.
    Cluster,
    /// Redis is unreachable and the route's policy is [`OutagePolicy::Local`]: this instance's
    /// share of the limit, counted in process.
    Fallback,
    /// Redis is unreachable and the route's policy is [`OutagePolicy::FailOpen`]: admitted
    /// without counting.
    FailOpen,
    /// Redis is unreachable and the route's policy is [`OutagePolicy::FailClosed`]: refused.
    FailClosed,
}

impl Tier {
    /// Every tier, in declaration order.
    pub const ALL: [Tier; 5] = [
        Tier::Local,
        Tier::Cluster,
        Tier::Fallback,
        Tier::FailOpen,
        Tier::FailClosed,
    ];

    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Local => "local",
            Tier::Cluster => "cluster",
            Tier::Fallback => "fallback",
            Tier::FailOpen => "fail_open",
            Tier::FailClosed => "fail_closed",
        }
    }

    /// Whether this tier counted the request, so the remaining quota is known.
    pub const fn counts(self) -> bool {
        matches!(self, Tier::Local | Tier::Cluster | Tier::Fallback)
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rate-limit decision and the numbers the response headers show.
///
/// The layer puts it into the request extensions (for inner layers and handlers) and into the
/// response extensions (for the audit and telemetry layers outside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Admitted or refused.
    pub outcome: Outcome,
    /// Who decided.
    pub tier: Tier,
    /// The policy's name: the route's stable name (`customer_tags`, `products`, ...), since
    /// every (partner, route) pair has its own quota.
    pub policy: &'static str,
    /// The limit in force, as configured (not this instance's share during a fallback).
    pub limit: Limit,
    /// Requests that may be sent right now, back to back, after this one. `None` when nothing
    /// was counted ([`Tier::FailOpen`], [`Tier::FailClosed`]).
    pub remaining: Option<u32>,
    /// Time until the quota is full again (`remaining` back at the burst). `None` when nothing
    /// was counted.
    pub reset_after: Option<Duration>,
    /// For a refusal: the time until a request can be admitted. `None` when admitted.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allow
    }

    /// `retry_after` in whole seconds for `Retry-After`: rounded up and at least 1, so a client
    /// that honours it is never early.
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after.unwrap_or(Duration::ZERO)).max(1)
    }

    pub(crate) fn uncounted(outcome: Outcome, tier: Tier, route: Route, limit: Limit) -> Decision {
        Decision {
            outcome,
            tier,
            policy: route.name(),
            limit,
            remaining: None,
            reset_after: None,
            retry_after: None,
        }
    }
}

/// Whole seconds, rounded up.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The future of one [`CheckQuota::check`] call.
///
/// Local decisions are ready at once ([`CheckFuture::into_ready`] takes them without polling, so
/// the layer needs no allocation for them); cluster decisions await one Redis round trip and are
/// boxed.
pub struct CheckFuture {
    state: CheckState,
}

enum CheckState {
    Ready(Option<Decision>),
    Pending(Pin<Box<dyn Future<Output = Decision> + Send + 'static>>),
}

impl CheckFuture {
    /// A decision made without waiting.
    pub fn ready(decision: Decision) -> CheckFuture {
        CheckFuture {
            state: CheckState::Ready(Some(decision)),
        }
    }

    /// A decision that needs I/O first.
    pub fn pending(future: impl Future<Output = Decision> + Send + 'static) -> CheckFuture {
        CheckFuture {
            state: CheckState::Pending(Box::pin(future)),
        }
    }

    /// The decision if it was made without waiting; otherwise the future itself, to be awaited.
    pub fn into_ready(self) -> Result<Decision, CheckFuture> {
        match self.state {
            CheckState::Ready(Some(decision)) => Ok(decision),
            state => Err(CheckFuture { state }),
        }
    }
}

impl Future for CheckFuture {
    type Output = Decision;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Decision> {
        // `CheckState` is `Unpin` (the pending future is boxed), so no projection is needed.
        let this = self.get_mut();
        match &mut this.state {
            CheckState::Ready(decision) => match decision.take() {
                Some(decision) => Poll::Ready(decision),
                None => panic!("CheckFuture polled after completion"),
            },
            CheckState::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for CheckFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            CheckState::Ready(decision) => {
                f.debug_tuple("CheckFuture::Ready").field(decision).finish()
            }
            CheckState::Pending(_) => f.write_str("CheckFuture::Pending"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_rounded_up_and_at_least_one_second() {
        let limit = Limit::new(std::num::NonZeroU32::MIN, std::num::NonZeroU32::MIN);
        let mut d = Decision::uncounted(Outcome::Deny, Tier::Local, Route::Products, limit);
        for (after, secs) in [
            (Duration::ZERO, 1),
            (Duration::from_millis(1), 1),
            (Duration::from_millis(1000), 1),
            (Duration::from_millis(1001), 2),
            (Duration::from_secs(7), 7),
        ] {
            d.retry_after = Some(after);
            assert_eq!(d.retry_after_secs(), secs, "{after:?}");
        }
    }

    #[test]
    fn ready_futures_are_taken_without_polling() {
        let limit = Limit::new(std::num::NonZeroU32::MIN, std::num::NonZeroU32::MIN);
        let d = Decision::uncounted(Outcome::Allow, Tier::FailOpen, Route::Products, limit);
        assert_eq!(CheckFuture::ready(d.clone()).into_ready().unwrap(), d);
        let pending = CheckFuture::pending(std::future::ready(d));
        assert!(pending.into_ready().is_err());
    }
}
