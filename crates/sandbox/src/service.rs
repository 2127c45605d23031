//! Request handling: the `/sandbox/*` control endpoints, then for every other request the
//! controls (count, headers, stall, fail) and the three services.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ETAG, IF_NONE_MATCH};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::controls::Controls;
use crate::data;
use crate::referrals::Referrals;
use crate::respond::{
    Body, clip, error, json, json_value, method_not_allowed, not_found, read_json,
};

/// What every request of one sandbox shares.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) controls: Arc<Controls>,
    pub(crate) referrals: Referrals,
    /// Turns `true` when the server shuts down; ends stalls early.
    pub(crate) closing: watch::Receiver<bool>,
    /// `"<catalogue version>"`, built once.
    pub(crate) catalogue_etag: HeaderValue,
}

impl State {
    pub(crate) fn new(controls: Arc<Controls>, closing: watch::Receiver<bool>) -> Self {
        // The version is 16 hex digits, always a valid header value.
        let catalogue_etag = HeaderValue::from_str(&format!("\"{}\"", data::catalogue_version()))
            .unwrap_or(HeaderValue::from_static("\"catalogue\""));
        State {
            controls,
            referrals: Referrals::new(),
            closing,
            catalogue_etag,
        }
    }
}

/// Answers one request. Never fails: every outcome is a response.
pub(crate) async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = request.into_parts();
    if let Some(rest) = parts.uri.path().strip_prefix("/sandbox/") {
        let rest = rest.to_owned();
        return Ok(sandbox_endpoint(&state, &parts, &rest, body).await);
    }

    let controls = &state.controls;
    controls.record(&parts.headers);
    if let Some(stall) = controls.stall()
        && stalled(&state, stall).await.is_err()
    {
        return Ok(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the sandbox is shutting down",
        ));
    }
    if let Some(status) = controls.fail() {
        return Ok(error(
            status,
            "injected_failure",
            &format!("the sandbox fail control is set to {}", status.as_u16()),
        ));
    }
    Ok(route(&state, parts, body).await)
}

struct ShuttingDown;

/// Waits out a stall, or until the server shuts down.
async fn stalled(state: &State, stall: Duration) -> Result<(), ShuttingDown> {
    let mut closing = state.closing.clone();
    tokio::select! {
        () = tokio::time::sleep(stall) => Ok(()),
        // Either the flag turned true or the server is gone: both end the stall.
        _ = closing.wait_for(|closing| *closing) => Err(ShuttingDown),
    }
}

async fn route(state: &State, parts: Parts, body: Incoming) -> Response<Body> {
    let path = parts.uri.path();
    let mut segments = path.split('/').skip(1);
    let s = [
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ];
    if segments.next().is_some() {
        return no_route(path);
    }
    let method = &parts.method;
    match s {
        [Some("crm"), Some("customers"), Some(id), Some("tags")] => {
            if method != Method::GET {
                return method_not_allowed("GET");
            }
            match data::customer_document(id) {
                Some(document) => json(StatusCode::OK, document),
                None => not_found(&format!("no customer {:?}", clip(id))),
            }
        }
        [Some("catalogue"), Some("products"), None, None] => {
            if method != Method::GET {
                return method_not_allowed("GET");
            }
            catalogue(state, &parts.headers)
        }
        [Some("catalogue"), Some("products"), Some(id), None] => {
            if method != Method::GET {
                return method_not_allowed("GET");
            }
            match data::product_document(id) {
                Some(document) => json(StatusCode::OK, document),
                None => not_found(&format!("no product {:?}", clip(id))),
            }
        }
        [Some("referrals"), Some("codes"), None, None] => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            match read_json(&parts.headers, body).await {
                Ok(request) => state
                    .referrals
                    .register(request, state.controls.clock().as_ref()),
                Err(response) => response,
            }
        }
        [Some("referrals"), Some("codes"), Some(code), None] => {
            if method != Method::GET {
                return method_not_allowed("GET");
            }
            state.referrals.lookup(code)
        }
        [Some("referrals"), Some("account-openings"), None, None] => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            match read_json(&parts.headers, body).await {
                Ok(request) => state
                    .referrals
                    .open_account(request, state.controls.clock().as_ref()),
                Err(response) => response,
            }
        }
        _ => no_route(path),
    }
}

fn no_route(path: &str) -> Response<Body> {
    not_found(&format!("no such path {:?}", clip(path)))
}

/// The whole catalogue, or 304 when the client already has this version.
fn catalogue(state: &State, headers: &HeaderMap) -> Response<Body> {
    let etag = &state.catalogue_etag;
    let mut response = if if_none_match(headers, etag) {
        let mut response = Response::new(Body::new(Bytes::new()));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        json(StatusCode::OK, data::catalogue_document())
    };
    response.headers_mut().insert(ETAG, etag.clone());
    response
}

/// Whether `If-None-Match` names `etag` (weak comparison, RFC 9110 §13.1.2) or is `*`.
fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let etag = etag.as_bytes();
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| {
            tag == "*"
                || tag.as_bytes() == etag
                || tag.strip_prefix("W/").map(str::as_bytes) == Some(etag)
        })
}

// === /sandbox/* ===

async fn sandbox_endpoint(
    state: &State,
    parts: &Parts,
    rest: &str,
    body: Incoming,
) -> Response<Body> {
    let controls = &state.controls;
    match rest {
        "health" => match parts.method {
            Method::GET => json(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}")),
            _ => method_not_allowed("GET"),
        },
        "echo-headers" => match parts.method {
            Method::GET => json_value(StatusCode::OK, &echo(parts)),
            _ => method_not_allowed("GET"),
        },
        "last-headers" => match parts.method {
            Method::GET => {
                let headers = controls.last_headers().map(|h| headers_json(&h));
                json_value(StatusCode::OK, &serde_json::json!({ "headers": headers }))
            }
            _ => method_not_allowed("GET"),
        },
        "controls" => match parts.method {
            Method::GET => controls_view(controls),
            _ => method_not_allowed("GET"),
        },
        "controls/reset" => match parts.method {
            Method::POST => {
                controls.reset();
                controls_view(controls)
            }
            _ => method_not_allowed("POST"),
        },
        "controls/stall" => match parts.method {
            Method::PUT => match read_setting(parts, body, "ms").await {
                Ok(ms) => {
                    controls.set_stall(ms.map(Duration::from_millis));
                    controls_view(controls)
                }
                Err(response) => response,
            },
            _ => method_not_allowed("PUT"),
        },
        "controls/fail" => match parts.method {
            Method::PUT => match read_setting(parts, body, "status").await {
                Ok(status) => {
                    let status = status.map(|s| u16::try_from(s).unwrap_or(u16::MAX));
                    match controls.set_fail(status) {
                        Ok(()) => controls_view(controls),
                        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_field", &e.to_string()),
                    }
                }
                Err(response) => response,
            },
            _ => method_not_allowed("PUT"),
        },
        _ => not_found(&format!("no such path \"/sandbox/{}\"", clip(rest))),
    }
}

fn controls_view(controls: &Controls) -> Response<Body> {
    let stall_ms = controls
        .stall()
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let body = serde_json::json!({
        "stall_ms": stall_ms,
        "fail_status": controls.fail().map(|s| s.as_u16()),
        "requests": controls.requests(),
    });
    json_value(StatusCode::OK, &body)
}

/// Reads `{"<key>": <non-negative integer> | null}`; the key must be present.
async fn read_setting(
    parts: &Parts,
    body: Incoming,
    key: &str,
) -> Result<Option<u64>, Response<Body>> {
    let object: Map<String, Value> = read_json(&parts.headers, body).await?;
    match object.get(key) {
        Some(Value::Null) => Ok(None),
        Some(value) => value.as_u64().map(Some).ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                &format!("{key} must be a non-negative integer or null"),
            )
        }),
        None => Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("missing field `{key}`"),
        )),
    }
}

/// The request line and headers as JSON.
fn echo(parts: &Parts) -> Value {
    serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "version": format!("{:?}", parts.version),
        "headers": headers_json(&parts.headers),
    })
}

/// Headers as a JSON object, name → value; repeated headers are joined with `, ` (RFC 9110
/// §5.3) and non-UTF-8 bytes replaced.
pub(crate) fn headers_json(headers: &HeaderMap) -> Value {
    let mut object = Map::new();
    for name in headers.keys() {
        let joined = headers
            .get_all(name)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()))
            .collect::<Vec<_>>()
            .join(", ");
        object.insert(name.as_str().to_owned(), Value::String(joined));
    }
    Value::Object(object)
}
