//! OAuth 2.0 over the real listener: certificate-bound tokens, scopes, revocation, metadata,
//! key rotation. Every refusal is checked exactly.

use std::sync::Arc;

use gateway_core::time::{ManualClock, UnixTime};
use gateway_tests::{Alpn, TestGateway};

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn metadata_and_jwks_describe_certificate_bound_tokens() {
    let gateway = TestGateway::start().await;
    let mut client = gateway
        .connect(&gateway.partner_cert("demo-fund"), Alpn::Http2)
        .await
        .unwrap();
    let metadata = client
        .get("/.well-known/oauth-authorization-server")
        .await
        .unwrap()
        .json();
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        serde_json::json!(["tls_client_auth"])
    );
    assert!(
        metadata["revocation_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/oauth2/revoke")
    );
    let jwks = client.get("/jwks.json").await.unwrap().json();
    assert_eq!(jwks["keys"][0]["kid"], "dev-1");
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "no private key material"
    );
}

#[tokio::test]
async fn token_endpoint_refuses_bad_requests_per_rfc6749() {
    let gateway = TestGateway::start().await;
    let mut client = gateway
        .connect(&gateway.partner_cert("demo-bank"), Alpn::Http1)
        .await
        .unwrap();
    let cases = [
        (
            "grant_type=client_credentials&client_id=demo-fund",
            FORM,
            401,
            "invalid_client",
        ),
        (
            "grant_type=password&client_id=demo-bank",
            FORM,
            400,
            "unsupported_grant_type",
        ),
        (
            "grant_type=client_credentials&client_id=demo-bank&scope=admin",
            FORM,
            400,
            "invalid_scope",
        ),
        (
            "grant_type=client_credentials&client_id=demo-bank&client_id=demo-bank",
            FORM,
            400,
            "invalid_request",
        ),
        (
            "{\"grant_type\":\"client_credentials\"}",
            "application/json",
            400,
            "invalid_request",
        ),
    ];
    for (body, content_type, status, error) in cases {
        let response = client
            .post("/oauth2/token", content_type, body, &[])
            .await
            .unwrap();
        assert_eq!(response.status.as_u16(), status, "{body}");
        assert_eq!(response.json()["error"], error, "{body}");
        assert_eq!(response.header("cache-control"), Some("no-store"));
    }
    // The insurer may not be granted referrals:write.
    let mut insurer = gateway
        .connect(&gateway.partner_cert("demo-insurer"), Alpn::Http1)
        .await
        .unwrap();
    let response = insurer
        .post(
            "/oauth2/token",
            FORM,
            "grant_type=client_credentials&client_id=demo-insurer&scope=referrals:write",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(response.json()["error"], "invalid_scope");
    // An oversized form never reaches the parser.
    let huge = format!(
        "grant_type=client_credentials&client_id=demo-bank&x={}",
        "a".repeat(100_000)
    );
    let response = client.post("/oauth2/token", FORM, huge, &[]).await.unwrap();
    response.assert_problem(413, "payload-too-large");
}

#[tokio::test]
async fn v1_routes_need_a_token_carrying_their_scope() {
    let gateway = TestGateway::start().await;
    let mut client = gateway
        .connect(&gateway.partner_cert("demo-bank"), Alpn::Http1)
        .await
        .unwrap();
    let response = client.get("/v1/products").await.unwrap();
    response.assert_problem(401, "invalid-token");
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));

    client.authorize("demo-bank", "tags:read").await.unwrap();
    let response = client.get("/v1/products").await.unwrap();
    response.assert_problem(403, "insufficient-scope");
    let challenge = response.header("www-authenticate").unwrap();
    assert!(
        challenge.contains("insufficient_scope") && challenge.contains("products:read"),
        "{challenge}"
    );

    client
        .authorize("demo-bank", "products:read")
        .await
        .unwrap();
    assert_eq!(
        client.get("/v1/products?limit=1").await.unwrap().status,
        200
    );
    assert_eq!(
        gateway.sandbox().controls().requests(),
        1,
        "refused requests never reached the upstream"
    );
}

#[tokio::test]
async fn malformed_and_misplaced_tokens_are_refused() {
    let gateway = TestGateway::start().await;
    let mut client = gateway.client("demo-bank").await;
    let token = client.token().unwrap().to_owned();
    client.set_token(None);
    let bearer = format!("Bearer {token}");
    let cases: Vec<(String, Vec<(&str, String)>)> = vec![
        (format!("/v1/products?access_token={token}"), vec![]),
        (
            "/v1/products".into(),
            vec![
                ("authorization", bearer.clone()),
                ("authorization", bearer.clone()),
            ],
        ),
        (
            "/v1/products".into(),
            vec![("authorization", format!("Basic {token}"))],
        ),
        (
            "/v1/products".into(),
            vec![("authorization", "Bearer not.a.jwt".into())],
        ),
        (
            "/v1/products".into(),
            vec![("authorization", format!("Bearer {}", "a".repeat(5000)))],
        ),
        (
            "/v1/products".into(),
            vec![("authorization", format!("{bearer}x"))],
        ),
    ];
    for (path, headers) in cases {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let response = client.get_with(&path, &headers).await.unwrap();
        response.assert_problem(401, "invalid-token");
    }
    assert_eq!(gateway.sandbox().controls().requests(), 0);
}

#[tokio::test]
async fn a_token_works_only_over_the_certificate_it_is_bound_to() {
    let gateway = TestGateway::start().await;
    let bank = gateway.client("demo-bank").await;
    let token = bank.token().unwrap().to_owned();

    // demo-bank's token over demo-fund's certificate.
    let mut fund = gateway
        .connect(&gateway.partner_cert("demo-fund"), Alpn::Http1)
        .await
        .unwrap();
    fund.set_token(Some(token.clone()));
    let response = fund.get("/v1/products").await.unwrap();
    response.assert_problem(401, "token-certificate-mismatch");

    // demo-bank's token over demo-bank's *other* certificate (same subject, another key).
    let rotated = gateway.ca().issue_client("demo-bank", "Demo Bank").unwrap();
    let mut other = gateway.connect(&rotated, Alpn::Http1).await.unwrap();
    other.set_token(Some(token));
    other
        .get("/v1/products")
        .await
        .unwrap()
        .assert_problem(401, "token-certificate-mismatch");
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once() {
    let gateway = TestGateway::start().await;
    let mut client = gateway.client("demo-bank").await;
    assert_eq!(
        client.get("/v1/products?limit=1").await.unwrap().status,
        200
    );
    let token = client.token().unwrap().to_owned();
    // Another partner cannot revoke it (RFC 7009: 200, nothing revoked).
    let mut fund = gateway
        .connect(&gateway.partner_cert("demo-fund"), Alpn::Http1)
        .await
        .unwrap();
    let response = fund
        .post(
            "/oauth2/revoke",
            FORM,
            format!("token={token}&client_id=demo-fund"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(
        client.get("/v1/products?limit=1").await.unwrap().status,
        200
    );
    // Its owner can.
    let response = client
        .post(
            "/oauth2/revoke",
            FORM,
            format!("token={token}&client_id=demo-bank"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    client
        .get("/v1/products?limit=1")
        .await
        .unwrap()
        .assert_problem(401, "invalid-token");
    // Garbage answers 200 too; a revocation without client authentication does not.
    let response = client
        .post("/oauth2/revoke", FORM, format!("token={token}"), &[])
        .await
        .unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"], "invalid_request");
    let response = client
        .post(
            "/oauth2/revoke",
            FORM,
            "token=garbage&client_id=demo-bank",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn a_token_of_a_partner_suspended_after_issue_stops_working() {
    let gateway = TestGateway::start().await;
    let mut client = gateway.client("demo-bank").await;
    assert_eq!(
        client.get("/v1/products?limit=1").await.unwrap().status,
        200
    );
    let token = client.token().unwrap().to_owned();
    let file = gateway.read_config("partners/demo-bank.yaml");
    gateway.write_config(
        "partners/demo-bank.yaml",
        &file.replace("status: active", "status: suspended"),
    );
    assert_eq!(gateway.reload().await.status, 200);
    let mut again = gateway
        .connect(&gateway.partner_cert("demo-bank"), Alpn::Http1)
        .await
        .unwrap();
    again.set_token(Some(token));
    again
        .get("/v1/products")
        .await
        .unwrap()
        .assert_problem(403, "partner-suspended");
    assert!(
        client
            .closed_within(std::time::Duration::from_secs(1))
            .await
    );
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let clock = ManualClock::new(UnixTime::now());
    let gateway = TestGateway::builder()
        .clock(Arc::new(clock.clone()))
        .start()
        .await;
    let mut client = gateway.client("demo-bank").await;
    assert_eq!(
        client.get("/v1/products?limit=1").await.unwrap().status,
        200
    );
    // Lifetime 300 s, leeway 5 s.
    clock.advance(306);
    client
        .get("/v1/products?limit=1")
        .await
        .unwrap()
        .assert_problem(401, "invalid-token");
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_valid_and_signs_new_ones_with_the_new_key() {
    let gateway = TestGateway::start().await;
    let mut client = gateway.client("demo-bank").await;
    let old_token = client.token().unwrap().to_owned();
    let new_key = gateway.root().join("data/keys/token-dev-2.pem");
    std::fs::write(
        &new_key,
        gateway_auth::keys::generate_pem(gateway_auth::SigningAlgorithm::Es256).unwrap(),
    )
    .unwrap();
    let yaml = gateway.read_config("gateway.yaml");
    let entry = "    - kid: dev-1\n      algorithm: ES256                    # ES256 or EdDSA\n      private_key: ../data/keys/token-dev-1.pem\n      status: active";
    assert!(yaml.contains(entry), "sample signing key entry changed");
    // Step 1: publish the next key.
    let next = format!(
        "{entry}\n    - kid: dev-2\n      algorithm: ES256\n      private_key: ../data/keys/token-dev-2.pem\n      status: next"
    );
    gateway.write_config("gateway.yaml", &yaml.replace(entry, &next));
    assert_eq!(gateway.reload().await.status, 200);
    let jwks = client.get("/jwks.json").await.unwrap().json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    // Step 2: sign with it, keep verifying the old one.
    let rotated = yaml.replace(
        entry,
        &format!(
            "{}\n    - kid: dev-2\n      algorithm: ES256\n      private_key: ../data/keys/token-dev-2.pem\n      status: active",
            entry.replace("status: active", "status: retired")
        ),
    );
    gateway.write_config("gateway.yaml", &rotated);
    let reload = gateway.reload().await;
    assert_eq!(reload.status, 200, "{:?}", reload.body);
    client.set_token(Some(old_token));
    assert_eq!(
        client.get("/v1/products?limit=1").await.unwrap().status,
        200,
        "old token still valid"
    );
    let new_token = client.authorize("demo-bank", "").await.unwrap();
    assert_eq!(kid_of(&new_token), "dev-2");
    assert_eq!(
        client.get("/v1/products?limit=1").await.unwrap().status,
        200
    );
}

fn kid_of(token: &str) -> String {
    use base64::Engine as _;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    value["kid"].as_str().unwrap().to_owned()
}

/// The README's Rust example: a partner client built on the `oauth2` crate obtains a token
/// over mutual TLS (its HTTP function sends on an mTLS connection) and calls the API with it.
#[tokio::test]
async fn an_oauth2_crate_client_gets_a_token_over_mtls_and_calls_the_api() {
    use oauth2::basic::BasicClient;
    use oauth2::{AuthType, TokenResponse as _, TokenUrl};
    use tokio::sync::Mutex;

    let gateway = TestGateway::start().await;
    let connection = Arc::new(Mutex::new(
        gateway
            .connect(&gateway.partner_cert("demo-bank"), Alpn::Http2)
            .await
            .unwrap(),
    ));
    // oauth2 takes any async function from an HTTP request to an HTTP response; ours sends it
    // over the partner's mTLS connection (tls_client_auth: the certificate is the credential).
    let mtls = |request: oauth2::HttpRequest| {
        let connection = connection.clone();
        async move {
            let (parts, body) = request.into_parts();
            let request = http::Request::from_parts(
                parts,
                http_body_util::Full::new(bytes::Bytes::from(body)),
            );
            let response = connection
                .lock()
                .await
                .send(request)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut out = http::Response::new(response.body.to_vec());
            *out.status_mut() = response.status;
            *out.headers_mut() = response.headers;
            Ok::<_, std::io::Error>(out)
        }
    };
    let client = BasicClient::new(oauth2::ClientId::new("demo-bank".into()))
        .set_token_uri(TokenUrl::new("https://localhost:8443/oauth2/token".into()).unwrap())
        .set_auth_type(AuthType::RequestBody);
    let token = client
        .exchange_client_credentials()
        .add_scope(oauth2::Scope::new("products:read".into()))
        .request_async(&mtls)
        .await
        .unwrap();
    assert_eq!(token.token_type(), &oauth2::basic::BasicTokenType::Bearer);
    let mut api = connection.lock().await;
    api.set_token(Some(token.access_token().secret().clone()));
    assert_eq!(api.get("/v1/products?limit=1").await.unwrap().status, 200);
}

/// With Redis, a token revoked through one instance is refused by another at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_instance_is_refused_by_another() {
    let redis = gateway_testutil::RedisServer::start();
    let a = TestGateway::builder().redis(&redis.url(), 2).start().await;
    let b = TestGateway::builder()
        .redis(&redis.url(), 2)
        .peer_of(&a)
        .start()
        .await;
    let mut on_a = a.client("demo-bank").await;
    let token = on_a.token().unwrap().to_owned();
    let mut on_b = b
        .connect(&b.partner_cert("demo-bank"), Alpn::Http1)
        .await
        .unwrap();
    on_b.set_token(Some(token.clone()));
    assert_eq!(
        on_b.get("/v1/products?limit=1").await.unwrap().status,
        200,
        "B accepts A's token (cached now)"
    );
    let revoked_at = std::time::Instant::now();
    let response = on_a
        .post(
            "/oauth2/revoke",
            FORM,
            format!("token={token}&client_id=demo-bank"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    loop {
        let response = on_b.get("/v1/products?limit=1").await.unwrap();
        if response.status == 401 {
            response.assert_problem(401, "invalid-token");
            break;
        }
        assert!(
            revoked_at.elapsed() < std::time::Duration::from_secs(2),
            "B still accepts a revoked token"
        );
    }
    eprintln!(
        "token revocation enforced on the other instance after {:?}",
        revoked_at.elapsed()
    );
}

/// Tokens of an external authorization server, verified against its JWKS: accepted over the
/// certificate they are bound to, with the same binding and scope rules; refused otherwise.
#[tokio::test]
async fn tokens_of_an_external_issuer_are_verified_against_its_jwks() {
    use gateway_auth::{
        ClientRegistration, Issuer, IssuerSettings, KeySet, KeyStatus, SigningAlgorithm,
        SigningKeyFile,
    };

    let key = |kid: &str| SigningKeyFile {
        kid: kid.into(),
        algorithm: SigningAlgorithm::Es256,
        pem: gateway_auth::keys::generate_pem(SigningAlgorithm::Es256)
            .unwrap()
            .into_bytes(),
        status: KeyStatus::Active,
    };
    let settings = IssuerSettings {
        issuer: "https://as.example".into(),
        audience: "partner-gateway".into(),
        lifetime: std::time::Duration::from_secs(300),
        leeway: std::time::Duration::from_secs(5),
    };
    let external = Issuer::new(settings.clone(), KeySet::load(&[key("ext-1")]).unwrap());
    let impostor = Issuer::new(settings, KeySet::load(&[key("ext-1")]).unwrap());
    // The external server's JWKS endpoint.
    let jwks = bytes::Bytes::copy_from_slice(external.jwks());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let jwks = jwks.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let jwks = jwks.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(jwks),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let gateway = TestGateway::builder()
        .gateway_yaml(
            "\nstore:\n",
            &format!(
                "  external:\n    - issuer: https://as.example\n      audience: partner-gateway\n      \
                 jwks: {{ url: \"http://{jwks_addr}/jwks.json\" }}\n\nstore:\n"
            ),
        )
        .start()
        .await;
    let bank_cert = gateway.partner_cert("demo-bank");
    let registration = ClientRegistration {
        partner: gateway_core::PartnerId::parse("demo-bank").unwrap(),
        client_id: gateway_core::ClientId::parse("demo-bank").unwrap(),
        scopes: gateway_core::ScopeSet::parse_space_separated("products:read").unwrap(),
        active: true,
    };
    let now = UnixTime::now();
    let token = external
        .issue(
            &registration,
            registration.scopes,
            &bank_cert.fingerprint(),
            now,
        )
        .unwrap()
        .access_token;
    let mut bank = gateway.connect(&bank_cert, Alpn::Http1).await.unwrap();
    bank.set_token(Some(token.clone()));
    assert_eq!(bank.get("/v1/products?limit=1").await.unwrap().status, 200);
    bank.get("/v1/customers/x/tags")
        .await
        .unwrap()
        .assert_problem(403, "insufficient-scope");
    // Over another partner's certificate: refused.
    let mut fund = gateway
        .connect(&gateway.partner_cert("demo-fund"), Alpn::Http1)
        .await
        .unwrap();
    fund.set_token(Some(token));
    assert_eq!(fund.get("/v1/products?limit=1").await.unwrap().status, 401);
    // Signed by a key the issuer's JWKS does not hold (same iss and kid): refused.
    let forged = impostor
        .issue(
            &registration,
            registration.scopes,
            &bank_cert.fingerprint(),
            now,
        )
        .unwrap()
        .access_token;
    bank.set_token(Some(forged));
    bank.get("/v1/products?limit=1")
        .await
        .unwrap()
        .assert_problem(401, "invalid-token");
}
