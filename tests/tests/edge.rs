//! The edge of the partner stack: path rules, routing problems, interaction ids, trace
//! propagation, upstream failures, panics and load shedding.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_core::X_FAPI_INTERACTION_ID;
use gateway_tests::TestGateway;

/// A path that always reaches the upstream (the product catalogue is cached; customer tags
/// are fetched per request): demo-bank's consented view of customer C000001.
async fn upstream_bound(gateway: &TestGateway) -> String {
    let (_, customer_ref) = gateway
        .grant(
            "C000001",
            "demo-bank",
            "wealth_advice",
            serde_json::json!({"risk_level": "plain"}),
            false,
        )
        .await;
    format!("/v1/customers/{customer_ref}/tags")
}

#[tokio::test]
async fn path_tricks_are_refused_before_routing() {
    let gateway = TestGateway::start().await;
    let mut client = gateway.client("demo-bank").await;
    for path in [
        "/v1/%2e%2e/admin/v1/reload",
        "/v1/products%2F1",
        "/v1/products/%252e%252e",
        "/v1/../admin/v1/partners",
        "/v1/./products",
        "/v1//products",
        "/v1/products/",
    ] {
        let response = client.get(path).await.unwrap();
        response.assert_problem(400, "invalid-path");
    }
    assert_eq!(
        gateway.sandbox().controls().requests(),
        0,
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_precise_problems() {
    let gateway = TestGateway::start().await;
    let mut client = gateway.client("demo-bank").await;
    client
        .get("/v2/products")
        .await
        .unwrap()
        .assert_problem(404, "not-found");
    client
        .get("/admin/v1/partners")
        .await
        .unwrap()
        .assert_problem(404, "not-found");
    let response = client
        .send(
            http::Request::delete("/v1/products")
                .body(Default::default())
                .unwrap(),
        )
        .await
        .unwrap();
    response.assert_problem(405, "method-not-allowed");
    assert_eq!(response.header("allow"), Some("GET"));
    let response = client.get("/oauth2/token").await.unwrap();
    response.assert_problem(405, "method-not-allowed");
    assert_eq!(response.header("allow"), Some("POST"));
}

#[tokio::test]
async fn interaction_id_is_echoed_or_minted_on_every_response() {
    let gateway = TestGateway::start().await;
    let mut client = gateway.client("demo-bank").await;
    // Echoed on success and on an error.
    for path in ["/v1/products?limit=1", "/v1/nowhere"] {
        let response = client
            .get_with(path, &[(X_FAPI_INTERACTION_ID, "req-42.a_b")])
            .await
            .unwrap();
        assert_eq!(
            response.header(X_FAPI_INTERACTION_ID),
            Some("req-42.a_b"),
            "{path}"
        );
    }
    // Minted when absent, fresh each time.
    let a = client.get("/v1/products?limit=1").await.unwrap();
    let b = client.get("/v1/nowhere").await.unwrap();
    let (a, b) = (
        a.header(X_FAPI_INTERACTION_ID).unwrap(),
        b.header(X_FAPI_INTERACTION_ID).unwrap(),
    );
    assert_ne!(a, b);
    assert!(uuid_like(a) && uuid_like(b), "{a} {b}");
    // The upstream receives the id too.
    let path = upstream_bound(&gateway).await;
    client
        .get_with(&path, &[(X_FAPI_INTERACTION_ID, "to-upstream")])
        .await
        .unwrap();
    let seen = gateway.sandbox().controls().last_headers().unwrap();
    assert_eq!(seen[X_FAPI_INTERACTION_ID], "to-upstream");
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.bytes().filter(|b| *b == b'-').count() == 4
}

#[tokio::test]
async fn header_injection_in_interaction_id_is_refused() {
    let gateway = TestGateway::start().await;
    let mut client = gateway.client("demo-bank").await;
    for bad in ["has space", "x".repeat(65).as_str(), "semi;colon"] {
        let response = client
            .get_with("/v1/products", &[(X_FAPI_INTERACTION_ID, bad)])
            .await
            .unwrap();
        response.assert_problem(400, "invalid-header");
        assert_ne!(response.header(X_FAPI_INTERACTION_ID), Some(bad));
    }
    assert_eq!(gateway.sandbox().controls().requests(), 0);
}

#[tokio::test]
async fn traceparent_is_continued_to_the_upstream() {
    let gateway = TestGateway::start().await;
    let mut client = gateway.client("demo-bank").await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let path = upstream_bound(&gateway).await;
    client
        .get_with(&path, &[("traceparent", incoming)])
        .await
        .unwrap();
    let seen = gateway.sandbox().controls().last_headers().unwrap();
    let outgoing = seen["traceparent"].to_str().unwrap();
    assert!(
        outgoing.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{outgoing}"
    );
    assert!(outgoing.ends_with("-01"), "{outgoing}");
    assert_ne!(
        &outgoing[36..52],
        "00f067aa0ba902b7",
        "the gateway's hop has its own span id"
    );
    // Without one, a new trace starts.
    client.get(&path).await.unwrap();
    let seen = gateway.sandbox().controls().last_headers().unwrap();
    assert!(
        gateway_core::TraceContext::parse_traceparent(seen["traceparent"].to_str().unwrap())
            .is_some()
    );
}

#[tokio::test]
async fn upstream_down_is_a_502_problem() {
    let mut gateway = TestGateway::start().await;
    let mut client = gateway.client("demo-bank").await;
    gateway.stop_sandbox().await;
    client
        .get("/v1/products")
        .await
        .unwrap()
        .assert_problem(502, "upstream-unavailable");
}

#[tokio::test]
async fn upstream_server_error_is_a_502_problem_without_its_body() {
    let gateway = TestGateway::start().await;
    gateway.sandbox().controls().set_fail(Some(500)).unwrap();
    let mut client = gateway.client("demo-bank").await;
    let response = client.get("/v1/products").await.unwrap();
    response.assert_problem(502, "upstream-unavailable");
}

#[tokio::test]
async fn stalled_upstream_is_a_504_within_the_timeout() {
    let gateway = TestGateway::builder()
        .gateway_yaml("request_timeout_ms: 2000", "request_timeout_ms: 300")
        .start()
        .await;
    gateway
        .sandbox()
        .controls()
        .set_stall(Some(Duration::from_secs(30)));
    let mut client = gateway.client("demo-bank").await;
    let started = Instant::now();
    client
        .get("/v1/products")
        .await
        .unwrap()
        .assert_problem(504, "upstream-timeout");
    // The answer comes once the 300 ms timeout passes, not when the upstream answers.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_connection_goes_on() {
    let gateway = TestGateway::start().await;
    gateway
        .state
        .dangerous_set_handler_hook(Arc::new(|parts: &http::request::Parts| {
            if parts.headers.contains_key("x-test-panic") {
                panic!("injected handler panic");
            }
        }));
    for alpn in [gateway_tests::Alpn::Http1, gateway_tests::Alpn::Http2] {
        let mut client = gateway
            .connect(&gateway.partner_cert("demo-bank"), alpn)
            .await
            .unwrap();
        client.authorize("demo-bank", "").await.unwrap();
        let response = client
            .get_with("/v1/products", &[("x-test-panic", "1")])
            .await
            .unwrap();
        response.assert_problem(500, "internal-error");
        assert!(
            response.json().get("detail").is_none(),
            "no panic text leaks"
        );
        let next = client.get("/v1/products?limit=1").await.unwrap();
        assert_eq!(next.status, 200, "{alpn:?}");
    }
}

#[tokio::test]
async fn overload_is_shed_with_503_and_retry_after() {
    let gateway = TestGateway::builder()
        .gateway_yaml("max_in_flight: 2048", "max_in_flight: 1")
        .start()
        .await;
    gateway
        .sandbox()
        .controls()
        .set_stall(Some(Duration::from_millis(1500)));
    let mut slow = gateway.client("demo-bank").await;
    let mut shed = gateway.client("demo-fund").await;
    let first = tokio::spawn(async move { slow.get("/v1/products").await.unwrap().status });
    // Wait until the first request is in flight at the upstream.
    assert!(
        gateway_tests::eventually(Duration::from_secs(5), || gateway
            .sandbox()
            .controls()
            .requests()
            == 1)
        .await
    );
    let response = shed.get("/v1/products").await.unwrap();
    response.assert_problem(503, "overloaded");
    assert_eq!(response.header("retry-after"), Some("1"));
    assert_eq!(first.await.unwrap(), 200);
}

#[tokio::test]
async fn oversized_request_heads_are_refused_with_a_431_problem() {
    let gateway = TestGateway::builder()
        .gateway_yaml("max_header_bytes: 16384", "max_header_bytes: 8192")
        .gateway_yaml("max_headers: 64", "max_headers: 20")
        .start()
        .await;
    let mut client = gateway.client("demo-bank").await;

    // Over the configured byte limit: a precise problem that names the limit.
    let big = "a".repeat(9_000);
    let response = client
        .get_with("/v1/products", &[("x-big", &big)])
        .await
        .unwrap();
    let doc = response.assert_problem(431, "request-header-fields-too-large");
    assert!(
        doc["detail"].as_str().unwrap().contains("at most 8192"),
        "{doc}"
    );

    // Over the configured count: the same problem, naming the count.
    let names: Vec<String> = (0..25).map(|i| format!("x-extra-{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let response = client.get_with("/v1/products", &many).await.unwrap();
    let doc = response.assert_problem(431, "request-header-fields-too-large");
    assert!(
        doc["detail"].as_str().unwrap().contains("at most 20"),
        "{doc}"
    );

    // Within the limits the same connection still works.
    let response = client.get("/v1/products").await.unwrap();
    assert_ne!(response.status, 431);

    // Beyond twice the limit hyper refuses the head before it is parsed: still a 431.
    let mut client = gateway.client("demo-bank").await;
    let huge = "a".repeat(20_000);
    match client.get_with("/v1/products", &[("x-big", &huge)]).await {
        Ok(response) => assert_eq!(response.status, 431),
        Err(err) => panic!("expected a 431 answer, got {err}"),
    }
}
