//! Building responses and reading request bodies, shared by the handlers.
//!
//! The internal services answer plain `application/json`, errors included:
//! `{"error": "<code>", "detail": "<text>"}`. Turning those into RFC 9457 problems is the
//! gateway's job, not the sandbox's.

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

/// The body type of every sandbox response.
pub(crate) type Body = Full<Bytes>;

pub(crate) const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Largest request body the sandbox reads.
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024;

/// A JSON response from bytes that are already serialized.
pub(crate) fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, APPLICATION_JSON);
    response
}

/// A JSON response from a value.
pub(crate) fn json_value<T: serde::Serialize + ?Sized>(
    status: StatusCode,
    value: &T,
) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => json(status, Bytes::from(body)),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("could not serialize the response: {e}"),
        ),
    }
}

/// `{"error": code, "detail": detail}` with `status`.
pub(crate) fn error(status: StatusCode, code: &str, detail: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": code, "detail": detail });
    // A `Value` built from strings always serializes.
    json(status, Bytes::from(body.to_string()))
}

pub(crate) fn not_found(detail: &str) -> Response<Body> {
    error(StatusCode::NOT_FOUND, "not_found", detail)
}

pub(crate) fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("this path answers {allow}"),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// Shortens a client-supplied value before it is echoed in an error detail.
pub(crate) fn clip(value: &str) -> &str {
    match value.char_indices().nth(64) {
        Some((end, _)) => &value[..end],
        None => value,
    }
}

/// Reads a JSON request body of at most [`MAX_BODY_BYTES`] and parses it, or answers the
/// matching 4xx: 415 for a non-JSON content type, 413 when too large, 400 for a read error,
/// bad syntax or a missing or mistyped field.
pub(crate) async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Incoming,
) -> Result<T, Response<Body>> {
    if let Some(content_type) = headers.get(CONTENT_TYPE) {
        let essence = content_type
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
    }
    let bytes = read_limited(body, MAX_BODY_BYTES).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let code = match e.classify() {
            serde_json::error::Category::Data => "invalid_request",
            _ => "malformed_json",
        };
        error(StatusCode::BAD_REQUEST, code, &e.to_string())
    })
}

/// Reads a body frame by frame, refusing it as soon as it passes `limit` bytes.
async fn read_limited(mut body: Incoming, limit: usize) -> Result<Vec<u8>, Response<Body>> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("the body is larger than {limit} bytes"),
        )
    };
    let mut buffer = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "body_read_failed",
                &format!("could not read the body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                return Err(too_large());
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer)
}
