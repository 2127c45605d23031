//! Collector stalled (accepts connections, never answers): shutdown still completes within
//! `SHUTDOWN_TIMEOUT`.

mod common;

use std::time::Instant;

use gateway_telemetry::{SHUTDOWN_TIMEOUT, TraceContext, emit_audit_log, request_span};

use common::{Capture, settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_collector_does_not_hold_shutdown() {
    // Bound but never accepted from: connections complete in the backlog, requests go
    // unanswered.
    let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", stalled.local_addr().unwrap());
    let capture = Capture::default();
    let guard =
        gateway_telemetry::init_with_writer(&settings(Some(endpoint)), capture.clone()).unwrap();

    let trace = TraceContext {
        trace_id: [0x4b; 16],
        span_id: [0x0f; 8],
        flags: 1,
    };
    drop(request_span(&trace, "customers.tags", "demo-bank"));
    tracing::info!("Partner request.");
    emit_audit_log(r#"{"seq":1}"#, &[]);

    let started = Instant::now();
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap();
    assert!(
        started.elapsed() < SHUTDOWN_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    assert!(capture.text().contains("OTLP export failed"));
    drop(stalled);
}
