//! Prometheus metrics of the gateway (the text endpoint on the admin listener).
//!
//! Labels are partner, route, status and decision; never a customer reference.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a partner request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Partner id, or `unknown` before identification.
    pub partner: String,
    /// Route name, or `none` when routing refused the request.
    pub route: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// Labels of a route-level histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Route name.
    pub route: &'static str,
}

/// Labels of a TLS handshake outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    /// `ok` or `failed`.
    pub result: &'static str,
    /// Failure reason (`none` on success).
    pub reason: &'static str,
}

/// Labels with one `outcome` or `reason` value.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The outcome.
    pub outcome: &'static str,
}

/// Labels of an upstream failure.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// `tags`, `products` or `referrals`.
    pub upstream: &'static str,
    /// `connect`, `timeout`, `protocol`.
    pub kind: &'static str,
}

/// Every metric the http crate records, registered once.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: std::sync::RwLock<Registry>,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    handshakes: Family<HandshakeLabels, Counter>,
    connections_open: Gauge,
    connections_closed: Family<OutcomeLabels, Counter>,
    reloads: Family<OutcomeLabels, Counter>,
    in_flight: Gauge,
    shed: Counter,
    upstream_errors: Family<UpstreamLabels, Counter>,
}

fn duration_histogram() -> Histogram {
    // 50 µs … ~1.6 s, doubling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 16,
    ))
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pgw");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Partner requests by partner, route and status",
            requests.clone(),
        );
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Partner request latency inside the gateway",
            duration.clone(),
        );
        let handshakes = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "tls_handshakes",
            "TLS handshakes on the partner listener by result and reason",
            handshakes.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Open partner connections",
            connections_open.clone(),
        );
        let connections_closed = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "connections_closed_by_gateway",
            "Partner connections closed by the gateway, by reason",
            connections_closed.clone(),
        );
        let reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by outcome",
            reloads.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Partner requests being served",
            in_flight.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "requests_shed",
            "Partner requests refused with 503 to protect the gateway",
            shed.clone(),
        );
        let upstream_errors = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failed upstream calls by upstream and kind",
            upstream_errors.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry: std::sync::RwLock::new(registry),
                requests,
                duration,
                handshakes,
                connections_open,
                connections_closed,
                reloads,
                in_flight,
                shed,
                upstream_errors,
            }),
        }
    }

    /// Registers further metrics (concern crates export theirs through this).
    pub fn register_with(&self, f: impl FnOnce(&mut Registry)) {
        if let Ok(mut registry) = self.inner.registry.write() {
            f(&mut registry);
        }
    }

    /// Counts a finished partner request.
    pub fn request(&self, partner: &str, route: &'static str, status: u16, seconds: f64) {
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                partner: partner.to_owned(),
                route,
                status,
            })
            .inc();
        self.inner
            .duration
            .get_or_create(&RouteLabels { route })
            .observe(seconds);
    }

    /// Counts a handshake outcome.
    pub fn handshake(&self, result: &'static str, reason: &'static str) {
        self.inner
            .handshakes
            .get_or_create(&HandshakeLabels { result, reason })
            .inc();
    }

    /// The open-connections gauge.
    pub fn connections_open(&self) -> &Gauge {
        &self.inner.connections_open
    }

    /// Counts a connection the gateway closed.
    pub fn connection_closed(&self, reason: &'static str) {
        self.inner
            .connections_closed
            .get_or_create(&OutcomeLabels { outcome: reason })
            .inc();
    }

    /// Counts a reload.
    pub fn reload(&self, outcome: &'static str) {
        self.inner
            .reloads
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The in-flight gauge.
    pub fn in_flight(&self) -> &Gauge<i64, std::sync::atomic::AtomicI64> {
        &self.inner.in_flight
    }

    /// Counts a shed request.
    pub fn shed(&self) -> &Counter<u64, AtomicU64> {
        &self.inner.shed
    }

    /// Counts an upstream failure.
    pub fn upstream_error(&self, upstream: &'static str, kind: &'static str) {
        self.inner
            .upstream_errors
            .get_or_create(&UpstreamLabels { upstream, kind })
            .inc();
    }

    /// Renders the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.inner.registry.read() {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Per-partner counts for `GET /admin/v1/partners`: requests served and tokens issued.
#[derive(Debug, Default)]
pub struct PartnerCounts {
    counts: std::sync::RwLock<std::collections::HashMap<gateway_core::PartnerId, Arc<Counts>>>,
}

/// The counts of one partner.
#[derive(Debug, Default)]
pub struct Counts {
    /// Requests answered (any status).
    pub requests: AtomicU64,
    /// Access tokens issued.
    pub tokens: AtomicU64,
}

impl PartnerCounts {
    /// The counts of `partner`, created on first use.
    pub fn of(&self, partner: &gateway_core::PartnerId) -> Arc<Counts> {
        if let Some(counts) = self
            .counts
            .read()
            .ok()
            .and_then(|m| m.get(partner).cloned())
        {
            return counts;
        }
        match self.counts.write() {
            Ok(mut map) => map.entry(partner.clone()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }
}
