//! The mTLS partner listener: who may connect, who is identified as whom, and what happens to
//! open connections when the configuration changes.

use std::time::{Duration, Instant};

use gateway_tests::{Alpn, PartnerClient, TestGateway};
use gateway_tls::devpki::DevCa;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A partner file pinning `fingerprint` (sha256) for partner `id`.
fn partner_file(id: &str, status: &str, pins: &[String]) -> String {
    let pins: String = pins
        .iter()
        .map(|p| format!("  - sha256: \"{p}\"\n"))
        .collect();
    format!(
        "id: {id}\ndisplay_name: Test {id}\nkind: bank\nstatus: {status}\ncertificates:\n{pins}\
         oauth:\n  client_id: {id}\n  scopes: [tags:read, products:read]\n\
         rate_limits:\n  default: {{ rate_per_sec: 1000, burst: 1000 }}\n\
         field_ceiling: [risk_level]\npurposes: [wealth_advice]\ncampaigns: []\n"
    )
}

#[tokio::test]
async fn sample_partner_is_served_over_http1_and_http2() {
    let gateway = TestGateway::start().await;
    for alpn in [Alpn::Http1, Alpn::Http2] {
        let mut client = gateway
            .connect(&gateway.partner_cert("demo-bank"), alpn)
            .await
            .unwrap();
        client
            .authorize("demo-bank", "products:read")
            .await
            .unwrap();
        let response = client.get("/v1/products?limit=2").await.unwrap();
        assert_eq!(response.status, 200, "{alpn:?}: {:?}", response.body);
        assert!(response.json()["products"].is_array());
    }
}

#[tokio::test]
async fn handshake_without_client_certificate_fails() {
    let gateway = TestGateway::start().await;
    let ca = std::fs::read(gateway.certs_dir().join("ca.pem")).unwrap();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let config =
            gateway_tls::testing::anonymous_client_config(&ca, &[version], &[b"http/1.1"]).unwrap();
        // With TLS 1.3 the client may finish its side before the server's alert arrives, so
        // the refusal can show on the first request instead of the handshake.
        match PartnerClient::connect(gateway.partner_addr, config, Alpn::Http1).await {
            Err(_) => {}
            Ok(mut client) => assert!(client.get("/v1/products").await.is_err(), "{version:?}"),
        }
    }
}

#[tokio::test]
async fn certificate_from_another_ca_fails() {
    let gateway = TestGateway::start().await;
    let other = DevCa::new("Some Other CA").unwrap();
    let cert = other.issue_client("demo-bank", "Demo Bank").unwrap();
    match gateway.connect(&cert, Alpn::Http1).await {
        Err(_) => {}
        Ok(mut client) => assert!(client.get("/v1/products").await.is_err()),
    }
}

#[tokio::test]
async fn trusted_but_unmapped_certificate_gets_unknown_client_certificate() {
    let gateway = TestGateway::start().await;
    let stranger = gateway.ca().issue_client("stranger", "Nobody Ltd").unwrap();
    let mut client = gateway.connect(&stranger, Alpn::Http1).await.unwrap();
    for path in ["/v1/products", "/oauth2/token", "/nowhere"] {
        let response = client.get(path).await.unwrap();
        response.assert_problem(403, "unknown-client-certificate");
    }
}

#[tokio::test]
async fn suspended_partner_gets_partner_suspended() {
    let ca_holder = TestGateway::start().await;
    // Issue a cert from this gateway's CA and pin it in a suspended partner file.
    let cert = ca_holder.ca().issue_client("bank-b", "Bank B").unwrap();
    ca_holder.write_config(
        "partners/bank-b.yaml",
        &partner_file("bank-b", "suspended", &[cert.fingerprint().to_hex()]),
    );
    ca_holder.reload().await;
    let mut client = ca_holder.connect(&cert, Alpn::Http1).await.unwrap();
    client
        .get("/v1/products")
        .await
        .unwrap()
        .assert_problem(403, "partner-suspended");
}

#[tokio::test]
async fn several_pins_let_a_partner_rotate_certificates() {
    let gateway = TestGateway::start().await;
    let ca = gateway.ca();
    let old = ca.issue_client("bank-b", "Bank B").unwrap();
    let new = ca.issue_client("bank-b", "Bank B").unwrap();
    gateway.write_config(
        "partners/bank-b.yaml",
        &partner_file(
            "bank-b",
            "active",
            &[old.fingerprint().to_hex(), new.fingerprint().to_hex()],
        ),
    );
    let reload = gateway.reload().await;
    assert_eq!(reload.status, 200, "{:?}", reload.body);
    for cert in [&old, &new] {
        let mut client = gateway.connect(cert, Alpn::Http2).await.unwrap();
        client.authorize("bank-b", "").await.unwrap();
        assert_eq!(
            client.get("/v1/products?limit=1").await.unwrap().status,
            200
        );
    }
}

#[tokio::test]
async fn tls11_and_cbc_only_client_hellos_are_refused() {
    let gateway = TestGateway::start().await;
    // TLS 1.1 (0x0302) offering an AEAD suite; TLS 1.2 offering only CBC suites.
    let cases: [(u16, &[u16]); 2] = [
        (0x0302, &[0xc02b, 0x002f]),
        (0x0303, &[0x002f, 0x0035, 0xc013, 0xc014]),
    ];
    for (version, suites) in cases {
        let mut stream = tokio::net::TcpStream::connect(gateway.partner_addr)
            .await
            .unwrap();
        stream
            .write_all(&gateway_tls::testing::raw_client_hello(version, suites))
            .await
            .unwrap();
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
        assert!(!reply.is_empty(), "{version:#x}: no answer");
        assert_eq!(
            reply[0], 21,
            "{version:#x}: expected an alert record, got {reply:?}"
        );
        assert!(
            !reply.contains(&22),
            "{version:#x}: a handshake record (ServerHello) was sent"
        );
    }
}

#[tokio::test]
async fn partner_suspended_by_config_edit_loses_its_open_connection_within_a_second() {
    let gateway = TestGateway::start().await;
    let mut bank = gateway.client("demo-bank").await;
    let mut fund = gateway.client("demo-fund").await;
    assert_eq!(bank.get("/v1/products?limit=1").await.unwrap().status, 200);
    assert_eq!(fund.get("/v1/products?limit=1").await.unwrap().status, 200);

    let file = gateway.read_config("partners/demo-bank.yaml");
    gateway.write_config(
        "partners/demo-bank.yaml",
        &file.replace("status: active", "status: suspended"),
    );
    let reload = gateway.reload().await;
    assert_eq!(reload.status, 200, "{:?}", reload.body);
    let reloaded_at = Instant::now();
    assert!(
        bank.closed_within(Duration::from_secs(1)).await,
        "demo-bank's connection stayed open"
    );
    assert!(reloaded_at.elapsed() < Duration::from_secs(1));

    // Other partners keep their connections; demo-bank's new connections are refused.
    assert!(!fund.is_closed());
    assert_eq!(fund.get("/v1/products?limit=1").await.unwrap().status, 200);
    let mut again = gateway
        .connect(&gateway.partner_cert("demo-bank"), Alpn::Http1)
        .await
        .unwrap();
    again
        .get("/v1/products")
        .await
        .unwrap()
        .assert_problem(403, "partner-suspended");
}

#[tokio::test]
async fn removing_a_pin_closes_connections_made_with_it() {
    let gateway = TestGateway::start().await;
    let ca = gateway.ca();
    let old = ca.issue_client("bank-b", "Bank B").unwrap();
    let new = ca.issue_client("bank-b", "Bank B").unwrap();
    let both = [old.fingerprint().to_hex(), new.fingerprint().to_hex()];
    gateway.write_config(
        "partners/bank-b.yaml",
        &partner_file("bank-b", "active", &both),
    );
    assert_eq!(gateway.reload().await.status, 200);
    let mut on_old = gateway.connect(&old, Alpn::Http1).await.unwrap();
    let mut on_new = gateway.connect(&new, Alpn::Http1).await.unwrap();
    on_old.authorize("bank-b", "").await.unwrap();
    on_new.authorize("bank-b", "").await.unwrap();
    assert_eq!(
        on_old.get("/v1/products?limit=1").await.unwrap().status,
        200
    );

    gateway.write_config(
        "partners/bank-b.yaml",
        &partner_file("bank-b", "active", &both[1..]),
    );
    assert_eq!(gateway.reload().await.status, 200);
    assert!(on_old.closed_within(Duration::from_secs(1)).await);
    assert_eq!(
        on_new.get("/v1/products?limit=1").await.unwrap().status,
        200
    );
}

#[tokio::test]
async fn connections_beyond_max_connections_are_refused_without_affecting_open_ones() {
    let gateway = TestGateway::builder()
        .gateway_yaml("max_connections: 4096", "max_connections: 2")
        .gateway_yaml(
            "max_connections_per_partner: 512",
            "max_connections_per_partner: 2",
        )
        .start()
        .await;
    let mut first = gateway.client("demo-bank").await;
    let mut second = gateway.client("demo-fund").await;
    assert_eq!(first.get("/v1/products?limit=1").await.unwrap().status, 200);
    let third = gateway
        .connect(&gateway.partner_cert("demo-insurer"), Alpn::Http1)
        .await;
    let refused = match third {
        Err(_) => true,
        Ok(mut client) => client.get("/v1/products?limit=1").await.is_err(),
    };
    assert!(refused, "a third connection was served");
    assert_eq!(first.get("/v1/products?limit=1").await.unwrap().status, 200);
    assert_eq!(
        second.get("/v1/products?limit=1").await.unwrap().status,
        200
    );
}

#[tokio::test]
async fn handshake_outcomes_are_counted_in_metrics() {
    let gateway = TestGateway::start().await;
    let other = DevCa::new("Other").unwrap().issue_client("x", "X").unwrap();
    if let Ok(mut refused) = gateway.connect(&other, Alpn::Http1).await {
        let _ = refused.get("/").await;
    }
    let mut ok = gateway.client("demo-bank").await;
    ok.get("/v1/products?limit=1").await.unwrap();
    let metrics = gateway_tests::admin_request(
        gateway.admin_addr,
        http::Method::GET,
        "/metrics",
        None,
        None,
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("pgw_tls_handshakes_total{result=\"ok\",reason=\"none\"}"),
        "{text}"
    );
    assert!(
        text.contains(
            "pgw_requests_total{partner=\"demo-bank\",route=\"products\",status=\"200\"}"
        ),
        "{text}"
    );
}
