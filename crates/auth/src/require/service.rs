use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use tower_service::Service;

use gateway_core::problem::problem_response;
use gateway_core::{
    InteractionId, PartnerContext, PeerIdentity, Problem, ProblemType, RouteMatch, Scope,
    TokenClaims,
};

use super::{MAX_BEARER_LEN, RequireTokenLayer, ResponseFuture};
use crate::verify::{TokenError, VerifyToken};

/// Admits requests carrying a valid, certificate-bound token with the route's scope. See the
/// [module docs](super).
pub struct RequireToken<S, V> {
    pub(crate) inner: S,
    pub(crate) verifier: Arc<V>,
    pub(crate) clock: Arc<dyn gateway_core::time::Clock>,
}

impl<S, V> RequireToken<S, V> {
    /// Wraps `inner`, verifying tokens with `verifier` (system clock).
    pub fn new(inner: S, verifier: V) -> Self {
        RequireToken {
            inner,
            verifier: Arc::new(verifier),
            clock: Arc::new(gateway_core::time::SystemClock),
        }
    }

    /// A layer that wraps services in `RequireToken`.
    pub fn layer(verifier: V) -> RequireTokenLayer<V> {
        RequireTokenLayer::new(verifier)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, V> Clone for RequireToken<S, V> {
    fn clone(&self) -> Self {
        RequireToken {
            inner: self.inner.clone(),
            verifier: self.verifier.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<S: std::fmt::Debug, V> std::fmt::Debug for RequireToken<S, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireToken")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, V, ReqBody, ResBody> Service<Request<ReqBody>> for RequireToken<S, V>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
    V: VerifyToken,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let interaction = request.extensions().get::<InteractionId>().cloned();
        let Some(route) = request.extensions().get::<RouteMatch>() else {
            tracing::error!("RequireToken reached without a RouteMatch; check the stack order.");
            return ResponseFuture::reject(internal(interaction.as_ref()));
        };
        let Some(scope) = route.route.scope() else {
            // OAuth endpoints, JWKS and metadata: no token needed.
            return ResponseFuture::inner(self.inner.call(request));
        };
        let extensions = request.extensions();
        let (Some(peer), Some(partner)) = (
            extensions.get::<PeerIdentity>(),
            extensions.get::<PartnerContext>(),
        ) else {
            tracing::error!(
                "RequireToken reached without PeerIdentity/PartnerContext; check the stack order."
            );
            return ResponseFuture::reject(internal(interaction.as_ref()));
        };
        let fingerprint = peer.fingerprint;
        let partner = partner.partner.clone();
        let token = match bearer_token(&request) {
            Ok(token) => token,
            Err(error) => {
                return ResponseFuture::reject(reject(&error, &partner, interaction.as_ref()));
            }
        };
        let now = self.clock.now();
        if let Some(result) = self
            .verifier
            .verify_cached(token, &fingerprint, &partner, now)
        {
            return match admit(result, scope, &partner, interaction.as_ref()) {
                Ok(claims) => {
                    request.extensions_mut().insert(claims);
                    ResponseFuture::inner(self.inner.call(request))
                }
                Err(response) => ResponseFuture::reject(response),
            };
        }
        // Boxed because the revocation store must be awaited before the inner call. The
        // ready service moves into the future; a clone takes its place (tower's usual swap).
        let token = token.to_owned();
        let verifier = self.verifier.clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture::verifying(Box::pin(async move {
            let result = verifier.verify(&token, &fingerprint, &partner, now).await;
            match admit(result, scope, &partner, interaction.as_ref()) {
                Ok(claims) => {
                    request.extensions_mut().insert(claims);
                    inner.call(request).await
                }
                Err(response) => Ok(response),
            }
        }))
    }
}

// === helpers ===

/// The token of the one `Authorization: Bearer` header, refusing every other way to send one.
fn bearer_token<B>(request: &Request<B>) -> Result<&str, TokenError> {
    if let Some(query) = request.uri().query()
        && query_has_access_token(query)
    {
        return Err(TokenError::Malformed {
            reason: "access tokens are accepted in the Authorization header only",
        });
    }
    let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(
            match request.headers().contains_key(header::AUTHORIZATION) {
                true => TokenError::Malformed {
                    reason: "more than one Authorization header",
                },
                false => TokenError::Missing,
            },
        );
    };
    let value = value.to_str().map_err(|_| TokenError::Malformed {
        reason: "Authorization header is not ASCII",
    })?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Malformed {
            reason: "Authorization scheme is not Bearer",
        });
    }
    if token.len() > MAX_BEARER_LEN {
        return Err(TokenError::TooLarge { len: token.len() });
    }
    // RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
    let body = token.trim_end_matches('=');
    let well_formed = !body.is_empty() && body.bytes().all(|c| B64TOKEN[usize::from(c)]);
    if !well_formed {
        return Err(TokenError::Malformed {
            reason: "Bearer token is not a b64token",
        });
    }
    Ok(token)
}

/// The bytes of an RFC 6750 b64token body, as a table: the check runs over every byte of
/// every bearer (~540 bytes) on every request.
const B64TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        c += 1;
    }
    table
};

/// Whether a query string carries an `access_token` parameter (its name percent-decoded, so
/// `access%5Ftoken` is caught too).
fn query_has_access_token(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or_default();
        percent_decode_lossy(name).eq_ignore_ascii_case("access_token")
    })
}

fn percent_decode_lossy(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Turns a verification result into admission or a rejection response.
fn admit<B: From<Bytes>>(
    result: Result<TokenClaims, TokenError>,
    scope: Scope,
    partner: &gateway_core::PartnerId,
    interaction: Option<&InteractionId>,
) -> Result<TokenClaims, Response<B>> {
    let claims = result.map_err(|error| reject(&error, partner, interaction))?;
    if !claims.scopes.contains(scope) {
        tracing::debug!(partner = %partner, scope = %scope, "Token lacks the route's scope.");
        let problem = Problem::new(ProblemType::InsufficientScope)
            .with_detail(format!("this route requires the scope {scope}"));
        let mut response = problem_response::<B>(&problem, interaction);
        let challenge = format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"");
        // Scope names are ASCII letters and ':' (see `Scope::as_str`).
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        return Err(response);
    }
    Ok(claims)
}

/// The problem response for a refused token, with its `WWW-Authenticate` challenge.
fn reject<B: From<Bytes>>(
    error: &TokenError,
    partner: &gateway_core::PartnerId,
    interaction: Option<&InteractionId>,
) -> Response<B> {
    let kind = error.problem_type();
    match error {
        TokenError::CertificateMismatch | TokenError::PartnerMismatch { .. } => {
            tracing::warn!(partner = %partner, reason = %error, "Token rejected.");
        }
        TokenError::StoreUnavailable { .. } | TokenError::IssuerUnavailable { .. } => {
            tracing::warn!(partner = %partner, reason = %error, "Token check failed closed.");
        }
        _ => tracing::debug!(partner = %partner, reason = %error, "Token rejected."),
    }
    let mut problem = Problem::new(kind);
    // Dependency failures carry internal detail: the log has it, the partner does not.
    if kind == ProblemType::InvalidToken || kind == ProblemType::TokenCertificateMismatch {
        problem = problem.with_detail(error.to_string());
    }
    let mut response = problem_response::<B>(&problem, interaction);
    let headers = response.headers_mut();
    match kind {
        ProblemType::InvalidToken | ProblemType::TokenCertificateMismatch => {
            let challenge = match error {
                TokenError::Missing => "Bearer",
                _ => "Bearer error=\"invalid_token\"",
            };
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        _ => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
    }
    response
}

fn internal<B: From<Bytes>>(interaction: Option<&InteractionId>) -> Response<B> {
    problem_response::<B>(&Problem::new(ProblemType::Internal), interaction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[&str], uri: &str) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        for value in headers {
            builder = builder.header(header::AUTHORIZATION, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn takes_exactly_one_bearer_header() {
        assert_eq!(
            bearer_token(&request(&["Bearer abc.def-_~+/=="], "/")),
            Ok("abc.def-_~+/==")
        );
        assert_eq!(bearer_token(&request(&["bearer abc"], "/")), Ok("abc"));
        assert_eq!(bearer_token(&request(&[], "/")), Err(TokenError::Missing));
        let malformed = |r| Err(TokenError::Malformed { reason: r });
        assert_eq!(
            bearer_token(&request(&["Bearer a", "Bearer a"], "/")),
            malformed("more than one Authorization header")
        );
        assert_eq!(
            bearer_token(&request(&["Basic YTpi"], "/")),
            malformed("Authorization scheme is not Bearer")
        );
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer  a",
            "Bearer a,b",
            "Bearer =",
        ] {
            assert_eq!(
                bearer_token(&request(&[bad], "/")),
                malformed("Bearer token is not a b64token"),
                "{bad:?}"
            );
        }
        let long = format!("Bearer {}", "a".repeat(MAX_BEARER_LEN + 1));
        assert_eq!(
            bearer_token(&request(&[&long], "/")),
            Err(TokenError::TooLarge {
                len: MAX_BEARER_LEN + 1
            })
        );
    }

    #[test]
    fn the_b64token_table_is_the_rfc_6750_alphabet() {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";
        for c in 0..=255u8 {
            assert_eq!(B64TOKEN[usize::from(c)], alphabet.contains(&c), "byte {c}");
        }
    }

    #[test]
    fn refuses_tokens_in_the_query() {
        for uri in [
            "/v1/products?access_token=x",
            "/v1/products?a=1&ACCESS_TOKEN=x",
            "/x?access%5Ftoken=x",
        ] {
            assert_eq!(
                bearer_token(&request(&["Bearer abc"], uri)),
                Err(TokenError::Malformed {
                    reason: "access tokens are accepted in the Authorization header only"
                }),
                "{uri}"
            );
        }
        assert_eq!(
            bearer_token(&request(&["Bearer abc"], "/x?access_tokens=1")),
            Ok("abc")
        );
    }
}
