//! Rate limits over the real stack: headers on every response of a limited route, 429 with
//! Retry-After, and exact limits across gateway instances sharing one redis-server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gateway_tests::TestGateway;
use gateway_testutil::RedisServer;

/// demo-bank's products route limited to `rate`/s with `burst`.
fn with_products_limit(
    builder: gateway_tests::Builder,
    rate: u32,
    burst: u32,
) -> gateway_tests::Builder {
    builder.file(
        "partners/demo-bank.yaml",
        &std::fs::read_to_string(gateway_tests::repo_root().join("partner-config/partners/demo-bank.yaml"))
            .unwrap()
            .replace(
                "    customer_tags: { rate_per_sec: 100, burst: 200 }",
                &format!("    customer_tags: {{ rate_per_sec: 100, burst: 200 }}\n    products: {{ rate_per_sec: {rate}, burst: {burst} }}"),
            ),
    )
}

#[tokio::test]
async fn limited_routes_carry_ratelimit_headers_and_429_says_when_to_retry() {
    let gateway = with_products_limit(TestGateway::builder(), 1, 3)
        .start()
        .await;
    let mut client = gateway.client("demo-bank").await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let response = client.get("/v1/products?limit=1").await.unwrap();
        assert_eq!(response.status, 200);
        let policy = response.header("ratelimit-policy").unwrap();
        assert!(policy.starts_with("\"products\";q="), "{policy}");
        let header = response.header("ratelimit").unwrap().to_owned();
        let r: u32 = header
            .split(";r=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        remaining.push(r);
    }
    assert!(remaining.windows(2).all(|w| w[1] < w[0]), "{remaining:?}");
    assert_eq!(*remaining.last().unwrap(), 0);
    let refused = client.get("/v1/products?limit=1").await.unwrap();
    let problem = refused.assert_problem(429, "rate-limited");
    assert_eq!(problem["policy"], "products");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert!(refused.header("ratelimit").is_some());
    // Another partner, and another route of the same partner, are unaffected.
    let mut fund = gateway.client("demo-fund").await;
    assert_eq!(fund.get("/v1/products?limit=1").await.unwrap().status, 200);
    // Honouring Retry-After succeeds (1 request per second refills in time).
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(
        client.get("/v1/products?limit=1").await.unwrap().status,
        200
    );
}

/// Three gateways sharing one redis-server, 50 concurrent clients of one partner spread over
/// them: the admitted count is exact for the elapsed time (GCRA: R·t + B).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_exact_across_three_instances_sharing_redis() {
    let redis = RedisServer::start();
    let (rate, burst) = (20u32, 10u32);
    // A patient Redis timeout: with 50 TLS clients and 3 debug-build gateways on 2 busy cores,
    // a 20 ms decision timeout occasionally expires, opens the breaker and falls back to the
    // (deliberately approximate) local tier. This test is about the exact cluster tier, and
    // checks below that no decision fell back.
    let cluster = |builder: gateway_tests::Builder| {
        with_products_limit(
            builder
                .redis(&redis.url(), 3)
                .gateway_yaml("redis_timeout_ms: 20", "redis_timeout_ms: 1000"),
            rate,
            burst,
        )
    };
    let first = cluster(TestGateway::builder()).start().await;
    let mut gateways = vec![Arc::new(first)];
    for _ in 0..2 {
        let next = cluster(TestGateway::builder().peer_of(&gateways[0]))
            .start()
            .await;
        gateways.push(Arc::new(next));
    }
    // Warm up each instance's Redis connection (and script cache) with another partner.
    for gateway in &gateways {
        let mut fund = gateway.client("demo-fund").await;
        assert_eq!(fund.get("/v1/products?limit=1").await.unwrap().status, 200);
    }
    let mut clients = Vec::new();
    for i in 0..50 {
        clients.push(gateways[i % 3].client("demo-bank").await);
    }
    let Measured {
        admitted,
        limited,
        outer,
        inner,
    } = hammer(clients, Duration::from_millis(2500)).await;
    let (r, b) = (f64::from(rate), f64::from(burst));
    for gateway in &gateways {
        let snapshot = gateway.state.limiter.metrics().snapshot();
        let fallback: u64 = snapshot
            .iter_decisions()
            .filter(|(tier, _, _)| *tier != gateway_ratelimit::Tier::Cluster)
            .map(|(_, _, n)| n)
            .sum();
        assert_eq!(
            fallback, 0,
            "decisions outside the cluster tier: {snapshot:?}"
        );
    }
    assert!(limited > 0, "the limit was never reached");
    assert!(
        admitted <= r * outer + b,
        "admitted {admitted} > {r}·{outer:.3} + {b}"
    );
    assert!(
        admitted >= r * inner + b - 1.0,
        "admitted {admitted} < {r}·{inner:.3} + {b} - 1"
    );
    // Another partner still gets its own quota.
    let mut fund = gateways[1].client("demo-fund").await;
    assert_eq!(fund.get("/v1/products?limit=1").await.unwrap().status, 200);
}

/// What `hammer` saw.
struct Measured {
    admitted: f64,
    limited: u64,
    /// From just before the first request to just after the last answer.
    outer: f64,
    /// From the first admitted answer to the start of the last request.
    inner: f64,
}

/// Every client sends requests back to back for `window`; counts admitted and limited.
async fn hammer(clients: Vec<gateway_tests::PartnerClient>, window: Duration) -> Measured {
    let admitted = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut client in clients {
        let (admitted, limited) = (admitted.clone(), limited.clone());
        tasks.push(tokio::spawn(async move {
            let mut first_ok: Option<Instant> = None;
            let mut last_start = start;
            while start.elapsed() < window {
                last_start = Instant::now();
                let response = client.get("/v1/products?limit=1").await.unwrap();
                match response.status.as_u16() {
                    200 => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                        first_ok.get_or_insert_with(Instant::now);
                    }
                    429 => {
                        limited.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("unexpected status {other}: {:?}", response.body),
                }
            }
            (first_ok, last_start)
        }));
    }
    let mut first_admit = None::<Instant>;
    let mut last_start = start;
    for task in tasks {
        let (first, last) = task.await.unwrap();
        if let Some(first) = first {
            first_admit = Some(first_admit.map_or(first, |f| f.min(first)));
        }
        last_start = last_start.max(last);
    }
    let outer = start.elapsed().as_secs_f64();
    let inner = last_start
        .duration_since(first_admit.expect("something was admitted"))
        .as_secs_f64();
    Measured {
        admitted: admitted.load(Ordering::Relaxed) as f64,
        limited: limited.load(Ordering::Relaxed),
        outer,
        inner,
    }
}

/// The local tier on one instance: 20 concurrent clients, exact for the elapsed time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_tier_is_exact_on_one_instance() {
    let (rate, burst) = (20u32, 10u32);
    let gateway = with_products_limit(TestGateway::builder(), rate, burst)
        .start()
        .await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(gateway.client("demo-bank").await);
    }
    let Measured {
        admitted,
        limited,
        outer,
        inner,
    } = hammer(clients, Duration::from_millis(2000)).await;
    let (r, b) = (f64::from(rate), f64::from(burst));
    assert!(limited > 0, "the limit was never reached");
    assert!(
        admitted <= r * outer + b,
        "admitted {admitted} > {r}·{outer:.3} + {b}"
    );
    assert!(
        admitted >= r * inner + b - 1.0,
        "admitted {admitted} < {r}·{inner:.3} + {b} - 1"
    );
}
