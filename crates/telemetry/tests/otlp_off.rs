//! Export off: `init` installs JSON logs on the injected writer, and the span, audit and
//! metric helpers are no-ops.

mod common;

use std::time::{Duration, Instant};

use gateway_telemetry::{
    TraceContext, emit_audit_log, exporting, record_outcome, record_request, request_span,
};

use common::{Capture, settings};

#[test]
fn export_off_logs_json_to_the_writer_and_spans_are_disabled() {
    let capture = Capture::default();
    let guard = gateway_telemetry::init_with_writer(&settings(None), capture.clone()).unwrap();
    assert!(!guard.is_exporting());
    assert!(!exporting());

    let trace = TraceContext {
        trace_id: [0x4b; 16],
        span_id: [0x0f; 8],
        flags: 1,
    };
    let span = request_span(&trace, "customers.tags", "demo-bank");
    assert!(span.is_disabled());
    {
        let _entered = span.enter();
        tracing::info!(
            partner = "demo-bank",
            route = "customers.tags",
            status = 200u16,
            "Partner request."
        );
        tracing::debug!("Below the filter.");
    }
    record_outcome(&span, 200, "allow");
    emit_audit_log(r#"{"seq":1}"#, &[("partner", "demo-bank")]);
    record_request(
        "demo-bank",
        "customers.tags",
        "allow",
        200,
        Duration::from_micros(250),
    );

    let lines = capture.json_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    // Flattened: the event's fields sit at the top level, next to the message.
    assert_eq!(line["message"], "Partner request.");
    assert_eq!(line["partner"], "demo-bank");
    assert_eq!(line["route"], "customers.tags");
    assert_eq!(line["status"], 200);
    assert_eq!(line["level"], "INFO");
    // The request span never shows in the log output.
    assert!(!capture.text().contains("partner_request"));

    let started = Instant::now();
    drop(guard);
    assert!(started.elapsed() < Duration::from_millis(100));
}
