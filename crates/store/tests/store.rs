//! The store's behaviour on every backend: the suite in `common/suite.rs` runs against the
//! embedded store, a standalone `redis-server` and a 3-node Redis Cluster; then the things only
//! one backend has (durability across `kill -9`, Redis outages, cross-instance changes).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gateway_core::time::UnixTime;
use gateway_store::{
    Change, ConsentStore, EmbeddedStore, GrantOutcome, RedisOptions, RedisStore, RevocationStore,
    Store, StoreError,
};
use gateway_testutil::RedisServer;

use common::suite;
use common::*;

/// Generates one test per scenario and backend, and the cluster run of all scenarios.
macro_rules! behaviour {
    ($($scenario:ident),* $(,)?) => {
        mod embedded_backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let fixture = Fixture::embedded().await;
                    suite::$scenario(&fixture.stores(3).await).await;
                }
            )*
        }

        mod redis_backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    let fixture = Fixture::redis().await;
                    suite::$scenario(&fixture.stores(3).await).await;
                }
            )*
        }

        /// Every scenario, one after another, on one cluster (a cluster per scenario would
        /// cost seconds each); a key prefix per scenario keeps them apart.
        async fn run_every_scenario_on(cluster: &Cluster) {
            $(
                let fixture = Fixture::cluster(cluster, concat!(stringify!($scenario), ":"));
                let stores = fixture.stores(3).await;
                suite::$scenario(&stores).await;
                drop(stores);
            )*
        }
    };
}

behaviour!(
    grant_is_found_by_ref_for_its_partner_only,
    a_second_active_grant_for_the_same_purpose_is_refused,
    revoking_twice_answers_already_revoked_and_unknown_not_found,
    revoked_tokens_are_remembered,
    idempotency_keys_replay_or_refuse,
    concurrent_claims_of_one_key_make_exactly_one_new,
    the_daily_code_cap_holds_exactly_under_50_concurrent_issues,
    events_count_once_and_stop_at_the_cap,
    campaign_stats_are_exact_under_concurrent_events_from_three_instances,
    changes_reach_every_subscriber,
);

// === Redis Cluster ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_suite_passes_on_a_three_node_cluster() {
    let cluster = match tokio::task::spawn_blocking(Cluster::start).await.unwrap() {
        Ok(cluster) => cluster,
        Err(reason) => {
            eprintln!("SKIPPED the_whole_suite_passes_on_a_three_node_cluster: {reason}");
            return;
        }
    };
    run_every_scenario_on(&cluster).await;
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

// === Redis only ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_instance_reaches_a_subscriber_of_another() {
    let server = RedisServer::start();
    let a = open_redis(vec![server.url()], false, "x:", SUITE_TIMEOUT).await;
    let b = open_redis(vec![server.url()], false, "x:", SUITE_TIMEOUT).await;
    let other_prefix = open_redis(vec![server.url()], false, "y:", SUITE_TIMEOUT).await;
    wait_until(Duration::from_secs(10), || {
        b.is_subscribed() && other_prefix.is_subscribed()
    })
    .await;
    let mut on_b = b.subscribe();
    let mut elsewhere = other_prefix.subscribe();

    let record = grant_of("cons-x", "C000040", "demo-bank", "wealth-advice");
    let sent = Instant::now();
    assert_eq!(
        a.grant(record.clone()).await.unwrap(),
        GrantOutcome::Granted(record.clone())
    );
    let change = next_change(&mut on_b, Duration::from_secs(5)).await;
    eprintln!("grant on A seen by B after {:?}", sent.elapsed());
    assert_eq!(
        change,
        Change::Consent {
            partner_id: record.partner_id.clone(),
            customer_ref: record.customer_ref.clone(),
            consent_id: record.consent_id.clone(),
        }
    );
    // B reads what A wrote, and the epochs agree once delivered.
    assert_eq!(b.consent(&record.consent_id).await.unwrap(), Some(record));
    let epoch = a.current_epoch().await.unwrap();
    assert!(epoch >= 1);
    wait_until(
        Duration::from_secs(5),
        || matches!(futures_now(b.delivered_epoch()), Some(Ok(e)) if e == epoch),
    )
    .await;
    // Another prefix is another deployment: it hears nothing.
    assert!(matches!(elsewhere.try_recv(), Err(_) | Ok(Change::Resync)));
    drop((a, b, other_prefix));
}

/// Polls a future once (the embedded `delivered_epoch` is async, the Redis one is not).
fn futures_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    use std::task::{Context, Poll, Waker};
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_unavailable_within_the_timeout_and_recovers_with_resync() {
    let mut server = RedisServer::start();
    let timeout = gateway_store::DEFAULT_REDIS_TIMEOUT;
    let store = open_redis(vec![server.url()], false, "k:", timeout).await;
    let writer = open_redis(vec![server.url()], false, "k:", timeout).await;
    wait_until(Duration::from_secs(10), || store.is_subscribed()).await;
    store.ping().await.unwrap();
    let mut changes = store.subscribe();
    let record = grant_of("cons-k", "C000050", "demo-bank", "wealth-advice");

    server.kill();
    // Margin for 2 busy cores; the bound itself is the store's timeout.
    let bound = timeout + Duration::from_millis(250);
    for attempt in 0..2 {
        let started = Instant::now();
        let results = [
            store.ping().await,
            store.consent(&record.consent_id).await.map(|_| ()),
            store.is_token_revoked("jti").await.map(|_| ()),
            store.grant(record.clone()).await.map(|_| ()),
        ];
        for result in results {
            assert!(
                matches!(result, Err(StoreError::Unavailable(_))),
                "attempt {attempt}: {result:?}"
            );
        }
        assert!(
            started.elapsed() < bound * 4,
            "attempt {attempt} took {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < bound,
        "ping took {:?}",
        started.elapsed()
    );
    expect_resync(&mut changes, Duration::from_secs(5)).await;
    wait_until(Duration::from_secs(5), || !store.is_subscribed()).await;

    server.restart();
    let end = Instant::now() + Duration::from_secs(10);
    while store.ping().await.is_err() {
        assert!(Instant::now() < end, "store did not recover after restart");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The subscriber is back, said so with a Resync, and hears changes again.
    expect_resync(&mut changes, Duration::from_secs(10)).await;
    wait_until(Duration::from_secs(5), || store.is_subscribed()).await;
    assert_eq!(
        writer.grant(record.clone()).await.unwrap(),
        GrantOutcome::Granted(record.clone())
    );
    assert!(matches!(
        next_change(&mut changes, Duration::from_secs(5)).await,
        Change::Consent { .. }
    ));
    assert_eq!(
        store.consent(&record.consent_id).await.unwrap(),
        Some(record)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_taken_without_its_message_is_detected_and_resyncs() {
    let server = RedisServer::start();
    let options = RedisOptions {
        key_prefix: "e:".to_owned(),
        timeout: SUITE_TIMEOUT,
        epoch_check_interval: Duration::from_millis(50),
        resync_grace: Duration::from_millis(100),
        ..RedisOptions::new(vec![server.url()])
    };
    let store = RedisStore::connect(options).await.unwrap();
    wait_until(Duration::from_secs(10), || store.is_subscribed()).await;
    store
        .revoke_token("jti-e", UnixTime(UnixTime::now().0 + 60))
        .await
        .unwrap();
    let mut changes = store.subscribe();
    wait_until(Duration::from_secs(5), || store.delivered_epoch() == 1).await;

    // Another instance took epoch 2 and died before publishing (or its message was lost).
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let _: u64 = redis::cmd("INCR")
        .arg("e:{g}:epoch")
        .query_async(&mut raw)
        .await
        .unwrap();

    let started = Instant::now();
    expect_resync(&mut changes, Duration::from_secs(5)).await;
    eprintln!("missing epoch detected after {:?}", started.elapsed());
    // The Resync goes out first, so subscribers drop their caches before the store vouches
    // for the new epoch; the vouching follows within moments.
    wait_until(Duration::from_secs(5), || store.delivered_epoch() == 2).await;
    assert_eq!(store.current_epoch().await.unwrap(), 2);
}

// === embedded only ===

const CHILD_DB: &str = "GATEWAY_STORE_TEST_CHILD_DB";

/// The child half of the durability test: grants consents one after another and prints
/// `granted <n>` after each call returns, until killed.
fn grant_until_killed(path: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = EmbeddedStore::open(path).unwrap();
        for n in 0.. {
            let record = grant_of(
                &format!("cons-{n}"),
                &format!("C{n:06}"),
                "demo-bank",
                "wealth-advice",
            );
            assert!(matches!(
                store.grant(record).await,
                Ok(GrantOutcome::Granted(_))
            ));
            println!("granted {n}");
        }
    });
}

#[test]
fn a_grant_answered_before_kill_9_survives() {
    if let Ok(path) = std::env::var(CHILD_DB) {
        grant_until_killed(&path);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    // Re-run this very test in a child process, in the child role.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_grant_answered_before_kill_9_survives",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut answered = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while answered.len() < 5 {
        let line = lines.next().expect("child exited early").unwrap();
        if let Some(n) = line.strip_prefix("granted ") {
            answered.push(n.parse::<u32>().unwrap());
        }
    }
    // SIGKILL at once: the child is in the middle of its next grant.
    child.kill().unwrap();
    child.wait().unwrap();

    let store = EmbeddedStore::open(&path).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for n in answered {
            let id = gateway_core::ConsentId::parse(&format!("cons-{n}")).unwrap();
            let found = store.consent(&id).await.unwrap();
            assert!(
                found.is_some(),
                "consent {n} was answered but is gone after kill -9"
            );
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_epoch_counts_changes_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let store = Store::open(gateway_store::StoreConfig::Embedded { path: path.clone() })
            .await
            .unwrap();
        assert_eq!(store.backend_name(), "embedded");
        assert_eq!(store.current_epoch().await.unwrap(), 0);
        store
            .grant(grant_of("cons-p", "C000060", "demo-bank", "wealth-advice"))
            .await
            .unwrap();
        store
            .revoke_token("jti-p", UnixTime(UnixTime::now().0 + 60))
            .await
            .unwrap();
        // A refused grant changes nothing.
        store
            .grant(grant_of("cons-q", "C000060", "demo-bank", "wealth-advice"))
            .await
            .unwrap();
        assert_eq!(store.current_epoch().await.unwrap(), 2);
    }
    let store = Store::open(gateway_store::StoreConfig::Embedded { path })
        .await
        .unwrap();
    assert_eq!(store.current_epoch().await.unwrap(), 2);
    assert!(store.is_token_revoked("jti-p").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_prefix_with_a_brace_is_refused() {
    let result = Store::open(gateway_store::StoreConfig::Redis {
        urls: vec!["redis://127.0.0.1:1/".to_owned()],
        cluster: false,
        timeout: SUITE_TIMEOUT,
        key_prefix: "a{b}:".to_owned(),
    })
    .await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(reason)) if reason.contains("key prefix"))
    );
}

// === measurements (run by hand: `cargo test -p gateway-store --release -- --ignored --nocapture`) ===

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    eprintln!(
        "{name:<40} n={:<5} p50={:>9.1?} p99={:>9.1?} max={:>9.1?}",
        samples.len(),
        at(0.50),
        at(0.99),
        samples[samples.len() - 1]
    );
}

async fn time_each<F, Fut>(n: usize, mut op: F) -> Vec<Duration>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        op(i).await;
        samples.push(started.elapsed());
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn measure_operation_latencies() {
    use gateway_store::{IdempotencyStore, ReferralStore};
    let dir = tempfile::tempdir().unwrap();
    let embedded = Store::open(gateway_store::StoreConfig::Embedded {
        path: dir.path().join("m.redb"),
    })
    .await
    .unwrap();
    let server = RedisServer::start();
    let redis = open_redis(vec![server.url()], false, "m:", SUITE_TIMEOUT).await;
    for (name, store) in [("embedded", &embedded), ("redis", &redis)] {
        let n = 500;
        let grants = time_each(n, |i| {
            let record = grant_of(
                &format!("m-{i}"),
                &format!("M{i:06}"),
                "demo-bank",
                "wealth-advice",
            );
            async move {
                store.grant(record).await.unwrap();
            }
        })
        .await;
        percentiles(&format!("{name}: grant (write)"), grants);
        let reads = time_each(n, |i| {
            let record = grant_of(
                &format!("m-{i}"),
                &format!("M{i:06}"),
                "demo-bank",
                "wealth-advice",
            );
            async move {
                let found = store
                    .consents_by_ref(&record.partner_id, &record.customer_ref)
                    .await
                    .unwrap();
                assert_eq!(found.len(), 1);
            }
        })
        .await;
        percentiles(&format!("{name}: consents_by_ref (read)"), reads);
        let checks = time_each(n, |i| async move {
            store.is_token_revoked(&format!("jti-{i}")).await.unwrap();
        })
        .await;
        percentiles(&format!("{name}: is_token_revoked (read)"), checks);
        let claims = time_each(n, |i| async move {
            store
                .claim(&format!("k-{i}"), &[1; 32], NOW, 60)
                .await
                .unwrap();
        })
        .await;
        percentiles(&format!("{name}: idempotency claim (write)"), claims);
        store
            .issue_code(code_of("MEASURE1", "demo-bank", "spring-2027", NOW), 10)
            .await
            .unwrap();
        let events = time_each(n, |i| async move {
            let event = event_of(&format!("m-ev-{i}"), "MEASURE1", "funded", 1);
            store.record_event(event, u32::MAX).await.unwrap();
        })
        .await;
        percentiles(&format!("{name}: record_event (write)"), events);
    }
    let ping = time_each(1000, |_| async { redis.ping().await.unwrap() }).await;
    percentiles("redis: PING round trip", ping);
}
