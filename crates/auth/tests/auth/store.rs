//! Revocation through the real state store: the embedded backend (one node) and Redis (a
//! cluster of gateways, each its own `Store::open` on one `redis-server`).

use std::time::{Duration, Instant};

use gateway_auth::{FORM_URLENCODED, Revocation, TokenError, TokenVerifier};
use gateway_core::ProblemType;
use gateway_store::{Store, StoreConfig};
use gateway_testutil::RedisServer;

use crate::common::*;

fn verifier(f: &Fixture, store: &Store) -> TokenVerifier<Store> {
    TokenVerifier::builder(f.issuer.clone(), store.clone())
        .notifications(store.subscribe())
        .build()
}

async fn revoke(verifier: &TokenVerifier<Store>, token: &str) {
    let form = format!("token={token}&client_id=demo-bank");
    let outcome = verifier
        .revoke_request(
            form.as_bytes(),
            Some(FORM_URLENCODED),
            &peer(1),
            Some(&registration("demo-bank")),
            NOW,
        )
        .await
        .unwrap();
    assert!(matches!(outcome, Revocation::Revoked { .. }), "{outcome:?}");
}

#[tokio::test]
async fn embedded_store_revocation_reaches_every_verifier_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::Embedded {
        path: dir.path().join("state.redb"),
    })
    .await
    .unwrap();
    let f = Fixture::new();
    let (a, b) = (verifier(&f, &store), verifier(&f, &store));
    let token = f.token("demo-bank", 1, NOW);
    let bank = partner("demo-bank");
    a.verify(&token, &cert(1), &bank, NOW).await.unwrap();
    b.verify(&token, &cert(1), &bank, NOW).await.unwrap();
    assert!(matches!(
        b.verify_cached(&token, &cert(1), &bank, NOW),
        Some(Ok(_))
    ));

    revoke(&a, &token).await;
    // In-process delivery: the very next check on the other verifier refuses, from its cache.
    assert_eq!(
        b.verify_cached(&token, &cert(1), &bank, NOW),
        Some(Err(TokenError::Revoked))
    );
    assert_eq!(
        a.verify(&token, &cert(1), &bank, NOW).await,
        Err(TokenError::Revoked)
    );
    // A verifier that never saw the token reads the revocation from the store.
    let c = TokenVerifier::builder(f.issuer.clone(), store.clone()).build();
    assert_eq!(
        c.verify(&token, &cert(1), &bank, NOW).await,
        Err(TokenError::Revoked)
    );
}

async fn redis_store(server: &RedisServer) -> Store {
    Store::open(StoreConfig::Redis {
        urls: vec![server.url()],
        cluster: false,
        timeout: Duration::from_secs(2),
        key_prefix: "auth-test".into(),
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn redis_revocation_on_one_instance_is_enforced_by_another() {
    let server = RedisServer::start();
    let (store_a, store_b) = (redis_store(&server).await, redis_store(&server).await);
    let f = Fixture::new();
    let (a, b) = (verifier(&f, &store_a), verifier(&f, &store_b));
    let token = f.token("demo-bank", 1, NOW);
    let bank = partner("demo-bank");
    b.verify(&token, &cert(1), &bank, NOW).await.unwrap();

    let started = Instant::now();
    revoke(&a, &token).await;
    let revoked_at = Instant::now();
    // Instance A refuses at once; instance B as soon as the pub/sub notification lands.
    assert_eq!(
        a.verify(&token, &cert(1), &bank, NOW).await,
        Err(TokenError::Revoked)
    );
    let deadline = revoked_at + Duration::from_secs(5);
    loop {
        match b.verify(&token, &cert(1), &bank, NOW).await {
            Err(TokenError::Revoked) => break,
            Ok(_) => assert!(
                Instant::now() < deadline,
                "instance B never learned of the revocation"
            ),
            Err(other) => panic!("unexpected {other:?}"),
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let propagation = revoked_at.elapsed();
    eprintln!(
        "revocation: store write {:?}, propagation to instance B {:?}",
        revoked_at - started,
        propagation
    );
}

#[tokio::test]
async fn redis_outage_fails_closed() {
    let mut server = RedisServer::start();
    let store = Store::open(StoreConfig::Redis {
        urls: vec![server.url()],
        cluster: false,
        timeout: Duration::from_millis(250),
        key_prefix: "auth-test".into(),
    })
    .await
    .unwrap();
    let f = Fixture::new();
    let v = verifier(&f, &store);
    let bank = partner("demo-bank");
    let seen = f.token("demo-bank", 1, NOW);
    v.verify(&seen, &cert(1), &bank, NOW).await.unwrap();
    server.kill();
    let fresh = f.token("demo-bank", 1, NOW);
    let error = v.verify(&fresh, &cert(1), &bank, NOW).await.unwrap_err();
    assert!(
        matches!(error, TokenError::StoreUnavailable { .. }),
        "{error:?}"
    );
    assert_eq!(error.problem_type(), ProblemType::StoreUnavailable);
    // Once the subscription loss is noticed (a Resync), the cached token goes back to the
    // store too, and is refused while it is down.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match v.verify(&seen, &cert(1), &bank, NOW).await {
            Err(TokenError::StoreUnavailable { .. }) => break,
            Ok(_) => assert!(
                Instant::now() < deadline,
                "cached token kept passing during the outage"
            ),
            Err(other) => panic!("unexpected {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
