//! Cost of the per-request span helpers.
//!
//! - `off`: export off, the production subscriber installed globally (JSON to a sink): the
//!   span is disabled at its call site.
//! - `on`: export on (to a closed port, so spans are queued and dropped off the hot path):
//!   the span is built with the hop's ids, tagged, entered and ended.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use gateway_telemetry::{LogFormat, TelemetrySettings, TraceContext, record_outcome, request_span};

const TRACE: TraceContext = TraceContext {
    trace_id: [0xab; 16],
    span_id: [0xcd; 8],
    flags: 1,
};

fn request(trace: &TraceContext) {
    let span = request_span(black_box(trace), "customers.tags", "demo-bank");
    let entered = span.enter();
    record_outcome(&span, 200, "allow");
    drop(entered);
}

fn off(c: &mut Criterion) {
    let settings = TelemetrySettings {
        log_format: LogFormat::Json,
        ..TelemetrySettings::default()
    };
    // Leaked on purpose: the global subscriber lives as long as the process.
    std::mem::forget(gateway_telemetry::init_with_writer(&settings, std::io::sink).unwrap());
    c.bench_function("request_span/off", |b| b.iter(|| request(&TRACE)));
}

fn on(c: &mut Criterion) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let settings = TelemetrySettings {
        otlp_endpoint: Some(format!("http://{closed}")),
        ..TelemetrySettings::default()
    };
    let (dispatch, guard) = gateway_telemetry::build_with_writer(&settings, std::io::sink).unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        c.bench_function("request_span/on", |b| b.iter(|| request(&TRACE)));
    });
    drop(guard);
}

criterion_group!(benches, off, on);
criterion_main!(benches);
