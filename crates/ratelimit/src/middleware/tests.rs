use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use governor::clock::FakeRelativeClock;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt, service_fn};

use gateway_core::{InteractionId, PartnerContext, PartnerId, ProblemType, Route, RouteMatch};

use super::*;
use crate::headers::{RATELIMIT, RATELIMIT_POLICY};
use crate::{CheckFuture, CheckQuota, Decision, Limiter, LimiterSettings, Outcome, Tier};

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

fn request(partner: Option<&str>, route: Option<Route>) -> Request<()> {
    let mut request = Request::new(());
    if let Some(partner) = partner {
        request.extensions_mut().insert(PartnerContext {
            partner: PartnerId::parse(partner).unwrap(),
        });
    }
    if let Some(route) = route {
        request
            .extensions_mut()
            .insert(RouteMatch { route, param: None });
    }
    request
}

/// A handler that counts its calls, answers 404 for `/missing`, echoes the decision it saw in
/// an `x-decision-tier` header, and 200 otherwise.
fn handler(
    calls: Arc<AtomicUsize>,
) -> impl tower_service::Service<
    Request<()>,
    Response = Response<Bytes>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Bytes>, Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |req: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut response = Response::new(Bytes::from_static(b"{}"));
            if req.uri().path() == "/missing" {
                *response.status_mut() = StatusCode::NOT_FOUND;
            }
            if let Some(decision) = req.extensions().get::<Decision>() {
                response
                    .headers_mut()
                    .insert("x-decision-tier", decision.tier.as_str().parse().unwrap());
            }
            Ok(response)
        }
    })
}

fn lookup(limit: Limit) -> impl Fn(&PartnerId, Route) -> Option<(Limit, OutagePolicy)> + Clone {
    move |_: &PartnerId, route: Route| {
        (route != Route::Jwks).then_some((limit, OutagePolicy::Local))
    }
}

fn body(response: &Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(response.body()).unwrap()
}

#[tokio::test]
async fn admitted_responses_carry_both_fields_and_remaining_counts_down() {
    let clock = FakeRelativeClock::default();
    let limiter = Limiter::local_with_clock(LimiterSettings::default(), clock);
    let calls = Arc::new(AtomicUsize::new(0));
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(
            limiter,
            lookup(Limit::new(nz(2), nz(3))),
        ))
        .service(handler(calls.clone()));

    for remaining in [2u32, 1, 0] {
        let response = service
            .clone()
            .oneshot(request(Some("demo-bank"), Some(Route::Products)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[RATELIMIT_POLICY],
            "\"products\";q=2;w=1;pgw-burst=3"
        );
        let reset = (3 - remaining).div_ceil(2);
        assert_eq!(
            response.headers()[RATELIMIT],
            format!("\"products\";r={remaining};t={reset}").as_str()
        );
        assert_eq!(response.headers()["x-decision-tier"], "local");
        let decision = response.extensions().get::<Decision>().unwrap();
        assert_eq!(
            (decision.outcome, decision.remaining),
            (Outcome::Allow, Some(remaining))
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_exhausted_quota_answers_429_without_calling_inner_and_retry_after_works() {
    let clock = FakeRelativeClock::default();
    let limiter = Limiter::local_with_clock(LimiterSettings::default(), clock.clone());
    let calls = Arc::new(AtomicUsize::new(0));
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(
            limiter.clone(),
            lookup(Limit::new(nz(1), nz(2))),
        ))
        .service(handler(calls.clone()));
    let call = |id: Option<&str>| {
        let mut req = request(Some("demo-bank"), Some(Route::CustomerTags));
        if let Some(id) = id {
            req.extensions_mut()
                .insert(InteractionId::parse(id).unwrap());
        }
        service.clone().oneshot(req)
    };
    assert_eq!(call(None).await.unwrap().status(), StatusCode::OK);
    assert_eq!(call(None).await.unwrap().status(), StatusCode::OK);

    let refused = call(Some("int-42")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()[CONTENT_TYPE], gateway_core::PROBLEM_JSON);
    assert_eq!(refused.headers()[RETRY_AFTER], "1");
    assert_eq!(refused.headers()[RATELIMIT], "\"customer_tags\";r=0;t=1");
    assert_eq!(
        refused.headers()[RATELIMIT_POLICY],
        "\"customer_tags\";q=1;w=1;pgw-burst=2"
    );
    assert_eq!(
        refused.headers()[gateway_core::X_FAPI_INTERACTION_ID],
        "int-42"
    );
    let problem = body(&refused);
    assert_eq!(problem["type"], ProblemType::RateLimited.type_uri());
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["policy"], "customer_tags");
    assert_eq!(problem["instance"], "urn:fapi-interaction-id:int-42");
    assert_eq!(
        refused.extensions().get::<Decision>().unwrap().tier,
        Tier::Local
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a refusal never reaches the handler"
    );
    // A refusal spends nothing: still refused, still one second away.
    let again = call(None).await.unwrap();
    assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(again.headers()[RETRY_AFTER], "1");

    // Honouring Retry-After succeeds.
    let retry_after: u64 = refused.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    clock.advance(Duration::from_secs(retry_after));
    let admitted = call(None).await.unwrap();
    assert_eq!(admitted.status(), StatusCode::OK);
    assert_eq!(admitted.headers()[RATELIMIT], "\"customer_tags\";r=0;t=2");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let metrics = limiter.metrics().snapshot();
    assert_eq!(metrics.decisions(Tier::Local, Outcome::Allow), 3);
    assert_eq!(metrics.decisions(Tier::Local, Outcome::Deny), 2);
}

#[tokio::test]
async fn error_responses_of_a_limited_route_carry_the_fields_too() {
    let limiter =
        Limiter::local_with_clock(LimiterSettings::default(), FakeRelativeClock::default());
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(
            limiter,
            lookup(Limit::new(nz(5), nz(5))),
        ))
        .service(handler(Arc::default()));
    let mut req = request(Some("demo-bank"), Some(Route::Product));
    *req.uri_mut() = "/missing".parse().unwrap();
    let response = service.oneshot(req).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()[RATELIMIT], "\"product\";r=4;t=1");
    assert!(response.headers().contains_key(RATELIMIT_POLICY));
}

#[tokio::test]
async fn requests_without_partner_route_or_limit_pass_untouched() {
    let limiter =
        Limiter::local_with_clock(LimiterSettings::default(), FakeRelativeClock::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(
            limiter.clone(),
            lookup(Limit::new(nz(1), nz(1))),
        ))
        .service(handler(calls.clone()));
    for req in [
        request(None, Some(Route::Products)),
        request(Some("demo-bank"), None),
        request(Some("demo-bank"), Some(Route::Jwks)),
        request(Some("demo-bank"), Some(Route::Jwks)),
    ] {
        let response = service.clone().oneshot(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key(RATELIMIT));
        assert!(!response.headers().contains_key(RATELIMIT_POLICY));
        assert!(!response.headers().contains_key("x-decision-tier"));
        assert!(response.extensions().get::<Decision>().is_none());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(
        limiter
            .metrics()
            .snapshot()
            .iter_decisions()
            .map(|(_, _, n)| n)
            .sum::<u64>(),
        0
    );
}

#[tokio::test]
async fn the_limit_is_looked_up_per_request_so_a_reload_applies_at_once() {
    let limiter =
        Limiter::local_with_clock(LimiterSettings::default(), FakeRelativeClock::default());
    let burst = Arc::new(AtomicUsize::new(1));
    let live = burst.clone();
    let lookup = move |_: &PartnerId, _: Route| {
        let burst = NonZeroU32::new(live.load(Ordering::SeqCst) as u32)?;
        Some((Limit::new(nz(1), burst), OutagePolicy::Local))
    };
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(limiter, lookup))
        .service(handler(Arc::default()));
    let call = || {
        service
            .clone()
            .oneshot(request(Some("demo-bank"), Some(Route::Products)))
    };
    assert_eq!(call().await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        call().await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    burst.store(4, Ordering::SeqCst);
    let response = call().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[RATELIMIT_POLICY],
        "\"products\";q=1;w=1;pgw-burst=4"
    );
    assert_eq!(response.headers()[RATELIMIT], "\"products\";r=3;t=1");
}

/// A `CheckQuota` that always takes the asynchronous path, as a cluster limiter does.
struct Later(Decision);

impl CheckQuota for Later {
    fn check(&self, _: &PartnerId, _: Route, _: Limit, _: OutagePolicy) -> CheckFuture {
        let decision = self.0.clone();
        CheckFuture::pending(async move {
            tokio::task::yield_now().await;
            decision
        })
    }
}

#[tokio::test]
async fn asynchronous_decisions_admit_with_headers_or_refuse_without_calling_inner() {
    let limit = Limit::new(nz(10), nz(10));
    let admitted = Decision {
        remaining: Some(7),
        reset_after: Some(Duration::from_millis(300)),
        ..Decision::uncounted(Outcome::Allow, Tier::Cluster, Route::Products, limit)
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(Later(admitted), lookup(limit)))
        .service(handler(calls.clone()));
    let response = service
        .oneshot(request(Some("demo-bank"), Some(Route::Products)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[RATELIMIT], "\"products\";r=7;t=1");
    assert_eq!(response.headers()["x-decision-tier"], "cluster");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let closed = Decision {
        retry_after: Some(Duration::from_millis(1500)),
        ..Decision::uncounted(Outcome::Deny, Tier::FailClosed, Route::Products, limit)
    };
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(Later(closed), lookup(limit)))
        .service(handler(calls.clone()));
    let response = service
        .oneshot(request(Some("demo-bank"), Some(Route::Products)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], "2");
    assert!(!response.headers().contains_key(RATELIMIT));
    assert_eq!(
        body(&response)["type"],
        ProblemType::StoreUnavailable.type_uri()
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "refused before the handler"
    );
}

#[tokio::test]
async fn failing_open_admits_with_the_policy_but_no_count() {
    let limit = Limit::new(nz(10), nz(10));
    let open = Decision::uncounted(Outcome::Allow, Tier::FailOpen, Route::Products, limit);
    let service = ServiceBuilder::new()
        .layer(RateLimitLayer::new(Later(open), lookup(limit)))
        .service(handler(Arc::default()));
    let response = service
        .oneshot(request(Some("demo-bank"), Some(Route::Products)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[RATELIMIT_POLICY],
        "\"products\";q=10;w=1;pgw-burst=10"
    );
    assert!(!response.headers().contains_key(RATELIMIT));
    assert_eq!(response.headers()["x-decision-tier"], "fail_open");
}
