//! Signals sent to the collector directly rather than through `tracing` events: forwarded
//! audit records and request metrics. Both find the export pipeline through the current
//! dispatcher and do nothing when it has none.

use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry::{Key, KeyValue};

use crate::export::ExportHandles;

/// Whether the current subscriber exports over OTLP.
///
/// The edge layer can use it to mark traces it starts as sampled in the `traceparent` it
/// sends upstream, since the gateway records them.
pub fn exporting() -> bool {
    tracing::dispatcher::get_default(|dispatch| dispatch.downcast_ref::<ExportHandles>().is_some())
}

/// Emits one OpenTelemetry log record holding an audit record: `record_json` is the body
/// (the compact JSON the audit trail stores), `attributes` become record attributes (use
/// low-cardinality ones such as `partner`, `route`, `decision`, and the record's sequence
/// number so a consumer can detect duplicates). The record is exported in the
/// `partner-gateway.audit` instrumentation scope, so a collector can route audit apart from
/// logs.
///
/// Best effort: export is batched and a record that cannot be delivered is dropped, so the
/// audit forwarder must keep its own cursor over the segment files. A no-op with export off.
pub fn emit_audit_log(record_json: &str, attributes: &[(&str, &str)]) {
    tracing::dispatcher::get_default(|dispatch| {
        let Some(handles) = dispatch.downcast_ref::<ExportHandles>() else {
            return;
        };
        let mut record = handles.audit.create_log_record();
        record.set_event_name("audit");
        record.set_severity_number(Severity::Info);
        record.set_severity_text("INFO");
        record.set_timestamp(SystemTime::now());
        record.set_body(AnyValue::from(record_json.to_owned()));
        record.add_attributes(
            attributes
                .iter()
                .map(|(key, value)| (Key::from(key.to_string()), value.to_string())),
        );
        handles.audit.emit(record);
    });
}

/// Counts one answered partner request and records its latency, as the OpenTelemetry metrics
/// `gateway.requests` and `gateway.request.duration` (seconds), with the attributes
/// `partner`, `route`, `decision` and `http.response.status_code` (STYLE §8: never a customer
/// reference). A no-op with export off; Prometheus keeps its own counters.
pub fn record_request(partner: &str, route: &str, decision: &str, status: u16, latency: Duration) {
    tracing::dispatcher::get_default(|dispatch| {
        let Some(handles) = dispatch.downcast_ref::<ExportHandles>() else {
            return;
        };
        let attributes = [
            KeyValue::new("partner", partner.to_owned()),
            KeyValue::new("route", route.to_owned()),
            KeyValue::new("decision", decision.to_owned()),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ];
        handles.requests.add(1, &attributes);
        handles.duration.record(latency.as_secs_f64(), &attributes);
    });
}
