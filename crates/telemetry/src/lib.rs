//! `gateway-telemetry`: how the gateway reports on itself.
//!
//! This crate owns the process-wide `tracing` subscriber and, when an OTLP endpoint is
//! configured, the OpenTelemetry pipeline behind it:
//!
//! - **Logs to stderr**, JSON (flattened, one object per line) or text, filtered with a
//!   `RUST_LOG`-style directive string ([`init`]).
//! - **Traces**: one span per partner request ([`request_span`]), joined to the caller's W3C
//!   trace, tagged with partner, route ([`record_route`] if they are known late), decision and
//!   status ([`record_outcome`]).
//! - **Metrics**: request count and latency by partner, route, decision and status
//!   ([`record_request`]).
//! - **OpenTelemetry logs**: every `tracing` event the filter lets through, plus audit records
//!   forwarded with [`emit_audit_log`].
//!
//! It does not own the Prometheus text endpoint (that is `gateway-http`'s admin API), the
//! `x-fapi-interaction-id`/`traceparent` handling (the `http` edge layer, which puts a
//! [`TraceContext`] on every request), or the audit trail itself (`gateway-audit`).
//!
//! # Export
//!
//! Export is off unless [`TelemetrySettings::otlp_endpoint`] is set; then traces, metrics and
//! logs go to `<endpoint>/v1/{traces,metrics,logs}` over OTLP/HTTP with protobuf bodies, on
//! the exporter's built-in hyper client (plain HTTP; no tonic, protoc or reqwest). The batch
//! processors run on a small Tokio runtime of their own on one thread (`otel-export`), so
//! [`init`] works with or without an ambient runtime and a busy request runtime never delays
//! an export. A collector that is down or slow never fails a request, never fails [`init`]
//! and never panics: telemetry is dropped, and the failure is logged at most once a minute.
//! [`TelemetryGuard`] flushes and shuts the pipeline down when dropped, within
//! [`SHUTDOWN_TIMEOUT`].
//!
//! # Cost
//!
//! With export off, the request span is disabled at its call site: [`request_span`] plus
//! [`record_outcome`] cost a few nanoseconds and allocate nothing (see `benches/span.rs`).
//!
//! # Layout
//!
//! - `span`: the per-request span and the id generator that gives it the hop's span id.
//! - `export`: the OTLP pipeline, its runtime thread, throttled error reporting and shutdown.
//! - `signals`: [`emit_audit_log`] and [`record_request`].
#![warn(missing_docs)]

mod export;
mod signals;
mod span;

use std::io::IsTerminal as _;
use std::time::Duration;

use tracing::Subscriber;
use tracing_subscriber::filter::{EnvFilter, FilterExt as _};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

pub use gateway_core::TraceContext;

pub use crate::signals::{emit_audit_log, exporting, record_request};
pub use crate::span::{
    REQUEST_SPAN_TARGET, record_outcome, record_route, request_span, request_span_with_caller,
};

/// The longest [`TelemetryGuard`] waits for the last export when it is dropped.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Target of the throttled "export failed" log line. It is kept out of the OpenTelemetry log
/// export so that a failing collector does not feed on its own failures.
pub const EXPORT_TARGET: &str = "gateway_telemetry::export";

/// What [`init`] sets up. The integrator fills it from `gateway.yaml` (`telemetry:`), the
/// command line and `RUST_LOG`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// Format of the log lines on stderr.
    pub log_format: LogFormat,
    /// `RUST_LOG`-style directives, such as `info` or `info,gateway_http=debug`. Empty means
    /// `info`. Applies to stderr and to exported logs; request spans are exported regardless.
    pub filter: String,
    /// Base URL of an OTLP/HTTP collector, such as `http://127.0.0.1:4318`; `None` turns
    /// export off. Only `http://` is accepted: the built-in client speaks plain HTTP.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// `service.instance.id` of the exported resource (tells the gateways of a cluster apart).
    pub instance_id: String,
}

impl Default for TelemetrySettings {
    /// JSON logs at `info`, export off, service `partner-gateway`, instance `local`.
    fn default() -> Self {
        TelemetrySettings {
            log_format: LogFormat::Json,
            filter: "info".to_owned(),
            otlp_endpoint: None,
            service_name: "partner-gateway".to_owned(),
            instance_id: "local".to_owned(),
        }
    }
}

/// Format of the log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line, event fields flattened to the top level.
    #[default]
    Json,
    /// Human-readable lines (the `dev` default).
    Text,
}

/// Why [`init`] refused to start. Export failures are never reported here: a collector that
/// is absent is not an error.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("invalid log filter `{filter}`: {source}")]
    Filter {
        /// The filter as given.
        filter: String,
        /// What the parser said.
        source: tracing_subscriber::filter::ParseError,
    },
    /// The OTLP endpoint is not an `http://` URL.
    #[error("invalid OTLP endpoint `{endpoint}`: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An OTLP exporter could not be built (for example an `OTEL_EXPORTER_OTLP_*` variable
    /// asks for a compression this build lacks).
    #[error("cannot build the OTLP {signal} exporter: {source}")]
    Exporter {
        /// `traces`, `metrics` or `logs`.
        signal: &'static str,
        /// The exporter's error.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// The export thread or its runtime could not be started.
    #[error("cannot start the telemetry export thread: {0}")]
    Runtime(#[source] std::io::Error),
    /// A global subscriber was installed already (`init` runs once per process).
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[source] tracing_subscriber::util::TryInitError),
}

/// Installs the global `tracing` subscriber (logs to stderr) and, when
/// [`TelemetrySettings::otlp_endpoint`] is set, the OpenTelemetry export pipeline.
///
/// Call it once, early, and keep the guard alive until the end of `main`. It may be called
/// inside or outside a Tokio runtime. It fails only on settings that can never work (a filter
/// or endpoint that does not parse) or when a subscriber is installed already; an unreachable
/// collector is not an error.
///
/// ```no_run
/// let settings = gateway_telemetry::TelemetrySettings {
///     otlp_endpoint: Some("http://127.0.0.1:4318".to_owned()),
///     ..Default::default()
/// };
/// let _telemetry = gateway_telemetry::init(&settings)?;
/// tracing::info!(partner = "demo-bank", "Ready.");
/// # Ok::<(), gateway_telemetry::TelemetryError>(())
/// ```
pub fn init(settings: &TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    let ansi = std::io::stderr().is_terminal();
    init_inner(settings, std::io::stderr, ansi)
}

/// [`init`] with the log lines written to `writer` instead of stderr (for tests), never with
/// ANSI colours.
pub fn init_with_writer<W>(
    settings: &TelemetrySettings,
    writer: W,
) -> Result<TelemetryGuard, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    init_inner(settings, writer, false)
}

/// Builds the same subscriber as [`init_with_writer`] without installing it, for use with
/// [`tracing::dispatcher::with_default`] in tests and benches. The `log` crate bridge is not
/// installed.
///
/// Build one at a time: `tracing` caches each call site's interest across all live
/// dispatchers, and a dispatcher created while another thread first hits a call site can be
/// left out of that cache (so a request span may come out disabled, or enabled, wrongly).
pub fn build_with_writer<W>(
    settings: &TelemetrySettings,
    writer: W,
) -> Result<(tracing::Dispatch, TelemetryGuard), TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (subscriber, guard) = subscriber(settings, writer, false)?;
    Ok((tracing::Dispatch::new(subscriber), guard))
}

/// Keeps the export pipeline alive; flushes and shuts it down when dropped.
///
/// Dropping it blocks the current thread for at most [`SHUTDOWN_TIMEOUT`] while the last
/// batches are exported (on the export thread, so it is safe on a Tokio worker). With export
/// off it does nothing.
#[derive(Debug)]
#[must_use = "telemetry export stops when the guard is dropped"]
pub struct TelemetryGuard {
    /// `None` when export is off, and after shutdown.
    pipeline: Option<export::Pipeline>,
}

impl TelemetryGuard {
    /// Whether this guard runs an OTLP export pipeline.
    pub fn is_exporting(&self) -> bool {
        self.pipeline.is_some()
    }

    /// Flushes and shuts the pipeline down now (what dropping the guard does).
    pub fn shutdown(mut self) {
        self.shutdown_pipeline();
    }

    fn shutdown_pipeline(&mut self) {
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.shutdown(SHUTDOWN_TIMEOUT);
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown_pipeline();
    }
}

// === helpers ===

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync + 'static>;

fn init_inner<W>(
    settings: &TelemetrySettings,
    writer: W,
    ansi: bool,
) -> Result<TelemetryGuard, TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let (subscriber, guard) = subscriber(settings, writer, ansi)?;
    // Also installs the `log` crate bridge, as `fmt().init()` did before.
    subscriber
        .try_init()
        .map_err(TelemetryError::AlreadyInstalled)?;
    Ok(guard)
}

fn subscriber<W>(
    settings: &TelemetrySettings,
    writer: W,
    ansi: bool,
) -> Result<(impl Subscriber + Send + Sync + 'static, TelemetryGuard), TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = if settings.filter.trim().is_empty() {
        "info"
    } else {
        settings.filter.as_str()
    };
    // Request spans exist for export only: keeping them out of the fmt layer keeps the log
    // format as it was and, with export off, disables them at the call site.
    let fmt_filter = env_filter(base, &[concat_off(REQUEST_SPAN_TARGET)])?;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let mut layers: Vec<BoxedLayer> = vec![match settings.log_format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_filter(fmt_filter)
            .boxed(),
        LogFormat::Text => fmt.with_filter(fmt_filter).boxed(),
    }];

    let mut guard = TelemetryGuard { pipeline: None };
    if let Some(endpoint) = &settings.otlp_endpoint {
        // Spans only: events reach the collector as log records, not duplicated as span
        // events. Request spans are exported whatever the log level.
        let span_filter = env_filter(base, &[format!("{REQUEST_SPAN_TARGET}=trace")])?
            .and(tracing_subscriber::filter::filter_fn(|meta| meta.is_span()));
        // Never export the exporter's own chatter: a failing collector would feed on it.
        let quiet: Vec<String> = [
            EXPORT_TARGET,
            REQUEST_SPAN_TARGET,
            "opentelemetry",
            "opentelemetry_sdk",
            "opentelemetry_otlp",
            "opentelemetry_http",
            "hyper",
            "hyper_util",
            "h2",
        ]
        .iter()
        .map(|target| concat_off(target))
        .collect();
        let log_filter = env_filter(base, &quiet)?;
        // Everything that can be refused is checked; start the export thread.
        let pipeline = export::Pipeline::start(endpoint, settings)?;
        layers.push(
            tracing_opentelemetry::layer()
                .with_tracer(pipeline.tracer())
                .with_location(false)
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_filter(span_filter)
                .boxed(),
        );
        layers.push(
            opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(
                pipeline.logger_provider(),
            )
            .with_filter(log_filter)
            .boxed(),
        );
        layers.push(pipeline.handles_layer());
        guard.pipeline = Some(pipeline);
    }
    Ok((Registry::default().with(layers), guard))
}

fn concat_off(target: &str) -> String {
    format!("{target}=off")
}

/// `base` plus `extra` directives. A later directive for the same target replaces an earlier
/// one, so ours win for the targets they name.
fn env_filter(base: &str, extra: &[String]) -> Result<EnvFilter, TelemetryError> {
    let mut directives = base.to_owned();
    for directive in extra {
        directives.push(',');
        directives.push_str(directive);
    }
    EnvFilter::builder()
        .parse(&directives)
        .map_err(|source| TelemetryError::Filter {
            filter: base.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests;
