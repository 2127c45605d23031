//! Collector absent (nothing listens on the endpoint's port): `init` succeeds, nothing
//! panics, shutdown is bounded and the failure is logged once.

mod common;

use std::time::{Duration, Instant};

use gateway_telemetry::{
    SHUTDOWN_TIMEOUT, TraceContext, emit_audit_log, record_outcome, record_request, request_span,
};

use common::{Capture, settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_port_fails_no_request_and_shutdown_is_bounded() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let capture = Capture::default();
    let guard = gateway_telemetry::init_with_writer(
        &settings(Some(format!("http://{closed}"))),
        capture.clone(),
    )
    .unwrap();
    assert!(guard.is_exporting());

    let trace = TraceContext {
        trace_id: [0x4b; 16],
        span_id: [0x0f; 8],
        flags: 1,
    };
    for _ in 0..3 {
        let span = request_span(&trace, "customers.tags", "demo-bank");
        let _entered = span.enter();
        tracing::info!(partner = "demo-bank", "Partner request.");
        record_outcome(&span, 503, "store-unavailable");
    }
    emit_audit_log(r#"{"seq":1}"#, &[("partner", "demo-bank")]);
    record_request(
        "demo-bank",
        "customers.tags",
        "allow",
        200,
        Duration::from_micros(1),
    );

    let started = Instant::now();
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap();
    assert!(
        started.elapsed() < SHUTDOWN_TIMEOUT,
        "{:?}",
        started.elapsed()
    );

    // Three signals failed; the operator hears about it once.
    let failures: Vec<_> = capture
        .json_lines()
        .into_iter()
        .filter(|l| l["target"] == gateway_telemetry::EXPORT_TARGET)
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["level"], "WARN");
    assert!(
        failures[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("OTLP export failed")
    );
}
