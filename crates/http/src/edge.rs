//! The two outermost layers of the partner stack.
//!
//! - [`RescueLayer`]: anything that escapes below — an error or a panic — becomes an RFC 9457
//!   problem, and the connection and process survive.
//! - [`InteractionIdLayer`]: every request gets an [`InteractionId`] (echoed from
//!   `x-fapi-interaction-id` or minted as a UUID) and a [`TraceContext`] (continued from
//!   `traceparent` or started), and every response — success or error — carries the id.
//!
//! # Ordering
//!
//! `Rescue` is outermost so nothing escapes it. `InteractionId` comes next, before audit and
//! every layer that can reject, so every record and every problem carries the id.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::{HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::error;

use gateway_core::problem::problem_response;
use gateway_core::{InteractionId, Problem, ProblemType, TraceContext, X_FAPI_INTERACTION_ID};

use crate::body::{Body, BoxError};

// === impl Rescue ===

/// Turns errors and panics from the inner service into problem responses.
#[derive(Debug, Clone, Copy, Default)]
pub struct RescueLayer;

impl RescueLayer {
    /// Creates the layer.
    pub fn new() -> Self {
        RescueLayer
    }
}

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue { inner }
    }
}

/// See [`RescueLayer`].
#[derive(Debug, Clone)]
pub struct Rescue<S> {
    inner: S,
}

impl<S> Rescue<S> {
    /// Wraps a service.
    pub fn new(inner: S) -> Self {
        Rescue { inner }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B> Service<Request<B>> for Rescue<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<Body>, std::convert::Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner stack is always ready (no backpressure below the listener's own limits);
        // an error here is a bug, answered per request below.
        match self.inner.poll_ready(cx) {
            Poll::Ready(_) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let id = req.extensions().get::<InteractionId>().cloned();
        // The panic may happen while building the future, too.
        let future = std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(req)));
        Box::pin(async move {
            let future = match future {
                Ok(future) => future,
                Err(panic) => return Ok(panic_response(&panic, id.as_ref())),
            };
            match AssertUnwindSafe(future).catch_unwind().await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(err)) => Ok(error_response(&err.into(), id.as_ref())),
                Err(panic) => Ok(panic_response(&panic, id.as_ref())),
            }
        })
    }
}

/// Answers an unexpected error by blame: a dependency of ours → 502/503/504, a bug → 500.
pub fn error_response(err: &BoxError, id: Option<&InteractionId>) -> Response<Body> {
    let problem = blame(err.as_ref());
    if problem.kind == ProblemType::Internal {
        error!(error = %err, "Request failed.");
    }
    let mut response = problem_response::<Body>(&problem, id);
    if problem.status() == http::StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Maps an error chain to the problem that names its blame.
pub fn blame(err: &(dyn std::error::Error + 'static)) -> Problem {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        if let Some(upstream) = e.downcast_ref::<crate::proxy::UpstreamError>() {
            return Problem::new(upstream.problem_type());
        }
        cause = e.source();
    }
    Problem::new(ProblemType::Internal)
}

/// The 500 problem answered for a panic; the panic message goes to the log only.
pub fn panic_response(
    panic: &Box<dyn std::any::Any + Send>,
    id: Option<&InteractionId>,
) -> Response<Body> {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    error!(panic = %message, interaction_id = id.map(|i| i.as_str()), "Handler panicked; answered 500.");
    problem_response::<Body>(&Problem::new(ProblemType::Internal), id)
}

// === impl InteractionId ===

/// Sets [`InteractionId`] and [`TraceContext`] on every request and the id on every response.
#[derive(Debug, Clone, Copy, Default)]
pub struct InteractionIdLayer;

impl InteractionIdLayer {
    /// Creates the layer.
    pub fn new() -> Self {
        InteractionIdLayer
    }
}

impl<S> Layer<S> for InteractionIdLayer {
    type Service = SetInteractionId<S>;

    fn layer(&self, inner: S) -> SetInteractionId<S> {
        SetInteractionId { inner }
    }
}

/// See [`InteractionIdLayer`].
#[derive(Debug, Clone)]
pub struct SetInteractionId<S> {
    inner: S,
}

pin_project! {
    /// Future of [`SetInteractionId`].
    pub struct InteractionFuture<F> {
        #[pin]
        state: InteractionState<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum InteractionState<F> {
        // The caller's id was unacceptable; answered without calling inner.
        Reject { response: Option<Response<Body>> },
        // Waiting for inner; then the id goes on the response.
        Inner { #[pin] future: F, id: HeaderValue },
    }
}

impl<F, E> Future for InteractionFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Reject { response } => {
                // Polled again only after Ready, which a future contract forbids; answer a
                // fresh 500 rather than panic.
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    problem_response::<Body>(&Problem::new(ProblemType::Internal), None)
                })))
            }
            StateProj::Inner { future, id } => {
                let mut response = std::task::ready!(future.poll(cx))?;
                response
                    .headers_mut()
                    .insert(X_FAPI_INTERACTION_ID, id.clone());
                Poll::Ready(Ok(response))
            }
        }
    }
}

impl<S, B> Service<Request<B>> for SetInteractionId<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = InteractionFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let trace = trace_context(req.headers());
        req.extensions_mut().insert(trace);
        let mut supplied = req.headers().get_all(X_FAPI_INTERACTION_ID).iter();
        let parsed = match (supplied.next(), supplied.next()) {
            (None, _) => Ok(None),
            (Some(value), None) => value
                .to_str()
                .ok()
                .and_then(InteractionId::parse)
                .map(Some)
                .ok_or("x-fapi-interaction-id must be 1 to 64 characters of A-Z a-z 0-9 - _ ."),
            (Some(_), Some(_)) => Err("x-fapi-interaction-id must appear once"),
        };
        match parsed {
            Ok(id) => {
                let id = id.unwrap_or_else(mint);
                // Interaction ids hold only header-safe characters (checked or minted).
                let value = HeaderValue::from_str(id.as_str())
                    .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
                req.extensions_mut().insert(id);
                InteractionFuture {
                    state: InteractionState::Inner {
                        future: self.inner.call(req),
                        id: value,
                    },
                }
            }
            Err(detail) => {
                let id = mint();
                let problem = Problem::new(ProblemType::InvalidHeader).with_detail(detail);
                InteractionFuture {
                    state: InteractionState::Reject {
                        response: Some(problem_response::<Body>(&problem, Some(&id))),
                    },
                }
            }
        }
    }
}

/// Mints a fresh interaction id (UUID v4).
pub fn mint() -> InteractionId {
    let id = uuid::Builder::from_random_bytes(random_16()).into_uuid();
    InteractionId::minted(id.to_string())
}

/// 16 random bytes from aws-lc's user-space DRBG: no system call per request (uuid's own
/// `new_v4` asks the kernel every time).
fn random_16() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // The DRBG failing is not something a request can fix; fall back to the kernel.
        bytes = uuid::Uuid::new_v4().into_bytes();
    }
    bytes
}

fn trace_context(headers: &http::HeaderMap) -> TraceContext {
    let random = random_16();
    let mut span_id = [0u8; 8];
    span_id.copy_from_slice(&random[..8]);
    if span_id == [0; 8] {
        span_id[7] = 1;
    }
    let continued = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse_traceparent);
    match continued {
        Some((trace_id, flags)) => TraceContext {
            trace_id,
            span_id,
            flags,
        },
        None => TraceContext {
            trace_id: random_16(),
            span_id,
            flags: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::{ServiceBuilder, ServiceExt, service_fn};

    use super::*;

    async fn ok(req: Request<Body>) -> Result<Response<Body>, Infallible> {
        let id = req.extensions().get::<InteractionId>().unwrap().to_string();
        Ok(Response::new(Body::from(id)))
    }

    #[tokio::test]
    async fn echoes_a_supplied_id() {
        let svc = ServiceBuilder::new()
            .layer(InteractionIdLayer::new())
            .service(service_fn(ok));
        let req = Request::builder()
            .header(X_FAPI_INTERACTION_ID, "abc-123")
            .body(Body::empty())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.headers()[X_FAPI_INTERACTION_ID], "abc-123");
    }

    #[tokio::test]
    async fn mints_an_id_when_none_is_sent() {
        let svc = ServiceBuilder::new()
            .layer(InteractionIdLayer::new())
            .service(service_fn(ok));
        let res = svc.oneshot(Request::new(Body::empty())).await.unwrap();
        let id = res.headers()[X_FAPI_INTERACTION_ID].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok());
    }

    #[tokio::test]
    async fn refuses_an_unsafe_id_with_a_problem_that_still_carries_one() {
        let svc = ServiceBuilder::new()
            .layer(InteractionIdLayer::new())
            .service(service_fn(ok));
        let req = Request::builder()
            .header(X_FAPI_INTERACTION_ID, "a b")
            .body(Body::empty())
            .unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 400);
        assert_eq!(
            res.headers()[http::header::CONTENT_TYPE],
            gateway_core::PROBLEM_JSON
        );
        assert!(res.headers().contains_key(X_FAPI_INTERACTION_ID));
    }

    #[tokio::test]
    async fn rescue_turns_a_panic_into_a_500_problem() {
        let svc = ServiceBuilder::new()
            .layer(RescueLayer::new())
            .service(service_fn(|_req: Request<Body>| async move {
                if true {
                    panic!("boom");
                }
                Ok::<_, Infallible>(Response::new(Body::empty()))
            }));
        let res = svc.oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(res.status(), 500);
        assert_eq!(
            res.headers()[http::header::CONTENT_TYPE],
            gateway_core::PROBLEM_JSON
        );
    }

    #[tokio::test]
    async fn rescue_answers_an_error_by_blame() {
        let svc = ServiceBuilder::new()
            .layer(RescueLayer::new())
            .service(service_fn(|_req: Request<Body>| async move {
                Err::<Response<Body>, BoxError>(Box::new(crate::proxy::UpstreamError::Timeout {
                    upstream: "tags",
                }))
            }));
        let res = svc.oneshot(Request::new(Body::empty())).await.unwrap();
        assert_eq!(res.status(), 504);
    }
}
