//! Test fixtures: a captured log writer and a tiny OTLP/HTTP collector.
//!
//! Each integration-test file holds one test, because `init` installs the process-wide
//! subscriber once; this module is compiled into each of them.

#![allow(dead_code, unreachable_pub)]

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use gateway_telemetry::{LogFormat, TelemetrySettings};

/// Settings for tests: JSON logs at `info`, export to `endpoint` if any.
pub fn settings(endpoint: Option<String>) -> TelemetrySettings {
    TelemetrySettings {
        log_format: LogFormat::Json,
        filter: "info".to_owned(),
        otlp_endpoint: endpoint,
        service_name: "partner-gateway-test".to_owned(),
        instance_id: "test-1".to_owned(),
    }
}

// === Capture ===

/// A `MakeWriter` that keeps everything written, for asserting on log lines.
#[derive(Debug, Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The lines written so far, parsed as JSON.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
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

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

// === Collector ===

/// One request the collector received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// An OTLP/HTTP collector on 127.0.0.1:0 that answers every `POST /v1/{traces,logs,metrics}`
/// with 200 and keeps the request. Stops on `stop()` or drop.
pub struct Collector {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Collector {
    pub async fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let store = received.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let store = store.clone();
                        connections.spawn(async move {
                            let service = service_fn(move |req| handle(req, store.clone()));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                }
            }
            connections.shutdown().await;
        });
        Collector {
            addr,
            received,
            stop: Some(stop_tx),
            task: Some(task),
        }
    }

    /// The base URL to configure as `otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received on `path`.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    store: Arc<Mutex<Vec<Received>>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_owned();
    let known = req.method() == hyper::Method::POST
        && matches!(path.as_str(), "/v1/traces" | "/v1/logs" | "/v1/metrics");
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_bounded(req.into_body()).await?;
    store.lock().unwrap().push(Received {
        path,
        content_type,
        body,
    });
    let status = if known {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    };
    // An empty protobuf message is a valid (fully successful) Export*ServiceResponse.
    Ok(Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(Bytes::new()))
        .unwrap())
}

/// Reads a request body of at most 4 MiB (more is cut off; OTLP batches here are small).
async fn read_bounded(mut body: Incoming) -> Result<Bytes, hyper::Error> {
    const LIMIT: usize = 4 << 20;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            let room = LIMIT.saturating_sub(bytes.len());
            bytes.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    Ok(Bytes::from(bytes))
}

/// Whether `needle` occurs in `haystack` (protobuf carries ids and strings as raw bytes).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
