//! Export on: a span, an event, an audit record and a metric reach a real OTLP/HTTP collector
//! on 127.0.0.1:0, and the span carries the hop's trace and span ids.

mod common;

use std::time::{Duration, Instant};

use gateway_telemetry::{
    SHUTDOWN_TIMEOUT, TraceContext, emit_audit_log, exporting, record_outcome, record_request,
    record_route, request_span,
};

use common::{Capture, Collector, contains, settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_logs_and_metrics_reach_the_collector() {
    let collector = Collector::start().await;
    let capture = Capture::default();
    let guard =
        gateway_telemetry::init_with_writer(&settings(Some(collector.endpoint())), capture.clone())
            .unwrap();
    assert!(guard.is_exporting());
    assert!(exporting());

    let trace = TraceContext {
        trace_id: *b"trace-id-0123456",
        span_id: *b"span-id!",
        flags: 1,
    };
    let span = request_span(&trace, "customers.tags", "demo-bank");
    assert!(!span.is_disabled());
    {
        let _entered = span.enter();
        tracing::info!(partner = "demo-bank", status = 200u16, "Partner request.");
    }
    record_outcome(&span, 200, "allow");
    drop(span);
    // Started before the partner and route were known, as the outermost layers must.
    let late = request_span(
        &TraceContext {
            span_id: *b"late-id!",
            ..trace
        },
        "",
        "",
    );
    record_route(&late, "products.list", "demo-fund");
    record_outcome(&late, 429, "partner-limit");
    drop(late);
    let audit = r#"{"seq":41,"partner":"demo-bank","decision":"allow"}"#;
    emit_audit_log(audit, &[("partner", "demo-bank"), ("seq", "41")]);
    record_request(
        "demo-bank",
        "customers.tags",
        "allow",
        200,
        Duration::from_micros(350),
    );

    // Shutdown flushes every batch and returns once the collector has answered them.
    let started = Instant::now();
    tokio::task::spawn_blocking(move || guard.shutdown())
        .await
        .unwrap();
    assert!(
        started.elapsed() < SHUTDOWN_TIMEOUT,
        "{:?}",
        started.elapsed()
    );

    let traces = collector.received("/v1/traces");
    assert!(!traces.is_empty());
    for request in &traces {
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/x-protobuf")
        );
    }
    let spans: Vec<u8> = traces.iter().flat_map(|r| r.body.to_vec()).collect();
    // The exported span has exactly the ids the gateway sends upstream in `traceparent`.
    assert!(contains(&spans, &trace.trace_id));
    assert!(contains(&spans, &trace.span_id));
    for text in [
        "customers.tags",
        "demo-bank",
        "allow",
        "partner-gateway-test",
    ] {
        assert!(contains(&spans, text.as_bytes()), "span lacks {text}");
    }
    // Both spans are named after their route, the late one renamed by `record_route`.
    assert!(!contains(&spans, b"partner_request"));

    let logs = collector.received("/v1/logs");
    assert!(!logs.is_empty());
    let records: Vec<u8> = logs.iter().flat_map(|r| r.body.to_vec()).collect();
    assert!(contains(&records, b"Partner request."));
    assert!(contains(&records, audit.as_bytes()));
    assert!(contains(&records, b"partner-gateway.audit"));
    // The event logged inside the request span carries its trace id.
    assert!(contains(&records, &trace.trace_id));

    let metrics = collector.received("/v1/metrics");
    assert!(!metrics.is_empty());
    let points: Vec<u8> = metrics.iter().flat_map(|r| r.body.to_vec()).collect();
    assert!(contains(&points, b"gateway.requests"));
    assert!(contains(&points, b"gateway.request.duration"));

    // stderr output is unchanged: the event, flattened, and no span.
    let lines = capture.json_lines();
    assert!(
        lines.iter().any(|l| l["message"] == "Partner request."),
        "{lines:?}"
    );
    assert!(!capture.text().contains("partner_request"));
    assert!(!capture.text().contains("OTLP export failed"));

    collector.stop().await;
}
