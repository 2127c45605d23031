//! `RequireTokenLayer` in a `ServiceBuilder` over a `service_fn` handler, driven with `oneshot`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use tower::{ServiceBuilder, ServiceExt, service_fn};

use gateway_auth::{RequireTokenLayer, TokenVerifier};
use gateway_core::time::ManualClock;
use gateway_core::{InteractionId, PartnerContext, Route, RouteMatch, TokenClaims};

use crate::common::*;

type Body = Full<Bytes>;

/// Builds the layer over a handler that counts its calls and echoes the token's partner.
struct Harness {
    fixture: Fixture,
    calls: Arc<AtomicUsize>,
    clock: ManualClock,
}

impl Harness {
    fn new() -> Harness {
        Harness {
            fixture: Fixture::new(),
            calls: Arc::new(AtomicUsize::new(0)),
            clock: ManualClock::new(NOW),
        }
    }

    async fn send(&self, request: Request<Body>) -> Response<Body> {
        self.send_with(self.fixture.verifier.clone(), request).await
    }

    async fn send_with(
        &self,
        verifier: TokenVerifier<MemoryStore>,
        request: Request<Body>,
    ) -> Response<Body> {
        let calls = self.calls.clone();
        let handler = service_fn(move |request: Request<Body>| {
            calls.fetch_add(1, Ordering::SeqCst);
            let partner = request
                .extensions()
                .get::<TokenClaims>()
                .map(|c| c.partner.to_string())
                .unwrap_or_else(|| "-".into());
            async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(partner)))) }
        });
        let service = ServiceBuilder::new()
            .layer(RequireTokenLayer::new(verifier).with_clock(Arc::new(self.clock.clone())))
            .service(handler);
        service.oneshot(request).await.unwrap()
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// A request as the listener and router leave it: demo-bank over certificate 1.
fn request(route: Route, uri: &str, authorization: &[&str]) -> Request<Body> {
    let mut builder = Request::builder().uri(uri);
    for value in authorization {
        builder = builder.header(header::AUTHORIZATION, *value);
    }
    let mut request = builder.body(Full::new(Bytes::new())).unwrap();
    let extensions = request.extensions_mut();
    extensions.insert(peer(1));
    extensions.insert(PartnerContext {
        partner: partner("demo-bank"),
    });
    extensions.insert(RouteMatch { route, param: None });
    extensions.insert(InteractionId::parse("iid-1").unwrap());
    request
}

async fn body_json(response: Response<Body>) -> serde_json::Value {
    let bytes = read_body(response.into_body(), 64 * 1024).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Asserts a problem response: status, media type, `type` URI, challenge; handler not called.
async fn assert_problem(
    h: &Harness,
    response: Response<Body>,
    status: u16,
    slug: &str,
    challenge: Option<&str>,
) {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(response.headers()["x-fapi-interaction-id"], "iid-1");
    assert_eq!(
        response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap()),
        challenge
    );
    let body = body_json(response).await;
    assert_eq!(
        body["type"],
        format!("https://partner-gateway.dev/problems/{slug}")
    );
    assert_eq!(body["status"], status);
    assert_eq!(h.calls(), 0, "the handler must not run");
    assert!(h.fixture.store.revoked().is_empty());
}

const INVALID: Option<&str> = Some("Bearer error=\"invalid_token\"");

#[tokio::test]
async fn a_valid_token_reaches_the_handler_with_its_claims() {
    let h = Harness::new();
    let token = h.fixture.token("demo-bank", 1, NOW);
    let bearer = format!("Bearer {token}");
    let response = h
        .send(request(Route::Products, "/v1/products?page=2", &[&bearer]))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        read_body(response.into_body(), 1024).await.unwrap(),
        "demo-bank"
    );
    // The second request is answered from the cache, without reading the store.
    let reads = h.fixture.store.reads();
    let response = h
        .send(request(
            Route::CustomerTags,
            "/v1/customers/x/tags",
            &[&bearer],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.fixture.store.reads(), reads);
    assert_eq!(h.calls(), 2);
}

#[tokio::test]
async fn oauth_routes_pass_through_untouched() {
    let h = Harness::new();
    for route in [Route::Token, Route::Revoke, Route::Jwks, Route::Metadata] {
        let response = h.send(request(route, route.template(), &[])).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(h.calls(), 4);
}

#[tokio::test]
async fn no_token_gets_a_bare_bearer_challenge() {
    let h = Harness::new();
    let response = h.send(request(Route::Products, "/v1/products", &[])).await;
    assert_problem(&h, response, 401, "invalid-token", Some("Bearer")).await;
}

#[tokio::test]
async fn token_in_query_is_refused() {
    let h = Harness::new();
    let token = h.fixture.token("demo-bank", 1, NOW);
    let uri = format!("/v1/products?access_token={token}");
    let response = h.send(request(Route::Products, &uri, &[])).await;
    assert_problem(&h, response, 401, "invalid-token", INVALID).await;
    // Also when a header carries the same token.
    let bearer = format!("Bearer {token}");
    let response = h.send(request(Route::Products, &uri, &[&bearer])).await;
    assert_problem(&h, response, 401, "invalid-token", INVALID).await;
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let h = Harness::new();
    let bearer = format!("Bearer {}", h.fixture.token("demo-bank", 1, NOW));
    let response = h
        .send(request(
            Route::Products,
            "/v1/products",
            &[&bearer, &bearer],
        ))
        .await;
    assert_problem(&h, response, 401, "invalid-token", INVALID).await;
}

#[tokio::test]
async fn malformed_authorization_headers_are_refused() {
    let h = Harness::new();
    let token = h.fixture.token("demo-bank", 1, NOW);
    let cases = [
        format!("Basic {token}"),
        format!("Bearer  {token}"),
        format!("Bearer {token} extra"),
        "Bearer".to_owned(),
        "Bearer not-a-jwt".to_owned(),
        format!("Token {token}"),
    ];
    for value in &cases {
        let response = h
            .send(request(Route::Products, "/v1/products", &[value]))
            .await;
        assert_problem(&h, response, 401, "invalid-token", INVALID).await;
    }
}

#[tokio::test]
async fn oversized_token_is_refused() {
    let h = Harness::new();
    let bearer = format!("Bearer {}", "a".repeat(4097));
    let response = h
        .send(request(Route::Products, "/v1/products", &[&bearer]))
        .await;
    assert_problem(&h, response, 401, "invalid-token", INVALID).await;
}

#[tokio::test]
async fn missing_scope_is_403_with_the_scope_in_the_challenge() {
    let h = Harness::new();
    // demo-bank's registration has tags:read and products:read, not referrals:*.
    let bearer = format!("Bearer {}", h.fixture.token("demo-bank", 1, NOW));
    let response = h
        .send(request(
            Route::CampaignStats,
            "/v1/campaigns/c/stats",
            &[&bearer],
        ))
        .await;
    let challenge = Some("Bearer error=\"insufficient_scope\", scope=\"referrals:read\"");
    assert_problem(&h, response, 403, "insufficient-scope", challenge).await;
}

#[tokio::test]
async fn token_presented_over_other_certificate_is_rejected() {
    let h = Harness::new();
    let bearer = format!("Bearer {}", h.fixture.token("demo-bank", 2, NOW));
    let response = h
        .send(request(Route::Products, "/v1/products", &[&bearer]))
        .await;
    assert_problem(&h, response, 401, "token-certificate-mismatch", INVALID).await;
}

#[tokio::test]
async fn expired_token_is_refused_by_the_layers_clock() {
    let h = Harness::new();
    let bearer = format!("Bearer {}", h.fixture.token("demo-bank", 1, NOW));
    assert_eq!(
        h.send(request(Route::Products, "/v1/products", &[&bearer]))
            .await
            .status(),
        200
    );
    h.clock.advance(LIFETIME as i64 + LEEWAY + 1);
    let h2 = Harness {
        fixture: h.fixture,
        calls: Arc::new(AtomicUsize::new(0)),
        clock: h.clock,
    };
    let response = h2
        .send(request(Route::Products, "/v1/products", &[&bearer]))
        .await;
    assert_problem(&h2, response, 401, "invalid-token", INVALID).await;
}

#[tokio::test]
async fn unreachable_store_answers_503_with_retry_after() {
    let h = Harness::new();
    let bearer = format!("Bearer {}", h.fixture.token("demo-bank", 1, NOW));
    h.fixture.store.set_down(true);
    let response = h
        .send(request(Route::Products, "/v1/products", &[&bearer]))
        .await;
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    assert_problem(&h, response, 503, "store-unavailable", None).await;
}

#[tokio::test]
async fn a_request_without_connection_facts_is_never_admitted() {
    let h = Harness::new();
    let bearer = format!("Bearer {}", h.fixture.token("demo-bank", 1, NOW));
    let mut bare = request(Route::Products, "/v1/products", &[&bearer]);
    bare.extensions_mut().remove::<PartnerContext>();
    let response = h.send(bare).await;
    assert_problem(&h, response, 500, "internal-error", None).await;
    let mut unrouted = request(Route::Products, "/v1/products", &[&bearer]);
    unrouted.extensions_mut().remove::<RouteMatch>();
    let response = h.send(unrouted).await;
    assert_problem(&h, response, 500, "internal-error", None).await;
}
