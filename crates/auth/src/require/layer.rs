use std::sync::Arc;

use tower_layer::Layer;

use gateway_core::time::{Clock, SystemClock};

use super::RequireToken;

/// Applies [`RequireToken`] to a service. See the [module docs](super) for what it checks.
pub struct RequireTokenLayer<V> {
    pub(crate) verifier: Arc<V>,
    pub(crate) clock: Arc<dyn Clock>,
}

impl<V> RequireTokenLayer<V> {
    /// A layer verifying tokens with `verifier`, reading time from the system clock.
    pub fn new(verifier: V) -> Self {
        RequireTokenLayer {
            verifier: Arc::new(verifier),
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads "now" from `clock` instead (tests use a `ManualClock`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

impl<V> Clone for RequireTokenLayer<V> {
    fn clone(&self) -> Self {
        RequireTokenLayer {
            verifier: self.verifier.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<V> std::fmt::Debug for RequireTokenLayer<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireTokenLayer")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<S, V> Layer<S> for RequireTokenLayer<V> {
    type Service = RequireToken<S, V>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireToken {
            inner,
            verifier: self.verifier.clone(),
            clock: self.clock.clone(),
        }
    }
}
