//! The partner stack: identification, routing, load shedding and dispatch to handlers.
//!
//! ```text
//!  Rescue ─▶ InteractionId ─▶ Audit ─▶ Observe ─▶ Shed ─▶ Identify ─▶ RequireToken ─▶ RateLimit ─▶ Dispatch
//!  panics,    id + trace on    durable   metrics,   503     partner,    token bound to   per partner   handler
//!  errors →   every response   record    log line   first   route;      this cert,       and route;    by route
//!  problems                    per req                      403/400/    scope;           429 +
//!                                                           404/405     401/403          headers
//! ```
//!
//! Each line of [`partner_service`] is one concern, in request order.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use futures_util::FutureExt as _;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceBuilder};
use tracing::{Instrument as _, debug};

use gateway_audit::AuditLayer;
use gateway_config::Config;
use gateway_core::problem::problem_response;
use gateway_core::route::{self, Routed};
use gateway_core::{
    InteractionId, PartnerContext, PeerIdentity, Problem, ProblemType, RouteMatch, TokenClaims,
};
use gateway_ratelimit::RateLimitLayer;

use crate::body::{Body, BoxError};

use crate::edge::{InteractionIdLayer, RescueLayer};
use crate::handlers;
use crate::state::GatewayState;

/// The configuration snapshot a request was identified under; handlers read partner and
/// campaign details from it so one request never sees two configurations.
#[derive(Debug, Clone)]
pub struct ConfigSnapshot(pub Arc<Config>);

/// Builds the partner stack for one connection whose client certificate is `peer`.
pub fn partner_service(
    state: Arc<GatewayState>,
    peer: PeerIdentity,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    let identity = peer.clone();
    let limits = state.clone();
    let lookup = move |partner: &gateway_core::PartnerId, route: gateway_core::Route| {
        crate::state::limit_for(&limits.config(), partner, route)
    };
    ServiceBuilder::new()
        // Outermost: anything that escapes below becomes problem+json.
        .layer(RescueLayer::new())
        // Before everything that can answer, so every response and record carries the id.
        .layer(InteractionIdLayer::new())
        // The connection's certificate, for the audit record of every request.
        .map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(peer.clone());
            req
        })
        // Sees every final status below; in sync mode holds the response until its record
        // is durable, and answers 503 instead when it cannot be.
        .layer(AuditLayer::new(
            state.audit.clone(),
            state.audit_hasher.clone(),
        ))
        // Metrics and the request log line.
        .layer(ObserveLayer::new(state.clone()))
        // Refuse before doing any work when overloaded.
        .layer(ShedLayer::new(state.clone()))
        // PartnerContext, RouteMatch, ConfigSnapshot for everything below (403/400/404/405).
        .layer(IdentifyLayer::new(state.clone(), identity))
        // Needs PeerIdentity, PartnerContext and RouteMatch; sets TokenClaims (401/403).
        .layer(state.token_layer.clone())
        // After the token: limits are per partner, and unauthenticated requests spend no quota.
        .layer(RateLimitLayer::new(state.limiter.clone(), lookup))
        .service(Dispatch { state })
}

// === impl Observe ===

/// Records metrics and one log line per request.
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    state: Arc<GatewayState>,
}

impl ObserveLayer {
    /// Creates the layer.
    pub fn new(state: Arc<GatewayState>) -> Self {
        ObserveLayer { state }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            state: self.state.clone(),
        }
    }
}

/// See [`ObserveLayer`].
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    state: Arc<GatewayState>,
}

impl<S> Service<Request<Incoming>> for Observe<S>
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let started = Instant::now();
        let method = req.method().clone();
        let id = req.extensions().get::<InteractionId>().cloned();
        let state = self.state.clone();
        // One span per request, joining the caller's trace (a no-op unless OTLP export is on).
        let span = req
            .extensions()
            .get::<gateway_core::TraceContext>()
            .map_or_else(tracing::Span::none, |trace| {
                gateway_telemetry::request_span(trace, "", "")
            });
        let future = self.inner.call(req).instrument(span.clone());
        Box::pin(async move {
            let response = future.await?;
            let elapsed = started.elapsed();
            let partner = response
                .extensions()
                .get::<PartnerContext>()
                .map(|p| p.partner.clone());
            let route = response
                .extensions()
                .get::<RouteMatch>()
                .map(|m| m.route.name())
                .unwrap_or("none");
            let partner_label = partner.as_ref().map_or("unknown", |p| p.as_str());
            if let Some(partner) = &partner {
                state
                    .partner_counts
                    .of(partner)
                    .requests
                    .fetch_add(1, Ordering::Relaxed);
            }
            let status = response.status().as_u16();
            state
                .metrics
                .request(partner_label, route, status, elapsed.as_secs_f64());
            let decision = if status < 400 { "allow" } else { "deny" };
            gateway_telemetry::record_route(&span, route, partner_label);
            gateway_telemetry::record_outcome(&span, status, decision);
            gateway_telemetry::record_request(partner_label, route, decision, status, elapsed);
            // The access log is at debug level: every request is in the audit trail and the
            // metrics already, and a formatted line per request costs ~10 % of the hot path.
            debug!(
                partner = partner_label,
                route,
                method = %method,
                status,
                latency_us = elapsed.as_micros() as u64,
                interaction_id = id.as_ref().map(|i| i.as_str()),
                "Partner request."
            );
            Ok(response)
        })
    }
}

// === impl Shed ===

/// Refuses requests with 503 `overloaded` once `http.max_in_flight` are being served, so
/// the gateway degrades by answering quickly rather than by queueing without bound.
#[derive(Debug, Clone)]
pub struct ShedLayer {
    state: Arc<GatewayState>,
    in_flight: Arc<AtomicUsize>,
}

impl ShedLayer {
    /// Creates the layer (one counter per listener).
    pub fn new(state: Arc<GatewayState>) -> Self {
        let in_flight = state.in_flight.clone();
        ShedLayer { state, in_flight }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;
    fn layer(&self, inner: S) -> Shed<S> {
        Shed {
            inner,
            state: self.state.clone(),
            in_flight: self.in_flight.clone(),
        }
    }
}

/// See [`ShedLayer`].
#[derive(Debug, Clone)]
pub struct Shed<S> {
    inner: S,
    state: Arc<GatewayState>,
    in_flight: Arc<AtomicUsize>,
}

struct InFlight {
    counter: Arc<AtomicUsize>,
    state: Arc<GatewayState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
        self.state.metrics.in_flight().dec();
    }
}

pin_project! {
    /// Future of [`Shed`].
    pub struct ShedFuture<F> {
        #[pin]
        state: ShedState<F>,
    }
}

pin_project! {
    #[project = ShedStateProj]
    enum ShedState<F> {
        Reject { response: Option<Response<Body>> },
        Inner { #[pin] future: F, guard: Option<InFlight> },
    }
}

impl<F> Future for ShedFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ShedStateProj::Reject { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| problem_response(&Problem::new(ProblemType::Internal), None)))),
            ShedStateProj::Inner { future, guard } => {
                let out = std::task::ready!(future.poll(cx));
                guard.take();
                Poll::Ready(out)
            }
        }
    }
}

impl<S> Service<Request<Incoming>> for Shed<S>
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ShedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let limit = self.state.config().gateway.http.max_in_flight;
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight {
            counter: self.in_flight.clone(),
            state: self.state.clone(),
        };
        self.state.metrics.in_flight().inc();
        if before >= limit {
            drop(guard);
            self.state.metrics.shed().inc();
            let id = req.extensions().get::<InteractionId>();
            let mut response = problem_response::<Body>(&Problem::new(ProblemType::Overloaded), id);
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return ShedFuture {
                state: ShedState::Reject {
                    response: Some(response),
                },
            };
        }
        ShedFuture {
            state: ShedState::Inner {
                future: self.inner.call(req),
                guard: Some(guard),
            },
        }
    }
}

// === impl Identify ===

/// Resolves the partner of the connection's certificate against the configuration in force
/// and routes the path. Inserts [`PeerIdentity`], [`PartnerContext`], [`RouteMatch`] and
/// [`ConfigSnapshot`] into the request, and copies `PartnerContext` and `RouteMatch` into the
/// response extensions for the outer layers (metrics, audit).
#[derive(Debug, Clone)]
pub struct IdentifyLayer {
    state: Arc<GatewayState>,
    peer: PeerIdentity,
}

impl IdentifyLayer {
    /// Creates the layer for one connection.
    pub fn new(state: Arc<GatewayState>, peer: PeerIdentity) -> Self {
        IdentifyLayer { state, peer }
    }
}

impl<S> Layer<S> for IdentifyLayer {
    type Service = Identify<S>;
    fn layer(&self, inner: S) -> Identify<S> {
        Identify {
            inner,
            state: self.state.clone(),
            peer: self.peer.clone(),
        }
    }
}

/// See [`IdentifyLayer`].
#[derive(Debug, Clone)]
pub struct Identify<S> {
    inner: S,
    state: Arc<GatewayState>,
    peer: PeerIdentity,
}

pin_project! {
    /// Future of [`Identify`].
    pub struct IdentifyFuture<F> {
        #[pin]
        state: IdentifyState<F>,
    }
}

pin_project! {
    #[project = IdentifyStateProj]
    enum IdentifyState<F> {
        Reject { response: Option<Response<Body>> },
        Inner { #[pin] future: F, partner: Option<PartnerContext>, route: Option<RouteMatch> },
    }
}

impl<F> Future for IdentifyFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            IdentifyStateProj::Reject { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| problem_response(&Problem::new(ProblemType::Internal), None)))),
            IdentifyStateProj::Inner {
                future,
                partner,
                route,
            } => {
                let Ok(mut response) = std::task::ready!(future.poll(cx));
                if let Some(partner) = partner.take() {
                    response.extensions_mut().insert(partner);
                }
                if let Some(route) = route.take() {
                    response.extensions_mut().insert(route);
                }
                Poll::Ready(Ok(response))
            }
        }
    }
}

impl<S> Identify<S> {
    fn reject(
        &self,
        req: &Request<Incoming>,
        problem: Problem,
        partner: Option<PartnerContext>,
    ) -> Response<Body> {
        let mut response =
            problem_response::<Body>(&problem, req.extensions().get::<InteractionId>());
        if let Some(partner) = partner {
            response.extensions_mut().insert(partner);
        }
        response
    }
}

impl<S> Service<Request<Incoming>> for Identify<S>
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = IdentifyFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Incoming>) -> Self::Future {
        let reject = |response| IdentifyFuture {
            state: IdentifyState::Reject {
                response: Some(response),
            },
        };
        req.extensions_mut().insert(self.peer.clone());
        let config = self.state.config();
        let partner =
            match config.partner_for_certificate(&self.peer.fingerprint, &self.peer.subject) {
                None => {
                    let problem = Problem::new(ProblemType::UnknownClientCertificate).with_detail(
                        "the client certificate is trusted but not registered to any partner",
                    );
                    return reject(self.reject(&req, problem, None));
                }
                Some(partner) => partner,
            };
        let context = PartnerContext {
            partner: partner.id.clone(),
        };
        if !partner.is_active() {
            return reject(self.reject(
                &req,
                Problem::new(ProblemType::PartnerSuspended),
                Some(context),
            ));
        }
        if let Some(detail) = oversized_head(&req, &config.gateway.http) {
            let problem = Problem::new(ProblemType::HeadersTooLarge).with_detail(detail);
            return reject(self.reject(&req, problem, Some(context)));
        }
        let path = req.uri().path();
        if let Err(err) = route::check_path(path) {
            let problem = Problem::new(ProblemType::InvalidPath).with_detail(err.to_string());
            return reject(self.reject(&req, problem, Some(context)));
        }
        let matched = match route::route(req.method(), path) {
            Routed::Match(matched) => matched,
            Routed::NotFound => {
                return reject(self.reject(
                    &req,
                    Problem::new(ProblemType::NotFound),
                    Some(context),
                ));
            }
            Routed::MethodNotAllowed(allow) => {
                let mut response = self.reject(
                    &req,
                    Problem::new(ProblemType::MethodNotAllowed)
                        .with_detail(format!("this resource accepts {allow}")),
                    Some(context),
                );
                response
                    .headers_mut()
                    .insert(http::header::ALLOW, HeaderValue::from_static(allow));
                return reject(response);
            }
        };
        req.extensions_mut().insert(context.clone());
        req.extensions_mut().insert(matched.clone());
        req.extensions_mut().insert(ConfigSnapshot(config));
        IdentifyFuture {
            state: IdentifyState::Inner {
                future: self.inner.call(req),
                partner: Some(context),
                route: Some(matched),
            },
        }
    }
}

/// Checks the request head against `max_headers` and `max_header_bytes` and says which one
/// it exceeds. The listener lets hyper parse heads up to [`hard_head_limits`] so that a head
/// over the configured limit is answered here, with a problem body and an audit record;
/// only a head beyond the hard limits gets hyper's bare `431`.
fn oversized_head<B>(req: &Request<B>, limits: &gateway_config::HttpLimits) -> Option<String> {
    let headers = req.headers();
    if headers.len() > limits.max_headers {
        return Some(format!(
            "{} header fields; at most {} are accepted",
            headers.len(),
            limits.max_headers
        ));
    }
    // Request line plus each `name: value\r\n`, as the head is counted on the wire.
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let mut bytes = req.method().as_str().len() + target + 12;
    for (name, value) in headers {
        bytes += name.as_str().len() + value.len() + 4;
    }
    (bytes > limits.max_header_bytes).then(|| {
        format!(
            "the request head is {bytes} bytes; at most {} are accepted",
            limits.max_header_bytes
        )
    })
}

/// What the listener lets hyper parse (count, bytes): twice the configured limits, so heads up
/// to that size reach [`oversized_head`] and get a precise problem.
pub(crate) fn hard_head_limits(limits: &gateway_config::HttpLimits) -> (usize, usize) {
    (
        limits.max_headers.saturating_mul(2),
        limits.max_header_bytes.saturating_mul(2).max(8192),
    )
}

// === impl Dispatch ===

/// Calls the handler of the matched route. Handler errors become problems here, so the layers
/// above (audit, metrics) see the final status; panics are caught by [`crate::edge::Rescue`].
#[derive(Debug, Clone)]
pub struct Dispatch {
    state: Arc<GatewayState>,
}

impl Service<Request<Incoming>> for Dispatch {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let id = req.extensions().get::<InteractionId>().cloned();
            let Some(matched) = req.extensions().get::<RouteMatch>().cloned() else {
                // Identify always sets the route before Dispatch runs.
                return Ok(problem_response(
                    &Problem::new(ProblemType::Internal),
                    id.as_ref(),
                ));
            };
            // Copied to the response for the audit record (set inside the audit layer).
            let claims = req.extensions().get::<TokenClaims>().cloned();
            // A panicking handler answers 500 here, inside the audit and metrics layers, so
            // the request is recorded like any other; the connection and process go on.
            let handled = AssertUnwindSafe(async {
                #[cfg(feature = "test-util")]
                let req = {
                    let (parts, body) = req.into_parts();
                    state.run_handler_hook(&parts);
                    Request::from_parts(parts, body)
                };
                handlers::handle(&state, matched.route, matched.param.as_deref(), req).await
            })
            .catch_unwind()
            .await;
            let result = match handled {
                Ok(result) => result,
                Err(panic) => {
                    return Ok(crate::edge::panic_response(&panic, id.as_ref()));
                }
            };
            let mut response = match result {
                Ok(response) => response,
                Err(handlers::HandlerError::Problem(problem)) => {
                    let mut response = problem_response::<Body>(&problem, id.as_ref());
                    if problem.status() == StatusCode::SERVICE_UNAVAILABLE
                        || problem.status() == StatusCode::TOO_MANY_REQUESTS
                    {
                        response
                            .headers_mut()
                            .entry(http::header::RETRY_AFTER)
                            .or_insert(HeaderValue::from_static("1"));
                    }
                    response
                }
                Err(handlers::HandlerError::Failed(err)) => {
                    if let Some(upstream) = err.downcast_ref::<crate::proxy::UpstreamError>() {
                        state
                            .metrics
                            .upstream_error(upstream_label(upstream), upstream.kind());
                    }
                    crate::edge::error_response(&err, id.as_ref())
                }
            };
            if let Some(claims) = claims {
                response.extensions_mut().insert(claims);
            }
            Ok(response)
        })
    }
}

fn upstream_label(err: &crate::proxy::UpstreamError) -> &'static str {
    match err {
        crate::proxy::UpstreamError::Unavailable { upstream, .. }
        | crate::proxy::UpstreamError::Timeout { upstream }
        | crate::proxy::UpstreamError::BadResponse { upstream, .. } => upstream,
    }
}

/// Re-exported for handlers: errors answered by blame.
pub type Failure = BoxError;
