//! Handlers of the partner routes.

mod products;
mod referrals;
mod tags;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http::{Request, Response};
use hyper::body::Incoming;

use gateway_auth::ClientRegistration;
use gateway_core::{PartnerContext, PartnerId, PeerIdentity, Problem, ProblemType, Route};

use crate::body::{Body, BodyError, BoxError, read_limited};
use crate::partner::ConfigSnapshot;
use crate::proxy::UpstreamError;
use crate::state::GatewayState;

/// Why a handler did not produce a response.
#[derive(Debug)]
pub enum HandlerError {
    /// An expected refusal, answered as this problem.
    Problem(Problem),
    /// An unexpected failure, answered by blame (502/503/504 or 500).
    Failed(BoxError),
}

impl From<Problem> for HandlerError {
    fn from(problem: Problem) -> Self {
        HandlerError::Problem(problem)
    }
}

impl From<ProblemType> for HandlerError {
    fn from(kind: ProblemType) -> Self {
        HandlerError::Problem(Problem::new(kind))
    }
}

impl From<UpstreamError> for HandlerError {
    fn from(err: UpstreamError) -> Self {
        HandlerError::Failed(Box::new(err))
    }
}

/// Calls the handler of `route`.
pub async fn handle(
    state: &Arc<GatewayState>,
    route: Route,
    param: Option<&str>,
    req: Request<Incoming>,
) -> Result<Response<Body>, HandlerError> {
    match route {
        Route::Token | Route::Revoke => oauth(state, route, req).await,
        Route::Jwks => Ok(state.tokens.issuer().jwks_response()),
        Route::Metadata => {
            let issuer = state.tokens.issuer();
            let base = issuer.settings().issuer.clone();
            Ok(issuer.metadata_response(&base))
        }
        Route::CustomerTags | Route::Consent => tags::handle(state, route, param, req).await,
        Route::Products | Route::Product => products::handle(state, route, param, req).await,
        Route::IssueReferralCode | Route::ReferralCode | Route::CampaignStats => {
            referrals::handle(state, route, param, req).await
        }
    }
}

/// `POST /oauth2/token` and `POST /oauth2/revoke`: the client is the partner the connection's
/// certificate belongs to (RFC 8705 `tls_client_auth`).
async fn oauth(
    state: &Arc<GatewayState>,
    route: Route,
    req: Request<Incoming>,
) -> Result<Response<Body>, HandlerError> {
    let config = snapshot(&req)?;
    let peer = req
        .extensions()
        .get::<PeerIdentity>()
        .cloned()
        .ok_or_else(|| HandlerError::Failed("request reached a handler without a peer".into()))?;
    let registration = req
        .extensions()
        .get::<PartnerContext>()
        .and_then(|p| config.0.partner(&p.partner))
        .map(|p| ClientRegistration {
            partner: p.id.clone(),
            client_id: p.client_id.clone(),
            scopes: p.scopes,
            active: p.is_active(),
        });
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let limit = config
        .0
        .gateway
        .http
        .max_body_bytes
        .min(gateway_auth::MAX_FORM_LEN);
    let body = read_body(req.into_body(), limit, &config.0.gateway.http).await?;
    let now = state.now();
    Ok(match route {
        Route::Token => match state.tokens.issuer().token_request(
            &body,
            content_type.as_deref(),
            &peer,
            registration.as_ref(),
            now,
        ) {
            Ok(token) => {
                if let Some(registration) = &registration {
                    state
                        .partner_counts
                        .of(&registration.partner)
                        .tokens
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                token.into_response()
            }
            Err(err) => err.into_response(),
        },
        _ => match state
            .tokens
            .revoke_request(
                &body,
                content_type.as_deref(),
                &peer,
                registration.as_ref(),
                now,
            )
            .await
        {
            Ok(revocation) => revocation.into_response(),
            Err(err) => err.into_response(),
        },
    })
}

/// The configuration snapshot Identify attached to the request.
pub fn snapshot(req: &Request<Incoming>) -> Result<ConfigSnapshot, HandlerError> {
    // Identify attaches the snapshot before any handler runs; its absence is our bug.
    req.extensions()
        .get::<ConfigSnapshot>()
        .cloned()
        .ok_or_else(|| HandlerError::Failed("request reached a handler unidentified".into()))
}

/// The partner Identify attached to a `/v1/*` request.
pub fn partner_id(req: &Request<Incoming>) -> Result<PartnerId, HandlerError> {
    // Identify attaches the partner before any `/v1/*` handler runs; its absence is our bug.
    req.extensions()
        .get::<PartnerContext>()
        .map(|p| p.partner.clone())
        .ok_or_else(|| HandlerError::Failed("partner route without a partner".into()))
}

/// Checks the request's media type (ignoring parameters such as `charset`).
pub fn require_content_type(headers: &HeaderMap, expected: &str) -> Result<(), HandlerError> {
    let actual = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if actual.as_deref() == Some(expected) {
        Ok(())
    } else {
        Err(Problem::new(ProblemType::UnsupportedMediaType)
            .with_detail(format!("send Content-Type: {expected}"))
            .into())
    }
}

/// Reads the body within the size limit and in time: a client gets the header-read timeout
/// plus the time the minimum body rate (`http.min_body_rate_bytes_per_sec`) allows for the
/// largest body, so a slow-body client cannot hold a request open indefinitely.
pub async fn read_body(
    body: Incoming,
    limit: usize,
    limits: &gateway_config::HttpLimits,
) -> Result<Bytes, HandlerError> {
    let allowance = limits.header_read_timeout
        + std::time::Duration::from_secs_f64(limit as f64 / f64::from(limits.min_body_rate.max(1)));
    let read = match tokio::time::timeout(allowance, read_limited(body, limit)).await {
        Ok(read) => read,
        Err(_) => {
            return Err(Problem::new(ProblemType::RequestTimeout)
                .with_detail(format!(
                    "the body must arrive at {} bytes per second or faster",
                    limits.min_body_rate
                ))
                .into());
        }
    };
    match read {
        Ok(bytes) => Ok(bytes),
        Err(BodyError::TooLarge { limit }) => Err(Problem::new(ProblemType::PayloadTooLarge)
            .with_detail(format!("the limit is {limit} bytes"))
            .into()),
        Err(BodyError::Read(err)) => Err(HandlerError::Failed(err)),
    }
}
