//! [`RateLimitLayer`].

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::service::RateLimit;

/// Applies [`RateLimit`] to a service: see the [module docs](crate::middleware).
pub struct RateLimitLayer<Q, L> {
    pub(crate) shared: Arc<Shared<Q, L>>,
}

/// What every clone of the layer and of its services shares.
pub(crate) struct Shared<Q, L> {
    /// Makes the decisions.
    pub(crate) quota: Q,
    /// Finds the limit of a (partner, route).
    pub(crate) lookup: L,
}

impl<Q, L> RateLimitLayer<Q, L> {
    /// A layer deciding with `quota` (usually a [`Limiter`](crate::Limiter)) under the limits
    /// that `lookup` finds.
    pub fn new(quota: Q, lookup: L) -> Self {
        RateLimitLayer {
            shared: Arc::new(Shared { quota, lookup }),
        }
    }

    /// The decision maker (e.g. to read its metrics).
    pub fn quota(&self) -> &Q {
        &self.shared.quota
    }
}

impl<S, Q, L> Layer<S> for RateLimitLayer<Q, L> {
    type Service = RateLimit<S, Q, L>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::from_shared(inner, Arc::clone(&self.shared))
    }
}

impl<Q, L> Clone for RateLimitLayer<Q, L> {
    fn clone(&self) -> Self {
        RateLimitLayer {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<Q, L> fmt::Debug for RateLimitLayer<Q, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer").finish_non_exhaustive()
    }
}
