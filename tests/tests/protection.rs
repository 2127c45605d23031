//! The gateway protects itself from slow clients: slow headers and slow bodies are cut off
//! while other clients are served.

use std::time::{Duration, Instant};

use gateway_tests::TestGateway;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[tokio::test]
async fn a_slowloris_connection_is_closed_after_the_header_timeout_while_others_are_served() {
    let gateway = TestGateway::builder()
        .gateway_yaml(
            "header_read_timeout_ms: 5000",
            "header_read_timeout_ms: 500",
        )
        .start()
        .await;
    let mut slow = gateway.raw_tls("demo-fund").await;
    slow.write_all(b"GET /v1/products HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    // Meanwhile a normal client is served.
    let mut client = gateway.client("demo-bank").await;
    assert_eq!(
        client.get("/v1/products?limit=1").await.unwrap().status,
        200
    );
    // The slow one never finishes its head: the server closes the connection.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the slow connection stayed open");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed before the timeout"
    );
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

#[tokio::test]
async fn a_body_below_the_minimum_rate_is_answered_408() {
    let gateway = TestGateway::builder()
        .gateway_yaml(
            "header_read_timeout_ms: 5000",
            "header_read_timeout_ms: 300",
        )
        .gateway_yaml(
            "min_body_rate_bytes_per_sec: 1024",
            "min_body_rate_bytes_per_sec: 100000",
        )
        .start()
        .await;
    let mut slow = gateway.raw_tls("demo-bank").await;
    slow.write_all(
        b"POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\ngrant_type=",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf))
        .await
        .expect("an answer before the client finished")
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.contains("request-timeout"), "{head}");
}
