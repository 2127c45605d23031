//! Products and the referral programme over the real stack: pagination, ETags, visibility,
//! idempotent code issuance, conversions, stats, and bad input on every route.

use std::collections::HashSet;

use http::Method;
use serde_json::json;

use gateway_tests::TestGateway;
use gateway_testutil::RedisServer;

const JSON: &str = "application/json";
const CAMPAIGN: &str = "spring-referral-2027";

#[tokio::test]
async fn walking_every_page_yields_each_visible_product_once() {
    let gateway = TestGateway::start().await;
    for (partner, allowed) in [
        ("demo-insurer", vec!["fixed_income_plus"]),
        ("demo-fund", vec!["fund", "etf"]),
    ] {
        let mut client = gateway.client(partner).await;
        let mut seen = HashSet::new();
        let mut next = Some("/v1/products?limit=37".to_owned());
        let mut pages = 0;
        while let Some(path) = next {
            let page = client.get(&path).await.unwrap();
            assert_eq!(page.status, 200, "{path}");
            let doc = page.json();
            for product in doc["products"].as_array().unwrap() {
                assert!(
                    allowed.contains(&product["type"].as_str().unwrap()),
                    "{partner} saw {product}"
                );
                assert!(
                    seen.insert(product["id"].as_str().unwrap().to_owned()),
                    "duplicate {product}"
                );
            }
            next = doc["next"].as_str().map(str::to_owned);
            pages += 1;
            assert!(pages < 100);
        }
        let expected = gateway_sandbox::data::products()
            .iter()
            .filter(|p| allowed.contains(&p.product_type.as_str()))
            .count();
        assert_eq!(seen.len(), expected, "{partner}");
    }
}

#[tokio::test]
async fn products_answer_304_for_a_matching_etag_and_hide_invisible_products() {
    let gateway = TestGateway::start().await;
    let mut insurer = gateway.client("demo-insurer").await;
    let first = insurer
        .get("/v1/products?type=fixed_income_plus&limit=5")
        .await
        .unwrap();
    let etag = first.header("etag").unwrap().to_owned();
    assert!(first.header("cache-control").unwrap().contains("max-age"));
    let again = insurer
        .get_with(
            "/v1/products?type=fixed_income_plus&limit=5",
            &[("if-none-match", &etag)],
        )
        .await
        .unwrap();
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    // A fund is invisible to the insurer: the same 404 as an unknown product.
    let fund = gateway_sandbox::data::products()
        .iter()
        .find(|p| p.product_type.as_str() == "fund")
        .unwrap();
    insurer
        .get(&format!("/v1/products/{}", fund.id))
        .await
        .unwrap()
        .assert_problem(404, "product-not-found");
    insurer
        .get("/v1/products/no-such-product")
        .await
        .unwrap()
        .assert_problem(404, "product-not-found");
    // The catalogue is cached: many requests, one upstream fetch.
    let fetches = gateway.sandbox().controls().requests();
    for _ in 0..5 {
        insurer.get("/v1/products?limit=3").await.unwrap();
    }
    assert_eq!(gateway.sandbox().controls().requests(), fetches);
}

#[tokio::test]
async fn bad_product_queries_list_every_violation() {
    let gateway = TestGateway::start().await;
    let mut client = gateway.client("demo-bank").await;
    let problem = client
        .get("/v1/products?limit=1000&cursor=%%%&colour=red")
        .await
        .unwrap()
        .assert_problem(400, "invalid-query");
    let pointers: Vec<_> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap().to_owned())
        .collect();
    assert!(pointers.contains(&"/limit".to_owned()), "{pointers:?}");
    assert!(pointers.contains(&"/colour".to_owned()), "{pointers:?}");
    for path in [
        "/v1/products?limit=0",
        "/v1/products?limit=abc",
        "/v1/products?cursor=garbage",
        "/v1/products?type=stock",
    ] {
        client
            .get(path)
            .await
            .unwrap()
            .assert_problem(400, "invalid-query");
    }
}

#[tokio::test]
async fn issuing_a_code_is_idempotent_and_refuses_a_reused_key() {
    let gateway = TestGateway::start().await;
    let mut bank = gateway.client("demo-bank").await;
    let body = json!({"campaign_id": CAMPAIGN, "channel": "app"}).to_string();
    let first = bank
        .post(
            "/v1/referral-codes",
            JSON,
            body.clone(),
            &[("idempotency-key", "k-1")],
        )
        .await
        .unwrap();
    assert_eq!(first.status, 201, "{:?}", first.body);
    let replay = bank
        .post(
            "/v1/referral-codes",
            JSON,
            body.clone(),
            &[("idempotency-key", "k-1")],
        )
        .await
        .unwrap();
    assert_eq!(replay.status, 201);
    assert_eq!(replay.body, first.body, "the same answer");
    let other = json!({"campaign_id": CAMPAIGN, "channel": "web"}).to_string();
    bank.post(
        "/v1/referral-codes",
        JSON,
        other,
        &[("idempotency-key", "k-1")],
    )
    .await
    .unwrap()
    .assert_problem(422, "idempotency-key-reused");
    let code = first.json()["code"].as_str().unwrap().to_owned();
    let status = bank
        .get(&format!("/v1/referral-codes/{code}"))
        .await
        .unwrap();
    assert_eq!(status.status, 200);
    assert_eq!(status.json()["status"], "active");
    let stats = bank
        .get(&format!("/v1/campaigns/{CAMPAIGN}/stats"))
        .await
        .unwrap()
        .json();
    assert_eq!(stats["codes_issued"], 1);
}

#[tokio::test]
async fn bad_referral_code_requests_get_precise_problems_and_change_nothing() {
    let gateway = TestGateway::start().await;
    let mut bank = gateway.client("demo-bank").await;
    let good = json!({"campaign_id": CAMPAIGN}).to_string();
    bank.post("/v1/referral-codes", JSON, good.clone(), &[])
        .await
        .unwrap()
        .assert_problem(400, "idempotency-key-required");
    bank.post(
        "/v1/referral-codes",
        JSON,
        good.clone(),
        &[("idempotency-key", &"x".repeat(65))],
    )
    .await
    .unwrap()
    .assert_problem(400, "idempotency-key-required");
    bank.post(
        "/v1/referral-codes",
        "text/plain",
        good.clone(),
        &[("idempotency-key", "a")],
    )
    .await
    .unwrap()
    .assert_problem(415, "unsupported-media-type");
    bank.post(
        "/v1/referral-codes",
        JSON,
        "{\"campaign_id\":",
        &[("idempotency-key", "b")],
    )
    .await
    .unwrap()
    .assert_problem(400, "malformed-json");
    let problem = bank
        .post(
            "/v1/referral-codes",
            JSON,
            json!({"campaign_id": 7, "extra": true}).to_string(),
            &[("idempotency-key", "c")],
        )
        .await
        .unwrap()
        .assert_problem(400, "validation-failed");
    let pointers = problem["errors"].to_string();
    assert!(
        pointers.contains("/campaign_id") && pointers.contains("/extra"),
        "{pointers}"
    );
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    bank.post(
        "/v1/referral-codes",
        JSON,
        deep,
        &[("idempotency-key", "d")],
    )
    .await
    .unwrap()
    .assert_problem(400, "malformed-json");
    // An oversized body is refused before it is read (on its own connection: the server
    // stops reading and closes it).
    let oversized = format!(
        "POST /v1/referral-codes HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nIdempotency-Key: e\r\nContent-Length: 70000\r\n\r\n{}",
        bank.token().unwrap(),
        "x".repeat(70_000)
    );
    let answer = gateway.raw_request("demo-bank", oversized.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload-too-large"), "{answer}");
    bank.post(
        "/v1/referral-codes",
        JSON,
        json!({"campaign_id": "no-such-campaign"}).to_string(),
        &[("idempotency-key", "f")],
    )
    .await
    .unwrap()
    .assert_problem(404, "campaign-not-found");
    // The insurer may not issue codes at all.
    let mut insurer = gateway.client("demo-insurer").await;
    insurer
        .post(
            "/v1/referral-codes",
            JSON,
            good,
            &[("idempotency-key", "g")],
        )
        .await
        .unwrap()
        .assert_problem(403, "insufficient-scope");
    // Nothing was issued.
    let stats = bank
        .get(&format!("/v1/campaigns/{CAMPAIGN}/stats"))
        .await
        .unwrap()
        .json();
    assert_eq!(stats["codes_issued"], 0);
}

#[tokio::test]
async fn codes_of_another_partner_and_malformed_codes_are_the_same_404() {
    let gateway = TestGateway::start().await;
    let mut bank = gateway.client("demo-bank").await;
    let issued = bank
        .post(
            "/v1/referral-codes",
            JSON,
            json!({"campaign_id": CAMPAIGN}).to_string(),
            &[("idempotency-key", "k")],
        )
        .await
        .unwrap()
        .json();
    let code = issued["code"].as_str().unwrap().to_owned();
    let mut fund = gateway.client("demo-fund").await;
    let foreign = fund
        .get(&format!("/v1/referral-codes/{code}"))
        .await
        .unwrap();
    foreign.assert_problem(404, "referral-code-not-found");
    // A one-symbol typo fails the check character.
    let mut typo: Vec<char> = code.chars().collect();
    typo[0] = if typo[0] == 'A' { 'B' } else { 'A' };
    let typo: String = typo.into_iter().collect();
    for bad in [typo.as_str(), "NOT-A-CODE", "0000-0000-0000-0000-0"] {
        let response = bank
            .get(&format!("/v1/referral-codes/{bad}"))
            .await
            .unwrap();
        let mut problem = response.assert_problem(404, "referral-code-not-found");
        let mut reference = foreign.json();
        problem.as_object_mut().unwrap().remove("instance");
        reference.as_object_mut().unwrap().remove("instance");
        assert_eq!(problem, reference, "indistinguishable from a foreign code");
    }
}

#[tokio::test]
async fn conversions_are_counted_once_and_show_in_stats() {
    let gateway = TestGateway::start().await;
    let mut bank = gateway.client("demo-bank").await;
    let code = bank
        .post(
            "/v1/referral-codes",
            JSON,
            json!({"campaign_id": CAMPAIGN}).to_string(),
            &[("idempotency-key", "k")],
        )
        .await
        .unwrap()
        .json()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = |id: &str, kind: &str| json!({"event_id": id, "code": code, "event_type": kind, "occurred_at": "2026-11-20T10:00:00Z", "customer_id": "C000002"});
    let first = gateway
        .admin(
            Method::POST,
            "/admin/v1/referral-events",
            Some(event("e1", "account_opened")),
        )
        .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let replay = gateway
        .admin(
            Method::POST,
            "/admin/v1/referral-events",
            Some(event("e1", "account_opened")),
        )
        .await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body, first.body);
    assert_eq!(
        gateway
            .admin(
                Method::POST,
                "/admin/v1/referral-events",
                Some(event("e2", "funded"))
            )
            .await
            .status,
        201
    );
    // Rejections: unknown code, malformed body.
    let unknown = json!({"event_id": "e3", "code": "0000-0000-0000-0000-0", "event_type": "funded", "occurred_at": "2026-11-20T10:00:00Z", "customer_id": "C000002"});
    let problem = gateway
        .admin(Method::POST, "/admin/v1/referral-events", Some(unknown))
        .await
        .assert_problem(422, "referral-event-rejected");
    assert_eq!(problem["reason"], "unknown_code");
    gateway
        .admin(
            Method::POST,
            "/admin/v1/referral-events",
            Some(json!({"event_id": "e4"})),
        )
        .await
        .assert_problem(400, "validation-failed");
    let stats = bank
        .get(&format!("/v1/campaigns/{CAMPAIGN}/stats"))
        .await
        .unwrap()
        .json();
    assert_eq!(stats["conversions"]["account_opened"], 1);
    assert_eq!(stats["conversions"]["funded"], 1);
    assert_eq!(stats["rewards"]["CNY"], 15000);
    let status = bank
        .get(&format!("/v1/referral-codes/{code}"))
        .await
        .unwrap()
        .json();
    assert_eq!(status["conversions"]["account_opened"], 1);
    // Another partner's stats do not include them.
    let mut fund = gateway.client("demo-fund").await;
    let theirs = fund
        .get(&format!("/v1/campaigns/{CAMPAIGN}/stats"))
        .await
        .unwrap()
        .json();
    assert_eq!(theirs["codes_issued"], 0);
}

#[tokio::test]
async fn the_daily_issuance_cap_is_enforced() {
    let campaign = std::fs::read_to_string(
        gateway_tests::repo_root().join(format!("partner-config/campaigns/{CAMPAIGN}.yaml")),
    )
    .unwrap()
    .replace(
        "codes_per_partner_per_day: 1000",
        "codes_per_partner_per_day: 2",
    );
    let gateway = TestGateway::builder()
        .file(&format!("campaigns/{CAMPAIGN}.yaml"), &campaign)
        .start()
        .await;
    let mut bank = gateway.client("demo-bank").await;
    let body = json!({"campaign_id": CAMPAIGN}).to_string();
    for key in ["a", "b"] {
        assert_eq!(
            bank.post(
                "/v1/referral-codes",
                JSON,
                body.clone(),
                &[("idempotency-key", key)]
            )
            .await
            .unwrap()
            .status,
            201
        );
    }
    bank.post(
        "/v1/referral-codes",
        JSON,
        body,
        &[("idempotency-key", "c")],
    )
    .await
    .unwrap()
    .assert_problem(429, "issuance-cap-reached");
}

/// Two instances sharing a redis-server: concurrent POSTs with one key create one code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_issues_with_one_key_on_two_instances_create_one_code() {
    let redis = RedisServer::start();
    let a = TestGateway::builder().redis(&redis.url(), 2).start().await;
    let b = TestGateway::builder()
        .redis(&redis.url(), 2)
        .peer_of(&a)
        .start()
        .await;
    let body = json!({"campaign_id": CAMPAIGN}).to_string();
    let mut tasks = Vec::new();
    for gateway in [&a, &b, &a, &b, &a, &b] {
        let mut client = gateway.client("demo-bank").await;
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            client
                .post(
                    "/v1/referral-codes",
                    JSON,
                    body,
                    &[("idempotency-key", "shared")],
                )
                .await
                .unwrap()
        }));
    }
    let mut codes = HashSet::new();
    for task in tasks {
        let response = task.await.unwrap();
        if response.status == 201 {
            codes.insert(response.json()["code"].as_str().unwrap().to_owned());
        } else {
            // A loser that could not wait for the winner is told to retry, never given a code.
            response.assert_problem(409, "idempotency-key-in-progress");
        }
    }
    assert_eq!(codes.len(), 1, "{codes:?}");
    let mut client = b.client("demo-bank").await;
    let stats = client
        .get(&format!("/v1/campaigns/{CAMPAIGN}/stats"))
        .await
        .unwrap()
        .json();
    assert_eq!(stats["codes_issued"], 1);
}

/// A referral event answered 2xx survives kill -9 of the gateway (embedded store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_event_survives_kill_9() {
    let root = gateway_tests::process::ProcessRoot::new().await;
    let token = std::fs::read_to_string(root.path().join("data/admin.token")).unwrap();

    let mut gateway = root.start();
    let mut client = gateway_tests::partner_client(
        root.path(),
        gateway.partner_addr,
        "demo-bank",
        "referrals:write referrals:read",
    )
    .await;
    let code = client
        .post(
            "/v1/referral-codes",
            JSON,
            json!({"campaign_id": CAMPAIGN}).to_string(),
            &[("idempotency-key", "k")],
        )
        .await
        .unwrap()
        .json()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = json!({"event_id": "ev-1", "code": code, "event_type": "account_opened", "occurred_at": "2026-11-20T10:00:00Z", "customer_id": "C000009"});
    let answer = gateway_tests::admin_request(
        gateway.admin_addr,
        Method::POST,
        "/admin/v1/referral-events",
        Some(event.clone()),
        Some(token.trim()),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 201);
    gateway.kill9();

    let gateway = root.start();
    let replay = gateway_tests::admin_request(
        gateway.admin_addr,
        Method::POST,
        "/admin/v1/referral-events",
        Some(event),
        Some(token.trim()),
    )
    .await
    .unwrap();
    assert_eq!(replay.status, 200, "the event was remembered");
    assert_eq!(replay.body, answer.body);
    let mut client = gateway_tests::partner_client(
        root.path(),
        gateway.partner_addr,
        "demo-bank",
        "referrals:read",
    )
    .await;
    let stats = client
        .get(&format!("/v1/campaigns/{CAMPAIGN}/stats"))
        .await
        .unwrap()
        .json();
    assert_eq!(stats["conversions"]["account_opened"], 1);
    assert_eq!(stats["codes_issued"], 1);
}
