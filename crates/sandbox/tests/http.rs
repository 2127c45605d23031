//! The sandbox over a real socket: every endpoint, the 4xx answers, the controls, HTTP/1.1
//! keep-alive and h2c.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway_core::time::{ManualClock, UnixTime, parse_rfc3339};
use gateway_sandbox::{Controls, SandboxHandle, data};
use http::header::{ALLOW, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const LOCALHOST: &str = "127.0.0.1:0";

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// Asserts an error answer exactly: status, JSON content type and error code.
    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            self.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.headers[CONTENT_TYPE], "application/json");
        assert_eq!(self.json()["error"], code, "{}", self.json());
    }
}

struct TestClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl TestClient {
    fn http1(sandbox: &SandboxHandle) -> Self {
        TestClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: sandbox.base_url(),
        }
    }

    fn h2c(sandbox: &SandboxHandle) -> Self {
        TestClient {
            client: Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
            base: sandbox.base_url(),
        }
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Answer {
        let response = self.client.request(request).await.unwrap();
        let (parts, mut body) = response.into_parts();
        let mut bytes = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                bytes.extend_from_slice(&data);
            }
        }
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: Bytes::from(bytes),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(
            self.request(Method::GET, path)
                .body(Full::default())
                .unwrap(),
        )
        .await
    }

    async fn post_json(&self, path: &str, body: impl Into<Bytes>) -> Answer {
        self.send(
            self.request(Method::POST, path)
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(body.into()))
                .unwrap(),
        )
        .await
    }

    async fn put_json(&self, path: &str, body: Value) -> Answer {
        self.send(
            self.request(Method::PUT, path)
                .header(CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap(),
        )
        .await
    }

    fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
    }
}

async fn sandbox() -> SandboxHandle {
    gateway_sandbox::start(LOCALHOST.parse().unwrap())
        .await
        .unwrap()
}

/// A sandbox whose referral timestamps read `2026-12-01T10:00:00Z`.
async fn sandbox_at_fixed_time() -> SandboxHandle {
    let clock = ManualClock::new(parse_rfc3339("2026-12-01T10:00:00Z").unwrap());
    let controls = Arc::new(Controls::with_clock(Arc::new(clock)));
    gateway_sandbox::start_with(LOCALHOST.parse().unwrap(), controls)
        .await
        .unwrap()
}

async fn wait_for(mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "condition not met within 5 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// === CRM tags ===

#[tokio::test]
async fn customer_tags_are_the_precomputed_document() {
    let sandbox = sandbox().await;
    let client = TestClient::http1(&sandbox);
    for id in ["C000001", "C001000", "C002000"] {
        let answer = client.get(&format!("/crm/customers/{id}/tags")).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.headers[CONTENT_TYPE], "application/json");
        assert_eq!(Some(answer.body.clone()), data::customer_document(id));
        assert_eq!(answer.json()["customer_id"], id);
        assert!(answer.json()["tags"]["risk_level"].is_string());
    }
    sandbox.shutdown().await;
}

#[tokio::test]
async fn unknown_customers_are_404() {
    let sandbox = sandbox().await;
    let client = TestClient::http1(&sandbox);
    for id in ["C000000", "C002001", "C9", "nobody", "c000001"] {
        client
            .get(&format!("/crm/customers/{id}/tags"))
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    client
        .get("/crm/customers/C000001")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    client
        .get("/crm/customers/C000001/tags/extra")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    sandbox.shutdown().await;
}

// === catalogue ===

#[tokio::test]
async fn catalogue_lists_every_product_with_an_etag() {
    let sandbox = sandbox().await;
    let client = TestClient::http1(&sandbox);
    let answer = client.get("/catalogue/products").await;
    assert_eq!(answer.status, StatusCode::OK);
    let etag = format!("\"{}\"", data::catalogue_version());
    assert_eq!(answer.headers[ETAG], etag.as_str());
    assert_eq!(answer.body, data::catalogue_document());
    let body = answer.json();
    assert_eq!(body["version"], data::catalogue_version());
    let ids: Vec<&str> = body["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(ids.len() >= 250);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "sorted by id");

    // A client holding this version gets 304 and no body.
    let cached = client
        .send(
            client
                .request(Method::GET, "/catalogue/products")
                .header(IF_NONE_MATCH, etag.as_str())
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert_eq!(cached.headers[ETAG], etag.as_str());
    assert!(cached.body.is_empty());

    // An outdated version gets the whole catalogue.
    let stale = client
        .send(
            client
                .request(Method::GET, "/catalogue/products")
                .header(IF_NONE_MATCH, "\"0000000000000000\"")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(stale.status, StatusCode::OK);
    assert_eq!(stale.body, data::catalogue_document());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn one_product_by_id_and_unknown_products() {
    let sandbox = sandbox().await;
    let client = TestClient::http1(&sandbox);
    let answer = client.get("/catalogue/products/etf-510300").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["name"], "沪深300ETF");
    assert_eq!(answer.json()["type"], "etf");
    assert_eq!(Some(answer.body), data::product_document("etf-510300"));

    for id in ["etf-999999", "510300", "x"] {
        client
            .get(&format!("/catalogue/products/{id}"))
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    sandbox.shutdown().await;
}

// === referrals ===

#[tokio::test]
async fn registered_code_lets_an_account_opening_report_its_event() {
    let sandbox = sandbox_at_fixed_time().await;
    let client = TestClient::http1(&sandbox);
    let registration = json!({"code": "K7MX2P4Q", "partner_id": "demo-bank", "campaign_id": "spring-referral-2027"});

    let created = client
        .post_json("/referrals/codes", registration.to_string())
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert_eq!(
        created.json(),
        json!({"code": "K7MX2P4Q", "partner_id": "demo-bank",
               "campaign_id": "spring-referral-2027", "status": "active",
               "registered_at": "2026-12-01T10:00:00Z", "account_openings": 0})
    );
    // The same registration again is a no-op answered 200.
    let repeated = client
        .post_json("/referrals/codes", registration.to_string())
        .await;
    assert_eq!(repeated.status, StatusCode::OK);
    assert_eq!(repeated.json(), created.json());

    let opened = client
        .post_json(
            "/referrals/account-openings",
            json!({"code": "K7MX2P4Q", "customer_id": "C000002"}).to_string(),
        )
        .await;
    assert_eq!(opened.status, StatusCode::CREATED);
    let event = opened.json();
    assert_eq!(event["code"], "K7MX2P4Q");
    assert_eq!(event["event_type"], "account_opened");
    assert_eq!(event["customer_id"], "C000002");
    assert_eq!(event["occurred_at"], "2026-12-01T10:00:00Z");
    assert_eq!(
        parse_rfc3339(event["occurred_at"].as_str().unwrap()),
        Some(UnixTime(1_796_119_200))
    );
    assert_eq!(event["event_id"].as_str().unwrap().len(), 36);
    assert_eq!(event.as_object().unwrap().len(), 5);

    let looked_up = client.get("/referrals/codes/K7MX2P4Q").await;
    assert_eq!(looked_up.status, StatusCode::OK);
    assert_eq!(looked_up.json()["account_openings"], 1);

    // The same customer again: 409 with the first event, and nothing counted.
    let again = client
        .post_json(
            "/referrals/account-openings",
            json!({"code": "K7MX2P4Q", "customer_id": "C000002"}).to_string(),
        )
        .await;
    again.assert_error(StatusCode::CONFLICT, "already_opened");
    assert_eq!(again.json()["event"], event);
    assert_eq!(
        client.get("/referrals/codes/K7MX2P4Q").await.json()["account_openings"],
        1
    );

    // A second customer gets a different event id.
    let second = client
        .post_json(
            "/referrals/account-openings",
            json!({"code": "K7MX2P4Q", "customer_id": "C000003"}).to_string(),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_ne!(second.json()["event_id"], event["event_id"]);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn code_of_another_partner_conflicts_and_unknown_codes_are_refused() {
    let sandbox = sandbox().await;
    let client = TestClient::http1(&sandbox);
    let first = json!({"code": "ABC123", "partner_id": "demo-bank", "campaign_id": "c1"});
    assert_eq!(
        client
            .post_json("/referrals/codes", first.to_string())
            .await
            .status,
        StatusCode::CREATED
    );
    let other = json!({"code": "ABC123", "partner_id": "demo-fund", "campaign_id": "c1"});
    client
        .post_json("/referrals/codes", other.to_string())
        .await
        .assert_error(StatusCode::CONFLICT, "code_conflict");
    assert_eq!(
        client.get("/referrals/codes/ABC123").await.json()["partner_id"],
        "demo-bank"
    );

    client
        .get("/referrals/codes/NOPE")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    client
        .post_json(
            "/referrals/account-openings",
            json!({"code": "NOPE", "customer_id": "C000001"}).to_string(),
        )
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "unknown_code");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_are_400_and_change_nothing() {
    let sandbox = sandbox().await;
    let client = TestClient::http1(&sandbox);
    let cases: [(&str, &str, &str); 9] = [
        ("/referrals/codes", "{\"code\": \"A1\",", "malformed_json"),
        ("/referrals/codes", "", "malformed_json"),
        ("/referrals/codes", "[1, 2]", "invalid_request"),
        (
            "/referrals/codes",
            "{\"code\": \"A1\", \"partner_id\": \"demo-bank\"}",
            "invalid_request",
        ),
        (
            "/referrals/codes",
            "{\"code\": 7, \"partner_id\": \"demo-bank\", \"campaign_id\": \"c\"}",
            "invalid_request",
        ),
        (
            "/referrals/codes",
            "{\"code\": \"A1\", \"partner_id\": \"Demo Bank\", \"campaign_id\": \"c\"}",
            "invalid_field",
        ),
        (
            "/referrals/codes",
            "{\"code\": \"A/1\", \"partner_id\": \"demo-bank\", \"campaign_id\": \"c\"}",
            "invalid_field",
        ),
        (
            "/referrals/account-openings",
            "{\"code\": \"A1\"}",
            "invalid_request",
        ),
        (
            "/referrals/account-openings",
            "{\"code\": \"A1\", \"customer_id\": \"C 1\"}",
            "invalid_field",
        ),
    ];
    for (path, body, code) in cases {
        let answer = client.post_json(path, body.to_owned()).await;
        answer.assert_error(StatusCode::BAD_REQUEST, code);
        if code == "invalid_field" {
            assert!(answer.json()["field"].is_string());
        }
    }
    // Missing fields are named.
    let missing = client
        .post_json("/referrals/account-openings", "{\"code\": \"A1\"}")
        .await;
    assert!(
        missing.json()["detail"]
            .as_str()
            .unwrap()
            .contains("customer_id")
    );

    // Wrong content type, oversized body.
    let form = client
        .send(
            client
                .request(Method::POST, "/referrals/codes")
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from_static(b"code=A1")))
                .unwrap(),
        )
        .await;
    form.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let huge = format!("{{\"code\": \"{}\"}}", "x".repeat(20_000));
    client
        .post_json("/referrals/codes", huge)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // Nothing was registered.
    client
        .get("/referrals/codes/A1")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    sandbox.shutdown().await;
}

// === routing ===

#[tokio::test]
async fn wrong_methods_are_405_with_allow_and_unknown_paths_404() {
    let sandbox = sandbox().await;
    let client = TestClient::http1(&sandbox);
    let cases = [
        (Method::POST, "/crm/customers/C000001/tags", "GET"),
        (Method::DELETE, "/catalogue/products", "GET"),
        (Method::PUT, "/catalogue/products/etf-510300", "GET"),
        (Method::GET, "/referrals/codes", "POST"),
        (Method::GET, "/referrals/account-openings", "POST"),
        (Method::POST, "/sandbox/echo-headers", "GET"),
        (Method::GET, "/sandbox/controls/fail", "PUT"),
    ];
    for (method, path, allow) in cases {
        let answer = client
            .send(client.request(method, path).body(Full::default()).unwrap())
            .await;
        answer.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert_eq!(answer.headers[ALLOW], allow, "{path}");
    }
    for path in [
        "/",
        "/crm",
        "/catalogue",
        "/referrals/codes/a/b",
        "/sandbox/nothing",
        "/v1/products",
    ] {
        client
            .get(path)
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    sandbox.shutdown().await;
}

// === controls ===

#[tokio::test]
async fn stall_delays_service_requests_but_not_sandbox_endpoints() {
    let sandbox = sandbox().await;
    let client = TestClient::http1(&sandbox);
    sandbox
        .controls()
        .set_stall(Some(Duration::from_millis(300)));

    let started = Instant::now();
    let answer = client.get("/crm/customers/C000001/tags").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let started = Instant::now();
    assert_eq!(client.get("/sandbox/health").await.status, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_millis(300));

    sandbox.controls().set_stall(None);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_a_stalled_request_with_503() {
    let sandbox = sandbox().await;
    let client = TestClient::http1(&sandbox);
    sandbox.controls().set_stall(Some(Duration::from_secs(60)));
    let stalled = tokio::spawn(async move { client.get("/catalogue/products").await });
    let controls = sandbox.controls().clone();
    wait_for(|| controls.requests() == 1).await;

    let started = Instant::now();
    sandbox.shutdown().await;
    let answer = stalled.await.unwrap();
    answer.assert_error(StatusCode::SERVICE_UNAVAILABLE, "shutting_down");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn fail_answers_every_service_request_with_the_status() {
    let sandbox = sandbox().await;
    let client = TestClient::http1(&sandbox);
    sandbox.controls().set_fail(Some(503)).unwrap();
    for path in [
        "/crm/customers/C000001/tags",
        "/catalogue/products",
        "/nowhere",
    ] {
        let answer = client.get(path).await;
        answer.assert_error(StatusCode::SERVICE_UNAVAILABLE, "injected_failure");
    }
    // Referral state is untouched by failed requests.
    client
        .post_json(
            "/referrals/codes",
            json!({"code": "F1", "partner_id": "demo-bank", "campaign_id": "c"}).to_string(),
        )
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "injected_failure");
    // Control endpoints keep working.
    assert_eq!(client.get("/sandbox/health").await.status, StatusCode::OK);

    sandbox.controls().set_fail(None).unwrap();
    client
        .get("/referrals/codes/F1")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        client.get("/crm/customers/C000001/tags").await.status,
        StatusCode::OK
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn controls_over_http_set_and_report_the_same_state() {
    let sandbox = sandbox().await;
    let client = TestClient::http1(&sandbox);

    let set = client
        .put_json("/sandbox/controls/fail", json!({"status": 502}))
        .await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(set.json()["fail_status"], 502);
    assert_eq!(sandbox.controls().fail(), Some(StatusCode::BAD_GATEWAY));
    client
        .get("/catalogue/products")
        .await
        .assert_error(StatusCode::BAD_GATEWAY, "injected_failure");

    let set = client
        .put_json("/sandbox/controls/stall", json!({"ms": 1500}))
        .await;
    assert_eq!(set.json()["stall_ms"], 1500);
    assert_eq!(
        sandbox.controls().stall(),
        Some(Duration::from_millis(1500))
    );

    // Refused values change nothing.
    for (path, body) in [
        ("/sandbox/controls/fail", json!({"status": 42})),
        ("/sandbox/controls/fail", json!({"status": "503"})),
        ("/sandbox/controls/fail", json!({})),
        ("/sandbox/controls/stall", json!({"ms": -1})),
    ] {
        let answer = client.put_json(path, body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path} {body}");
    }
    let state = client.get("/sandbox/controls").await.json();
    assert_eq!(
        state,
        json!({"stall_ms": 1500, "fail_status": 502, "requests": 1})
    );

    let reset = client
        .send(
            client
                .request(Method::POST, "/sandbox/controls/reset")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(
        reset.json(),
        json!({"stall_ms": null, "fail_status": null, "requests": 0})
    );
    assert_eq!(sandbox.controls().fail(), None);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn service_requests_are_counted_and_their_headers_kept() {
    let sandbox = sandbox().await;
    let client = TestClient::http1(&sandbox);
    let controls = sandbox.controls();
    assert_eq!(controls.requests(), 0);
    assert_eq!(controls.last_headers(), None);

    let answer = client
        .send(
            client
                .request(Method::GET, "/crm/customers/C000007/tags")
                .header(
                    "x-fapi-interaction-id",
                    "c770aef3-6784-41f7-8e0e-ff5f97bddb3a",
                )
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(controls.requests(), 1);
    let headers = controls.last_headers().unwrap();
    assert_eq!(
        headers["x-fapi-interaction-id"],
        "c770aef3-6784-41f7-8e0e-ff5f97bddb3a"
    );
    assert_eq!(
        headers["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );

    // /sandbox/* requests are neither counted nor kept.
    let last = client.get("/sandbox/last-headers").await.json();
    assert_eq!(
        last["headers"]["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    );
    assert_eq!(controls.requests(), 1);

    // 404s are service requests too.
    client.get("/crm/customers/C999999/tags").await;
    assert_eq!(controls.requests(), 2);
    assert!(
        controls
            .last_headers()
            .unwrap()
            .get("traceparent")
            .is_none()
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn echo_headers_returns_this_requests_headers() {
    let sandbox = sandbox().await;
    let client = TestClient::http1(&sandbox);
    let answer = client
        .send(
            client
                .request(Method::GET, "/sandbox/echo-headers")
                .header("x-fapi-interaction-id", "abc")
                .header("accept", "application/json")
                .header("accept", "text/plain")
                .body(Full::default())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let echo = answer.json();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/sandbox/echo-headers");
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["headers"]["x-fapi-interaction-id"], "abc");
    assert_eq!(echo["headers"]["accept"], "application/json, text/plain");
    assert_eq!(echo["headers"]["host"], sandbox.addr().to_string().as_str());
    assert_eq!(sandbox.controls().requests(), 0);
    sandbox.shutdown().await;
}

// === protocols and lifecycle ===

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served() {
    let sandbox = sandbox().await;
    let client = TestClient::h2c(&sandbox);
    let echo = client.get("/sandbox/echo-headers").await;
    assert_eq!(echo.json()["version"], "HTTP/2.0");
    let tags = client.get("/crm/customers/C000321/tags").await;
    assert_eq!(tags.status, StatusCode::OK);
    assert_eq!(Some(tags.body), data::customer_document("C000321"));
    // Concurrent streams on one connection.
    let answers = futures_join(&client).await;
    assert!(answers.iter().all(|s| *s == StatusCode::OK));
    sandbox.shutdown().await;
}

async fn futures_join(client: &TestClient) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    let (a, b, c) = tokio::join!(
        client.get("/catalogue/products"),
        client.get("/crm/customers/C000001/tags"),
        client.get("/catalogue/products/etf-510300"),
    );
    statuses.extend([a.status, b.status, c.status]);
    statuses
}

#[tokio::test]
async fn http1_keep_alive_serves_several_requests_on_one_connection() {
    let sandbox = sandbox().await;
    let mut stream = TcpStream::connect(sandbox.addr()).await.unwrap();
    for id in ["C000001", "C000002", "C000003"] {
        let request = format!("GET /crm/customers/{id}/tags HTTP/1.1\r\nHost: sandbox\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let body = read_http1_response(&mut stream).await;
        assert_eq!(Some(body), data::customer_document(id));
    }
    assert_eq!(sandbox.controls().requests(), 3);
    sandbox.shutdown().await;
}

/// Reads one `200` response with a `content-length` body from a raw HTTP/1.1 stream.
async fn read_http1_response(stream: &mut TcpStream) -> Bytes {
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed");
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    while buffer.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed");
        buffer.extend_from_slice(&chunk[..n]);
    }
    Bytes::copy_from_slice(&buffer[head_end..head_end + length])
}

#[tokio::test]
async fn serve_runs_on_a_given_listener_until_its_shutdown_future() {
    let listener = TcpListener::bind(LOCALHOST).await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let controls = Arc::new(Controls::new());
    let server = tokio::spawn(gateway_sandbox::serve(listener, controls.clone(), async {
        let _ = stopped.await;
    }));

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /crm/customers/C000001/tags HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_http1_response(&mut stream).await;
    assert_eq!(controls.requests(), 1);

    stop.send(()).unwrap();
    // The idle keep-alive connection does not hold the server up.
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let sandbox = sandbox().await;
    let addr = sandbox.addr();
    assert!(TcpStream::connect(addr).await.is_ok());
    drop(sandbox);
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting 5 s after drop");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
