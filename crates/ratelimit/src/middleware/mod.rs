//! [`RateLimitLayer`]: puts the limiter on the request path.
//!
//! For each request that carries a [`PartnerContext`](gateway_core::PartnerContext) and a
//! [`RouteMatch`](gateway_core::RouteMatch), the layer asks its [`LookupLimit`] strategy for
//! the partner's limit and outage policy on that route, asks its [`CheckQuota`](crate::CheckQuota) for a
//! [`Decision`](crate::Decision), and then
//!
//! - **admits**: puts the [`Decision`](crate::Decision) into the request extensions, calls the inner service, and
//!   adds `RateLimit-Policy` and `RateLimit` to its response, whatever its status (2xx and errors
//!   alike), and the [`Decision`](crate::Decision) to the response extensions;
//! - **refuses**: answers itself, without calling the inner service: `429` with `Retry-After`,
//!   both rate-limit fields and the `rate-limited` problem naming the policy (or `503`
//!   `store-unavailable` when Redis is unreachable and the route fails closed).
//!
//! Requests without a partner or a route, and routes for which the lookup returns `None`, pass
//! through untouched. See [`headers`](crate::headers) for the field formats.
//!
//! Local decisions are made inside `call` and cost no allocation. A cluster decision awaits
//! Redis before the inner service can be called, so that path is boxed (one allocation next to
//! a network round trip).
//!
//! # Ordering
//!
//! ```text
//! Rescue → InteractionId → Audit → RequireToken → RateLimit → ConsentFilter → router
//! ```
//!
//! - **After `RequireToken`**: limits are per partner, and a request must prove its token
//!   before it may spend the partner's quota (a flood of bad tokens is the token check's
//!   business, not a way to drain someone's limit). The `PartnerContext` itself is set per
//!   request by the listener from the client certificate.
//! - **After `InteractionId`**: the problem's `instance` and the `x-fapi-interaction-id` header
//!   of a `429` come from the [`InteractionId`](gateway_core::InteractionId) extension.
//! - **Inside `Audit`**: refusals are audited like every other response; the audit layer finds
//!   the [`Decision`](crate::Decision) in the response extensions.
//! - **Before `ConsentFilter` and the router**: a refused request costs no consent lookup and no
//!   upstream call. The router's `RouteMatch` must be known here, so routing (matching the
//!   path, not handling it) runs in front of this layer.
//!
//! # Example
//!
//! ```
//! use std::num::NonZeroU32;
//!
//! use bytes::Bytes;
//! use gateway_core::{PartnerContext, PartnerId, Route, RouteMatch};
//! use gateway_ratelimit::{Limit, Limiter, LimiterSettings, OutagePolicy, RateLimitLayer};
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let limit = Limit::new(NonZeroU32::new(10).unwrap(), NonZeroU32::new(20).unwrap());
//! let lookup = move |_: &PartnerId, route: Route| {
//!     // In the gateway: the partner's limit for the route from the configuration in force,
//!     // and the outage policy of the route's class.
//!     let outage = if route.is_customer_data() { OutagePolicy::FailClosed } else { OutagePolicy::Local };
//!     Some((limit, outage))
//! };
//! let service = ServiceBuilder::new()
//!     .layer(RateLimitLayer::new(Limiter::local(LimiterSettings::default()), lookup))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Bytes::from_static(b"[]")))
//!     }));
//!
//! let mut request = Request::new(());
//! request.extensions_mut().insert(PartnerContext { partner: PartnerId::parse("demo-bank").unwrap() });
//! request.extensions_mut().insert(RouteMatch { route: Route::Products, param: None });
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.headers()["ratelimit-policy"], "\"products\";q=10;w=1;pgw-burst=20");
//! assert_eq!(response.headers()["ratelimit"], "\"products\";r=19;t=1");
//! # }
//! ```

mod future;
mod layer;
mod service;

use std::sync::Arc;

use gateway_core::{PartnerId, Route};

use crate::{Limit, OutagePolicy};

pub use self::future::ResponseFuture;
pub use self::layer::RateLimitLayer;
pub use self::service::RateLimit;

/// Looks up the limit of a partner on a route, and the route class's outage policy.
///
/// `None` means the route is not limited for this partner. Implemented for closures
/// `Fn(&PartnerId, Route) -> Option<(Limit, OutagePolicy)>`; the gateway's implementation reads
/// the configuration in force (an `arc-swap` load), so a reload applies to the next request.
pub trait LookupLimit: Send + Sync + 'static {
    /// The limit and outage policy for `partner` on `route`.
    fn lookup(&self, partner: &PartnerId, route: Route) -> Option<(Limit, OutagePolicy)>;
}

impl<F> LookupLimit for F
where
    F: Fn(&PartnerId, Route) -> Option<(Limit, OutagePolicy)> + Send + Sync + 'static,
{
    fn lookup(&self, partner: &PartnerId, route: Route) -> Option<(Limit, OutagePolicy)> {
        self(partner, route)
    }
}

impl<L: LookupLimit + ?Sized> LookupLimit for Arc<L> {
    fn lookup(&self, partner: &PartnerId, route: Route) -> Option<(Limit, OutagePolicy)> {
        (**self).lookup(partner, route)
    }
}

#[cfg(test)]
mod tests;
