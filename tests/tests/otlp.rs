//! With `telemetry.otlp_endpoint` set, the binary exports request spans and audit records as
//! OpenTelemetry over OTLP/HTTP to a collector (here a minimal one the test runs).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Received = Arc<Mutex<HashMap<String, Vec<Bytes>>>>;

/// Accepts OTLP/HTTP posts and keeps their bodies by path.
async fn collector() -> (std::net::SocketAddr, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let store = store.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = gateway_http::body::read_limited(req.into_body(), 16 << 20)
                            .await
                            .unwrap_or_default();
                        store.lock().unwrap().entry(path).or_default().push(body);
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_audit_records_reach_the_collector() {
    let (addr, received) = collector().await;
    let root = gateway_tests::process::ProcessRoot::new().await;
    let yaml_path = root.config().join("gateway.yaml");
    let yaml = std::fs::read_to_string(&yaml_path).unwrap();
    std::fs::write(
        &yaml_path,
        yaml.replace(
            "otlp_endpoint: null",
            &format!("otlp_endpoint: http://{addr}"),
        ),
    )
    .unwrap();
    let gateway = root.start();
    let mut client = gateway_tests::partner_client(
        root.path(),
        gateway.partner_addr,
        "demo-bank",
        "products:read",
    )
    .await;
    let response = client
        .get_with(
            "/v1/products?limit=1",
            &[
                ("x-fapi-interaction-id", "otlp-probe"),
                (
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    let arrived = gateway_tests::eventually(Duration::from_secs(20), || {
        let map = received.lock().unwrap();
        let has = |path: &str, needle: &[u8]| {
            map.get(path).is_some_and(|bodies| {
                bodies
                    .iter()
                    .any(|b| b.windows(needle.len()).any(|w| w == needle))
            })
        };
        // The audit record (JSON inside the log record) and the request span (its trace id bytes).
        has("/v1/logs", b"otlp-probe")
            && has(
                "/v1/traces",
                &[0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6],
            )
    })
    .await;
    let paths: Vec<String> = received.lock().unwrap().keys().cloned().collect();
    assert!(
        arrived,
        "collector received only {paths:?}\n{}",
        gateway.log()
    );
}
