//! The admin consent API (the broker's consent centre calls it):
//!
//! - `POST /admin/v1/consents` — record a grant: 400 `malformed-json`/`validation-failed`
//!   (schema, every violation), 422 `consent-rejected` (field unknown, never shared, outside
//!   the partner's ceiling, secret granted masked, purpose not the partner's, past expiry —
//!   every one with its pointer), 422 `unknown-partner`, 409 `consent-exists`; 201 with the
//!   consent and the partner's pairwise `customer_ref`.
//! - `DELETE /admin/v1/consents/{id}` — revoke at once, on every instance: 200, 409
//!   `consent-already-revoked`, 404 `consent-not-found`.
//! - `GET /admin/v1/customers/{id}/consents` — the customer's grants.
//!
//! Every change is recorded in the audit trail, durably, before it is answered.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;

use gateway_consent::{ConsentView, GrantError, GrantRequest, RevokeOutcome};
use gateway_core::problem::problem_response;
use gateway_core::{ConsentId, CustomerId, PartnerId, Problem, ProblemType};

use crate::admin::{audit_admin_change, json_body, json_response};
use crate::body::Body;
use crate::state::GatewayState;

/// `POST /admin/v1/consents`.
pub(crate) async fn grant(state: &GatewayState, req: Request<Incoming>) -> Response<Body> {
    let body = match json_body(state, req).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let value = match crate::json::parse_valid(&body, crate::json::consent_grant_schema()) {
        Ok(value) => value,
        Err(problem) => return problem_response(&problem, None),
    };
    let request: GrantRequest = match serde_json::from_value(value) {
        Ok(request) => request,
        Err(err) => {
            let problem = Problem::new(ProblemType::ValidationFailed).with_detail(err.to_string());
            return problem_response(&problem, None);
        }
    };
    let config = state.config();
    let policy = PartnerId::parse(&request.partner_id)
        .ok()
        .and_then(|p| state.partner_policy(&p));
    let now = state.now();
    let record = match state
        .consents
        .grant(&request, &config.gateway.fields, policy.as_deref(), now)
        .await
    {
        Ok(record) => record,
        Err(GrantError::Unavailable(err)) => {
            tracing::warn!(error = %err, "Consent grant failed: store unavailable.");
            return unavailable();
        }
        Err(err) => return problem_response(&err.problem(), None),
    };
    let details = json!({
        "partner_id": record.partner_id,
        "purpose": record.purpose,
        "fields": record.fields,
        "second_authorisation": record.second_authorisation,
        "customer_hash": state.audit_hasher.hash(&record.customer_id).to_string(),
    });
    if let Err(response) = audit_admin_change(
        state,
        "consent_grant",
        Some(record.consent_id.to_string()),
        details,
    )
    .await
    {
        return response;
    }
    view(StatusCode::CREATED, &ConsentView::new(&record, now))
}

/// `DELETE /admin/v1/consents/{id}`.
pub(crate) async fn revoke(state: &GatewayState, id: &str) -> Response<Body> {
    let Ok(id) = ConsentId::parse(id) else {
        return problem_response(&Problem::new(ProblemType::ConsentNotFound), None);
    };
    let now = state.now();
    match state.consents.revoke(&id, now).await {
        Ok(RevokeOutcome::Revoked(record)) => {
            let details = json!({"partner_id": record.partner_id});
            if let Err(response) =
                audit_admin_change(state, "consent_revoke", Some(id.to_string()), details).await
            {
                return response;
            }
            view(StatusCode::OK, &ConsentView::new(&record, now))
        }
        Ok(RevokeOutcome::AlreadyRevoked(_)) => {
            problem_response(&Problem::new(ProblemType::ConsentAlreadyRevoked), None)
        }
        Ok(RevokeOutcome::NotFound) => {
            problem_response(&Problem::new(ProblemType::ConsentNotFound), None)
        }
        Err(err) => {
            tracing::warn!(error = %err, "Consent revocation failed: store unavailable.");
            unavailable()
        }
    }
}

/// `GET /admin/v1/customers/{id}/consents`.
pub(crate) async fn list(state: &GatewayState, customer: &str) -> Response<Body> {
    let Ok(customer) = CustomerId::parse(customer) else {
        return problem_response(&Problem::new(ProblemType::NotFound), None);
    };
    match state.consents.consents_of_customer(&customer).await {
        Ok(records) => {
            let now = state.now();
            let views: Vec<_> = records.iter().map(|r| ConsentView::new(r, now)).collect();
            json_response(
                StatusCode::OK,
                &json!({"customer_id": customer, "consents": views}),
            )
        }
        Err(_) => unavailable(),
    }
}

fn view(status: StatusCode, view: &ConsentView<'_>) -> Response<Body> {
    let body = serde_json::to_vec(view).unwrap_or_default();
    let mut response = Response::new(Body::from(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn unavailable() -> Response<Body> {
    let mut response = problem_response::<Body>(&Problem::new(ProblemType::StoreUnavailable), None);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
