//! Cost of a local decision and of rendering the rate-limit fields.
//!
//! `cargo bench -p gateway-ratelimit --bench gcra`. The per-request cost in the running gateway
//! belongs in the load-test results; these numbers compare against the governor row of
//! PERFORMANCE.md (0.06 µs per keyed decision).

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;

use gateway_core::{PartnerId, Route};
use gateway_ratelimit::{Decision, Limit, Limiter, LimiterSettings, Outcome, Tier, headers};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero literal")
}

fn decisions(c: &mut Criterion) {
    let limiter = Limiter::local(LimiterSettings::default());
    let partner = PartnerId::parse("demo-bank").expect("valid partner id");
    // A limit that always admits: the common path of a partner within its quota.
    let roomy = Limit::new(NonZeroU32::MAX, NonZeroU32::MAX);
    c.bench_function("local decision, admitted", |b| {
        b.iter(|| limiter.check_local(black_box(&partner), Route::Products, roomy))
    });

    let tight = Limit::new(nz(1), nz(1));
    limiter.check_local(&partner, Route::Consent, tight);
    c.bench_function("local decision, refused", |b| {
        b.iter(|| limiter.check_local(black_box(&partner), Route::Consent, tight))
    });

    // 100 partners × 11 routes: the map lookup with many keys.
    let partners: Vec<PartnerId> = (0..100)
        .map(|i| PartnerId::parse(&format!("partner-{i}")).expect("valid partner id"))
        .collect();
    let mut i = 0usize;
    c.bench_function("local decision, 1100 keys", |b| {
        b.iter(|| {
            i = i.wrapping_add(7);
            let partner = &partners[i % partners.len()];
            let route = Route::ALL[i % Route::ALL.len()];
            limiter.check_local(black_box(partner), route, roomy)
        })
    });
}

fn rendering(c: &mut Criterion) {
    let limit = Limit::new(nz(10), nz(20));
    let admitted = Decision {
        outcome: Outcome::Allow,
        tier: Tier::Cluster,
        policy: Route::CustomerTags.name(),
        limit,
        remaining: Some(17),
        reset_after: Some(Duration::from_millis(300)),
        retry_after: None,
    };
    let mut map = HeaderMap::new();
    c.bench_function("render RateLimit-Policy + RateLimit", |b| {
        b.iter(|| {
            map.clear();
            headers::apply(black_box(&admitted), &mut map);
        })
    });

    let refused = Decision {
        outcome: Outcome::Deny,
        remaining: Some(0),
        reset_after: Some(Duration::from_secs(2)),
        retry_after: Some(Duration::from_millis(100)),
        ..admitted
    };
    c.bench_function("render 429 problem response", |b| {
        b.iter(|| headers::rejection::<Bytes>(black_box(&refused), None))
    });
}

criterion_group!(benches, decisions, rendering);
criterion_main!(benches);
