//! The upstream client: one pooled hyper client for the broker's internal services.
//!
//! Requests carry the caller's trace (`traceparent`, a child of the gateway's hop) and the
//! interaction id; hop-by-hop headers never cross. An unreachable upstream is a 502
//! (`upstream-unavailable`), a slow one a 504 (`upstream-timeout`) once the configured
//! request timeout passes.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use gateway_config::UpstreamUrl;
use gateway_core::{InteractionId, ProblemType, TraceContext, X_FAPI_INTERACTION_ID};

use crate::body::{Body, BodyError, read_limited};

/// Which internal service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// The CRM tag service.
    Tags,
    /// The product catalogue.
    Products,
    /// The referral / account-opening service.
    Referrals,
}

impl Upstream {
    /// Metric label.
    pub const fn name(self) -> &'static str {
        match self {
            Upstream::Tags => "tags",
            Upstream::Products => "products",
            Upstream::Referrals => "referrals",
        }
    }
}

/// Why an upstream call failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting or sending failed.
    #[error("upstream {upstream} unreachable: {reason}")]
    Unavailable {
        /// Which upstream.
        upstream: &'static str,
        /// The cause, for logs.
        reason: String,
    },
    /// No response head within the request timeout.
    #[error("upstream {upstream} did not answer in time")]
    Timeout {
        /// Which upstream.
        upstream: &'static str,
    },
    /// The upstream answered with a server error or an unusable body.
    #[error("upstream {upstream} answered badly: {reason}")]
    BadResponse {
        /// Which upstream.
        upstream: &'static str,
        /// What was wrong.
        reason: String,
    },
}

impl UpstreamError {
    /// The problem a partner sees.
    pub fn problem_type(&self) -> ProblemType {
        match self {
            UpstreamError::Unavailable { .. } | UpstreamError::BadResponse { .. } => {
                ProblemType::UpstreamUnavailable
            }
            UpstreamError::Timeout { .. } => ProblemType::UpstreamTimeout,
        }
    }

    /// Metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Unavailable { .. } => "connect",
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::BadResponse { .. } => "bad_response",
        }
    }
}

/// A pooled client for the internal services.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    client: Client<HttpConnector, Body>,
}

/// One outgoing call.
#[derive(Debug)]
pub struct UpstreamRequest<'a> {
    /// Which service.
    pub upstream: Upstream,
    /// Its base URL.
    pub base: &'a UpstreamUrl,
    /// Method.
    pub method: Method,
    /// Path (and query) after the base URL's prefix; starts with `/`.
    pub path_and_query: &'a str,
    /// Extra headers (content type, accept, conditional headers).
    pub headers: HeaderMap,
    /// Body.
    pub body: Body,
    /// The request's trace.
    pub trace: Option<&'a TraceContext>,
    /// The request's interaction id.
    pub interaction_id: Option<&'a InteractionId>,
    /// Timeout to the response head.
    pub timeout: Duration,
}

impl UpstreamClient {
    /// Builds the client. `connect_timeout` bounds TCP connects; idle connections are kept
    /// per host up to `max_idle_per_host`.
    pub fn new(connect_timeout: Duration, max_idle_per_host: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(max_idle_per_host)
            .build(connector);
        UpstreamClient { client }
    }

    /// Sends one request and waits for the response head.
    pub async fn send(
        &self,
        call: UpstreamRequest<'_>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let name = call.upstream.name();
        let uri: Uri = format!(
            "http://{}{}{}",
            call.base.authority, call.base.path_prefix, call.path_and_query
        )
        .parse()
        .map_err(|e: http::uri::InvalidUri| UpstreamError::Unavailable {
            upstream: name,
            reason: format!("bad upstream URI: {e}"),
        })?;
        let mut request = Request::new(call.body);
        *request.method_mut() = call.method;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        *headers = call.headers;
        strip_hop_by_hop(headers);
        if let Some(trace) = call.trace
            && let Ok(value) = HeaderValue::from_str(&trace.traceparent())
        {
            headers.insert(HeaderName::from_static("traceparent"), value);
        }
        if let Some(id) = call.interaction_id
            && let Ok(value) = HeaderValue::from_str(id.as_str())
        {
            headers.insert(X_FAPI_INTERACTION_ID, value);
        }
        match tokio::time::timeout(call.timeout, self.client.request(request)).await {
            Err(_) => Err(UpstreamError::Timeout { upstream: name }),
            Ok(Err(err)) => Err(UpstreamError::Unavailable {
                upstream: name,
                reason: error_chain(&err),
            }),
            Ok(Ok(mut response)) => {
                strip_hop_by_hop(response.headers_mut());
                Ok(response)
            }
        }
    }

    /// Sends a request and reads the whole response body (at most `limit` bytes) within
    /// the same timeout. Server errors (5xx) become [`UpstreamError::BadResponse`].
    pub async fn fetch(
        &self,
        call: UpstreamRequest<'_>,
        limit: usize,
    ) -> Result<(http::response::Parts, Bytes), UpstreamError> {
        let name = call.upstream.name();
        let timeout = call.timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let response = self.send(call).await?;
        let (parts, body) = response.into_parts();
        if parts.status.is_server_error() {
            return Err(UpstreamError::BadResponse {
                upstream: name,
                reason: format!("status {}", parts.status),
            });
        }
        let bytes = match tokio::time::timeout_at(deadline, read_limited(body, limit)).await {
            Err(_) => return Err(UpstreamError::Timeout { upstream: name }),
            Ok(Err(BodyError::TooLarge { limit })) => {
                return Err(UpstreamError::BadResponse {
                    upstream: name,
                    reason: format!("body over {limit} bytes"),
                });
            }
            Ok(Err(BodyError::Read(err))) => {
                return Err(UpstreamError::Unavailable {
                    upstream: name,
                    reason: err.to_string(),
                });
            }
            Ok(Ok(bytes)) => bytes,
        };
        Ok((parts, bytes))
    }
}

/// Passes an upstream response to the partner: 5xx becomes a 502 problem (internal error
/// pages never reach partners), anything else streams through with its content headers.
pub fn relay(
    response: Response<Incoming>,
    upstream: Upstream,
) -> Result<Response<Body>, UpstreamError> {
    if response.status().is_server_error() {
        return Err(UpstreamError::BadResponse {
            upstream: upstream.name(),
            reason: format!("status {}", response.status()),
        });
    }
    let (parts, body) = response.into_parts();
    let mut out = Response::new(Body::wrap(body));
    *out.status_mut() = parts.status;
    for name in [
        header::CONTENT_TYPE,
        header::ETAG,
        header::CACHE_CONTROL,
        header::LAST_MODIFIED,
    ] {
        if let Some(value) = parts.headers.get(&name) {
            out.headers_mut().insert(name, value.clone());
        }
    }
    if out.status() == StatusCode::NOT_MODIFIED {
        *out.body_mut() = Body::empty();
    }
    Ok(out)
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those the `Connection` header
/// names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }
}
