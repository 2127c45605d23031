//! The authorization server side: `POST /oauth2/token`, JWKS and RFC 8414 metadata.
//!
//! Partners use the `client_credentials` grant and authenticate with their TLS client
//! certificate (RFC 8705 `tls_client_auth`): the certificate maps to a partner, and the form's
//! `client_id` must be that partner's registered client id. The access token is a JWT
//! (RFC 9068 shape) bound to the certificate by `cnf.x5t#S256`.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SecureRandom;
use http::StatusCode;
use serde::Serialize;

use gateway_core::time::UnixTime;
use gateway_core::{ClientId, PartnerId, PeerIdentity, Scope, ScopeSet};

use crate::form::Form;
use crate::jwt;
use crate::keys::KeySet;
use crate::oauth_error::{OAuthError, json_response};

/// The authorization server's own settings (from `gateway.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSettings {
    /// `iss` of issued tokens; also the RFC 8414 `issuer`.
    pub issuer: String,
    /// `aud` of issued tokens.
    pub audience: String,
    /// How long an issued token is valid.
    pub lifetime: Duration,
    /// Clock skew tolerated when checking `exp`, `nbf` and `iat`.
    pub leeway: Duration,
}

/// A partner's OAuth client, as the integrator fills it from the partner's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRegistration {
    /// The partner.
    pub partner: PartnerId,
    /// Its registered client id.
    pub client_id: ClientId,
    /// The scopes it may be granted.
    pub scopes: ScopeSet,
    /// `false` while the partner is suspended: no token is issued.
    pub active: bool,
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenResponse {
    /// The signed JWT.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The scopes granted.
    pub scope: ScopeSet,
    /// Its `jti` (for the audit record).
    pub jti: String,
    /// Its `exp`.
    pub expires_at: UnixTime,
}

impl TokenResponse {
    /// `{"access_token", "token_type": "Bearer", "expires_in", "scope"}`.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Wire<'a> {
            access_token: &'a str,
            token_type: &'static str,
            expires_in: u64,
            scope: String,
        }
        let wire = Wire {
            access_token: &self.access_token,
            token_type: "Bearer",
            expires_in: self.expires_in,
            scope: self.scope.to_string(),
        };
        // A struct of strings and integers always serialises.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// The 200 response, with `Cache-Control: no-store` and `Pragma: no-cache`.
    pub fn into_response<B: From<bytes::Bytes>>(&self) -> http::Response<B> {
        json_response(StatusCode::OK, self.to_json())
    }
}

/// The gateway's authorization server: its settings and keys. Immutable; a reload or key
/// rotation builds a new one (see [`crate::TokenVerifier::set_issuer`]).
#[derive(Debug)]
pub struct Issuer {
    settings: IssuerSettings,
    keys: KeySet,
}

impl Issuer {
    /// An issuer signing with the active key of `keys`.
    pub fn new(settings: IssuerSettings, keys: KeySet) -> Arc<Issuer> {
        Arc::new(Issuer { settings, keys })
    }

    /// The settings.
    pub fn settings(&self) -> &IssuerSettings {
        &self.settings
    }

    /// The keys.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Handles `POST /oauth2/token`.
    ///
    /// - `form`: the request body (the HTTP layer caps its size), `content_type`: the
    ///   `Content-Type` header value; only `application/x-www-form-urlencoded` is accepted.
    /// - `peer`: the verified client certificate of the connection.
    /// - `registration`: the OAuth registration of the partner that certificate maps to
    ///   (`None` when it maps to none).
    ///
    /// Render the result with [`TokenResponse::into_response`] or
    /// [`OAuthError::into_response`].
    pub fn token_request(
        &self,
        form: &[u8],
        content_type: Option<&str>,
        peer: &PeerIdentity,
        registration: Option<&ClientRegistration>,
        now: UnixTime,
    ) -> Result<TokenResponse, OAuthError> {
        let form = Form::parse(form, content_type)?;
        let registration = authenticate(&form, registration)?;
        match form.get("grant_type") {
            None => return Err(OAuthError::InvalidRequest("grant_type is required")),
            Some("client_credentials") => {}
            Some(_) => return Err(OAuthError::UnsupportedGrantType),
        }
        let scope = match form.get("scope") {
            None => registration.scopes,
            Some(text) => {
                let requested = ScopeSet::parse_space_separated(text)
                    .map_err(|_| OAuthError::InvalidScope("a requested scope is unknown"))?;
                if !requested.is_subset(registration.scopes) {
                    return Err(OAuthError::InvalidScope(
                        "a requested scope is not allowed for this client",
                    ));
                }
                requested
            }
        };
        if scope.is_empty() {
            return Err(OAuthError::InvalidScope(
                "no scope is allowed for this client",
            ));
        }
        self.issue(registration, scope, &peer.fingerprint, now)
    }

    /// Issues a token to `registration` with `scope`, bound to the certificate `bound_to`.
    ///
    /// [`Issuer::token_request`] calls this after authenticating the client; it is public for
    /// tests and tools that need a token without a form.
    pub fn issue(
        &self,
        registration: &ClientRegistration,
        scope: ScopeSet,
        bound_to: &gateway_core::Fingerprint,
        now: UnixTime,
    ) -> Result<TokenResponse, OAuthError> {
        let lifetime = i64::try_from(self.settings.lifetime.as_secs()).unwrap_or(i64::MAX);
        let exp = now.0.saturating_add(lifetime);
        let jti = random_jti()?;
        let claims = Claims {
            iss: &self.settings.issuer,
            aud: &self.settings.audience,
            sub: registration.partner.as_str(),
            client_id: registration.client_id.as_str(),
            scope: scope.to_string(),
            iat: now.0,
            nbf: now.0,
            exp,
            jti: &jti,
            cnf: Cnf {
                x5t_s256: jwt::thumbprint(bound_to),
            },
        };
        let access_token = self.sign(&claims)?;
        Ok(TokenResponse {
            access_token,
            expires_in: self.settings.lifetime.as_secs(),
            scope,
            jti,
            expires_at: UnixTime(exp),
        })
    }

    /// The JWKS document for `GET /jwks.json`.
    pub fn jwks(&self) -> &[u8] {
        self.keys.jwks()
    }

    /// The JWKS response: 200, `application/json`, cacheable for five minutes so relying
    /// parties pick up a `Next` key well before it signs.
    pub fn jwks_response<B: From<bytes::Bytes>>(&self) -> http::Response<B> {
        cacheable_json(self.jwks().to_vec())
    }

    /// The RFC 8414 metadata for `GET /.well-known/oauth-authorization-server`.
    ///
    /// `base_url` is the partner listener's public origin, e.g. `https://api.example:8443`;
    /// endpoint URLs are built from it.
    pub fn metadata(&self, base_url: &str) -> serde_json::Value {
        let base = base_url.trim_end_matches('/');
        let scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        serde_json::json!({
            "issuer": self.settings.issuer,
            "token_endpoint": format!("{base}/oauth2/token"),
            "revocation_endpoint": format!("{base}/oauth2/revoke"),
            "jwks_uri": format!("{base}/jwks.json"),
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["tls_client_auth"],
            "revocation_endpoint_auth_methods_supported": ["tls_client_auth"],
            "tls_client_certificate_bound_access_tokens": true,
            "scopes_supported": scopes,
        })
    }

    /// The metadata response: 200, `application/json`, cacheable for five minutes.
    pub fn metadata_response<B: From<bytes::Bytes>>(&self, base_url: &str) -> http::Response<B> {
        // A `Value` built from strings always serialises.
        cacheable_json(serde_json::to_vec(&self.metadata(base_url)).unwrap_or_default())
    }

    fn sign(&self, claims: &Claims<'_>) -> Result<String, OAuthError> {
        let header = serde_json::json!({
            "alg": self.keys.active_algorithm().name(),
            "typ": jwt::ACCESS_TOKEN_TYP,
            "kid": self.keys.active_kid(),
        });
        let header = serde_json::to_vec(&header).map_err(|_| OAuthError::ServerError)?;
        let payload = serde_json::to_vec(claims).map_err(|_| OAuthError::ServerError)?;
        let mut token = jwt::encode(&header);
        token.push('.');
        token.push_str(&jwt::encode(&payload));
        let signature = self.keys.sign(token.as_bytes()).map_err(|error| {
            tracing::error!(%error, "Token signing failed.");
            OAuthError::ServerError
        })?;
        token.push('.');
        token.push_str(&jwt::encode(&signature));
        Ok(token)
    }
}

// === helpers ===

/// The claims of an issued token (RFC 9068 §2.2 plus RFC 8705 `cnf`).
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    client_id: &'a str,
    scope: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: &'a str,
    cnf: Cnf,
}

#[derive(Serialize)]
struct Cnf {
    #[serde(rename = "x5t#S256")]
    x5t_s256: String,
}

/// `tls_client_auth` (RFC 8705 §2.1): the certificate identified the client; the form's
/// `client_id` must name that same client.
pub(crate) fn authenticate<'r>(
    form: &Form,
    registration: Option<&'r ClientRegistration>,
) -> Result<&'r ClientRegistration, OAuthError> {
    let Some(registration) = registration else {
        return Err(OAuthError::InvalidClient(
            "the client certificate is not registered to a client",
        ));
    };
    if form.get("client_secret").is_some() || form.get("client_assertion").is_some() {
        return Err(OAuthError::InvalidRequest(
            "clients authenticate with their TLS certificate (tls_client_auth) only",
        ));
    }
    let Some(client_id) = form.get("client_id") else {
        return Err(OAuthError::InvalidRequest("client_id is required"));
    };
    if client_id != registration.client_id.as_str() {
        return Err(OAuthError::InvalidClient(
            "client_id does not belong to the client certificate",
        ));
    }
    if !registration.active {
        return Err(OAuthError::InvalidClient("the client is suspended"));
    }
    Ok(registration)
}

/// 128 random bits, base64url: unguessable and unique without coordination.
fn random_jti() -> Result<String, OAuthError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| OAuthError::ServerError)?;
    Ok(jwt::encode(&bytes))
}

fn cacheable_json<B: From<bytes::Bytes>>(body: Vec<u8>) -> http::Response<B> {
    let mut response = http::Response::new(B::from(bytes::Bytes::from(body)));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=300"),
    );
    response
}
