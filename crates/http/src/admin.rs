//! The admin listener: internal, loopback by default, plain HTTP.
//!
//! `GET /healthz`, `GET /readyz` and `GET /metrics` are open (probes and scrapers run on the
//! internal network); everything under `/admin/v1/` needs `Authorization: Bearer <admin
//! token>` (from `admin_listener.token_file` or `token_env`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use gateway_core::problem::problem_response;
use gateway_core::{InteractionId, Problem, ProblemType, Violation, X_FAPI_INTERACTION_ID};

use crate::body::Body;
use crate::state::{GatewayState, PrepareError};

/// Serves the admin API until `shutdown` is cancelled.
pub async fn serve_admin(
    listener: TcpListener,
    state: Arc<GatewayState>,
    shutdown: CancellationToken,
) {
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    warn!(error = %err, "Admin accept failed.");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(admin(&state, req).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => if let Err(err) = result {
                    debug!(error = %err, "Admin connection ended with an error.");
                },
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn.as_mut()).await;
                }
            }
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
}

/// Answers one admin request; every answer carries an `x-fapi-interaction-id` (echoed when
/// acceptable, else minted) so admin changes can be correlated with the audit trail.
pub async fn admin(state: &Arc<GatewayState>, req: Request<Incoming>) -> Response<Body> {
    let id = req
        .headers()
        .get(X_FAPI_INTERACTION_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(InteractionId::parse)
        .unwrap_or_else(crate::edge::mint);
    let mut response = route(state, req).await;
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(X_FAPI_INTERACTION_ID, value);
    }
    response
}

async fn route(state: &Arc<GatewayState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match (method.clone(), path.as_str()) {
        (Method::GET, "/healthz") => json_response(StatusCode::OK, &json!({"status": "ok"})),
        (Method::GET, "/readyz") => readiness(state).await,
        (Method::GET, "/metrics") => {
            let mut text = state.metrics.render();
            limiter_metrics(&mut text, &state.limiter.metrics().snapshot());
            let mut response = Response::new(Body::from(text));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        (_, p) if p.starts_with("/admin/v1/") => {
            if !authorised(state, &req) {
                let mut response =
                    problem_response::<Body>(&Problem::new(ProblemType::AdminUnauthorized), None);
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"admin\""),
                );
                return response;
            }
            match (method, p) {
                (Method::POST, "/admin/v1/reload") => reload(state).await,
                (Method::GET, "/admin/v1/partners") => partners(state),
                (Method::GET, "/admin/v1/audit") => audit_search(state, req.uri().query()).await,
                (Method::POST, "/admin/v1/referral-events") => referral_event(state, req).await,
                (Method::POST, "/admin/v1/consents") => crate::consents::grant(state, req).await,
                (_, "/admin/v1/consents") => method_not_allowed("POST"),
                (Method::DELETE, p) if p.starts_with("/admin/v1/consents/") => {
                    let id = p.trim_start_matches("/admin/v1/consents/").to_owned();
                    crate::consents::revoke(state, &id).await
                }
                (Method::GET, p) if customer_consents(p).is_some() => {
                    let customer = customer_consents(p).unwrap_or_default().to_owned();
                    crate::consents::list(state, &customer).await
                }
                (_, "/admin/v1/referral-events") => method_not_allowed("POST"),
                (Method::GET, p) if access_log_customer(p).is_some() => {
                    let customer = access_log_customer(p).unwrap_or_default().to_owned();
                    access_log(state, &customer).await
                }
                (_, "/admin/v1/reload") => method_not_allowed("POST"),
                (_, "/admin/v1/partners") => method_not_allowed("GET"),
                _ => problem_response(&Problem::new(ProblemType::NotFound), None),
            }
        }
        (_, "/healthz" | "/readyz" | "/metrics") => method_not_allowed("GET"),
        _ => problem_response(&Problem::new(ProblemType::NotFound), None),
    }
}

/// `GET /admin/v1/audit?partner=&customer=&from=&to=&decision=&kind=&limit=&cursor=`:
/// the audit trail, newest first, from the writer's index.
async fn audit_search(state: &GatewayState, query: Option<&str>) -> Response<Body> {
    use gateway_audit::{PageCursor, SearchFilter};
    use gateway_core::audit::{AuditTime, Decision, RecordKind};
    let mut q = crate::query::Query::parse(
        query,
        &[
            "partner", "customer", "from", "to", "decision", "kind", "limit", "cursor",
        ],
    );
    let filter = SearchFilter {
        partner: q.parse_with("partner", "a partner id", |v| {
            gateway_core::PartnerId::parse(v).ok()
        }),
        customer_hash: q
            .parse_with("customer", "an internal customer id", |v| {
                gateway_core::CustomerId::parse(v).ok()
            })
            .map(|id| state.audit_hasher.hash(&id)),
        from: q.parse_with("from", "an RFC 3339 time", |v| AuditTime::parse(v).ok()),
        to: q.parse_with("to", "an RFC 3339 time", |v| AuditTime::parse(v).ok()),
        decision: q.parse_with("decision", "allow or deny", Decision::parse),
        kind: q.parse_with("kind", "partner_request or admin_change", |v| match v {
            "partner_request" => Some(RecordKind::PartnerRequest),
            "admin_change" => Some(RecordKind::AdminChange),
            _ => None,
        }),
    };
    let limit = q.integer("limit", 1..=500, 50);
    let cursor = q.parse_with("cursor", "a cursor from a previous page", |v| {
        PageCursor::parse(v).ok()
    });
    if let Err(problem) = q.finish() {
        return problem_response(&problem, None);
    }
    match state.audit.search(filter, cursor, limit).await {
        Ok(page) => {
            let records: Vec<_> = page
                .records
                .iter()
                .map(|found| {
                    let mut value = serde_json::to_value(&found.record).unwrap_or_default();
                    value["seq"] = json!(found.seq);
                    value
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"records": records, "next": page.next.map(|c| c.to_string())}),
            )
        }
        Err(err) => {
            warn!(error = %err, "Audit search failed.");
            problem_response(&Problem::new(ProblemType::AuditUnavailable), None)
        }
    }
}

/// Reads a JSON admin body: content type, size, time and depth checked.
pub(crate) async fn json_body(
    state: &GatewayState,
    req: Request<Incoming>,
) -> Result<Bytes, Response<Body>> {
    let config = state.config();
    let http = &config.gateway.http;
    if let Err(crate::handlers::HandlerError::Problem(problem)) =
        crate::handlers::require_content_type(req.headers(), "application/json")
    {
        return Err(problem_response(&problem, None));
    }
    let body = match crate::handlers::read_body(req.into_body(), http.max_body_bytes, http).await {
        Ok(body) => body,
        Err(crate::handlers::HandlerError::Problem(problem)) => {
            return Err(problem_response(&problem, None));
        }
        Err(crate::handlers::HandlerError::Failed(err)) => {
            return Err(crate::edge::error_response(&err, None));
        }
    };
    crate::json::check_depth(&body, http.max_json_depth).map_err(|p| problem_response(&p, None))?;
    Ok(body)
}

/// Records an admin change in the audit trail, durably, before the change is answered.
/// Returns the 503 to answer instead when the record cannot be made durable.
pub(crate) async fn audit_admin_change(
    state: &GatewayState,
    action: &str,
    target: Option<String>,
    details: serde_json::Value,
) -> Result<(), Response<Body>> {
    use gateway_core::audit::{AdminAction, AuditRecord, AuditTime};
    let config = state.config();
    let record = AuditRecord::admin_change(
        AuditTime::now(),
        config.gateway.instance_id.clone(),
        AdminAction {
            actor: "admin-api".into(),
            action: action.into(),
            target,
            details,
        },
    );
    match state
        .audit
        .append_with(&record, gateway_audit::Durability::Sync)
        .await
    {
        Ok(_) => Ok(()),
        Err(err) => {
            warn!(error = %err, action, "Admin change could not be audited.");
            let mut response =
                problem_response::<Body>(&Problem::new(ProblemType::AuditUnavailable), None);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Err(response)
        }
    }
}

/// `POST /admin/v1/referral-events`: a conversion reported by an internal service,
/// idempotent by `event_id` (201 first time, 200 replay with the first outcome), durable
/// before it is answered.
async fn referral_event(state: &GatewayState, req: Request<Incoming>) -> Response<Body> {
    let body = match json_body(state, req).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let request = match gateway_referral::EventRequest::from_json(&body) {
        Ok(request) => request,
        Err(err) => return problem_response(&crate::json::body_problem(err), None),
    };
    let campaigns = state.campaigns();
    match gateway_referral::record_event(&state.store, &request, &campaigns, state.now()).await {
        Ok(recorded) => {
            let status = StatusCode::from_u16(recorded.status()).unwrap_or(StatusCode::OK);
            let body = recorded.body();
            // Replays are recorded too: an intake whose first record failed is recorded on retry.
            {
                let details =
                    serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
                let details = json!({
                    "code": details["code"], "event_type": details["event_type"],
                    "campaign_id": details["campaign_id"], "partner_id": details["partner_id"],
                    "replay": status != StatusCode::CREATED,
                });
                let target = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["event_id"].as_str().map(str::to_owned));
                if let Err(response) =
                    audit_admin_change(state, "referral_event", target, details).await
                {
                    return response;
                }
            }
            let mut response = Response::new(Body::from(Bytes::from(body)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(err) => match err.problem() {
            Some(problem) => problem_response(&problem, None),
            None => {
                warn!(error = %err, "Referral event intake failed.");
                let mut response =
                    problem_response::<Body>(&Problem::new(ProblemType::StoreUnavailable), None);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
        },
    }
}

fn customer_consents(path: &str) -> Option<&str> {
    let customer = path
        .strip_prefix("/admin/v1/customers/")?
        .strip_suffix("/consents")?;
    (!customer.contains('/')).then_some(customer)
}

fn access_log_customer(path: &str) -> Option<&str> {
    let customer = path
        .strip_prefix("/admin/v1/customers/")?
        .strip_suffix("/access-log")?;
    (!customer.contains('/')).then_some(customer)
}

/// `GET /admin/v1/customers/{customer_id}/access-log`: who saw which of this customer's
/// fields, when, under which consent — the customer's disclosure log.
async fn access_log(state: &GatewayState, customer: &str) -> Response<Body> {
    let Ok(customer) = gateway_core::CustomerId::parse(customer) else {
        return problem_response(&Problem::new(ProblemType::NotFound), None);
    };
    match state
        .audit
        .access_log(state.audit_hasher.hash(&customer))
        .await
    {
        Ok(disclosures) => {
            let entries: Vec<_> = disclosures
                .iter()
                .map(|d| {
                    json!({
                        "time": d.time,
                        "partner_id": d.partner,
                        "consent_id": d.consent_id,
                        "customer_ref": d.customer_ref,
                        "route": d.route,
                        "fields_released": d.released,
                        "fields_withheld": d.withheld,
                    })
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({"customer_id": customer, "disclosures": entries}),
            )
        }
        Err(err) => {
            warn!(error = %err, "Access log failed.");
            problem_response(&Problem::new(ProblemType::AuditUnavailable), None)
        }
    }
}

/// Appends the rate limiter's counters (kept as atomics in its crate) in OpenMetrics text,
/// before the closing `# EOF`.
fn limiter_metrics(text: &mut String, snapshot: &gateway_ratelimit::MetricsSnapshot) {
    use std::fmt::Write as _;
    let eof = text.rfind("# EOF").unwrap_or(text.len());
    let mut extra = String::new();
    let _ = writeln!(
        extra,
        "# HELP pgw_ratelimit_decisions Rate-limit decisions by tier and outcome."
    );
    let _ = writeln!(extra, "# TYPE pgw_ratelimit_decisions counter");
    for (tier, outcome, count) in snapshot.iter_decisions() {
        let _ = writeln!(
            extra,
            "pgw_ratelimit_decisions_total{{tier=\"{}\",outcome=\"{}\"}} {count}",
            tier.as_str(),
            outcome.as_str()
        );
    }
    for (name, help, value) in [
        (
            "redis_calls",
            "Cluster decisions sent to Redis.",
            snapshot.redis_calls,
        ),
        (
            "redis_errors",
            "Cluster decisions that failed.",
            snapshot.redis_errors,
        ),
        (
            "redis_timeouts",
            "Cluster decisions that timed out.",
            snapshot.redis_timeouts,
        ),
        (
            "breaker_opened",
            "Times the Redis circuit breaker opened.",
            snapshot.breaker_opened,
        ),
        (
            "breaker_closed",
            "Times the Redis circuit breaker closed.",
            snapshot.breaker_closed,
        ),
    ] {
        let _ = writeln!(extra, "# HELP pgw_ratelimit_{name} {help}");
        let _ = writeln!(extra, "# TYPE pgw_ratelimit_{name} counter");
        let _ = writeln!(extra, "pgw_ratelimit_{name}_total {value}");
    }
    let _ = writeln!(
        extra,
        "# HELP pgw_ratelimit_breaker_open Whether the Redis breaker is open (1) or not."
    );
    let _ = writeln!(extra, "# TYPE pgw_ratelimit_breaker_open gauge");
    let open = u8::from(snapshot.breaker_state != gateway_ratelimit::BreakerState::Closed);
    let _ = writeln!(extra, "pgw_ratelimit_breaker_open {open}");
    text.insert_str(eof, &extra);
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = problem_response::<Body>(&Problem::new(ProblemType::MethodNotAllowed), None);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Compares the bearer token in constant time.
fn authorised(state: &GatewayState, req: &Request<Incoming>) -> bool {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Some(token) = value.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    let expected = state.admin_token();
    constant_time_eq(token, expected.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn readiness(state: &GatewayState) -> Response<Body> {
    let config = state.config();
    let upstreams = &config.gateway.upstreams;
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    let mut authorities: Vec<&str> = vec![
        &upstreams.tags.authority,
        &upstreams.products.authority,
        &upstreams.referrals.authority,
    ];
    authorities.sort_unstable();
    authorities.dedup();
    for authority in authorities {
        let up = matches!(
            tokio::time::timeout(
                upstreams.connect_timeout,
                tokio::net::TcpStream::connect(authority)
            )
            .await,
            Ok(Ok(_))
        );
        ready &= up;
        checks.insert(
            format!("upstream {authority}"),
            json!(if up { "up" } else { "down" }),
        );
    }
    checks.insert("config".into(), json!("loaded"));
    checks.insert("tls".into(), json!("loaded"));
    let audit = state.audit.is_healthy();
    ready &= audit;
    checks.insert(
        "audit".into(),
        json!(if audit { "durable" } else { "failing" }),
    );
    let store = matches!(
        tokio::time::timeout(std::time::Duration::from_secs(1), state.store.ping()).await,
        Ok(Ok(()))
    );
    ready &= store;
    checks.insert(
        format!("store ({})", state.store.backend_name()),
        json!(if store { "up" } else { "down" }),
    );
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &json!({"ready": ready, "checks": checks}))
}

async fn reload(state: &GatewayState) -> Response<Body> {
    match state.reload().await {
        Ok(reloaded) => json_response(
            StatusCode::OK,
            &json!({
                "status": "reloaded",
                "changes": reloaded.changes,
                "connections_closed": reloaded.connections_closed,
            }),
        ),
        Err(err) => {
            let errors = match &err {
                PrepareError::Config(report) => report
                    .to_string()
                    .lines()
                    .map(|line| Violation {
                        pointer: String::new(),
                        detail: line.to_owned(),
                    })
                    .collect(),
                PrepareError::SigningKey { .. } | PrepareError::External(_) => {
                    vec![Violation {
                        pointer: String::new(),
                        detail: err.to_string(),
                    }]
                }
                PrepareError::Tls(tls) => {
                    vec![Violation {
                        pointer: String::new(),
                        detail: tls.to_string(),
                    }]
                }
            };
            let problem = Problem::new(ProblemType::ReloadRejected)
                .with_detail("the running configuration stays in force")
                .with_errors(errors);
            problem_response(&problem, None)
        }
    }
}

fn partners(state: &GatewayState) -> Response<Body> {
    let config = state.config();
    let partners: Vec<_> = config
        .partners
        .values()
        .map(|p| {
            json!({
                "id": p.id,
                "display_name": p.display_name,
                "kind": p.kind,
                "status": p.status,
                "client_id": p.client_id,
                "scopes": p.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                "certificate_pins": {
                    "sha256": p.pins.iter().map(|f| f.to_hex()).collect::<Vec<_>>(),
                    "subject": p.subjects,
                },
                "open_connections": state.registry.count_for(&p.id),
                "requests": state.partner_counts.of(&p.id).requests.load(std::sync::atomic::Ordering::Relaxed),
                "tokens_issued": state.partner_counts.of(&p.id).tokens.load(std::sync::atomic::Ordering::Relaxed),
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "partners": partners }))
}

/// A JSON response.
pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    // Serialising a `Value` cannot fail.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Body::from(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
