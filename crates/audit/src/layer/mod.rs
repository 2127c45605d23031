//! [`AuditLayer`]: one durable record per partner request before the response leaves.
//!
//! The layer times the request, lets it through, and builds an
//! [`AuditRecord`] from:
//!
//! - the request extensions present when it is called: [`PeerIdentity`] (certificate
//!   fingerprint), [`PartnerContext`], [`InteractionId`], [`TraceContext`], [`RouteMatch`];
//! - the response extensions set by the layers and handlers inside it:
//!   [`AuditOutcome`] (decision, customer, consent, fields released and withheld),
//!   [`AuditRefusal`] (a layer that refused by itself), and [`TokenClaims`] / [`RouteMatch`]
//!   copied out by the layers that established them (request extensions set *inside* this
//!   layer never come back out, so those layers must copy them to the response).
//!
//! Bodies are never parsed. The internal customer id of an outcome is replaced by its keyed
//! hash ([`CustomerHasher`]) before anything is written.
//!
//! # Durability
//!
//! With [`Durability::Sync`](crate::Durability::Sync) the response is held until its record
//! is durable (group commit). If the append fails, the response is dropped and replaced by
//! `503` `audit-unavailable` with `Retry-After`: nothing of it is released. While the writer
//! is unhealthy the layer answers that 503 at once, without calling the inner service. With
//! `Async` the response leaves once the record is queued.
//!
//! An `Err` from the inner service is recorded as status 500, `deny`, reason
//! `unhandled-error`, and passed on unchanged to the rescue layer.
//!
//! # Ordering
//!
//! - *Outside* it: the rescue layer, and the interaction-id and trace layers (so the record
//!   carries both ids), and whatever sets `PeerIdentity` / `PartnerContext` per connection.
//! - *Inside* it: the token, rate-limit and consent layers and the router, so the record sees
//!   the final status of everything they decided.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use gateway_audit::{AuditLayer, AuditWriter, CustomerHasher, WriterConfig};
//! use tower::{ServiceBuilder, service_fn};
//!
//! # struct Body(Bytes);
//! # impl From<Bytes> for Body { fn from(b: Bytes) -> Self { Body(b) } }
//! # async fn example(dir: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! let writer = AuditWriter::open(WriterConfig::new(dir, "gw-1")).await?;
//! let hasher = CustomerHasher::new(&[7; 32]);
//! let service = ServiceBuilder::new()
//!     .layer(AuditLayer::new(writer.clone(), hasher))
//!     .service(service_fn(|_req: http::Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Body(Bytes::from("{}"))))
//!     }));
//! # drop(service);
//! # Ok(())
//! # }
//! ```

mod future;

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use gateway_core::audit::{
    AuditOutcome, AuditRecord, AuditRefusal, AuditTime, Decision, RecordKind,
};
use gateway_core::problem::{Problem, ProblemType, problem_response};
use gateway_core::{
    Fingerprint, InteractionId, PartnerContext, PartnerId, PeerIdentity, RouteMatch, TokenClaims,
    TraceContext,
};
use http::{Method, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

pub use self::future::ResponseFuture;
use crate::customer::CustomerHasher;
use crate::writer::AuditWriter;

/// `Retry-After` on `audit-unavailable` answers, in seconds.
const RETRY_AFTER_SECS: &str = "1";

/// The reason recorded when the inner service returned an error.
pub const UNHANDLED_ERROR: &str = "unhandled-error";

/// Applies [`Audit`] to a service.
#[derive(Debug, Clone)]
pub struct AuditLayer {
    shared: Arc<LayerShared>,
}

/// Records every request through it; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Audit<S> {
    inner: S,
    shared: Arc<LayerShared>,
}

#[derive(Debug)]
struct LayerShared {
    writer: AuditWriter,
    hasher: CustomerHasher,
}

/// What the layer takes from the request before handing it on.
#[derive(Debug)]
struct RequestFacts {
    started: Instant,
    time: AuditTime,
    method: Method,
    route: Option<RouteMatch>,
    fingerprint: Option<Fingerprint>,
    partner: Option<PartnerId>,
    claims: Option<TokenClaims>,
    interaction: Option<InteractionId>,
    trace_id: Option<String>,
}

// === impl AuditLayer ===

impl AuditLayer {
    /// Records to `writer`, hashing internal customer ids with `hasher`.
    pub fn new(writer: AuditWriter, hasher: CustomerHasher) -> Self {
        AuditLayer {
            shared: Arc::new(LayerShared { writer, hasher }),
        }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            shared: self.shared.clone(),
        }
    }
}

// === impl Audit ===

impl<S> Audit<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, writer: AuditWriter, hasher: CustomerHasher) -> Self {
        AuditLayer::new(writer, hasher).layer(inner)
    }

    /// A layer for this middleware.
    pub fn layer(writer: AuditWriter, hasher: CustomerHasher) -> AuditLayer {
        AuditLayer::new(writer, hasher)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Audit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let facts = RequestFacts::of(&request);
        if !self.shared.writer.is_healthy() {
            // Fail closed before doing any work: the record could not be kept.
            return ResponseFuture::reject(unavailable(facts.interaction.as_ref()));
        }
        let future = self.inner.call(request);
        ResponseFuture::inner(future, facts, self.shared.clone())
    }
}

// === impl RequestFacts ===

impl RequestFacts {
    fn of<B>(request: &Request<B>) -> RequestFacts {
        let ext = request.extensions();
        RequestFacts {
            started: Instant::now(),
            time: AuditTime::now(),
            method: request.method().clone(),
            route: ext.get::<RouteMatch>().cloned(),
            fingerprint: ext.get::<PeerIdentity>().map(|p| p.fingerprint),
            partner: ext.get::<PartnerContext>().map(|p| p.partner.clone()),
            claims: ext.get::<TokenClaims>().cloned(),
            interaction: ext.get::<InteractionId>().cloned(),
            trace_id: ext.get::<TraceContext>().map(TraceContext::trace_id_hex),
        }
    }
}

// === impl LayerShared ===

impl LayerShared {
    /// The record of a finished request; `response` is `None` when the inner service failed.
    fn record<B>(&self, facts: &RequestFacts, response: Option<&Response<B>>) -> AuditRecord {
        let mut record = AuditRecord::new(
            RecordKind::PartnerRequest,
            facts.time,
            self.writer.instance(),
        );
        record.latency_us = facts.started.elapsed().as_micros() as u64;
        record.method = Some(facts.method.as_str().to_string());
        record.cert_fingerprint = facts.fingerprint;
        record.trace_id = facts.trace_id.clone();
        let ext = response.map(Response::extensions);
        let claims = ext
            .and_then(|e| e.get::<TokenClaims>())
            .or(facts.claims.as_ref());
        let route = ext
            .and_then(|e| e.get::<RouteMatch>())
            .or(facts.route.as_ref());
        record.route = route.map(|r| r.route.name().to_string());
        record.partner = claims
            .map(|c| c.partner.clone())
            .or_else(|| {
                ext.and_then(|e| e.get::<PartnerContext>())
                    .map(|p| p.partner.clone())
            })
            .or_else(|| facts.partner.clone());
        record.client_id = claims.map(|c| c.client_id.clone());
        record.scope = claims.map(|c| c.scopes.to_string());
        record.interaction_id = facts
            .interaction
            .as_ref()
            .or_else(|| ext.and_then(|e| e.get::<InteractionId>()))
            .map(|id| id.as_str().to_string());

        let Some(response) = response else {
            record.status = 500;
            record.decision = Decision::Deny;
            record.reason = Some(UNHANDLED_ERROR.to_string());
            return record;
        };
        record.status = response.status().as_u16();
        let refusal = response.extensions().get::<AuditRefusal>();
        let outcome = response.extensions().get::<AuditOutcome>();
        record.decision = match (outcome.and_then(|o| o.decision), refusal) {
            (Some(decision), _) => decision,
            (None, Some(_)) => Decision::Deny,
            (None, None)
                if response.status().is_success() || response.status().is_redirection() =>
            {
                Decision::Allow
            }
            (None, None) => Decision::Deny,
        };
        record.reason = outcome
            .and_then(|o| o.reason.clone())
            .or_else(|| refusal.map(|r| r.problem.slug().to_string()));
        if let Some(outcome) = outcome {
            record.customer_ref = outcome.customer_ref.clone();
            record.customer_hash = outcome.customer.as_ref().map(|id| self.hasher.hash(id));
            record.consent_id = outcome.consent_id.clone();
            record.released = outcome.released.clone();
            record.withheld = outcome.withheld.clone();
        }
        record
    }
}

/// The `503 audit-unavailable` answer.
fn unavailable<B: From<Bytes>>(interaction: Option<&InteractionId>) -> Response<B> {
    let problem = Problem::new(ProblemType::AuditUnavailable)
        .with_detail("The request cannot be recorded right now; retry later.");
    let mut response = problem_response::<B>(&problem, interaction);
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static(RETRY_AFTER_SECS),
    );
    response
        .extensions_mut()
        .insert(AuditRefusal::new(ProblemType::AuditUnavailable));
    response
}

#[cfg(test)]
mod tests;
