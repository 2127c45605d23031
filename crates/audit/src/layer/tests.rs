use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gateway_core::audit::{AuditOutcome, AuditRefusal, Decision, WithheldField};
use gateway_core::problem::ProblemType;
use gateway_core::{
    ClientId, ConsentId, CustomerId, CustomerRef, Fingerprint, InteractionId, PartnerContext,
    PartnerId, PeerIdentity, Route, RouteMatch, ScopeSet, TokenClaims, TraceContext,
};
use http::{Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt, service_fn};

use super::*;
use crate::fs::FaultyFs;
use crate::index::SearchFilter;
use crate::writer::{Durability, WriterConfig};

/// A body that is just bytes.
#[derive(Debug, PartialEq, Eq)]
struct TestBody(Bytes);

impl From<Bytes> for TestBody {
    fn from(bytes: Bytes) -> Self {
        TestBody(bytes)
    }
}

struct Fixture {
    writer: AuditWriter,
    hasher: CustomerHasher,
    faults: Arc<crate::fs::Faults>,
    dir: tempfile::TempDir,
}

async fn fixture(durability: Durability) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let fs = FaultyFs::new();
    let faults = fs.faults();
    let mut config = WriterConfig::new(dir.path(), "gw-unit");
    config.durability = durability;
    config.commit_interval = Duration::ZERO;
    config.retry_interval = Duration::from_secs(3600);
    config.fs = Arc::new(fs);
    let writer = AuditWriter::open(config).await.unwrap();
    Fixture {
        writer,
        hasher: CustomerHasher::new(&[9; 32]),
        faults,
        dir,
    }
}

fn customer_ref() -> CustomerRef {
    CustomerRef::parse(&"R".repeat(43)).unwrap()
}

fn request() -> Request<()> {
    let mut request = Request::get("/v1/customers/x/tags").body(()).unwrap();
    let ext = request.extensions_mut();
    ext.insert(PeerIdentity {
        fingerprint: Fingerprint([0xab; 32]),
        subject: "CN=demo-bank".into(),
        connection: 1,
    });
    ext.insert(PartnerContext {
        partner: PartnerId::parse("demo-bank").unwrap(),
    });
    ext.insert(InteractionId::parse("ia-1").unwrap());
    ext.insert(TraceContext {
        trace_id: [0x4b; 16],
        span_id: [1; 8],
        flags: 1,
    });
    ext.insert(RouteMatch {
        route: Route::CustomerTags,
        param: Some("x".into()),
    });
    request
}

fn claims() -> TokenClaims {
    TokenClaims {
        partner: PartnerId::parse("demo-bank").unwrap(),
        client_id: ClientId::parse("demo-bank").unwrap(),
        scopes: ScopeSet::parse_space_separated("tags:read").unwrap(),
        jti: "j".into(),
        issued_at: gateway_core::time::UnixTime(0),
        expires_at: gateway_core::time::UnixTime(300),
        bound_to: Fingerprint([0xab; 32]),
    }
}

/// A handler answering 200 with a disclosure outcome, like the tags handler.
async fn tags_handler(_: Request<()>) -> Result<Response<TestBody>, Infallible> {
    let mut response = Response::new(TestBody(Bytes::from_static(b"{\"tags\":{}}")));
    response.extensions_mut().insert(claims());
    response.extensions_mut().insert(AuditOutcome {
        customer_ref: Some(customer_ref()),
        customer: Some(CustomerId::parse("C000001").unwrap()),
        consent_id: Some(ConsentId::parse("consent-1").unwrap()),
        released: vec!["risk_level".into()],
        withheld: vec![WithheldField::new("home_address", "no_consent")],
        ..AuditOutcome::new(Decision::Allow, "consented")
    });
    Ok(response)
}

async fn records(f: &Fixture) -> Vec<AuditRecord> {
    let page = f
        .writer
        .search(SearchFilter::default(), None, 100)
        .await
        .unwrap();
    page.records.into_iter().map(|r| r.record).collect()
}

#[tokio::test]
async fn a_disclosure_is_durable_before_the_response_leaves() {
    let f = fixture(Durability::Sync).await;
    let service = ServiceBuilder::new()
        .layer(AuditLayer::new(f.writer.clone(), f.hasher.clone()))
        .service(service_fn(tags_handler));
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.body(),
        &TestBody(Bytes::from_static(b"{\"tags\":{}}"))
    );
    // Already durable and indexed: no waiting.
    assert_eq!(f.writer.index().len(), 1);

    let record = records(&f).await.remove(0);
    assert_eq!(record.kind, RecordKind::PartnerRequest);
    assert_eq!(record.instance, "gw-unit");
    assert_eq!(record.partner, Some(PartnerId::parse("demo-bank").unwrap()));
    assert_eq!(record.cert_fingerprint, Some(Fingerprint([0xab; 32])));
    assert_eq!(
        record.client_id,
        Some(ClientId::parse("demo-bank").unwrap())
    );
    assert_eq!(record.scope.as_deref(), Some("tags:read"));
    assert_eq!(record.method.as_deref(), Some("GET"));
    assert_eq!(record.route.as_deref(), Some("customer_tags"));
    assert_eq!(record.status, 200);
    assert_eq!(
        (record.decision, record.reason.as_deref()),
        (Decision::Allow, Some("consented"))
    );
    assert_eq!(record.customer_ref, Some(customer_ref()));
    let hash = f.hasher.hash(&CustomerId::parse("C000001").unwrap());
    assert_eq!(record.customer_hash, Some(hash));
    assert_eq!(
        record.consent_id,
        Some(ConsentId::parse("consent-1").unwrap())
    );
    assert_eq!(record.released, vec!["risk_level".to_string()]);
    assert_eq!(
        record.withheld,
        vec![WithheldField::new("home_address", "no_consent")]
    );
    assert_eq!(record.interaction_id.as_deref(), Some("ia-1"));
    assert_eq!(record.trace_id.as_deref(), Some("4b".repeat(16).as_str()));
    // The raw internal id never reaches the disk.
    for entry in std::fs::read_dir(f.dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("C000001"));
    }
    let log = f.writer.access_log(hash).await.unwrap();
    assert_eq!(log.len(), 1);
}

#[tokio::test]
async fn a_refusal_by_an_inner_layer_is_recorded_as_deny_with_its_problem() {
    let f = fixture(Durability::Sync).await;
    let service = ServiceBuilder::new()
        .layer(AuditLayer::new(f.writer.clone(), f.hasher.clone()))
        .service(service_fn(|_: Request<()>| async {
            let mut response =
                problem_response::<TestBody>(&Problem::new(ProblemType::RateLimited), None);
            response
                .extensions_mut()
                .insert(AuditRefusal::new(ProblemType::RateLimited));
            Ok::<_, Infallible>(response)
        }));
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let record = records(&f).await.remove(0);
    assert_eq!(record.status, 429);
    assert_eq!(
        (record.decision, record.reason.as_deref()),
        (Decision::Deny, Some("rate-limited"))
    );
    assert_eq!(record.customer_hash, None);
    assert_eq!(record.client_id, None, "no token claims came back out");
    assert_eq!(record.partner, Some(PartnerId::parse("demo-bank").unwrap()));
}

#[tokio::test]
async fn a_failed_append_replaces_the_response_with_503_and_releases_nothing() {
    let f = fixture(Durability::Sync).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let service = ServiceBuilder::new()
        .layer(AuditLayer::new(f.writer.clone(), f.hasher.clone()))
        .service(service_fn(move |req| {
            counted.fetch_add(1, Ordering::SeqCst);
            tags_handler(req)
        }));
    f.faults.disk_full.store(true, Ordering::SeqCst);
    let response = service.clone().oneshot(request()).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_unavailable(&response);

    // Now known unhealthy: answered at once, the handler is not even called.
    let response = service.clone().oneshot(request()).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_unavailable(&response);
    assert_eq!(f.writer.index().len(), 0, "nothing was recorded");

    // Space returns; the next append (a new request once healthy) succeeds.
    f.faults.disk_full.store(false, Ordering::SeqCst);
    let mut health = f.writer.health();
    let probe = f.writer.append(&AuditRecord::new(
        RecordKind::AdminChange,
        AuditTime::now(),
        "gw-unit",
    ));
    probe.await.unwrap();
    health.wait_for(|h| h.is_healthy()).await.unwrap();
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

fn assert_unavailable(response: &Response<TestBody>) {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        gateway_core::PROBLEM_JSON
    );
    assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
    assert_eq!(
        response.headers()[gateway_core::X_FAPI_INTERACTION_ID],
        "ia-1"
    );
    let body: serde_json::Value = serde_json::from_slice(&response.body().0).unwrap();
    assert_eq!(body["type"], ProblemType::AuditUnavailable.type_uri());
    assert!(!String::from_utf8_lossy(&response.body().0).contains("tags"));
}

#[tokio::test]
async fn an_inner_error_is_recorded_and_passed_on() {
    let f = fixture(Durability::Sync).await;
    let service = ServiceBuilder::new()
        .layer(AuditLayer::new(f.writer.clone(), f.hasher.clone()))
        .service(service_fn(|_: Request<()>| async {
            Err::<Response<TestBody>, &'static str>("upstream reset")
        }));
    assert_eq!(
        service.oneshot(request()).await.unwrap_err(),
        "upstream reset"
    );
    let record = records(&f).await.remove(0);
    assert_eq!((record.status, record.decision), (500, Decision::Deny));
    assert_eq!(record.reason.as_deref(), Some(UNHANDLED_ERROR));
}

#[tokio::test]
async fn without_an_outcome_the_status_decides_and_unknown_facts_stay_empty() {
    let f = fixture(Durability::Sync).await;
    let service = ServiceBuilder::new()
        .layer(AuditLayer::new(f.writer.clone(), f.hasher.clone()))
        .service(service_fn(|_: Request<()>| async {
            let mut response = Response::new(TestBody(Bytes::new()));
            *response.status_mut() = StatusCode::NOT_FOUND;
            Ok::<_, Infallible>(response)
        }));
    let bare = Request::get("/nowhere").body(()).unwrap();
    service.oneshot(bare).await.unwrap();
    let record = records(&f).await.remove(0);
    assert_eq!(
        (record.status, record.decision, record.reason),
        (404, Decision::Deny, None)
    );
    assert_eq!(
        (record.partner, record.route, record.interaction_id),
        (None, None, None)
    );
}

#[tokio::test]
async fn async_mode_answers_without_waiting_and_the_record_follows() {
    let f = fixture(Durability::Async).await;
    let service = ServiceBuilder::new()
        .layer(AuditLayer::new(f.writer.clone(), f.hasher.clone()))
        .service(service_fn(tags_handler));
    let response = service.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut durable = f.writer.durable();
    tokio::time::timeout(Duration::from_secs(5), durable.wait_for(|d| *d == Some(0)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(records(&f).await.len(), 1);
}
