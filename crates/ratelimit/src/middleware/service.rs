//! [`RateLimit`].

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use gateway_core::{InteractionId, PartnerContext, RouteMatch};

use super::LookupLimit;
use super::future::ResponseFuture;
use super::layer::{RateLimitLayer, Shared};
use crate::decision::{CheckQuota, Decision};
use crate::headers;

/// Middleware that enforces per-partner, per-route rate limits: see the
/// [module docs](crate::middleware).
pub struct RateLimit<S, Q, L> {
    inner: S,
    shared: Arc<Shared<Q, L>>,
}

impl<S, Q, L> RateLimit<S, Q, L> {
    /// Wraps `inner`, deciding with `quota` under the limits that `lookup` finds.
    pub fn new(inner: S, quota: Q, lookup: L) -> Self {
        RateLimit {
            inner,
            shared: Arc::new(Shared { quota, lookup }),
        }
    }

    /// A [`RateLimitLayer`] with the same arguments.
    pub fn layer(quota: Q, lookup: L) -> RateLimitLayer<Q, L> {
        RateLimitLayer::new(quota, lookup)
    }

    pub(crate) fn from_shared(inner: S, shared: Arc<Shared<Q, L>>) -> Self {
        RateLimit { inner, shared }
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

impl<S, Q, L, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, Q, L>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    Q: CheckQuota,
    L: LookupLimit,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let extensions = request.extensions();
        let (Some(partner), Some(route)) = (
            extensions.get::<PartnerContext>(),
            extensions.get::<RouteMatch>(),
        ) else {
            return ResponseFuture::passthrough(self.inner.call(request));
        };
        let route = route.route;
        let Some((limit, outage)) = self.shared.lookup.lookup(&partner.partner, route) else {
            return ResponseFuture::passthrough(self.inner.call(request));
        };
        let check = self
            .shared
            .quota
            .check(&partner.partner, route, limit, outage);

        match check.into_ready() {
            Ok(decision) if decision.is_allowed() => {
                request.extensions_mut().insert(decision.clone());
                ResponseFuture::admitted(self.inner.call(request), decision)
            }
            Ok(decision) => ResponseFuture::refused(refusal(&request, decision)),
            Err(pending) => {
                // Boxed: a cluster decision awaits Redis before the inner service may be
                // called. The service made ready by `poll_ready` goes into the future; a clone
                // stays here for the next request.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::deciding(async move {
                    let decision = pending.await;
                    if !decision.is_allowed() {
                        return Ok(refusal(&request, decision));
                    }
                    request.extensions_mut().insert(decision.clone());
                    let mut response = inner.call(request).await?;
                    finish(&decision, &mut response);
                    response.extensions_mut().insert(decision);
                    Ok(response)
                })
            }
        }
    }
}

/// The `429` (or `503`) answered in place of the inner service.
fn refusal<B, ResBody: From<Bytes>>(request: &Request<B>, decision: Decision) -> Response<ResBody> {
    let mut response = headers::rejection(&decision, request.extensions().get::<InteractionId>());
    tracing::debug!(
        policy = decision.policy,
        tier = decision.tier.as_str(),
        retry_after = decision.retry_after_secs(),
        "Request refused by rate limit."
    );
    response.extensions_mut().insert(decision);
    response
}

/// Adds the rate-limit fields to an admitted request's response.
pub(super) fn finish<B>(decision: &Decision, response: &mut Response<B>) {
    headers::apply(decision, response.headers_mut());
}

impl<S: Clone, Q, L> Clone for RateLimit<S, Q, L> {
    fn clone(&self) -> Self {
        RateLimit {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, Q, L> fmt::Debug for RateLimit<S, Q, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
