//! Per-field consent end to end: grant → read → revoke → read, masking and tiers, ceilings,
//! second authorisation, pairwise refs, expiry, revocation mid-flight and across instances,
//! fail-closed when the store is gone, durability across kill -9, and bad input.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};

use gateway_core::time::{ManualClock, UnixTime};
use gateway_tests::TestGateway;
use gateway_testutil::RedisServer;

fn tags_path(customer_ref: &str) -> String {
    format!("/v1/customers/{customer_ref}/tags")
}

fn without_instance(mut doc: Value) -> Value {
    doc.as_object_mut().unwrap().remove("instance");
    doc
}

#[tokio::test]
async fn a_partner_sees_only_the_consented_fields_masked_as_consented() {
    let gateway = TestGateway::start().await;
    let fields = json!({"risk_level": "plain", "mobile": "masked", "net_assets": "masked", "home_address": "plain", "name": "plain"});
    let (consent_id, customer_ref) = gateway
        .grant("C000001", "demo-bank", "wealth_advice", fields, false)
        .await;
    let mut bank = gateway.client("demo-bank").await;
    let response = bank.get(&tags_path(&customer_ref)).await.unwrap();
    assert_eq!(response.status, 200, "{:?}", response.body);
    let doc = response.json();
    assert_eq!(doc["consent_id"], consent_id);
    assert_eq!(doc["customer_ref"], customer_ref);
    let upstream = gateway_sandbox::data::customer("C000001").unwrap();
    let upstream = serde_json::to_value(&upstream.tags).unwrap();
    let tags = doc["tags"].as_object().unwrap();
    assert_eq!(tags["risk_level"], upstream["risk_level"]);
    assert_eq!(tags["name"], upstream["name"]);
    let mobile = tags["mobile"].as_str().unwrap();
    let raw = upstream["mobile"].as_str().unwrap();
    assert_eq!(mobile, format!("{}****{}", &raw[..3], &raw[7..]));
    assert_ne!(
        tags["net_assets"], upstream["net_assets"],
        "amounts are bucketed"
    );
    assert!(tags["net_assets"].is_string());
    // Secret without a second authorisation, and everything not consented, is withheld.
    assert!(tags.get("home_address").is_none());
    let withheld = doc["withheld"].to_string();
    assert!(
        withheld.contains("home_address") && withheld.contains("second_authorisation_required"),
        "{withheld}"
    );
    for field in ["id_number", "trade_password_hash", "occupation"] {
        assert!(tags.get(field).is_none(), "{field} released");
    }
    // Nothing of the internal id reaches the partner.
    assert!(!String::from_utf8_lossy(&response.body).contains("C000001"));
}

#[tokio::test]
async fn secret_fields_need_a_second_authorisation() {
    let gateway = TestGateway::start().await;
    let (_, customer_ref) = gateway
        .grant(
            "C000003",
            "demo-bank",
            "wealth_advice",
            json!({"home_address": "plain"}),
            true,
        )
        .await;
    let mut bank = gateway.client("demo-bank").await;
    let doc = bank.get(&tags_path(&customer_ref)).await.unwrap().json();
    let upstream =
        serde_json::to_value(&gateway_sandbox::data::customer("C000003").unwrap().tags).unwrap();
    match upstream.get("home_address") {
        Some(address) => assert_eq!(&doc["tags"]["home_address"], address),
        None => assert!(doc["withheld"].to_string().contains("not_available")),
    }
}

#[tokio::test]
async fn grant_read_revoke_read_answers_the_same_404_as_an_unknown_ref() {
    let gateway = TestGateway::start().await;
    let (consent_id, customer_ref) = gateway
        .grant(
            "C000002",
            "demo-bank",
            "wealth_advice",
            json!({"risk_level": "plain"}),
            false,
        )
        .await;
    let mut bank = gateway.client("demo-bank").await;
    assert_eq!(
        bank.get(&tags_path(&customer_ref)).await.unwrap().status,
        200
    );
    let revoked = gateway
        .admin(
            Method::DELETE,
            &format!("/admin/v1/consents/{consent_id}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, 200);
    assert_eq!(revoked.json()["status"], "revoked");
    let after = bank.get(&tags_path(&customer_ref)).await.unwrap();
    let after = without_instance(after.assert_problem(404, "customer-not-found"));
    let unknown = bank.get(&tags_path(&"B".repeat(43))).await.unwrap();
    assert_eq!(
        without_instance(unknown.assert_problem(404, "customer-not-found")),
        after
    );
    let garbage = bank.get(&tags_path("not-a-ref")).await.unwrap();
    assert_eq!(
        without_instance(garbage.assert_problem(404, "customer-not-found")),
        after
    );
    // Revoking again, or an unknown consent.
    gateway
        .admin(
            Method::DELETE,
            &format!("/admin/v1/consents/{consent_id}"),
            None,
        )
        .await
        .assert_problem(409, "consent-already-revoked");
    gateway
        .admin(Method::DELETE, "/admin/v1/consents/cns_nope", None)
        .await
        .assert_problem(404, "consent-not-found");
    // The consent centre sees the history; the partner sees the status.
    let list = gateway
        .admin(Method::GET, "/admin/v1/customers/C000002/consents", None)
        .await
        .json();
    assert_eq!(list["consents"][0]["status"], "revoked");
    let status = bank
        .get(&format!("/v1/consents/{consent_id}"))
        .await
        .unwrap()
        .json();
    assert_eq!(status["status"], "revoked");
    assert!(status.get("customer_id").is_none());
}

#[tokio::test]
async fn a_ref_is_meaningless_to_another_partner() {
    let gateway = TestGateway::start().await;
    let (consent_id, bank_ref) = gateway
        .grant(
            "C000004",
            "demo-bank",
            "wealth_advice",
            json!({"risk_level": "plain"}),
            false,
        )
        .await;
    let (_, fund_ref) = gateway
        .grant(
            "C000004",
            "demo-fund",
            "fund_distribution",
            json!({"risk_level": "plain"}),
            false,
        )
        .await;
    assert_ne!(bank_ref, fund_ref, "refs are pairwise");
    let mut fund = gateway.client("demo-fund").await;
    fund.get(&tags_path(&bank_ref))
        .await
        .unwrap()
        .assert_problem(404, "customer-not-found");
    assert_eq!(fund.get(&tags_path(&fund_ref)).await.unwrap().status, 200);
    fund.get(&format!("/v1/consents/{consent_id}"))
        .await
        .unwrap()
        .assert_problem(404, "consent-not-found");
}

#[tokio::test]
async fn grants_break_no_rule_and_bad_bodies_change_nothing() {
    let gateway = TestGateway::start().await;
    let grant = |body: Value| async {
        gateway
            .admin(Method::POST, "/admin/v1/consents", Some(body))
            .await
    };
    let base = json!({"customer_id": "C000005", "partner_id": "demo-insurer", "purpose": "insurance_quote",
                      "fields": {"risk_level": "plain"}, "expires_at": "2030-01-01T00:00:00Z"});
    // Rules: ceiling, never-shared, unknown field, past expiry, foreign purpose — all at once.
    let mut bad = base.clone();
    bad["fields"] =
        json!({"holdings": "plain", "trade_password_hash": "plain", "shoe_size": "plain"});
    bad["expires_at"] = json!("2020-01-01T00:00:00Z");
    bad["purpose"] = json!("wealth_advice");
    let problem = grant(bad).await.assert_problem(422, "consent-rejected");
    let pointers = problem["errors"].to_string();
    for pointer in [
        "/fields/holdings",
        "/fields/trade_password_hash",
        "/fields/shoe_size",
        "/expires_at",
        "/purpose",
    ] {
        assert!(pointers.contains(pointer), "{pointer} missing: {pointers}");
    }
    // Unknown partner.
    let mut unknown = base.clone();
    unknown["partner_id"] = json!("no-such-bank");
    grant(unknown).await.assert_problem(422, "unknown-partner");
    // Schema: wrong types, extra members, too many fields.
    let mut wrong = base.clone();
    wrong["second_authorisation"] = json!("yes");
    wrong["colour"] = json!("red");
    let problem = grant(wrong).await.assert_problem(400, "validation-failed");
    let pointers = problem["errors"].to_string();
    assert!(
        pointers.contains("/second_authorisation") && pointers.contains("/colour"),
        "{pointers}"
    );
    let mut huge = base.clone();
    huge["fields"] = Value::Object(
        (0..200)
            .map(|i| (format!("f{i}"), json!("plain")))
            .collect(),
    );
    grant(huge).await.assert_problem(400, "validation-failed");
    // Malformed JSON and content type.
    let raw = gateway_tests::admin_request(
        gateway.admin_addr,
        Method::POST,
        "/admin/v1/consents",
        None,
        Some(gateway.admin_token()),
    )
    .await
    .unwrap();
    raw.assert_problem(415, "unsupported-media-type");
    // Nothing was stored.
    let list = gateway
        .admin(Method::GET, "/admin/v1/customers/C000005/consents", None)
        .await
        .json();
    assert_eq!(list["consents"], json!([]));
    // A good grant, then the same again.
    assert_eq!(grant(base.clone()).await.status, 201);
    let duplicate = grant(base).await.assert_problem(409, "consent-exists");
    assert!(duplicate["consent_id"].is_string());
}

#[tokio::test]
async fn an_expired_consent_releases_nothing() {
    let clock = ManualClock::new(UnixTime::now());
    let gateway = TestGateway::builder()
        .clock(Arc::new(clock.clone()))
        .start()
        .await;
    let response = gateway
        .admin(
            Method::POST,
            "/admin/v1/consents",
            Some(json!({"customer_id": "C000006", "partner_id": "demo-bank", "purpose": "wealth_advice",
                        "fields": {"risk_level": "plain"},
                        "expires_at": gateway_core::time::format_rfc3339(UnixTime(clock_now(&clock) + 100))})),
        )
        .await;
    assert_eq!(response.status, 201);
    let customer_ref = response.json()["customer_ref"].as_str().unwrap().to_owned();
    let mut bank = gateway.client("demo-bank").await;
    assert_eq!(
        bank.get(&tags_path(&customer_ref)).await.unwrap().status,
        200
    );
    clock.advance(101);
    bank.authorize("demo-bank", "").await.unwrap();
    bank.get(&tags_path(&customer_ref))
        .await
        .unwrap()
        .assert_problem(404, "customer-not-found");
}

fn clock_now(clock: &ManualClock) -> i64 {
    use gateway_core::time::Clock as _;
    clock.now().0
}

#[tokio::test]
async fn a_revocation_while_the_upstream_answers_releases_nothing() {
    let gateway = TestGateway::start().await;
    let (consent_id, customer_ref) = gateway
        .grant(
            "C000007",
            "demo-bank",
            "wealth_advice",
            json!({"risk_level": "plain"}),
            false,
        )
        .await;
    gateway
        .sandbox()
        .controls()
        .set_stall(Some(Duration::from_millis(800)));
    let mut bank = gateway.client("demo-bank").await;
    let before = gateway.sandbox().controls().requests();
    let read = tokio::spawn(async move { bank.get(&tags_path(&customer_ref)).await.unwrap() });
    // Revoke once the read is waiting on the upstream.
    assert!(
        gateway_tests::eventually(Duration::from_secs(5), || gateway
            .sandbox()
            .controls()
            .requests()
            > before)
        .await
    );
    assert_eq!(
        gateway
            .admin(
                Method::DELETE,
                &format!("/admin/v1/consents/{consent_id}"),
                None
            )
            .await
            .status,
        200
    );
    let response = read.await.unwrap();
    response.assert_problem(404, "customer-not-found");
}

#[tokio::test]
async fn the_access_log_shows_exactly_the_disclosures_made() {
    let gateway = TestGateway::start().await;
    let (consent_id, customer_ref) = gateway
        .grant(
            "C000008",
            "demo-bank",
            "wealth_advice",
            json!({"risk_level": "plain", "mobile": "masked", "home_address": "plain"}),
            false,
        )
        .await;
    let mut bank = gateway.client("demo-bank").await;
    assert_eq!(
        bank.get(&tags_path(&customer_ref)).await.unwrap().status,
        200
    );
    assert_eq!(
        bank.get(&format!("{}?fields=risk_level", tags_path(&customer_ref)))
            .await
            .unwrap()
            .status,
        200
    );
    bank.get(&format!("{}?fields=shoe_size", tags_path(&customer_ref)))
        .await
        .unwrap()
        .assert_problem(400, "invalid-query");
    let log = gateway
        .admin(Method::GET, "/admin/v1/customers/C000008/access-log", None)
        .await;
    assert_eq!(log.status, 200);
    let disclosures = log.json()["disclosures"].as_array().unwrap().clone();
    assert_eq!(disclosures.len(), 2, "{disclosures:?}");
    for d in &disclosures {
        assert_eq!(d["partner_id"], "demo-bank");
        assert_eq!(d["consent_id"], consent_id);
    }
    let all: Vec<_> = disclosures
        .iter()
        .map(|d| d["fields_released"].to_string())
        .collect();
    assert!(
        all.iter()
            .any(|r| r.contains("mobile") && r.contains("risk_level")),
        "{all:?}"
    );
    assert!(all.iter().any(|r| r == "[\"risk_level\"]"), "{all:?}");
    assert!(
        disclosures
            .iter()
            .any(|d| d["fields_withheld"].to_string().contains("home_address"))
    );
    // The trail never holds the internal id.
    let page = gateway
        .admin(Method::GET, "/admin/v1/audit?limit=100", None)
        .await;
    assert!(!String::from_utf8_lossy(&page.body).contains("C000008"));
}

/// Three instances sharing a redis-server: a revocation on one is enforced by every other
/// within the staleness bound; the propagation time is measured and printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_one_instance_is_enforced_by_every_instance() {
    let redis = RedisServer::start();
    let a = TestGateway::builder().redis(&redis.url(), 3).start().await;
    let b = TestGateway::builder()
        .redis(&redis.url(), 3)
        .peer_of(&a)
        .start()
        .await;
    let c = TestGateway::builder()
        .redis(&redis.url(), 3)
        .peer_of(&a)
        .start()
        .await;
    let mut on_b = b.client("demo-bank").await;
    let mut on_c = c.client("demo-bank").await;
    let mut samples = Vec::new();
    for i in 0..20 {
        let customer = format!("C{:06}", 100 + i);
        let (consent_id, customer_ref) = a
            .grant(
                &customer,
                "demo-bank",
                "wealth_advice",
                json!({"risk_level": "plain"}),
                false,
            )
            .await;
        let path = tags_path(&customer_ref);
        assert_eq!(
            on_b.get(&path).await.unwrap().status,
            200,
            "grant on A seen on B"
        );
        assert_eq!(
            on_c.get(&path).await.unwrap().status,
            200,
            "grant on A seen on C"
        );
        let revoked_at = Instant::now();
        assert_eq!(
            a.admin(
                Method::DELETE,
                &format!("/admin/v1/consents/{consent_id}"),
                None
            )
            .await
            .status,
            200
        );
        // B and C must stop releasing within the staleness bound (2 s).
        for client in [&mut on_b, &mut on_c] {
            loop {
                let status = client.get(&path).await.unwrap().status;
                if status == 404 {
                    break;
                }
                assert_eq!(status, 200);
                assert!(
                    revoked_at.elapsed() < Duration::from_secs(2),
                    "still released after the staleness bound"
                );
            }
        }
        samples.push(revoked_at.elapsed());
    }
    samples.sort();
    eprintln!(
        "revocation enforced on 2 other instances: p50 {:?}, max {:?} ({} samples, includes one HTTP round trip each)",
        samples[samples.len() / 2],
        samples[samples.len() - 1],
        samples.len()
    );
}

/// The store dies: once cached answers are older than the staleness bound, customer data
/// is refused with 503 — never released on an unknown consent state — and it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_store_customer_data_is_not_released() {
    // Persistent, so the grant is still there when the server comes back.
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let gateway = TestGateway::builder().redis(&redis.url(), 1).start().await;
    let (_, customer_ref) = gateway
        .grant(
            "C000010",
            "demo-bank",
            "wealth_advice",
            json!({"risk_level": "plain"}),
            false,
        )
        .await;
    let mut bank = gateway.client("demo-bank").await;
    let path = tags_path(&customer_ref);
    assert_eq!(bank.get(&path).await.unwrap().status, 200);
    redis.kill();
    let killed_at = Instant::now();
    // Beyond the bound, nothing is released.
    loop {
        let response = bank.get(&path).await.unwrap();
        if response.status == 503 {
            assert!(response.header("retry-after").is_some());
            assert!(!String::from_utf8_lossy(&response.body).contains("risk_level"));
            break;
        }
        assert_eq!(response.status, 200);
        assert!(
            killed_at.elapsed() < Duration::from_millis(2500),
            "released past the staleness bound"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.restart();
    let recovered = gateway_tests::eventually_async(Duration::from_secs(10), || {
        let path = path.clone();
        let gateway = &gateway;
        async move {
            let mut client = gateway.client("demo-bank").await;
            client
                .get(&path)
                .await
                .map(|r| r.status == 200)
                .unwrap_or(false)
        }
    })
    .await;
    assert!(recovered, "no recovery after the store came back");
}

/// A grant and a revocation answered 2xx survive kill -9 (embedded store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_and_revocations_survive_kill_9() {
    let root = gateway_tests::process::ProcessRoot::new().await;
    let token = std::fs::read_to_string(root.path().join("data/admin.token")).unwrap();
    let token = token.trim();
    let grant = |customer: &str| {
        json!({"customer_id": customer, "partner_id": "demo-bank", "purpose": "wealth_advice",
               "fields": {"risk_level": "plain"}, "expires_at": "2030-01-01T00:00:00Z"})
    };

    let mut gateway = root.start();
    let kept = gateway_tests::admin_request(
        gateway.admin_addr,
        Method::POST,
        "/admin/v1/consents",
        Some(grant("C000011")),
        Some(token),
    )
    .await
    .unwrap();
    assert_eq!(kept.status, 201);
    let revoked = gateway_tests::admin_request(
        gateway.admin_addr,
        Method::POST,
        "/admin/v1/consents",
        Some(grant("C000012")),
        Some(token),
    )
    .await
    .unwrap()
    .json();
    let id = revoked["consent_id"].as_str().unwrap();
    let answer = gateway_tests::admin_request(
        gateway.admin_addr,
        Method::DELETE,
        &format!("/admin/v1/consents/{id}"),
        None,
        Some(token),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    gateway.kill9();

    let gateway = root.start();
    let mut bank =
        gateway_tests::partner_client(root.path(), gateway.partner_addr, "demo-bank", "tags:read")
            .await;
    let kept_ref = kept.json()["customer_ref"].as_str().unwrap().to_owned();
    assert_eq!(
        bank.get(&tags_path(&kept_ref)).await.unwrap().status,
        200,
        "the grant survived"
    );
    let revoked_ref = revoked["customer_ref"].as_str().unwrap();
    bank.get(&tags_path(revoked_ref))
        .await
        .unwrap()
        .assert_problem(404, "customer-not-found");
}
