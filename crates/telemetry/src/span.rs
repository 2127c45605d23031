//! The per-request span.
//!
//! The gateway's hop already has ids before any span exists: the edge layer continues the
//! caller's trace id (or starts one) and mints this hop's span id, which it sends upstream
//! in `traceparent`. The exported span must carry exactly those ids, or the upstream's spans
//! would hang under a span nobody exported. The SDK assigns ids itself when the span is
//! built, so [`HopIds`] hands it the hop's ids through a thread-local that
//! [`request_span`] fills just before forcing the build, on the same thread, and empties
//! right after. Every other span gets random ids.
//!
//! The parent is the caller's span when its id is known ([`request_span_with_caller`]);
//! otherwise the span is a root within the caller's trace. (Making the hop's own id the
//! parent, as a remote span nobody exported, would orphan both our span and the upstream's.)

use std::cell::Cell;

use opentelemetry::Context;
use opentelemetry::trace::{
    SpanContext, SpanId, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use gateway_core::TraceContext;

/// Target of the request span. The log output never shows it; only the OpenTelemetry layer
/// enables it, so with export off the span is disabled at its call site.
pub const REQUEST_SPAN_TARGET: &str = "gateway_telemetry::request";

/// Starts the span of one partner request, with the hop's trace and span ids from `trace`,
/// named after the route and tagged with `partner` and `route` (pass `""` for what is not
/// known yet and add it with [`record_route`]).
///
/// Enter it (or `.instrument()` the request's future with it) so that the events logged while
/// serving the request are exported with its trace id, and finish it with
/// [`record_outcome`]. Use [`request_span_with_caller`] when the caller's span id is known,
/// so that the span nests under the caller's. With export off this returns a disabled span
/// and costs a few nanoseconds.
///
/// ```
/// use gateway_telemetry::{TraceContext, record_outcome, request_span};
///
/// let trace = TraceContext { trace_id: [7; 16], span_id: [9; 8], flags: 1 };
/// let span = request_span(&trace, "customers.tags", "demo-bank");
/// let _entered = span.enter();
/// record_outcome(&span, 200, "allow");
/// ```
pub fn request_span(trace: &TraceContext, route: &str, partner: &str) -> Span {
    start(trace, None, route, partner)
}

/// [`request_span`] as a child of the caller's span `caller_span_id` (the parent id of the
/// incoming `traceparent`). The caller's sampled flag (`trace.flags`) then decides whether the
/// span is recorded; without a caller, every request span is.
pub fn request_span_with_caller(
    trace: &TraceContext,
    caller_span_id: [u8; 8],
    route: &str,
    partner: &str,
) -> Span {
    start(trace, Some(caller_span_id), route, partner)
}

/// Names a request span after its route and tags it with the partner, for a span started
/// before they were known (with `""` for both, say in a layer outside the one that
/// identifies the partner). Call it at most once per span. Does nothing on a disabled span.
pub fn record_route(span: &Span, route: &str, partner: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("route", route);
    span.record("partner", partner);
    // `request_span` built the OpenTelemetry span already, so `otel.name` would no longer
    // rename it; the OpenTelemetry API can.
    span.context().span().update_name(route.to_owned());
}

/// Records the answer on a request span: the HTTP status, and the gateway's decision
/// (`allow`, or the problem that refused the request, such as `no-consent`). A 5xx marks the
/// span as failed. Does nothing on a disabled span.
pub fn record_outcome(span: &Span, status: u16, decision: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", status);
    span.record("decision", decision);
    // OpenTelemetry HTTP conventions: for a server, only 5xx is an error.
    if status >= 500 {
        span.set_status(Status::error(""));
    }
}

// === impl HopIds ===

thread_local! {
    /// The hop's span id for the span being built on this thread, if any.
    static NEXT_SPAN_ID: Cell<Option<SpanId>> = const { Cell::new(None) };
    /// The trace id for a root span being built on this thread, if any.
    static NEXT_TRACE_ID: Cell<Option<TraceId>> = const { Cell::new(None) };
}

/// The tracer's id generator: the ids [`request_span`] asks for, random ids otherwise.
#[derive(Debug, Default)]
pub(crate) struct HopIds {
    random: RandomIdGenerator,
}

impl IdGenerator for HopIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.random.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        NEXT_SPAN_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.random.new_span_id())
    }
}

// === helpers ===

fn start(trace: &TraceContext, caller: Option<[u8; 8]>, route: &str, partner: &str) -> Span {
    let span = tracing::info_span!(
        target: REQUEST_SPAN_TARGET,
        "partner_request",
        otel.name = Empty,
        otel.kind = "server",
        partner = Empty,
        route = Empty,
        decision = Empty,
        http.response.status_code = Empty,
    );
    // Export off: nothing below would have any effect.
    if span.is_disabled() {
        return span;
    }
    // Recorded rather than declared with the span so that an empty value leaves the field
    // unset for `record_route`: OpenTelemetry keeps every value recorded for a key.
    if !route.is_empty() {
        span.record("otel.name", route);
        span.record("route", route);
    }
    if !partner.is_empty() {
        span.record("partner", partner);
    }
    let trace_id = TraceId::from_bytes(trace.trace_id);
    let span_id = SpanId::from_bytes(trace.span_id);
    let parent = match caller.map(SpanId::from_bytes) {
        Some(caller) if caller != SpanId::INVALID && trace_id != TraceId::INVALID => Context::new()
            .with_remote_span_context(SpanContext::new(
                trace_id,
                caller,
                TraceFlags::new(trace.flags),
                true,
                TraceState::default(),
            )),
        // An explicit empty parent: a root in the hop's trace, whatever span is current.
        _ => Context::new(),
    };
    if span.set_parent(parent).is_ok() {
        if span_id != SpanId::INVALID {
            NEXT_SPAN_ID.with(|next| next.set(Some(span_id)));
        }
        if trace_id != TraceId::INVALID {
            NEXT_TRACE_ID.with(|next| next.set(Some(trace_id)));
        }
        // Builds the OpenTelemetry span now, on this thread, taking the ids set above.
        let _ = span.context();
        NEXT_SPAN_ID.with(|next| next.set(None));
        NEXT_TRACE_ID.with(|next| next.set(None));
    }
    span
}
