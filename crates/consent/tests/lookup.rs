//! Grants, lookups and revocations through real stores: the embedded redb store in a temp dir,
//! and a real `redis-server` shared by several instances.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_consent::{
    CacheSettings, ConsentError, ConsentRecord, ConsentService, ConsentState, ConsentView,
    GrantError, GrantRequest, LookupConsent, PartnerPolicy, RefKey, RevokeOutcome,
};
use gateway_core::time::{Clock, ManualClock, UnixTime};
use gateway_core::{ConsentId, CustomerId, CustomerRef, FieldCatalogue, FieldSpec, MaskRule};
use gateway_core::{PartnerId, Tier};
use gateway_store::{ConsentStore, Store, StoreConfig};
use gateway_testutil::RedisServer;

const START: UnixTime = UnixTime(1_800_000_000); // 2027-01-15T08:00:00Z
const JUNE_2027: &str = "2027-06-30T00:00:00Z";

// === fixtures ===

fn catalogue() -> FieldCatalogue {
    use MaskRule::*;
    use Tier::*;
    let spec = |tier, mask| FieldSpec { tier, mask };
    FieldCatalogue::new(
        [
            ("name", spec(Public, None)),
            ("risk_level", spec(Public, None)),
            ("mobile", spec(Sensitive, Some(Mobile))),
            ("net_assets", spec(Sensitive, Some(AmountBucket))),
            ("holdings", spec(Sensitive, Some(AmountBucket))),
            ("home_address", spec(Secret, None)),
            ("trade_password_hash", spec(Never, None)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    )
}

fn partner(id: &str, purpose: &str) -> PartnerPolicy {
    PartnerPolicy {
        id: PartnerId::parse(id).unwrap(),
        ceiling: [
            "name",
            "risk_level",
            "mobile",
            "net_assets",
            "holdings",
            "home_address",
        ]
        .map(String::from)
        .into(),
        purposes: BTreeSet::from([purpose.to_owned()]),
        active: true,
    }
}

fn bank() -> PartnerPolicy {
    partner("demo-bank", "wealth_advice")
}

fn fund() -> PartnerPolicy {
    partner("demo-fund", "fund_distribution")
}

fn grant_request(customer: &str, partner: &PartnerPolicy, expires_at: &str) -> GrantRequest {
    serde_json::from_value(serde_json::json!({
        "customer_id": customer,
        "partner_id": partner.id.as_str(),
        "purpose": partner.purposes.first().unwrap(),
        "fields": {"risk_level": "plain", "mobile": "masked", "home_address": "plain"},
        "expires_at": expires_at,
    }))
    .unwrap()
}

fn ref_key() -> RefKey {
    RefKey::new(b"test secret for pairwise refs, 32+ bytes long").unwrap()
}

/// A fixed partner-facing answer, for comparing.
fn consent_id(found: Result<Option<Arc<ConsentRecord>>, ConsentError>) -> Option<ConsentId> {
    found.unwrap().map(|c| c.consent_id.clone())
}

async fn embedded(dir: &tempfile::TempDir, settings: CacheSettings) -> ConsentService {
    let store = Store::open(StoreConfig::Embedded {
        path: dir.path().join("state.redb"),
    })
    .await
    .unwrap();
    ConsentService::new(store, ref_key(), settings)
}

async fn redis_store(server: &RedisServer, prefix: &str) -> Store {
    Store::open(StoreConfig::Redis {
        urls: vec![server.url()],
        cluster: false,
        timeout: Duration::from_millis(250),
        key_prefix: prefix.to_owned(),
    })
    .await
    .unwrap()
}

/// Polls `condition` every few milliseconds until it holds, failing after `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every change taken so far has been delivered to `instance`'s subscribers, so
/// that an answer cached afterwards is dropped only by a later change.
async fn settle(instance: &ConsentService) {
    let store = instance.store();
    let target = store.current_epoch().await.unwrap();
    eventually(Duration::from_secs(2), "change delivery", || async {
        store.delivered_epoch().await.unwrap() >= target
    })
    .await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// === one instance, embedded store ===

#[tokio::test]
async fn grant_lookup_revoke_lookup_on_one_instance() {
    let dir = tempfile::tempdir().unwrap();
    let consents = embedded(&dir, CacheSettings::default()).await;
    let (bank, cat) = (bank(), catalogue());

    let record = consents
        .grant(
            &grant_request("C000001", &bank, JUNE_2027),
            &cat,
            Some(&bank),
            START,
        )
        .await
        .unwrap();
    let customer = CustomerId::parse("C000001").unwrap();
    assert_eq!(
        record.customer_ref,
        ref_key().customer_ref(&customer, &bank.id)
    );
    assert!(record.consent_id.as_str().starts_with("cns_"));
    let view = serde_json::to_value(ConsentView::new(&record, START)).unwrap();
    assert_eq!(view["status"], "active");
    assert_eq!(view["expires_at"], JUNE_2027);
    assert!(view.get("customer_id").is_none());

    // Twice: the second answer comes from the cache.
    for _ in 0..2 {
        assert_eq!(
            consent_id(
                consents
                    .active_consent(&bank, &record.customer_ref, START)
                    .await
            ),
            Some(record.consent_id.clone())
        );
    }
    assert_eq!(consents.cached_answers(), 1);

    let outcome = consents.revoke(&record.consent_id, START).await.unwrap();
    assert!(matches!(outcome, RevokeOutcome::Revoked(ref r) if r.consent_id == record.consent_id));
    assert_eq!(
        consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, START)
                .await
        ),
        None
    );

    // Revoking again or revoking an unknown id changes nothing.
    assert!(matches!(
        consents.revoke(&record.consent_id, START).await.unwrap(),
        RevokeOutcome::AlreadyRevoked(_)
    ));
    assert_eq!(
        consents
            .revoke(&ConsentId::parse("cns_unknown").unwrap(), START)
            .await
            .unwrap(),
        RevokeOutcome::NotFound
    );
    let listed = consents.consents_of_customer(&customer).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(ConsentState::of(&listed[0], START), ConsentState::Revoked);
    let view = serde_json::to_value(ConsentView::new(&listed[0], START)).unwrap();
    assert_eq!(view["status"], "revoked");
    assert_eq!(view["revoked_at"], "2027-01-15T08:00:00Z");
}

#[tokio::test]
async fn a_duplicate_active_grant_names_the_existing_consent_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let consents = embedded(&dir, CacheSettings::default()).await;
    let (bank, cat) = (bank(), catalogue());
    let request = grant_request("C000002", &bank, JUNE_2027);
    let first = consents
        .grant(&request, &cat, Some(&bank), START)
        .await
        .unwrap();
    match consents.grant(&request, &cat, Some(&bank), START).await {
        Err(e @ GrantError::Exists { .. }) => {
            assert_eq!(e.problem_type(), gateway_core::ProblemType::ConsentExists);
            let GrantError::Exists { consent_id } = e else {
                unreachable!()
            };
            assert_eq!(consent_id, first.consent_id);
        }
        other => panic!("expected Exists, got {other:?}"),
    }
    let customer = CustomerId::parse("C000002").unwrap();
    assert_eq!(
        consents
            .consents_of_customer(&customer)
            .await
            .unwrap()
            .len(),
        1
    );

    // A rejected grant stores nothing either.
    let mut bad = request.clone();
    bad.fields.insert(
        "trade_password_hash".into(),
        gateway_store::Disclosure::Plain,
    );
    assert!(matches!(
        consents.grant(&bad, &cat, Some(&bank), START).await,
        Err(GrantError::Rejected(_))
    ));
    assert_eq!(
        consents
            .consents_of_customer(&customer)
            .await
            .unwrap()
            .len(),
        1
    );

    // Once revoked, the customer may grant again.
    consents.revoke(&first.consent_id, START).await.unwrap();
    let second = consents
        .grant(&request, &cat, Some(&bank), START)
        .await
        .unwrap();
    assert_ne!(second.consent_id, first.consent_id);
    assert_eq!(second.customer_ref, first.customer_ref);
    assert_eq!(
        consent_id(
            consents
                .active_consent(&bank, &second.customer_ref, START)
                .await
        ),
        Some(second.consent_id)
    );
}

#[tokio::test]
async fn an_expired_consent_is_not_active_even_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let consents = embedded(&dir, CacheSettings::default()).await;
    let clock = ManualClock::new(START);
    let (bank, cat) = (bank(), catalogue());
    // Expires 100 s after START.
    let record = consents
        .grant(
            &grant_request("C000003", &bank, "2027-01-15T08:01:40Z"),
            &cat,
            Some(&bank),
            clock.now(),
        )
        .await
        .unwrap();
    assert!(
        consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, clock.now())
                .await
        )
        .is_some()
    );
    clock.advance(99);
    assert!(
        consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, clock.now())
                .await
        )
        .is_some()
    );
    clock.advance(1);
    assert_eq!(
        consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, clock.now())
                .await
        ),
        None
    );
    let listed = consents
        .consents_of_customer(&record.customer_id)
        .await
        .unwrap();
    assert_eq!(
        ConsentState::of(&listed[0], clock.now()),
        ConsentState::Expired
    );

    // An expired grant no longer blocks a new one.
    let renewed = consents
        .grant(
            &grant_request("C000003", &bank, JUNE_2027),
            &cat,
            Some(&bank),
            clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(
        consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, clock.now())
                .await
        ),
        Some(renewed.consent_id)
    );
}

#[tokio::test]
async fn a_ref_means_nothing_to_another_partner() {
    let dir = tempfile::tempdir().unwrap();
    let consents = embedded(&dir, CacheSettings::default()).await;
    let (bank, fund, cat) = (bank(), fund(), catalogue());
    let record = consents
        .grant(
            &grant_request("C000004", &bank, JUNE_2027),
            &cat,
            Some(&bank),
            START,
        )
        .await
        .unwrap();
    // The bank's ref presented by the fund house.
    assert_eq!(
        consent_id(
            consents
                .active_consent(&fund, &record.customer_ref, START)
                .await
        ),
        None
    );
    // The fund house's own ref for the same customer: no consent for it.
    let fund_ref = consents.customer_ref(&record.customer_id, &fund.id);
    assert_ne!(fund_ref, record.customer_ref);
    assert_eq!(
        consent_id(consents.active_consent(&fund, &fund_ref, START).await),
        None
    );
    // A well-formed ref nobody was issued.
    let unknown = CustomerRef::parse(&"x".repeat(43)).unwrap();
    assert_eq!(
        consent_id(consents.active_consent(&bank, &unknown, START).await),
        None
    );
    // The bank still sees its consent.
    assert!(
        consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, START)
                .await
        )
        .is_some()
    );
    // GET /v1/consents/{id}: only the bank's.
    assert!(
        consents
            .partner_consent(&bank.id, &record.consent_id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        consents
            .partner_consent(&fund.id, &record.consent_id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn purposes_and_suspension_apply_at_once_to_cached_answers() {
    let dir = tempfile::tempdir().unwrap();
    let consents = embedded(&dir, CacheSettings::default()).await;
    let (mut bank, cat) = (bank(), catalogue());
    let record = consents
        .grant(
            &grant_request("C000005", &bank, JUNE_2027),
            &cat,
            Some(&bank),
            START,
        )
        .await
        .unwrap();
    assert!(
        consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, START)
                .await
        )
        .is_some()
    );
    // A reload drops the purpose from the partner's file: the cached record no longer qualifies.
    bank.purposes = BTreeSet::from(["something_else".to_owned()]);
    assert_eq!(
        consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, START)
                .await
        ),
        None
    );
    bank.purposes.insert("wealth_advice".to_owned());
    assert!(
        consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, START)
                .await
        )
        .is_some()
    );
    bank.active = false;
    assert_eq!(
        consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, START)
                .await
        ),
        None
    );
    // A suspended partner cannot be granted anything either.
    assert!(matches!(
        consents
            .grant(
                &grant_request("C000006", &bank, JUNE_2027),
                &cat,
                Some(&bank),
                START
            )
            .await,
        Err(GrantError::Rejected(_))
    ));
}

#[tokio::test]
async fn instances_sharing_an_embedded_store_see_revocations_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = embedded(&dir, CacheSettings::default()).await;
    let b = ConsentService::new(a.store().clone(), ref_key(), CacheSettings::default());
    let (bank, cat) = (bank(), catalogue());
    let record = a
        .grant(
            &grant_request("C000007", &bank, JUNE_2027),
            &cat,
            Some(&bank),
            START,
        )
        .await
        .unwrap();
    assert!(consent_id(b.active_consent(&bank, &record.customer_ref, START).await).is_some());
    a.revoke(&record.consent_id, START).await.unwrap();
    // The embedded store broadcasts before `revoke` returns; B drains before answering.
    assert_eq!(
        consent_id(b.active_consent(&bank, &record.customer_ref, START).await),
        None
    );
}

#[tokio::test]
async fn closures_implement_the_lookup_strategy() {
    let lookup =
        |_: &PartnerPolicy, _: &CustomerRef, _: UnixTime| async { Ok::<_, ConsentError>(None) };
    fn takes(_: &impl LookupConsent) {}
    takes(&lookup);
    let found = LookupConsent::active_consent(
        &lookup,
        &bank(),
        &CustomerRef::parse(&"a".repeat(43)).unwrap(),
        START,
    )
    .await
    .unwrap();
    assert!(found.is_none());
}

// === Redis ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_lookup_revoke_lookup_through_redis() {
    let server = RedisServer::start();
    let consents = ConsentService::new(
        redis_store(&server, "one:").await,
        ref_key(),
        CacheSettings::default(),
    );
    let (bank, cat) = (bank(), catalogue());
    let record = consents
        .grant(
            &grant_request("C000010", &bank, JUNE_2027),
            &cat,
            Some(&bank),
            START,
        )
        .await
        .unwrap();
    assert_eq!(
        consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, START)
                .await
        ),
        Some(record.consent_id.clone())
    );
    consents.revoke(&record.consent_id, START).await.unwrap();
    // Pub/sub has not necessarily delivered the change yet: the local revoke dropped the key.
    assert_eq!(
        consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, START)
                .await
        ),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_reach_three_instances_sharing_redis() {
    const ROUNDS: usize = 200;
    let server = RedisServer::start();
    // A long staleness bound: only push invalidation can make an instance answer None in time.
    let settings = CacheSettings {
        staleness_bound: Duration::from_secs(30),
        ..CacheSettings::default()
    };
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(ConsentService::new(
            redis_store(&server, "three:").await,
            ref_key(),
            settings,
        ));
    }
    let (bank, cat) = (bank(), catalogue());
    let mut samples = Vec::with_capacity(ROUNDS * 2);
    for round in 0..ROUNDS {
        let origin = round % 3;
        let customer = format!("C{:06}", 100 + round);
        let record = instances[origin]
            .grant(
                &grant_request(&customer, &bank, JUNE_2027),
                &cat,
                Some(&bank),
                START,
            )
            .await
            .unwrap();
        // Every instance has applied the grant's own notification and caches a positive answer,
        // so an instance can only answer None once the revocation's notification arrives.
        for instance in &instances {
            settle(instance).await;
            assert!(
                consent_id(
                    instance
                        .active_consent(&bank, &record.customer_ref, START)
                        .await
                )
                .is_some()
            );
        }
        instances[origin]
            .revoke(&record.consent_id, START)
            .await
            .unwrap();
        let acknowledged = Instant::now();
        assert_eq!(
            consent_id(
                instances[origin]
                    .active_consent(&bank, &record.customer_ref, START)
                    .await
            ),
            None,
            "the revoking instance answered from a stale cache"
        );
        let mut pending: Vec<usize> = (0..3).filter(|i| *i != origin).collect();
        while !pending.is_empty() {
            assert!(
                acknowledged.elapsed() < Duration::from_secs(2),
                "revocation not propagated within 2 s"
            );
            let mut still = Vec::new();
            for i in pending {
                match consent_id(
                    instances[i]
                        .active_consent(&bank, &record.customer_ref, START)
                        .await,
                ) {
                    None => samples.push(acknowledged.elapsed()),
                    Some(_) => still.push(i),
                }
            }
            pending = still;
            tokio::task::yield_now().await;
        }
    }
    samples.sort();
    let (p50, p99, max) = (
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[samples.len() - 1],
    );
    eprintln!(
        "revocation propagation over {} samples ({ROUNDS} revocations x 2 other instances): \
         p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        samples.len(),
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6,
        max.as_secs_f64() * 1e6,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_change_message_is_caught_by_the_staleness_bound() {
    let server = RedisServer::start();
    let bound = Duration::from_millis(300);
    let consents = ConsentService::new(
        redis_store(&server, "lost:").await,
        ref_key(),
        CacheSettings {
            staleness_bound: bound,
            ..CacheSettings::default()
        },
    );
    let (bank, cat) = (bank(), catalogue());
    let record = consents
        .grant(
            &grant_request("C000020", &bank, JUNE_2027),
            &cat,
            Some(&bank),
            START,
        )
        .await
        .unwrap();
    settle(&consents).await;
    assert!(
        consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, START)
                .await
        )
        .is_some()
    );

    // Revoke behind the store's back, as a change whose message is lost would look: the record
    // is marked revoked and the epoch taken, but nothing is published.
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let revoked_at = Instant::now();
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg("lost:{c:C000020}:revoked")
        .arg(record.consent_id.as_str())
        .arg(START.0)
        .ignore()
        .cmd("INCR")
        .arg("lost:{g}:epoch")
        .ignore()
        .query_async(&mut raw)
        .await
        .unwrap();

    // Until the bound the cached positive may be served; after it, never. (The store's own
    // subscriber notices the lost epoch only after its grace of 1 s.)
    let mut served_cached = 0;
    loop {
        let asked = Instant::now();
        match consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, START)
                .await,
        ) {
            Some(_) => {
                assert!(
                    asked < revoked_at + bound,
                    "a revoked consent was served {:?} after the revocation",
                    asked - revoked_at
                );
                served_cached += 1;
            }
            None => break,
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(5),
            "never re-checked"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The cache really was in play: the first answers came from it.
    assert!(served_cached > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_fails_closed_after_the_staleness_bound_and_recovers() {
    // Persistence on, so the consent survives the restart.
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let bound = Duration::from_millis(500);
    let consents = ConsentService::new(
        redis_store(&server, "dead:").await,
        ref_key(),
        CacheSettings {
            staleness_bound: bound,
            ..CacheSettings::default()
        },
    );
    let (bank, cat) = (bank(), catalogue());
    let record = consents
        .grant(
            &grant_request("C000030", &bank, JUNE_2027),
            &cat,
            Some(&bank),
            START,
        )
        .await
        .unwrap();
    assert!(
        consent_id(
            consents
                .active_consent(&bank, &record.customer_ref, START)
                .await
        )
        .is_some()
    );

    let killed_at = Instant::now();
    server.kill();
    loop {
        let asked = Instant::now();
        match consents
            .active_consent(&bank, &record.customer_ref, START)
            .await
        {
            Ok(Some(_)) => assert!(
                asked < killed_at + bound,
                "a cached answer was served {:?} after the store went away",
                asked - killed_at
            ),
            Ok(None) => panic!("an unreachable store must not turn into 'no consent'"),
            Err(e @ ConsentError::Unavailable(_)) => {
                assert_eq!(
                    e.problem_type(),
                    gateway_core::ProblemType::ConsentUnavailable
                );
                break;
            }
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(5),
            "never failed closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Still unavailable, and nothing can be granted or revoked meanwhile.
    assert!(matches!(
        consents
            .active_consent(&bank, &record.customer_ref, START)
            .await,
        Err(ConsentError::Unavailable(_))
    ));
    assert!(matches!(
        consents.revoke(&record.consent_id, START).await,
        Err(ConsentError::Unavailable(_))
    ));
    assert!(matches!(
        consents
            .grant(
                &grant_request("C000031", &bank, JUNE_2027),
                &cat,
                Some(&bank),
                START
            )
            .await,
        Err(GrantError::Unavailable(_))
    ));

    server.restart();
    eventually(
        Duration::from_secs(10),
        "recovery after the restart",
        || async {
            matches!(
                consents
                    .active_consent(&bank, &record.customer_ref, START)
                    .await,
                Ok(Some(_))
            )
        },
    )
    .await;
    // The store is consistent again: the grant refused during the outage was not recorded.
    let c31 = CustomerId::parse("C000031").unwrap();
    assert!(
        consents
            .store()
            .consents_of_customer(&c31)
            .await
            .unwrap()
            .is_empty()
    );
}
