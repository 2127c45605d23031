//! The referral programme: `POST /v1/referral-codes`, `GET /v1/referral-codes/{code}`,
//! `GET /v1/campaigns/{id}/stats`.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

use gateway_core::{Problem, ProblemType, Route};
use gateway_referral::{IdempotencyKey, IssueRequest};

use super::{HandlerError, partner_id, read_body, require_content_type, snapshot};
use crate::body::Body;
use crate::json::{body_problem, check_depth};
use crate::state::GatewayState;

/// The header carrying an idempotency key.
pub(super) const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Answers a referral route.
pub(super) async fn handle(
    state: &GatewayState,
    route: Route,
    param: Option<&str>,
    req: Request<Incoming>,
) -> Result<Response<Body>, HandlerError> {
    let config = snapshot(&req)?;
    let partner = partner_id(&req)?;
    let campaigns = state.campaigns();
    let now = state.now();
    match route {
        Route::IssueReferralCode => {
            let mut keys = req.headers().get_all(IDEMPOTENCY_KEY).iter();
            let key = match (keys.next(), keys.next()) {
                (Some(value), None) => value
                    .to_str()
                    .ok()
                    .and_then(|v| IdempotencyKey::parse(v).ok()),
                _ => None,
            }
            .ok_or_else(|| {
                HandlerError::Problem(
                    Problem::new(ProblemType::IdempotencyKeyRequired).with_detail(
                        "send exactly one Idempotency-Key of 1 to 64 visible ASCII characters",
                    ),
                )
            })?;
            require_content_type(req.headers(), "application/json")?;
            let http = &config.0.gateway.http;
            let body = read_body(req.into_body(), http.max_body_bytes, http).await?;
            check_depth(&body, http.max_json_depth)?;
            let request = IssueRequest::from_json(&body)
                .map_err(|e| HandlerError::Problem(body_problem(e)))?;
            match gateway_referral::issue(&state.store, &partner, &request, &key, &campaigns, now)
                .await
            {
                Ok(issued) => {
                    let mut response = json(StatusCode::CREATED, issued.body);
                    if issued.replayed {
                        response
                            .headers_mut()
                            .insert("idempotent-replayed", HeaderValue::from_static("true"));
                    }
                    Ok(response)
                }
                Err(err) => match err.problem() {
                    Some(problem) => Err(problem.into()),
                    None => Err(HandlerError::Failed(Box::new(err))),
                },
            }
        }
        Route::ReferralCode => {
            let status = gateway_referral::code_status(
                &state.store,
                &partner,
                param.unwrap_or_default(),
                &campaigns,
                now,
            )
            .await
            .map_err(|e| HandlerError::Failed(Box::new(e)))?;
            match status {
                Some(status) => Ok(json(StatusCode::OK, status.body())),
                None => Err(Problem::new(ProblemType::ReferralCodeNotFound).into()),
            }
        }
        _ => {
            let stats = gateway_referral::campaign_stats(
                &state.store,
                &partner,
                param.unwrap_or_default(),
                &campaigns,
                now,
            )
            .await
            .map_err(|e| HandlerError::Failed(Box::new(e)))?;
            match stats {
                Some(stats) => Ok(json(StatusCode::OK, stats.body())),
                None => Err(Problem::new(ProblemType::CampaignNotFound).into()),
            }
        }
    }
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::from(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
