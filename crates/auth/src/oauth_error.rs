//! Errors of the OAuth endpoints, rendered as RFC 6749 §5.2 JSON.
//!
//! The OAuth endpoints answer in the OAuth wire format (`{"error", "error_description"}`),
//! not RFC 9457: OAuth client libraries, the `oauth2` crate among them, parse this shape.

use http::{HeaderValue, StatusCode, header};

/// Why a token or revocation request was refused.
///
/// The `Display` text is the `error_description` sent to the partner: it says what to fix and
/// nothing about the gateway's internals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The request is malformed: wrong media type, repeated or missing parameter, bad encoding.
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// Client authentication failed: no registration for the certificate, another client's
    /// `client_id`, or a suspended client. Answered with 401.
    #[error("{0}")]
    InvalidClient(&'static str),
    /// The grant type is not `client_credentials`.
    #[error("only grant_type=client_credentials is supported")]
    UnsupportedGrantType,
    /// A requested scope is unknown or not allowed for this client.
    #[error("{0}")]
    InvalidScope(&'static str),
    /// The state store cannot be reached; nothing was changed. Answered with 503.
    #[error("the service is temporarily unavailable, retry later")]
    TemporarilyUnavailable,
    /// A bug or crypto failure inside the gateway. Answered with 500.
    #[error("the authorization server failed to process the request")]
    ServerError,
}

impl OAuthError {
    /// The RFC 6749 `error` code.
    pub const fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthError::ServerError => "server_error",
        }
    }

    /// The HTTP status: 401 for `invalid_client`, 503/500 for our own failures, else 400.
    pub const fn status(&self) -> StatusCode {
        match self {
            OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            OAuthError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The JSON body: `{"error": "...", "error_description": "..."}`.
    pub fn to_json(&self) -> Vec<u8> {
        let body =
            serde_json::json!({ "error": self.code(), "error_description": self.to_string() });
        // A `Value` of two strings always serialises.
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The complete response: status, `application/json`, `Cache-Control: no-store`
    /// (and `Retry-After` for 503).
    pub fn into_response<B: From<bytes::Bytes>>(&self) -> http::Response<B> {
        let mut response = json_response(self.status(), self.to_json());
        if *self == OAuthError::TemporarilyUnavailable {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A JSON response that no cache may keep (RFC 6749 §5.1).
pub(crate) fn json_response<B: From<bytes::Bytes>>(
    status: StatusCode,
    body: Vec<u8>,
) -> http::Response<B> {
    let mut response = http::Response::new(B::from(bytes::Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc6749_errors_with_their_status() {
        let cases = [
            (OAuthError::InvalidRequest("x"), 400, "invalid_request"),
            (OAuthError::InvalidClient("x"), 401, "invalid_client"),
            (
                OAuthError::UnsupportedGrantType,
                400,
                "unsupported_grant_type",
            ),
            (OAuthError::InvalidScope("x"), 400, "invalid_scope"),
            (
                OAuthError::TemporarilyUnavailable,
                503,
                "temporarily_unavailable",
            ),
            (OAuthError::ServerError, 500, "server_error"),
        ];
        for (error, status, code) in cases {
            let response: http::Response<bytes::Bytes> = error.into_response();
            assert_eq!(response.status().as_u16(), status);
            assert_eq!(response.headers()["cache-control"], "no-store");
            assert_eq!(response.headers()["content-type"], "application/json");
            let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(body["error"], code);
            assert!(body["error_description"].is_string());
        }
    }
}
