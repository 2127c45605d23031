//! The local tier: one `governor` GCRA limiter per (partner, route) key.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use gateway_core::{PartnerId, Route};

use crate::{Limit, Outcome};

type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, StateInformationMiddleware>;

/// One partner's limiters, indexed by route (`Route as usize`, the order of `Route::ALL`).
type Routes<C> = [Option<Slot<C>>; Route::ALL.len()];

/// What the local tier decided, before it becomes a [`Decision`](crate::Decision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counted {
    pub(crate) outcome: Outcome,
    pub(crate) remaining: u32,
    pub(crate) reset_after: Duration,
    pub(crate) retry_after: Option<Duration>,
}

/// In-process GCRA limiters, created on first use of a key.
///
/// Each (partner, route) key has its own limiter with its own quota, so keys never disturb each
/// other. A key whose limit changed gets a new limiter (it starts full: see the crate docs,
/// "Limit changes"). The map only grows with the partners that send traffic.
pub(crate) struct LocalTier<C: Clock> {
    /// The time source of every limiter (a `FakeRelativeClock` in tests).
    clock: C,
    /// `1` for a single-node deployment; the instance count for the cluster fallback, which
    /// gives this instance its share of each limit.
    divisor: NonZeroU32,
    /// Every decision runs under the read lock (governor's limiters are lock-free, so readers
    /// never wait for each other); only the first use of a key or a limit change takes the
    /// write lock. Looked up by `&str`, so a decision clones nothing.
    partners: RwLock<HashMap<PartnerId, Box<Routes<C>>>>,
}

struct Slot<C: Clock> {
    /// The configured limit the limiter was built for: a different one replaces the slot.
    limit: Limit,
    /// The emission interval of this instance's share (for `reset_after`).
    emission: Duration,
    /// This instance's share of the burst.
    burst: NonZeroU32,
    limiter: Direct<C>,
}

impl<C> LocalTier<C>
where
    C: Clock + Clone,
{
    pub(crate) fn new(clock: C, divisor: NonZeroU32) -> Self {
        LocalTier {
            clock,
            divisor,
            partners: RwLock::new(HashMap::new()),
        }
    }

    /// Spends one request of the key's quota, or says when the next one is possible.
    pub(crate) fn check(&self, partner: &PartnerId, route: Route, limit: Limit) -> Counted {
        let index = route as usize;
        {
            // A poisoned lock only means another thread panicked between two map operations;
            // the map itself is always consistent, so keep using it.
            let partners = self.partners.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = partners
                .get(partner.as_str())
                .and_then(|routes| routes[index].as_ref())
                && slot.limit == limit
            {
                return self.spend(slot);
            }
        }
        let mut partners = self
            .partners
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let routes = partners
            .entry(partner.clone())
            .or_insert_with(|| Box::new(std::array::from_fn(|_| None)));
        // Another thread may have created it between the two locks.
        match &mut routes[index] {
            Some(slot) if slot.limit == limit => self.spend(slot),
            entry => self.spend(entry.insert(self.new_slot(limit))),
        }
    }

    fn spend(&self, slot: &Slot<C>) -> Counted {
        match slot.limiter.check() {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                // governor does not expose the stored arrival time; the full bucket is at most
                // one emission interval per missing request away (exact to one interval).
                let missing = slot.burst.get().saturating_sub(remaining);
                Counted {
                    outcome: Outcome::Allow,
                    remaining,
                    reset_after: slot.emission.saturating_mul(missing),
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(self.clock.now());
                // Refused at `retry_after` before the next conforming time: the bucket is full
                // again after the rest of the burst has drained as well.
                let rest = slot.emission.saturating_mul(slot.burst.get() - 1);
                Counted {
                    outcome: Outcome::Deny,
                    remaining: 0,
                    reset_after: retry_after.saturating_add(rest),
                    retry_after: Some(retry_after),
                }
            }
        }
    }

    fn new_slot(&self, limit: Limit) -> Slot<C> {
        let (emission, burst) = limit.share(self.divisor);
        // `emission` is at least one nanosecond (a rate is at most u32::MAX per second), so
        // `with_period` always returns a quota; the fallback keeps the same numbers anyway.
        let quota = Quota::with_period(emission)
            .unwrap_or_else(|| Quota::per_second(limit.rate_per_sec))
            .allow_burst(burst);
        let limiter = RateLimiter::direct_with_clock(quota, self.clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        Slot {
            limit,
            emission,
            burst,
            limiter,
        }
    }

    /// Number of keys with a limiter.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let partners = self.partners.read().unwrap_or_else(PoisonError::into_inner);
        partners
            .values()
            .map(|routes| routes.iter().flatten().count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap()
    }

    fn partner(id: &str) -> PartnerId {
        PartnerId::parse(id).unwrap()
    }

    #[test]
    fn admits_the_burst_then_one_request_per_emission_interval() {
        let clock = FakeRelativeClock::default();
        let tier = LocalTier::new(clock.clone(), NonZeroU32::MIN);
        let (p, limit) = (partner("demo-bank"), Limit::new(nz(10), nz(5)));
        let remaining: Vec<u32> = (0..5)
            .map(|_| tier.check(&p, Route::Products, limit).remaining)
            .collect();
        assert_eq!(remaining, [4, 3, 2, 1, 0]);
        let refused = tier.check(&p, Route::Products, limit);
        assert_eq!(refused.outcome, Outcome::Deny);
        assert_eq!(refused.retry_after, Some(Duration::from_millis(100)));
        assert_eq!(refused.reset_after, Duration::from_millis(500));

        clock.advance(Duration::from_millis(99));
        assert_eq!(
            tier.check(&p, Route::Products, limit).outcome,
            Outcome::Deny
        );
        clock.advance(Duration::from_millis(1));
        let admitted = tier.check(&p, Route::Products, limit);
        assert_eq!((admitted.outcome, admitted.remaining), (Outcome::Allow, 0));
        assert_eq!(
            tier.check(&p, Route::Products, limit).outcome,
            Outcome::Deny
        );
    }

    #[test]
    fn a_pause_earns_back_at_most_the_burst() {
        let clock = FakeRelativeClock::default();
        let tier = LocalTier::new(clock.clone(), NonZeroU32::MIN);
        let (p, limit) = (partner("demo-bank"), Limit::new(nz(10), nz(3)));
        while tier.check(&p, Route::Products, limit).outcome == Outcome::Allow {}
        clock.advance(Duration::from_secs(60));
        let admitted = (0..10)
            .filter(|_| tier.check(&p, Route::Products, limit).outcome == Outcome::Allow)
            .count();
        assert_eq!(admitted, 3);
    }

    #[test]
    fn admitted_requests_stay_within_rate_times_time_plus_burst() {
        // Hammer one key while the fake clock moves in uneven steps, some longer than
        // burst/rate (which forfeit credit): the total never exceeds burst + rate * t.
        let clock = FakeRelativeClock::default();
        let tier = LocalTier::new(clock.clone(), NonZeroU32::MIN);
        let (p, limit) = (partner("demo-bank"), Limit::new(nz(7), nz(4)));
        let mut admitted = 0u64;
        let mut elapsed_ms = 0u64;
        for step_ms in [0u64, 3, 140, 1, 999, 20, 7, 500, 143, 2000, 1, 1, 1, 3000] {
            clock.advance(Duration::from_millis(step_ms));
            elapsed_ms += step_ms;
            while tier.check(&p, Route::Products, limit).outcome == Outcome::Allow {
                admitted += 1;
            }
            let bound = 4 + elapsed_ms * 7 / 1000;
            assert!(
                admitted <= bound,
                "admitted {admitted} > {bound} after {elapsed_ms} ms"
            );
        }

        // Without pauses that forfeit credit the count is exact: burst + floor(rate * t),
        // less one where the rounded-up emission interval has not quite elapsed.
        let clock = FakeRelativeClock::default();
        let tier = LocalTier::new(clock.clone(), NonZeroU32::MIN);
        let mut admitted = 0u64;
        for step in 0..200u64 {
            while tier.check(&p, Route::Products, limit).outcome == Outcome::Allow {
                admitted += 1;
            }
            let exact = 4 + step * 37 * 7 / 1000;
            assert!(
                admitted == exact || admitted + 1 == exact,
                "{admitted} vs {exact}"
            );
            clock.advance(Duration::from_millis(37));
        }
    }

    #[test]
    fn routes_index_their_slot_array_in_declaration_order() {
        for (i, route) in Route::ALL.into_iter().enumerate() {
            assert_eq!(route as usize, i, "{route:?}");
        }
    }

    #[test]
    fn keys_are_independent() {
        let clock = FakeRelativeClock::default();
        let tier = LocalTier::new(clock, NonZeroU32::MIN);
        let limit = Limit::new(nz(1), nz(2));
        let (a, b) = (partner("bank-a"), partner("bank-b"));
        assert_eq!(tier.check(&a, Route::Products, limit).remaining, 1);
        assert_eq!(tier.check(&a, Route::Products, limit).remaining, 0);
        assert_eq!(
            tier.check(&a, Route::Products, limit).outcome,
            Outcome::Deny
        );
        assert_eq!(tier.check(&a, Route::Product, limit).remaining, 1);
        assert_eq!(tier.check(&b, Route::Products, limit).remaining, 1);
        assert_eq!(tier.len(), 3);
    }

    #[test]
    fn a_changed_limit_starts_that_key_afresh_and_leaves_others_alone() {
        let clock = FakeRelativeClock::default();
        let tier = LocalTier::new(clock, NonZeroU32::MIN);
        let old = Limit::new(nz(1), nz(3));
        let new = Limit::new(nz(1), nz(5));
        let (a, b) = (partner("bank-a"), partner("bank-b"));
        tier.check(&a, Route::Products, old);
        tier.check(&a, Route::Products, old);
        tier.check(&b, Route::Products, old);

        assert_eq!(tier.check(&a, Route::Products, new).remaining, 4);
        assert_eq!(tier.check(&b, Route::Products, old).remaining, 1);
        assert_eq!(tier.len(), 2);
    }

    #[test]
    fn the_fallback_share_divides_the_limit_by_the_instances() {
        let clock = FakeRelativeClock::default();
        let tier = LocalTier::new(clock.clone(), nz(3));
        let (p, limit) = (partner("demo-bank"), Limit::new(nz(30), nz(9)));
        let burst = (0..20)
            .filter(|_| tier.check(&p, Route::Products, limit).outcome == Outcome::Allow)
            .count();
        assert_eq!(burst, 3);
        // 30/s shared by 3 instances: 10/s here, one every 100 ms.
        clock.advance(Duration::from_millis(1000));
        let second = (0..20)
            .filter(|_| tier.check(&p, Route::Products, limit).outcome == Outcome::Allow)
            .count();
        assert_eq!(second, 3, "a pause refills at most this instance's burst");
        clock.advance(Duration::from_millis(100));
        assert_eq!(
            tier.check(&p, Route::Products, limit).outcome,
            Outcome::Allow
        );
        assert_eq!(
            tier.check(&p, Route::Products, limit).outcome,
            Outcome::Deny
        );
    }
}
