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

#[tokio::test]
async fn an_http2_rapid_reset_flood_is_cut_off_while_others_are_served() {
    // CVE-2023-44487: open streams and cancel them at once, so the server keeps starting work
    // the client never waits for. Past `h2_max_pending_reset_streams` the gateway must end
    // the connection with GOAWAY ENHANCE_YOUR_CALM. The limit is lowered to 8 and the flood
    // kept to 300 streams, under the HTTP/2 library's own defaults (20 pending, 1024 local
    // resets), so only the configured limit can stop it.
    let gateway = TestGateway::builder()
        .gateway_yaml(
            "h2_max_pending_reset_streams: 32",
            "h2_max_pending_reset_streams: 8",
        )
        .start()
        .await;
    let tls = gateway.raw_tls_alpn("demo-bank", b"h2").await;
    let (mut sender, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    let driver = tokio::spawn(connection);
    let mut refused = None;
    for n in 0..300 {
        sender = match sender.ready().await {
            Ok(sender) => sender,
            Err(err) => {
                refused = Some(err);
                break;
            }
        };
        let request = http::Request::get("https://localhost/v1/products")
            .body(())
            .expect("request");
        match sender.send_request(request, false) {
            Ok((_response, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
        if n % 50 == 49 {
            tokio::task::yield_now().await;
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), driver)
        .await
        .expect("the gateway ends the flooding connection")
        .expect("driver task");
    let reasons: Vec<_> = [ended.err(), refused]
        .into_iter()
        .flatten()
        .map(|err| err.reason())
        .collect();
    assert!(
        reasons.contains(&Some(h2::Reason::ENHANCE_YOUR_CALM)),
        "{reasons:?}"
    );

    // Everyone else, the same partner included, is still served.
    let mut client = gateway.client("demo-bank").await;
    let response = client.get("/v1/products").await.expect("served");
    assert_eq!(response.status, 200);
}
