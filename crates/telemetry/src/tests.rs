//! Unit tests. They build subscribers with `build_with_writer` and scope them with
//! `with_default`, so they share a process; the tests of `init` itself are in `tests/`, one
//! per file.
//!
//! Tests that build a subscriber hold [`SERIAL`]: `tracing` caches each call site's interest
//! across all live dispatchers, and a dispatcher created while another thread registers a
//! call site can be missed by that cache (a race in `tracing-core`, harmless with the single
//! global subscriber of production). One at a time, every cache rebuild sees every
//! dispatcher.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::*;
use crate::export::Throttle;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn settings(format: LogFormat, endpoint: Option<&str>) -> TelemetrySettings {
    TelemetrySettings {
        log_format: format,
        otlp_endpoint: endpoint.map(str::to_owned),
        ..TelemetrySettings::default()
    }
}

fn closed_port_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

const TRACE: TraceContext = TraceContext {
    trace_id: [0xab; 16],
    span_id: [0xcd; 8],
    flags: 1,
};

#[test]
fn text_format_writes_plain_lines_filtered_by_level() {
    let _serial = serial();
    let capture = Capture::default();
    let writer = capture.clone();
    let (dispatch, guard) =
        build_with_writer(&settings(LogFormat::Text, None), move || writer.clone()).unwrap();
    assert!(!guard.is_exporting());
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::warn!(partner = "demo-bank", reason = "expired", "Token rejected.");
        tracing::debug!("Not shown.");
        assert!(!exporting());
        assert!(request_span(&TRACE, "customers.tags", "demo-bank").is_disabled());
    });
    let text = capture.text();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("Token rejected."), "{text}");
    assert!(text.contains("partner=\"demo-bank\""), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colours in captured output: {text:?}"
    );
}

#[test]
fn filter_directives_apply_per_target() {
    let _serial = serial();
    let capture = Capture::default();
    let writer = capture.clone();
    let settings = TelemetrySettings {
        filter: "warn,gateway_telemetry=debug".to_owned(),
        ..settings(LogFormat::Json, None)
    };
    let (dispatch, _guard) = build_with_writer(&settings, move || writer.clone()).unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::debug!("Own target at debug.");
        tracing::info!(target: "gateway_http", "Other target at info.");
    });
    let text = capture.text();
    assert!(text.contains("Own target at debug."), "{text}");
    assert!(!text.contains("Other target"), "{text}");
}

#[test]
fn empty_filter_means_info() {
    let _serial = serial();
    let capture = Capture::default();
    let writer = capture.clone();
    let settings = TelemetrySettings {
        filter: " ".to_owned(),
        ..settings(LogFormat::Json, None)
    };
    let (dispatch, _guard) = build_with_writer(&settings, move || writer.clone()).unwrap();
    tracing::dispatcher::with_default(&dispatch, || {
        tracing::info!("Shown.");
        tracing::debug!("Hidden.");
    });
    assert_eq!(capture.text().lines().count(), 1);
}

#[test]
fn invalid_filter_is_refused() {
    let _serial = serial();
    let settings = TelemetrySettings {
        filter: "info,gateway_http=loud".to_owned(),
        ..settings(LogFormat::Json, None)
    };
    let err = build_with_writer(&settings, io::sink).unwrap_err();
    match err {
        TelemetryError::Filter { filter, .. } => assert_eq!(filter, "info,gateway_http=loud"),
        other => panic!("expected TelemetryError::Filter, got {other:?}"),
    }
}

#[test]
fn endpoints_other_than_plain_http_are_refused() {
    let _serial = serial();
    for endpoint in [
        "https://collector.example:4318",
        "collector:4318",
        "grpc://127.0.0.1:4317",
        "http://",
        "http:///v1",
        "http://127.0.0.1:4318?x=1",
    ] {
        let err = build_with_writer(&settings(LogFormat::Json, Some(endpoint)), io::sink)
            .map(|_| ())
            .unwrap_err();
        match err {
            TelemetryError::Endpoint { endpoint: e, .. } => assert_eq!(e, endpoint),
            other => panic!("{endpoint}: expected TelemetryError::Endpoint, got {other:?}"),
        }
    }
}

#[test]
fn endpoint_base_keeps_a_path_prefix_and_drops_a_trailing_slash() {
    assert_eq!(
        export::base_url("http://127.0.0.1:4318/").unwrap(),
        "http://127.0.0.1:4318"
    );
    assert_eq!(
        export::base_url(" http://otel:4318/prefix/ ").unwrap(),
        "http://otel:4318/prefix"
    );
}

#[test]
fn export_failures_are_reported_once_a_minute() {
    let throttle = Throttle::default();
    let t0 = Instant::now();
    assert_eq!(throttle.admit(t0), Some(0));
    assert_eq!(throttle.admit(t0 + Duration::from_secs(1)), None);
    assert_eq!(throttle.admit(t0 + Duration::from_secs(59)), None);
    // The next report says how many were kept quiet.
    assert_eq!(throttle.admit(t0 + Duration::from_secs(60)), Some(2));
    assert_eq!(throttle.admit(t0 + Duration::from_secs(61)), None);
    assert_eq!(throttle.admit(t0 + Duration::from_secs(125)), Some(1));
}

#[test]
fn request_spans_carry_the_hop_ids_and_follow_the_caller_sampling() {
    let _serial = serial();
    let capture = Capture::default();
    let writer = capture.clone();
    let endpoint = closed_port_endpoint();
    let (dispatch, guard) =
        build_with_writer(&settings(LogFormat::Json, Some(&endpoint)), move || {
            writer.clone()
        })
        .unwrap();
    assert!(guard.is_exporting());
    tracing::dispatcher::with_default(&dispatch, || {
        assert!(exporting());
        let hop_trace = TraceId::from_bytes(TRACE.trace_id);
        let hop_span = SpanId::from_bytes(TRACE.span_id);

        // No caller id: a sampled root in the hop's trace, even inside another span.
        let outer = tracing::info_span!("connection");
        let _outer = outer.enter();
        let root = request_span(&TRACE, "customers.tags", "demo-bank");
        assert!(!root.is_disabled());
        let cx = root.context();
        let sc = cx.span().span_context().clone();
        assert_eq!(sc.trace_id(), hop_trace);
        assert_eq!(sc.span_id(), hop_span);
        assert!(sc.is_sampled());
        record_outcome(&root, 502, "upstream-unavailable");

        // With the caller's id: same ids, and the caller's "not sampled" is honoured.
        let unsampled = TraceContext { flags: 0, ..TRACE };
        let child = request_span_with_caller(&unsampled, [0x11; 8], "products", "demo-fund");
        let sc = child.context().span().span_context().clone();
        assert_eq!(sc.trace_id(), hop_trace);
        assert_eq!(sc.span_id(), hop_span);
        assert!(!sc.is_sampled());

        // Other spans keep random ids: the forced ids were used once.
        let other = tracing::info_span!("background");
        let sc = other.context().span().span_context().clone();
        assert_ne!(sc.span_id(), hop_span);
        assert_ne!(sc.trace_id(), hop_trace);
    });
    guard.shutdown();
    // The request spans never reach the log output.
    assert!(!capture.text().contains("partner_request"));
}
