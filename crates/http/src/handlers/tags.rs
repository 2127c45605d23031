//! Customer data: `GET /v1/customers/{customer_ref}/tags` and `GET /v1/consents/{consent_id}`.
//!
//! The tags route releases `upstream ∩ consented ∩ ceiling ∩ tier rules`, masked as the
//! consent says (`gateway_core::consent`). An unknown ref, another partner's ref, and a
//! revoked or expired consent all answer the same 404, after the same store lookup. The
//! consent is checked again after the upstream call, so a revocation that lands while the
//! upstream answers releases nothing. If consent state cannot be established: 503.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use gateway_core::audit::{AuditOutcome, Decision};
use gateway_core::consent::ProjectionError;
use gateway_core::{
    ConsentId, CustomerRef, InteractionId, Problem, ProblemType, Route, TraceContext,
};

use super::{HandlerError, partner_id, snapshot};
use crate::body::Body;
use crate::proxy::{Upstream, UpstreamError, UpstreamRequest};
use crate::query::Query;
use crate::state::GatewayState;

/// The largest tag document accepted from the CRM.
const MAX_TAGS_BYTES: usize = 1 << 20;

/// Stands in for a malformed ref, so a garbage ref costs the same store lookup as a real
/// one (no timing difference between "malformed" and "unknown").
const PLACEHOLDER_REF: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Answers a customer-data route.
pub(super) async fn handle(
    state: &GatewayState,
    route: Route,
    param: Option<&str>,
    req: Request<Incoming>,
) -> Result<Response<Body>, HandlerError> {
    let config = snapshot(&req)?;
    let partner_id = partner_id(&req)?;
    let policy = state
        .partner_policy(&partner_id)
        .ok_or_else(|| HandlerError::Failed("partner policy missing".into()))?;
    let now = state.now();
    if route == Route::Consent {
        let not_found = || HandlerError::Problem(Problem::new(ProblemType::ConsentNotFound));
        let id = param
            .and_then(|p| ConsentId::parse(p).ok())
            .ok_or_else(not_found)?;
        let record = state
            .consents
            .partner_consent(&partner_id, &id)
            .await
            .map_err(|_| unavailable())?
            .ok_or_else(not_found)?;
        let view = gateway_consent::ConsentView::new(&record, now);
        return Ok(json(serde_json::to_vec(&view).unwrap_or_default()));
    }

    // ?fields=a,b — only catalogue fields, checked before anything else is done.
    let mut query = Query::parse(req.uri().query(), &["fields"]);
    let requested: Option<Vec<String>> = query
        .get("fields")
        .map(|v| v.split(',').map(str::to_owned).collect());
    if let Some(fields) = &requested {
        for field in fields {
            if !config.0.gateway.fields.contains(field) {
                let shown: String = field.chars().take(64).collect();
                query.violation("/fields", format!("unknown field {shown:?}"));
            }
        }
    }
    query.finish()?;

    let valid_ref = param.and_then(|p| CustomerRef::parse(p).ok());
    let lookup_ref = match &valid_ref {
        Some(r) => r.clone(),
        None => {
            CustomerRef::parse(PLACEHOLDER_REF).map_err(|e| HandlerError::Failed(Box::new(e)))?
        }
    };
    let consent = state
        .consents
        .active_consent(&policy, &lookup_ref, now)
        .await
        .map_err(|_| unavailable())?;
    let (Some(customer_ref), Some(consent)) = (valid_ref, consent) else {
        return Err(not_found());
    };

    let settings = &config.0.gateway.upstreams;
    let path = format!("/customers/{}/tags", consent.customer_id);
    let mut headers = http::HeaderMap::new();
    headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let (parts, document) = state
        .upstream
        .fetch(
            UpstreamRequest {
                upstream: Upstream::Tags,
                base: &settings.tags,
                method: Method::GET,
                path_and_query: &path,
                headers,
                body: Body::empty(),
                trace: req.extensions().get::<TraceContext>(),
                interaction_id: req.extensions().get::<InteractionId>(),
                timeout: settings.request_timeout,
            },
            MAX_TAGS_BYTES,
        )
        .await?;
    if parts.status == StatusCode::NOT_FOUND {
        return Err(not_found());
    }
    if parts.status != StatusCode::OK {
        return Err(UpstreamError::BadResponse {
            upstream: "tags",
            reason: format!("status {}", parts.status),
        }
        .into());
    }

    // Revoked while the upstream answered? Then nothing is released.
    let still = state
        .consents
        .active_consent(&policy, &customer_ref, state.now())
        .await
        .map_err(|_| unavailable())?;
    if still.as_ref().map(|c| &c.consent_id) != Some(&consent.consent_id) {
        return Err(not_found());
    }

    let requested: Option<Vec<&str>> = requested
        .as_ref()
        .map(|f| f.iter().map(String::as_str).collect());
    let projection = gateway_consent::project_record(
        &config.0.gateway.fields,
        &consent,
        &policy,
        requested.as_deref(),
        &document,
    )
    .map_err(|err| match err {
        ProjectionError::UnknownFields(fields) => HandlerError::Problem(
            Problem::new(ProblemType::InvalidQuery)
                .with_detail(format!("unknown fields: {}", fields.join(", "))),
        ),
        other => UpstreamError::BadResponse {
            upstream: "tags",
            reason: other.to_string(),
        }
        .into(),
    })?;
    let body = projection.response_body(&customer_ref, &consent.consent_id, consent.expires_at);
    let mut response = json(body);
    response.extensions_mut().insert(AuditOutcome {
        decision: Some(Decision::Allow),
        reason: Some("consented".into()),
        customer_ref: Some(customer_ref),
        customer: Some(consent.customer_id.clone()),
        consent_id: Some(consent.consent_id.clone()),
        released: projection.released.clone(),
        withheld: projection.audit_withheld(),
    });
    Ok(response)
}

/// The one answer for unknown refs, refs of other partners, and revoked or expired consent.
fn not_found() -> HandlerError {
    HandlerError::Problem(Problem::new(ProblemType::CustomerNotFound))
}

fn unavailable() -> HandlerError {
    HandlerError::Problem(
        Problem::new(ProblemType::ConsentUnavailable)
            .with_detail("no customer data is released; retry shortly"),
    )
}

fn json(body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::from(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
