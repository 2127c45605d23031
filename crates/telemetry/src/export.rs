//! The OTLP/HTTP export pipeline: exporters, batch processors on a runtime of their own, and
//! bounded shutdown.
//!
//! Why a runtime of our own: the SDK's `rt-tokio` processors spawn their worker tasks with
//! `tokio::spawn` and the hyper client needs a reactor (DEPENDENCIES.md pitfall 3), and
//! shutting a provider down blocks until its worker answers. Running the workers on a
//! dedicated current-thread runtime makes `init` independent of the caller's runtime and makes
//! the blocking shutdown safe from any thread, a Tokio worker included.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use opentelemetry::InstrumentationScope;
use opentelemetry::logs::LoggerProvider as _;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, RetryPolicy, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogBatch, LogExporter, SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanData, SpanExporter};
use tracing::warn;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;

use crate::span::HopIds;
use crate::{BoxedLayer, EXPORT_TARGET, TelemetryError, TelemetrySettings};

/// One HTTP export attempt, retries included, gives up after this.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// Queued spans and log records are exported this often (or when a batch is full).
const BATCH_DELAY: Duration = Duration::from_secs(2);
/// Metrics are collected and pushed this often.
const METRIC_INTERVAL: Duration = Duration::from_secs(30);
/// Failed exports are reported at most this often.
const REPORT_INTERVAL: Duration = Duration::from_secs(60);
/// Bucket bounds of `gateway.request.duration`, in seconds: the SDK's defaults (0, 5, 10, …)
/// suit milliseconds, while gateway overhead is tens of microseconds and upstream calls are
/// milliseconds.
const LATENCY_BOUNDARIES: [f64; 16] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Instrumentation scope of everything this crate emits.
const SCOPE: &str = "partner-gateway";
/// Instrumentation scope of forwarded audit records, so a collector can route them apart.
const AUDIT_SCOPE: &str = "partner-gateway.audit";

/// Shuts one provider down (blocking).
type ShutdownJob = Box<dyn FnOnce() + Send>;

/// A running export pipeline. Created by `init` when an endpoint is set; owned by the
/// `TelemetryGuard`, which calls [`Pipeline::shutdown`].
#[derive(Debug)]
pub(crate) struct Pipeline {
    tracer_provider: SdkTracerProvider,
    logger_provider: SdkLoggerProvider,
    meter_provider: SdkMeterProvider,
    /// What `emit_audit_log` and `record_request` reach through the subscriber.
    handles: ExportHandles,
    /// The thread running the export runtime. It owns the runtime and drops it itself (a
    /// runtime may not be dropped inside another runtime's context); it stops when `stop` is
    /// sent or dropped.
    thread: std::thread::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Pipeline {
    /// Validates the endpoint, starts the export thread and builds the three providers on it.
    pub(crate) fn start(
        endpoint: &str,
        settings: &TelemetrySettings,
    ) -> Result<Pipeline, TelemetryError> {
        let base = base_url(endpoint)?;
        let (thread, handle, stop) = start_runtime()?;
        // The processors spawn their workers with `tokio::spawn`: build them inside the export
        // runtime's context. Entering a handle is allowed inside another runtime.
        let built = {
            let _context = handle.enter();
            build_providers(&base, settings)
        };
        match built {
            Ok((tracer_provider, logger_provider, meter_provider)) => {
                let handles = ExportHandles::new(&logger_provider, &meter_provider);
                Ok(Pipeline {
                    tracer_provider,
                    logger_provider,
                    meter_provider,
                    handles,
                    thread,
                    stop,
                })
            }
            Err(err) => {
                // Nothing was spawned that needs flushing; let the thread end on its own.
                drop(stop);
                Err(err)
            }
        }
    }

    /// The tracer for the `tracing-opentelemetry` layer.
    pub(crate) fn tracer(&self) -> SdkTracer {
        self.tracer_provider.tracer_with_scope(scope(SCOPE))
    }

    /// The provider for the log bridge.
    pub(crate) fn logger_provider(&self) -> &SdkLoggerProvider {
        &self.logger_provider
    }

    /// A layer that does nothing but carry the handles, found again by downcasting the
    /// current dispatcher. Its `OFF` filter keeps it from enabling any call site.
    pub(crate) fn handles_layer(&self) -> BoxedLayer {
        self.handles.clone().with_filter(LevelFilter::OFF).boxed()
    }

    /// Flushes and shuts the three providers down in parallel, waiting at most `timeout`,
    /// then stops the export thread. Never fails: what cannot be exported in time is lost.
    pub(crate) fn shutdown(self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let (done_tx, done_rx) = mpsc::channel::<&'static str>();
        let tracer_provider = self.tracer_provider;
        let logger_provider = self.logger_provider;
        let meter_provider = self.meter_provider;
        // The shutdown calls block until the export thread answers; one thread each keeps a
        // slow signal from delaying the others. A thread that cannot be spawned shuts its
        // provider down when the last reference drops, on the export thread's exit.
        let jobs: [(&'static str, ShutdownJob); 3] = [
            (
                "traces",
                Box::new(move || drop(tracer_provider.shutdown_with_timeout(timeout))),
            ),
            (
                "logs",
                Box::new(move || drop(logger_provider.shutdown_with_timeout(timeout))),
            ),
            (
                "metrics",
                Box::new(move || drop(meter_provider.shutdown_with_timeout(timeout))),
            ),
        ];
        let mut pending = 0;
        for (signal, job) in jobs {
            let done = done_tx.clone();
            let spawned = std::thread::Builder::new()
                .name("otel-shutdown".to_owned())
                .spawn(move || {
                    job();
                    let _ = done.send(signal);
                });
            if spawned.is_ok() {
                pending += 1;
            }
        }
        drop(done_tx);
        while pending > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match done_rx.recv_timeout(left) {
                Ok(_) => pending -= 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    warn!(
                        target: EXPORT_TARGET,
                        pending,
                        timeout_ms = timeout.as_millis() as u64,
                        "Telemetry shutdown timed out; unexported telemetry is dropped."
                    );
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        // Stops the runtime; its own shutdown is bounded (see `start_runtime`). Join only when
        // everything finished, so that a stuck export cannot hold the process past `timeout`.
        let _ = self.stop.send(());
        if pending == 0 {
            let _ = self.thread.join();
        }
    }
}

/// What the signal functions need, reached through the current dispatcher
/// (`downcast_ref::<ExportHandles>()`), so that they work with a global or a scoped
/// subscriber and need no global state of their own.
#[derive(Debug, Clone)]
pub(crate) struct ExportHandles {
    /// Logger for forwarded audit records.
    pub(crate) audit: SdkLogger,
    /// `gateway.requests`: requests by partner, route, decision and status.
    pub(crate) requests: Counter<u64>,
    /// `gateway.request.duration` in seconds, same attributes.
    pub(crate) duration: Histogram<f64>,
}

impl ExportHandles {
    fn new(logs: &SdkLoggerProvider, metrics: &SdkMeterProvider) -> ExportHandles {
        let meter = metrics.meter_with_scope(scope(SCOPE));
        ExportHandles {
            audit: logs.logger_with_scope(scope(AUDIT_SCOPE)),
            requests: meter
                .u64_counter("gateway.requests")
                .with_description("Partner requests answered.")
                .with_unit("{request}")
                .build(),
            duration: meter
                .f64_histogram("gateway.request.duration")
                .with_description("Time from request to response head, in the gateway.")
                .with_unit("s")
                .with_boundaries(LATENCY_BOUNDARIES.to_vec())
                .build(),
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for ExportHandles {}

// === impl Throttle ===

/// Reports export failures at most once per [`REPORT_INTERVAL`], across all signals.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    last: Mutex<Option<Instant>>,
    /// Failures not reported since the last report.
    suppressed: AtomicU64,
}

impl Throttle {
    /// Logs the failure unless one was logged within the interval before `now`.
    fn failed(&self, signal: &'static str, error: &dyn std::fmt::Display, now: Instant) {
        if let Some(suppressed) = self.admit(now) {
            warn!(
                target: EXPORT_TARGET,
                signal,
                error = %error,
                suppressed,
                "OTLP export failed; telemetry is being dropped. Further failures are not logged \
                 for a minute."
            );
        }
    }

    /// `Some(failures suppressed since the last report)` when a report is due at `now`.
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match *last {
            Some(at) if now.saturating_duration_since(at) < REPORT_INTERVAL => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

// === impl Quiet ===

/// Wraps an exporter: failures are reported through [`Throttle`] and still returned to the
/// processor (which, with the SDK's `internal-logs` off, does not log them again).
#[derive(Debug)]
struct Quiet<E> {
    inner: E,
    signal: &'static str,
    throttle: Arc<Throttle>,
}

impl<E> Quiet<E> {
    fn new(inner: E, signal: &'static str, throttle: &Arc<Throttle>) -> Quiet<E> {
        Quiet {
            inner,
            signal,
            throttle: throttle.clone(),
        }
    }

    fn observe(&self, result: OTelSdkResult) -> OTelSdkResult {
        if let Err(error) = &result {
            self.throttle.failed(self.signal, error, Instant::now());
        }
        result
    }
}

impl<E: SpanExporter> SpanExporter for Quiet<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.observe(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: LogExporter> LogExporter for Quiet<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.observe(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn event_enabled(
        &self,
        level: opentelemetry::logs::Severity,
        target: &str,
        name: Option<&str>,
    ) -> bool {
        self.inner.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter + std::fmt::Debug> PushMetricExporter for Quiet<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.observe(result)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

// === helpers ===

fn scope(name: &'static str) -> InstrumentationScope {
    InstrumentationScope::builder(name)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// `http://host:port[/prefix]` without a trailing slash; the signal paths are appended.
pub(crate) fn base_url(endpoint: &str) -> Result<String, TelemetryError> {
    let invalid = |reason| TelemetryError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let trimmed = endpoint.trim().trim_end_matches('/');
    let Some(rest) = trimmed.strip_prefix("http://") else {
        return Err(invalid(if trimmed.starts_with("https://") {
            "https is not supported by the built-in exporter client; use a local collector \
             over http"
        } else {
            "expected an http:// URL such as http://127.0.0.1:4318"
        }));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid("the URL has no host"));
    }
    match trimmed.parse::<http::Uri>() {
        Ok(uri) if uri.query().is_none() => Ok(trimmed.to_owned()),
        Ok(_) => Err(invalid("the URL has a query")),
        Err(_) => Err(invalid("not a valid URL")),
    }
}

/// Starts the export thread; returns it, its runtime's handle and the stop switch.
fn start_runtime() -> Result<
    (
        std::thread::JoinHandle<()>,
        tokio::runtime::Handle,
        tokio::sync::oneshot::Sender<()>,
    ),
    TelemetryError,
> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (handle_tx, handle_rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("otel-export".to_owned())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = handle_tx.send(Err(err));
                    return;
                }
            };
            let _ = handle_tx.send(Ok(runtime.handle().clone()));
            // Runs the processors' tasks until told to stop (or the pipeline is dropped).
            runtime.block_on(async {
                let _ = stop_rx.await;
            });
            // Bounded: a connection or DNS lookup still in flight does not hold the thread.
            runtime.shutdown_timeout(Duration::from_millis(500));
        })
        .map_err(TelemetryError::Runtime)?;
    match handle_rx.recv() {
        Ok(Ok(handle)) => Ok((thread, handle, stop_tx)),
        Ok(Err(err)) => Err(TelemetryError::Runtime(err)),
        Err(_) => Err(TelemetryError::Runtime(std::io::Error::other(
            "the export thread ended before its runtime started",
        ))),
    }
}

fn build_providers(
    base: &str,
    settings: &TelemetrySettings,
) -> Result<(SdkTracerProvider, SdkLoggerProvider, SdkMeterProvider), TelemetryError> {
    use opentelemetry_sdk::logs::log_processor_with_async_runtime::BatchLogProcessor;
    use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;

    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attributes([
            opentelemetry::KeyValue::new("service.instance.id", settings.instance_id.clone()),
            opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .build();
    let throttle = Arc::new(Throttle::default());
    // Retries stay within EXPORT_TIMEOUT; a refused connection fails in well under a second.
    let retry = RetryPolicy::recommended();

    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{base}/v1/traces"))
        .with_timeout(EXPORT_TIMEOUT)
        .with_retry_policy(retry.clone())
        .build()
        .map_err(|source| TelemetryError::Exporter {
            signal: "traces",
            source,
        })?;
    let logs = opentelemetry_otlp::LogExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{base}/v1/logs"))
        .with_timeout(EXPORT_TIMEOUT)
        .with_retry_policy(retry.clone())
        .build()
        .map_err(|source| TelemetryError::Exporter {
            signal: "logs",
            source,
        })?;
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{base}/v1/metrics"))
        .with_timeout(EXPORT_TIMEOUT)
        .with_retry_policy(retry)
        .build()
        .map_err(|source| TelemetryError::Exporter {
            signal: "metrics",
            source,
        })?;

    let span_processor = BatchSpanProcessor::builder(Quiet::new(spans, "traces", &throttle), Tokio)
        .with_batch_config(
            opentelemetry_sdk::trace::BatchConfigBuilder::default()
                .with_scheduled_delay(BATCH_DELAY)
                .with_max_export_timeout(EXPORT_TIMEOUT)
                .build(),
        )
        .build();
    let tracer_provider = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_id_generator(HopIds::default())
        .with_span_processor(span_processor)
        .build();

    let log_processor = BatchLogProcessor::builder(Quiet::new(logs, "logs", &throttle), Tokio)
        .with_batch_config(
            opentelemetry_sdk::logs::BatchConfigBuilder::default()
                .with_scheduled_delay(BATCH_DELAY)
                .with_max_export_timeout(EXPORT_TIMEOUT)
                .build(),
        )
        .build();
    let logger_provider = SdkLoggerProvider::builder()
        .with_resource(resource.clone())
        .with_log_processor(log_processor)
        .build();

    let reader = PeriodicReader::builder(Quiet::new(metrics, "metrics", &throttle), Tokio)
        .with_interval(METRIC_INTERVAL)
        .with_timeout(EXPORT_TIMEOUT)
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(reader)
        .build();

    Ok((tracer_provider, logger_provider, meter_provider))
}
