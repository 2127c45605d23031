//! The cluster tier against a real `redis-server`: exactness across instances, the outage
//! policy with Redis killed and restarted, limit changes, NOSCRIPT, TTLs, and the layer.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use governor::clock::FakeRelativeClock;
use http::{Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt, service_fn};

use gateway_core::{PartnerContext, PartnerId, Route, RouteMatch};
use gateway_ratelimit::headers::{RATELIMIT, RATELIMIT_POLICY};
use gateway_ratelimit::{
    BreakerSettings, BreakerState, CheckQuota, Limit, Limiter, LimiterSettings, OutagePolicy,
    Outcome, RateLimitLayer, Tier, cluster_key, redis_connection,
};
use gateway_testutil::RedisServer;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn partner(id: &str) -> PartnerId {
    PartnerId::parse(id).unwrap()
}

fn settings(timeout: Duration) -> LimiterSettings {
    LimiterSettings {
        redis_timeout: timeout,
        ..LimiterSettings::default()
    }
}

async fn admin(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The Redis server's clock in microseconds: the same timeline the script uses.
async fn server_time(connection: &mut redis::aio::MultiplexedConnection) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(connection).await.unwrap();
    secs * 1_000_000 + micros
}

/// Polls `condition` every few milliseconds until it holds or `within` has passed.
async fn eventually(within: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_sharing_redis_admit_exactly_rate_times_time_plus_burst() {
    const RATE: u64 = 50;
    const BURST: u64 = 50;
    let redis = RedisServer::start();
    let limit = Limit::new(nz(RATE as u32), nz(BURST as u32));
    // A generous timeout: this test measures the algorithm, not the outage policy, and a busy
    // machine must not turn a slow answer into a fallback decision.
    let settings = settings(Duration::from_secs(2));
    let instances: Vec<Limiter> = (0..3)
        .map(|_| {
            Limiter::cluster(
                redis_connection(&redis.url(), &settings).unwrap(),
                settings.clone(),
            )
        })
        .collect();
    let mut clock = admin(&redis).await;
    let (hammered, other) = (partner("bank-a"), partner("bank-b"));

    let outer_start = server_time(&mut clock).await;
    let stop = Arc::new(AtomicBool::new(false));
    let (admitted, decided) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let limiter = instances[i % 3].clone();
            let (stop, admitted, decided, p) = (
                stop.clone(),
                admitted.clone(),
                decided.clone(),
                hammered.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let d = limiter
                        .check(&p, Route::Products, limit, OutagePolicy::FailClosed)
                        .await;
                    assert_eq!(d.tier, Tier::Cluster);
                    if d.is_allowed() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    decided.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    assert!(
        eventually(Duration::from_secs(5), async || decided
            .load(Ordering::Relaxed)
            > 0)
        .await
    );
    let inner_start = server_time(&mut clock).await;

    // Another partner, in the middle of the storm, gets its whole burst.
    let first = instances[0]
        .check(&other, Route::Products, limit, OutagePolicy::FailClosed)
        .await;
    assert_eq!(
        (first.outcome, first.remaining),
        (Outcome::Allow, Some(BURST as u32 - 1))
    );
    for _ in 1..BURST {
        let d = instances[1]
            .check(&other, Route::Products, limit, OutagePolicy::FailClosed)
            .await;
        assert_eq!(d.outcome, Outcome::Allow);
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let inner_end = server_time(&mut clock).await;
    // Keep hammering past `inner_end` so every unit earned before it is taken.
    let seen = decided.load(Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), async || decided
            .load(Ordering::Relaxed)
            > seen + 150)
        .await
    );
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let outer_end = server_time(&mut clock).await;

    let admitted = admitted.load(Ordering::Relaxed);
    let upper = BURST + RATE * (outer_end - outer_start) / 1_000_000;
    let lower = BURST + RATE * (inner_end - inner_start) / 1_000_000 - 1;
    let decided = decided.load(Ordering::Relaxed);
    println!(
        "admitted {admitted} of {decided} decisions; bounds [{lower}, {upper}]; {:.3} s of server time",
        (outer_end - outer_start) as f64 / 1e6
    );
    assert!(admitted <= upper, "admitted {admitted} > {upper}");
    assert!(admitted >= lower, "admitted {admitted} < {lower}");
    for limiter in &instances {
        let m = limiter.metrics().snapshot();
        assert_eq!((m.redis_errors, m.redis_timeouts), (0, 0));
        assert_eq!(m.breaker_state, BreakerState::Closed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_costs_at_most_the_timeout_and_each_policy_applies() {
    let mut redis = RedisServer::start();
    let timeout = Duration::from_millis(20);
    let clock = FakeRelativeClock::default();
    let settings = LimiterSettings {
        instances: nz(2),
        redis_timeout: timeout,
        breaker: BreakerSettings {
            failures_to_open: nz(3),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        },
    };
    let limiter = Limiter::cluster_with_clock(
        redis_connection(&redis.url(), &settings).unwrap(),
        settings.clone(),
        clock.clone(),
    );
    let limit = Limit::new(nz(1), nz(4));
    let p = partner("bank-a");
    let d = limiter
        .check(&p, Route::Products, limit, OutagePolicy::Local)
        .await;
    assert_eq!((d.tier, d.remaining), (Tier::Cluster, Some(3)));

    // Background load across the kill: every decision is timed.
    let stop = Arc::new(AtomicBool::new(false));
    let slowest = Arc::new(AtomicU64::new(0));
    let decided = Arc::new(AtomicU64::new(0));
    let load: Vec<_> = (0..4)
        .map(|i| {
            let (limiter, stop, slowest, decided) = (
                limiter.clone(),
                stop.clone(),
                slowest.clone(),
                decided.clone(),
            );
            let p = partner(&format!("load-{i}"));
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    limiter
                        .check(&p, Route::Products, limit, OutagePolicy::Local)
                        .await;
                    slowest.fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    decided.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    assert!(
        eventually(Duration::from_secs(5), async || decided
            .load(Ordering::Relaxed)
            > 100)
        .await
    );
    redis.kill();
    let opened = eventually(Duration::from_secs(5), async || {
        limiter.metrics().breaker_state() == BreakerState::Open
    })
    .await;
    assert!(opened, "the breaker opens once Redis is gone");
    let seen = decided.load(Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(5), async || decided
            .load(Ordering::Relaxed)
            > seen + 500)
        .await
    );
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let slowest = Duration::from_micros(slowest.load(Ordering::Relaxed));
    println!("slowest decision across the kill: {slowest:?}");
    // The margin covers scheduling on two busy cores; a dead Redis that were waited on would
    // cost connection retries (hundreds of ms) or forever.
    assert!(
        slowest <= timeout + Duration::from_millis(80),
        "slowest decision took {slowest:?}"
    );

    // While open, Redis is not called and each route class gets its policy, without I/O.
    let calls = limiter.metrics().snapshot().redis_calls;
    let now = |p: &PartnerId, route, outage| {
        let check = limiter.check(p, route, limit, outage);
        check
            .into_ready()
            .expect("an open breaker decides without I/O")
    };
    let open = now(&p, Route::Products, OutagePolicy::FailOpen);
    assert_eq!(
        (open.outcome, open.tier, open.remaining),
        (Outcome::Allow, Tier::FailOpen, None)
    );
    let closed = now(&p, Route::CustomerTags, OutagePolicy::FailClosed);
    assert_eq!(
        (closed.outcome, closed.tier),
        (Outcome::Deny, Tier::FailClosed)
    );
    assert!(closed.retry_after.is_some());
    // Fallback: this instance's share, burst 4 / 2 instances = 2, on a fresh key.
    let fallback: Vec<_> = (0..3)
        .map(|_| now(&partner("bank-c"), Route::Products, OutagePolicy::Local))
        .map(|d| (d.tier, d.outcome, d.remaining))
        .collect();
    assert_eq!(
        fallback,
        [
            (Tier::Fallback, Outcome::Allow, Some(1)),
            (Tier::Fallback, Outcome::Allow, Some(0)),
            (Tier::Fallback, Outcome::Deny, Some(0)),
        ]
    );
    assert_eq!(
        limiter.metrics().snapshot().redis_calls,
        calls,
        "Redis is not called while open"
    );

    // Redis comes back: after the backoff a probe finds it and the breaker closes.
    redis.restart();
    let closed_again = eventually(Duration::from_secs(10), async || {
        clock.advance(Duration::from_secs(2));
        let d = limiter
            .check(&p, Route::Products, limit, OutagePolicy::FailClosed)
            .await;
        d.tier == Tier::Cluster
    })
    .await;
    assert!(closed_again, "the breaker closes after Redis restarts");
    assert_eq!(limiter.metrics().breaker_state(), BreakerState::Closed);

    // Exact again, on the shared timeline: a fresh key gets exactly its burst.
    let fresh = partner("bank-d");
    let started = Instant::now();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let d = limiter
            .check(&fresh, Route::Products, limit, OutagePolicy::FailClosed)
            .await;
        assert_eq!(d.tier, Tier::Cluster);
        seen.push((d.outcome, d.remaining));
    }
    // One unit per second: compare exactly unless a unit was earned meanwhile.
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!(
            seen,
            [
                (Outcome::Allow, Some(3)),
                (Outcome::Allow, Some(2)),
                (Outcome::Allow, Some(1)),
                (Outcome::Allow, Some(0)),
                (Outcome::Deny, Some(0)),
            ]
        );
    }
    let m = limiter.metrics().snapshot();
    assert!(m.breaker_opened >= 1 && m.breaker_closed >= 1);
    assert!(m.redis_errors + m.redis_timeouts >= 1);
    assert!(m.decisions(Tier::Fallback, Outcome::Allow) > 0);
    assert_eq!(m.decisions(Tier::FailOpen, Outcome::Allow), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_costs_one_timeout_then_is_not_called_until_it_answers() {
    let redis = RedisServer::start_with(&["--enable-debug-command", "local"]);
    let timeout = Duration::from_millis(20);
    let clock = FakeRelativeClock::default();
    let settings = settings(timeout);
    let limiter = Limiter::cluster_with_clock(
        redis_connection(&redis.url(), &settings).unwrap(),
        settings,
        clock.clone(),
    );
    let limit = Limit::new(nz(100), nz(100));
    let p = partner("bank-a");
    let d = limiter
        .check(&p, Route::Products, limit, OutagePolicy::FailOpen)
        .await;
    assert_eq!(d.tier, Tier::Cluster);

    // Redis stalls for a second (a long command, a fork, a failover...).
    // A connection that waits as long as the stall lasts (the default gives up after 500 ms).
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut admin = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();
    let stall = tokio::spawn(async move {
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg("1")
            .query_async(&mut admin)
            .await
            .unwrap();
    });
    let mut slowest = Duration::ZERO;
    let timed_out = eventually(Duration::from_millis(800), async || {
        let started = Instant::now();
        let d = limiter
            .check(&p, Route::Products, limit, OutagePolicy::FailOpen)
            .await;
        slowest = slowest.max(started.elapsed());
        d.tier == Tier::FailOpen
    })
    .await;
    assert!(timed_out, "a stalled Redis turns into the outage policy");
    assert!(
        slowest <= timeout + Duration::from_millis(80),
        "slowest decision took {slowest:?}"
    );
    let m = limiter.metrics().snapshot();
    assert_eq!((m.redis_timeouts, m.breaker_state), (1, BreakerState::Open));
    let d = limiter.check(&p, Route::Products, limit, OutagePolicy::FailOpen);
    assert_eq!(
        d.into_ready().unwrap().tier,
        Tier::FailOpen,
        "not called while open"
    );
    assert_eq!(limiter.metrics().snapshot().redis_calls, m.redis_calls);

    stall.await.unwrap();
    clock.advance(Duration::from_secs(1));
    let d = limiter
        .check(&p, Route::Products, limit, OutagePolicy::FailOpen)
        .await;
    assert_eq!(
        d.tier,
        Tier::Cluster,
        "the probe finds Redis answering again"
    );
    assert_eq!(limiter.metrics().breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn a_gateway_started_while_redis_is_down_follows_the_outage_policy() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.kill();
    let settings = settings(Duration::from_millis(20));
    let limiter = Limiter::cluster(redis_connection(&url, &settings).unwrap(), settings);
    let limit = Limit::new(nz(5), nz(5));
    let started = Instant::now();
    let d = limiter
        .check(
            &partner("bank-a"),
            Route::Products,
            limit,
            OutagePolicy::FailOpen,
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((d.outcome, d.tier), (Outcome::Allow, Tier::FailOpen));
    assert_eq!(limiter.metrics().snapshot().redis_calls, 1);
}

#[tokio::test]
async fn a_changed_limit_adapts_that_key_and_leaves_others_alone() {
    let redis = RedisServer::start();
    let settings = settings(Duration::from_secs(1));
    let limiter = Limiter::cluster(redis_connection(&redis.url(), &settings).unwrap(), settings);
    let (a, b) = (partner("bank-a"), partner("bank-b"));
    let old = Limit::new(nz(1), nz(3));
    let new = Limit::new(nz(1), nz(5));
    let check =
        |p: &PartnerId, limit| limiter.check(p, Route::Products, limit, OutagePolicy::FailClosed);

    let started = Instant::now();
    let mut seen = Vec::new();
    for (p, limit) in [
        (&a, old),
        (&a, old),
        (&b, old),
        (&a, new),
        (&b, old),
        (&a, new),
        (&a, new),
    ] {
        let d = check(p, limit).await;
        assert_eq!(d.tier, Tier::Cluster);
        seen.push((d.outcome, d.remaining));
    }
    // The rate is one per second: only compare exactly when no unit was earned meanwhile.
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!(
            seen,
            [
                (Outcome::Allow, Some(2)),
                (Outcome::Allow, Some(1)),
                (Outcome::Allow, Some(2)),
                // Two spent under the old limit still count under the new one.
                (Outcome::Allow, Some(2)),
                (Outcome::Allow, Some(1)),
                (Outcome::Allow, Some(1)),
                (Outcome::Allow, Some(0)),
            ]
        );
    }
}

#[tokio::test]
async fn a_flushed_script_cache_is_reloaded_and_keys_expire_when_full() {
    let redis = RedisServer::start();
    let settings = settings(Duration::from_secs(1));
    let limiter = Limiter::cluster(redis_connection(&redis.url(), &settings).unwrap(), settings);
    let limit = Limit::new(nz(10), nz(5));
    let p = partner("bank-a");
    let mut admin = admin(&redis).await;

    let d = limiter
        .check(&p, Route::Consent, limit, OutagePolicy::FailClosed)
        .await;
    assert_eq!((d.tier, d.remaining), (Tier::Cluster, Some(4)));
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut admin)
        .await
        .unwrap();
    let d = limiter
        .check(&p, Route::Consent, limit, OutagePolicy::FailClosed)
        .await;
    assert_eq!(
        d.tier,
        Tier::Cluster,
        "NOSCRIPT reloads the script instead of failing"
    );
    assert!(d.remaining <= Some(3));

    // The key lives exactly as long as the bucket needs to be full again (2 × 100 ms here).
    let key = cluster_key(&p, Route::Consent);
    assert_eq!(key, "{pgw:rl:bank-a}:consent");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!((1..=200).contains(&ttl), "PTTL {ttl}");
    let reset = d.reset_after.unwrap();
    assert!(
        reset <= Duration::from_millis(200) && reset > Duration::from_millis(100),
        "{reset:?}"
    );
    let stored: u64 = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(
        stored > server_time(&mut admin).await,
        "the state is a future arrival time"
    );
}

#[tokio::test]
async fn refusals_from_redis_carry_retry_after_and_write_nothing() {
    let redis = RedisServer::start();
    let settings = settings(Duration::from_secs(1));
    let limiter = Limiter::cluster(redis_connection(&redis.url(), &settings).unwrap(), settings);
    let limit = Limit::new(nz(1), nz(1));
    let p = partner("bank-a");
    let mut admin = admin(&redis).await;
    let key = cluster_key(&p, Route::Products);

    assert!(
        limiter
            .check(&p, Route::Products, limit, OutagePolicy::FailClosed)
            .await
            .is_allowed()
    );
    let stored: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut admin)
        .await
        .unwrap();
    let refused = limiter
        .check(&p, Route::Products, limit, OutagePolicy::FailClosed)
        .await;
    assert_eq!(
        (refused.outcome, refused.tier, refused.remaining),
        (Outcome::Deny, Tier::Cluster, Some(0))
    );
    let retry = refused.retry_after.unwrap();
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(1),
        "{retry:?}"
    );
    assert_eq!(refused.retry_after_secs(), 1);
    let after: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(stored, after, "a refusal does not change the state");
}

#[tokio::test]
async fn the_layer_over_a_cluster_limiter_adds_the_fields_of_redis_decisions() {
    let redis = RedisServer::start();
    let settings = settings(Duration::from_secs(1));
    let limiter = Limiter::cluster(redis_connection(&redis.url(), &settings).unwrap(), settings);
    let limit = Limit::new(nz(1), nz(2));
    let lookup = move |_: &PartnerId, _: Route| Some((limit, OutagePolicy::FailClosed));
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter.clone(), lookup))
        .service(service_fn(|_req: Request<()>| async {
            Ok::<_, std::convert::Infallible>(Response::new(Bytes::from_static(b"{}")))
        }));
    let request = || {
        let mut req = Request::new(());
        req.extensions_mut().insert(PartnerContext {
            partner: partner("bank-a"),
        });
        req.extensions_mut().insert(RouteMatch {
            route: Route::CampaignStats,
            param: None,
        });
        req
    };
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = service.clone().oneshot(request()).await.unwrap();
        assert_eq!(
            response.headers()[RATELIMIT_POLICY],
            "\"campaign_stats\";q=1;w=1;pgw-burst=2"
        );
        assert!(response.headers().contains_key(RATELIMIT));
        statuses.push(response.status());
    }
    assert_eq!(statuses[..2], [StatusCode::OK, StatusCode::OK]);
    let m = limiter.metrics().snapshot();
    assert_eq!(
        m.decisions(Tier::Cluster, Outcome::Allow) + m.decisions(Tier::Cluster, Outcome::Deny),
        3
    );
}
