//! External authorization servers: JWKS-verified JWTs and RFC 7662 introspection, against a
//! small JWKS/introspection server started on 127.0.0.1:0.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use gateway_auth::external::HttpError;
use gateway_auth::{
    ClientRegistration, ExternalCheck, ExternalIssuer, ExternalIssuerSettings, HttpClient, Issuer,
    IssuerSettings, KeyStatus, SigningAlgorithm, TokenError, Verifiers, VerifyToken,
};
use gateway_core::time::UnixTime;
use gateway_core::{ClientId, ProblemType, Scope};

use crate::common::*;

const AS_ISSUER: &str = "https://as.test";
const CLIENT: &str = "bank-client";
const BASIC: &str = "Basic Z3c6czNjcmV0"; // base64("gw:s3cret")

// === the test authorization server ===

#[derive(Default)]
struct ServerState {
    jwks: Mutex<Vec<u8>>,
    jwks_fetches: AtomicUsize,
    introspections: AtomicUsize,
    answers: Mutex<HashMap<String, serde_json::Value>>,
}

/// A JWKS (`GET /jwks`) and introspection (`POST /introspect`, HTTP Basic `gw:s3cret`)
/// server; stops its accept loop and every connection when dropped.
struct AuthServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl AuthServer {
    async fn start() -> AuthServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ServerState::default());
        let (shutdown, mut stop) = oneshot::channel::<()>();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when this task ends or is aborted) aborts every connection.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { break };
                        let state = shared.clone();
                        connections.spawn(async move {
                            let service = hyper::service::service_fn(move |request| handle(state.clone(), request));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        });
                    }
                    _ = &mut stop => break,
                }
            }
        });
        AuthServer {
            addr,
            state,
            shutdown: Some(shutdown),
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn publish(&self, issuer: &Issuer) {
        *self.state.jwks.lock().unwrap() = issuer.jwks().to_vec();
    }

    fn answer(&self, token: &str, answer: serde_json::Value) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(token.into(), answer);
    }

    fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    fn introspections(&self) -> usize {
        self.state.introspections.load(Ordering::SeqCst)
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.task.abort();
    }
}

async fn handle(
    state: Arc<ServerState>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let json = |status: StatusCode, body: Vec<u8>| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        Ok(response)
    };
    match (request.method().as_str(), request.uri().path()) {
        ("GET", "/jwks") => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let body = state.jwks.lock().unwrap().clone();
            json(StatusCode::OK, body)
        }
        ("POST", "/introspect") => {
            state.introspections.fetch_add(1, Ordering::SeqCst);
            let authorized = request
                .headers()
                .get("authorization")
                .is_some_and(|v| v == BASIC);
            let body = read_body(request.into_body(), 64 * 1024).await.unwrap();
            if !authorized {
                return json(
                    StatusCode::UNAUTHORIZED,
                    br#"{"error":"invalid_client"}"#.to_vec(),
                );
            }
            let token = std::str::from_utf8(&body)
                .unwrap()
                .split('&')
                .find_map(|pair| pair.strip_prefix("token="))
                .unwrap_or_default()
                .to_owned();
            let answer = state
                .answers
                .lock()
                .unwrap()
                .get(&token)
                .cloned()
                .unwrap_or(json!({"active": false}));
            json(StatusCode::OK, serde_json::to_vec(&answer).unwrap())
        }
        _ => json(StatusCode::NOT_FOUND, b"{}".to_vec()),
    }
}

/// The client the integrator would pass: here a plain-HTTP hyper client.
fn http_client() -> HttpClient {
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    HttpClient::new(move |request: Request<Vec<u8>>| {
        let client = client.clone();
        async move {
            let (parts, body) = request.into_parts();
            let request = Request::from_parts(parts, Full::new(Bytes::from(body)));
            let response = client
                .request(request)
                .await
                .map_err(|e| HttpError(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = read_body(body, 1024 * 1024).await.map_err(HttpError)?;
            Ok(Response::from_parts(parts, body.to_vec()))
        }
    })
}

// === fixtures ===

fn as_settings() -> IssuerSettings {
    IssuerSettings {
        issuer: AS_ISSUER.into(),
        lifetime: Duration::from_secs(3600),
        ..settings()
    }
}

fn external_client() -> ClientRegistration {
    ClientRegistration {
        client_id: ClientId::parse(CLIENT).unwrap(),
        ..registration("demo-bank")
    }
}

fn external_settings(check: ExternalCheck) -> ExternalIssuerSettings {
    ExternalIssuerSettings {
        issuer: AS_ISSUER.into(),
        audience: AUDIENCE.into(),
        check,
        clients: HashMap::from([(ClientId::parse(CLIENT).unwrap(), partner("demo-bank"))]),
        leeway: Duration::from_secs(LEEWAY as u64),
        cache_capacity: 100,
    }
}

fn jwks_issuer(server: &AuthServer) -> ExternalIssuer {
    let check = ExternalCheck::Jwks {
        url: server.url("/jwks"),
        refresh: Duration::from_secs(300),
        min_refetch_interval: Duration::from_secs(30),
    };
    ExternalIssuer::new(external_settings(check), http_client()).unwrap()
}

fn introspecting_issuer(server: &AuthServer, secret: &str) -> ExternalIssuer {
    let check = ExternalCheck::Introspection {
        url: server.url("/introspect"),
        client_id: "gw".into(),
        client_secret: Some(secret.into()),
        cache_ttl: Duration::from_secs(60),
    };
    ExternalIssuer::new(external_settings(check), http_client()).unwrap()
}

fn external_token(issuer: &Issuer, cert_n: u8, now: UnixTime) -> String {
    let scopes = [Scope::TagsRead].into_iter().collect();
    issuer
        .issue(&external_client(), scopes, &cert(cert_n), now)
        .unwrap()
        .access_token
}

// === JWKS ===

#[tokio::test]
async fn external_jwt_is_verified_against_the_fetched_jwks_and_cached() {
    let server = AuthServer::start().await;
    let as_keys = issuer_with(
        as_settings(),
        &[key("ext1", SigningAlgorithm::Es256, KeyStatus::Active)],
    );
    server.publish(&as_keys);
    let external = jwks_issuer(&server);
    let token = external_token(&as_keys, 1, NOW);
    let bank = partner("demo-bank");

    let claims = external.verify(&token, &cert(1), &bank, NOW).await.unwrap();
    assert_eq!(claims.partner, bank);
    assert_eq!(claims.client_id.as_str(), CLIENT);
    assert!(claims.scopes.contains(Scope::TagsRead));
    assert_eq!(server.jwks_fetches(), 1);
    assert!(matches!(
        external.verify_cached(&token, &cert(1), &bank, NOW),
        Some(Ok(_))
    ));
    external.verify(&token, &cert(1), &bank, NOW).await.unwrap();
    assert_eq!(server.jwks_fetches(), 1, "answered from the cache");

    // Same binding rules as our own tokens.
    let error = external
        .verify(&token, &cert(2), &bank, NOW)
        .await
        .unwrap_err();
    assert_eq!(error, TokenError::CertificateMismatch);
    let error = external
        .verify(&token, &cert(1), &partner("demo-fund"), NOW)
        .await
        .unwrap_err();
    assert_eq!(error.problem_type(), ProblemType::TokenCertificateMismatch);

    // The key set is refetched once `refresh` has passed.
    let later = UnixTime(NOW.0 + 301);
    external
        .verify(&token, &cert(1), &bank, later)
        .await
        .unwrap();
    assert_eq!(server.jwks_fetches(), 2);
}

#[tokio::test]
async fn unknown_kid_refetches_at_most_once_per_interval() {
    let server = AuthServer::start().await;
    let ext1 = key("ext1", SigningAlgorithm::Es256, KeyStatus::Active);
    let ext2 = key("ext2", SigningAlgorithm::EdDsa, KeyStatus::Active);
    server.publish(&issuer_with(as_settings(), std::slice::from_ref(&ext1)));
    let external = jwks_issuer(&server);
    let rotated = issuer_with(
        as_settings(),
        &[with_status(&ext1, KeyStatus::Retired), ext2.clone()],
    );
    let token = external_token(&rotated, 1, NOW);
    let bank = partner("demo-bank");
    let unknown = Err(TokenError::UnknownKey { kid: "ext2".into() });

    assert_eq!(external.verify(&token, &cert(1), &bank, NOW).await, unknown);
    assert_eq!(server.jwks_fetches(), 1);
    // The AS publishes the new key; within the interval no refetch happens.
    server.publish(&rotated);
    let soon = UnixTime(NOW.0 + 10);
    for _ in 0..5 {
        assert_eq!(
            external.verify(&token, &cert(1), &bank, soon).await,
            unknown
        );
    }
    assert_eq!(server.jwks_fetches(), 1);
    // After it, one refetch finds the key.
    let after = UnixTime(NOW.0 + 31);
    assert!(
        external
            .verify(&token, &cert(1), &bank, after)
            .await
            .is_ok()
    );
    assert_eq!(server.jwks_fetches(), 2);
}

#[tokio::test]
async fn external_jwt_refusals_are_exact() {
    let server = AuthServer::start().await;
    let ext1 = key("ext1", SigningAlgorithm::Es256, KeyStatus::Active);
    let as_keys = issuer_with(as_settings(), std::slice::from_ref(&ext1));
    server.publish(&as_keys);
    let external = jwks_issuer(&server);
    let bank = partner("demo-bank");

    let other_aud = IssuerSettings {
        audience: "https://elsewhere.test".into(),
        ..as_settings()
    };
    let token = external_token(&issuer_with(other_aud, std::slice::from_ref(&ext1)), 1, NOW);
    assert_eq!(
        external.verify(&token, &cert(1), &bank, NOW).await,
        Err(TokenError::WrongAudience)
    );

    let stranger = ClientRegistration {
        client_id: ClientId::parse("stranger").unwrap(),
        ..external_client()
    };
    let token = as_keys
        .issue(&stranger, stranger.scopes, &cert(1), NOW)
        .unwrap()
        .access_token;
    assert_eq!(
        external.verify(&token, &cert(1), &bank, NOW).await,
        Err(TokenError::UnknownClient {
            client_id: "stranger".into()
        })
    );

    let good = external_token(&as_keys, 1, NOW);
    let mut header = header_of(&good);
    header["alg"] = json!("none");
    let forged = assemble(&header, &claims_of(&good), b"");
    assert_eq!(
        external.verify(&forged, &cert(1), &bank, NOW).await,
        Err(TokenError::AlgorithmNotAllowed { alg: "none".into() })
    );
    let expired = UnixTime(NOW.0 + 3600 + LEEWAY + 1);
    assert_eq!(
        external.verify(&good, &cert(1), &bank, expired).await,
        Err(TokenError::Expired {
            exp: UnixTime(NOW.0 + 3600)
        })
    );
}

#[tokio::test]
async fn unreachable_jwks_fails_closed() {
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", closed.local_addr().unwrap());
    drop(closed);
    let check = ExternalCheck::Jwks {
        url,
        refresh: Duration::from_secs(300),
        min_refetch_interval: Duration::from_secs(30),
    };
    let external = ExternalIssuer::new(external_settings(check), http_client()).unwrap();
    let as_keys = issuer_with(
        as_settings(),
        &[key("ext1", SigningAlgorithm::Es256, KeyStatus::Active)],
    );
    let token = external_token(&as_keys, 1, NOW);
    let error = external
        .verify(&token, &cert(1), &partner("demo-bank"), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TokenError::IssuerUnavailable { issuer, .. } if issuer == AS_ISSUER),
        "{error:?}"
    );
    assert_eq!(error.problem_type(), ProblemType::UpstreamUnavailable);
}

// === introspection ===

fn active(cert_n: u8, exp: i64) -> serde_json::Value {
    use base64::Engine;
    let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(cert(cert_n).0);
    json!({
        "active": true, "client_id": CLIENT, "scope": "tags:read other:scope", "iss": AS_ISSUER,
        "aud": AUDIENCE, "iat": NOW.0, "exp": exp, "token_type": "Bearer",
        "cnf": {"x5t#S256": thumbprint},
    })
}

#[tokio::test]
async fn introspected_token_is_accepted_and_cached_within_the_ttl() {
    let server = AuthServer::start().await;
    server.answer("opaque-1", active(1, NOW.0 + 600));
    let external = introspecting_issuer(&server, "s3cret");
    let bank = partner("demo-bank");

    let claims = external
        .verify("opaque-1", &cert(1), &bank, NOW)
        .await
        .unwrap();
    assert_eq!(claims.partner, bank);
    assert_eq!(claims.scopes, [Scope::TagsRead].into_iter().collect());
    assert_eq!(claims.expires_at, UnixTime(NOW.0 + 600));
    assert_eq!(server.introspections(), 1);
    external
        .verify("opaque-1", &cert(1), &bank, UnixTime(NOW.0 + 59))
        .await
        .unwrap();
    assert_eq!(server.introspections(), 1, "cached");
    assert_eq!(
        external.verify("opaque-1", &cert(2), &bank, NOW).await,
        Err(TokenError::CertificateMismatch)
    );
    external
        .verify("opaque-1", &cert(1), &bank, UnixTime(NOW.0 + 60))
        .await
        .unwrap();
    assert_eq!(
        server.introspections(),
        2,
        "re-checked once the TTL ran out"
    );
}

#[tokio::test]
async fn introspection_cache_is_bounded_by_the_tokens_exp() {
    let server = AuthServer::start().await;
    server.answer("short", active(1, NOW.0 + 10));
    let external = introspecting_issuer(&server, "s3cret");
    let bank = partner("demo-bank");
    external
        .verify("short", &cert(1), &bank, NOW)
        .await
        .unwrap();
    let after = UnixTime(NOW.0 + 10 + LEEWAY + 1);
    assert_eq!(
        external.verify("short", &cert(1), &bank, after).await,
        Err(TokenError::Expired {
            exp: UnixTime(NOW.0 + 10)
        })
    );
    assert_eq!(server.introspections(), 2, "the cached answer ended at exp");
}

#[tokio::test]
async fn inactive_and_unbound_tokens_are_refused() {
    let server = AuthServer::start().await;
    let external = introspecting_issuer(&server, "s3cret");
    let bank = partner("demo-bank");
    assert_eq!(
        external.verify("unknown", &cert(1), &bank, NOW).await,
        Err(TokenError::Inactive)
    );
    assert_eq!(
        external.verify("unknown", &cert(1), &bank, NOW).await,
        Err(TokenError::Inactive)
    );
    assert_eq!(
        server.introspections(),
        1,
        "inactive answers are cached too"
    );

    let mut unbound = active(1, NOW.0 + 600);
    unbound.as_object_mut().unwrap().remove("cnf");
    server.answer("unbound", unbound);
    assert_eq!(
        external.verify("unbound", &cert(1), &bank, NOW).await,
        Err(TokenError::Malformed {
            reason: "token is not bound to a certificate (no cnf.x5t#S256)"
        })
    );
}

#[tokio::test]
async fn introspection_failure_fails_closed() {
    let server = AuthServer::start().await;
    server.answer("opaque-1", active(1, NOW.0 + 600));
    let external = introspecting_issuer(&server, "wrong-secret");
    let error = external
        .verify("opaque-1", &cert(1), &partner("demo-bank"), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(error, TokenError::IssuerUnavailable { .. }),
        "{error:?}"
    );
    assert_eq!(error.problem_type(), ProblemType::UpstreamUnavailable);
}

#[tokio::test]
async fn verifiers_route_each_token_to_its_issuer() {
    let server = AuthServer::start().await;
    let as_keys = issuer_with(
        as_settings(),
        &[key("ext1", SigningAlgorithm::Es256, KeyStatus::Active)],
    );
    server.publish(&as_keys);
    server.answer("opaque-1", active(1, NOW.0 + 600));
    let own = Fixture::new();
    let verifiers = Verifiers::new(
        own.verifier.clone(),
        vec![
            jwks_issuer(&server),
            introspecting_issuer(&server, "s3cret"),
        ],
    );
    let bank = partner("demo-bank");
    let ours = own.token("demo-bank", 1, NOW);
    let theirs = external_token(&as_keys, 1, NOW);
    for token in [ours.as_str(), theirs.as_str(), "opaque-1"] {
        let claims = VerifyToken::verify(&verifiers, token, &cert(1), &bank, NOW)
            .await
            .unwrap();
        assert_eq!(claims.partner, bank, "{token}");
        assert!(
            matches!(
                verifiers.verify_cached(token, &cert(1), &bank, NOW),
                Some(Ok(_))
            ),
            "{token}"
        );
    }
    // A JWT of an issuer nobody trusts.
    let stranger = issuer_with(
        IssuerSettings {
            issuer: "https://stranger.test".into(),
            ..settings()
        },
        &[key("s", SigningAlgorithm::Es256, KeyStatus::Active)],
    );
    let token = stranger
        .issue(&registration("demo-bank"), all_scopes(), &cert(1), NOW)
        .unwrap()
        .access_token;
    assert_eq!(
        VerifyToken::verify(&verifiers, &token, &cert(1), &bank, NOW).await,
        Err(TokenError::WrongIssuer {
            iss: "https://stranger.test".into()
        })
    );
}
