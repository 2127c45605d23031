//! Tokens from external authorization servers.
//!
//! An [`ExternalIssuer`] accepts tokens another authorization server issued to a partner:
//!
//! - **JWTs** verified against the issuer's JWKS, fetched over HTTP and kept for a bounded
//!   time (`refresh`). A token naming an unknown `kid` triggers a refetch, at most once per
//!   `min_refetch_interval`, so a flood of made-up `kid`s cannot hammer the issuer. The
//!   algorithm allow-list is `ES256`, `EdDSA`, `RS256`, `PS256`, and a key verifies only
//!   under its own algorithm (from the JWK's `alg`, or implied by its `kty`/`crv`).
//! - **Opaque tokens** checked by RFC 7662 introspection through the `oauth2` crate's client.
//!   Answers are cached until the earlier of `cache_ttl` and the token's `exp`.
//!
//! The same rules as for the gateway's own tokens apply: `cnf.x5t#S256` must be the
//! connection's certificate (RFC 8705 §3.2 for introspection answers), the token's
//! `client_id` must map to the connection's partner, and the scopes come from `scope`
//! (unknown names are ignored). Revocation is the external server's business: an introspected
//! token is re-checked when its cached answer runs out; a JWT is valid until `exp`.
//!
//! HTTP goes through an [`HttpClient`] the integrator provides, so the deployment can use the
//! gateway's own hyper client (with a client certificate for mTLS to the issuer).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenResponse, BasicTokenType,
};
use oauth2::{
    AccessToken, AuthType, EndpointNotSet, EndpointSet, ExtraTokenFields, IntrospectionUrl,
    StandardRevocableToken, StandardTokenIntrospectionResponse, TokenIntrospectionResponse,
};
use serde::{Deserialize, Serialize};

use gateway_core::time::UnixTime;
use gateway_core::{ClientId, Fingerprint, PartnerId, Scope, ScopeSet, TokenClaims};
use gateway_store::RevocationStore;

use crate::jwt::{self, Audience, Confirmation};
use crate::keys::{JwsAlgorithm, VerifyingKey, truncate};
use crate::verify::{TokenError, TokenVerifier, VerifyToken, check_connection};

/// An HTTP exchange failed (connect, TLS, timeout, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(pub String);

type HttpFuture = Pin<Box<dyn Future<Output = Result<http::Response<Vec<u8>>, HttpError>> + Send>>;

/// The HTTP client external checks use: any async function from `http::Request<Vec<u8>>` to
/// `http::Response<Vec<u8>>`. The integrator wraps the gateway's hyper client (with its client
/// certificate for mTLS to the issuer); tests wrap a plain hyper client.
///
/// The function must bound what it does: a timeout for the whole exchange and a limit on the
/// response body (a JWKS or introspection answer is a few KiB). This crate reads whatever
/// `Vec<u8>` it is handed.
#[derive(Clone)]
pub struct HttpClient(Arc<dyn Fn(http::Request<Vec<u8>>) -> HttpFuture + Send + Sync>);

impl HttpClient {
    /// Wraps an async function.
    pub fn new<F, Fut>(call: F) -> HttpClient
    where
        F: Fn(http::Request<Vec<u8>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<http::Response<Vec<u8>>, HttpError>> + Send + 'static,
    {
        HttpClient(Arc::new(move |request| Box::pin(call(request))))
    }

    /// Sends one request.
    pub fn call(&self, request: http::Request<Vec<u8>>) -> HttpFuture {
        (self.0)(request)
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpClient")
    }
}

/// One external authorization server, as the integrator fills it from the configuration.
#[derive(Debug, Clone)]
pub struct ExternalIssuerSettings {
    /// Its `iss`.
    pub issuer: String,
    /// The `aud` its tokens must carry for this gateway.
    pub audience: String,
    /// How its tokens are checked.
    pub check: ExternalCheck,
    /// Its OAuth client ids → the partner each belongs to (only partners it may issue for).
    pub clients: HashMap<ClientId, PartnerId>,
    /// Clock skew tolerated on `exp`, `nbf`, `iat`.
    pub leeway: Duration,
    /// How many checked tokens to keep.
    pub cache_capacity: usize,
}

/// How tokens of an external issuer are checked.
#[derive(Clone)]
pub enum ExternalCheck {
    /// JWTs verified against the issuer's JWKS.
    Jwks {
        /// JWKS URL.
        url: String,
        /// How long a fetched key set is used before it is fetched again.
        refresh: Duration,
        /// The least time between two fetches caused by an unknown `kid`.
        min_refetch_interval: Duration,
    },
    /// Opaque tokens checked by RFC 7662 introspection.
    Introspection {
        /// Introspection endpoint URL.
        url: String,
        /// The gateway's client id at the issuer.
        client_id: String,
        /// Its client secret (HTTP Basic); `None` when the HTTP client authenticates with a
        /// certificate and `client_id` goes in the body.
        client_secret: Option<String>,
        /// Upper bound on how long an answer is cached.
        cache_ttl: Duration,
    },
}

impl fmt::Debug for ExternalCheck {
    /// Never prints the client secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExternalCheck::Jwks {
                url,
                refresh,
                min_refetch_interval,
            } => f
                .debug_struct("Jwks")
                .field("url", url)
                .field("refresh", refresh)
                .field("min_refetch_interval", min_refetch_interval)
                .finish(),
            ExternalCheck::Introspection {
                url,
                client_id,
                cache_ttl,
                ..
            } => f
                .debug_struct("Introspection")
                .field("url", url)
                .field("client_id", client_id)
                .field("cache_ttl", cache_ttl)
                .finish_non_exhaustive(),
        }
    }
}

/// Why an external issuer could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalError {
    /// The introspection URL does not parse.
    #[error("introspection URL {url:?} is not valid")]
    BadUrl {
        /// The URL.
        url: String,
    },
}

/// Verifies tokens of one external authorization server. Cheap to clone.
#[derive(Clone)]
pub struct ExternalIssuer {
    shared: Arc<ExternalShared>,
}

impl fmt::Debug for ExternalIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalIssuer")
            .field("issuer", &self.shared.settings.issuer)
            .finish()
    }
}

impl ExternalIssuer {
    /// An issuer checked with `settings`, reaching it through `http`.
    pub fn new(settings: ExternalIssuerSettings, http: HttpClient) -> Result<Self, ExternalError> {
        let mode = match &settings.check {
            ExternalCheck::Jwks { .. } => Mode::Jwks(JwksState {
                snapshot: RwLock::new(None),
                last_fetch: AtomicI64::new(i64::MIN),
                fetching: tokio::sync::Mutex::new(()),
            }),
            ExternalCheck::Introspection {
                url,
                client_id,
                client_secret,
                ..
            } => {
                let url = IntrospectionUrl::new(url.clone())
                    .map_err(|_| ExternalError::BadUrl { url: url.clone() })?;
                let client: IntrospectionClient =
                    oauth2::Client::new(oauth2::ClientId::new(client_id.clone()))
                        .set_introspection_url(url);
                let client = match client_secret {
                    Some(secret) => client
                        .set_client_secret(oauth2::ClientSecret::new(secret.clone()))
                        .set_auth_type(AuthType::BasicAuth),
                    None => client.set_auth_type(AuthType::RequestBody),
                };
                Mode::Introspection(Box::new(client))
            }
        };
        let capacity = settings.cache_capacity.max(1);
        Ok(ExternalIssuer {
            shared: Arc::new(ExternalShared {
                settings,
                http,
                mode,
                cache: quick_cache::sync::Cache::new(capacity),
            }),
        })
    }

    /// Its `iss`.
    pub fn issuer(&self) -> &str {
        &self.shared.settings.issuer
    }

    /// Whether it checks opaque tokens (introspection) rather than JWTs.
    pub fn is_introspection(&self) -> bool {
        matches!(self.shared.mode, Mode::Introspection(_))
    }

    /// Verifies `token` presented over `peer` by `partner` at `now`.
    pub async fn verify(
        &self,
        token: &str,
        peer: &Fingerprint,
        partner: &PartnerId,
        now: UnixTime,
    ) -> Result<TokenClaims, TokenError> {
        if let Some(answer) = self.verify_cached(token, peer, partner, now) {
            return answer;
        }
        if token.len() > jwt::MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge { len: token.len() });
        }
        let shared = &*self.shared;
        let answer = match &shared.mode {
            Mode::Jwks(state) => self.verify_jwt(state, token, now).await?,
            Mode::Introspection(client) => self.introspect(client, token, now).await?,
        };
        shared.cache.insert(Arc::from(token), answer.clone());
        answer.check(peer, partner, now, self.leeway())
    }

    /// A cache hit still current at `now`, checked against this connection.
    pub fn verify_cached(
        &self,
        token: &str,
        peer: &Fingerprint,
        partner: &PartnerId,
        now: UnixTime,
    ) -> Option<Result<TokenClaims, TokenError>> {
        let shared = &*self.shared;
        let answer = shared.cache.get(token)?;
        if now.0 >= answer.cached_until {
            shared.cache.remove(token);
            return None;
        }
        if let (Mode::Jwks(state), Some(kid)) = (&shared.mode, &answer.kid) {
            // A key dropped from the issuer's JWKS stops verifying once we have refetched it.
            if state
                .fresh_snapshot(now, self.refresh())
                .is_none_or(|s| s.key(kid).is_none())
            {
                return None;
            }
        }
        Some(answer.check(peer, partner, now, self.leeway()))
    }

    fn leeway(&self) -> i64 {
        i64::try_from(self.shared.settings.leeway.as_secs()).unwrap_or(i64::MAX)
    }

    fn refresh(&self) -> i64 {
        match &self.shared.settings.check {
            ExternalCheck::Jwks { refresh, .. } => secs(*refresh),
            ExternalCheck::Introspection { .. } => 0,
        }
    }

    // === JWT ===

    async fn verify_jwt(
        &self,
        state: &JwksState,
        token: &str,
        now: UnixTime,
    ) -> Result<Answer, TokenError> {
        let settings = &self.shared.settings;
        let compact = jwt::split(token)?;
        let header = &compact.header;
        if !matches!(header.alg.as_str(), "ES256" | "EdDSA" | "RS256" | "PS256") {
            return Err(TokenError::AlgorithmNotAllowed {
                alg: truncate(&header.alg),
            });
        }
        let kid = header.kid.as_deref().unwrap_or_default();
        let snapshot = self.key_set_with(state, kid, now).await?;
        let key = snapshot
            .key(kid)
            .ok_or_else(|| TokenError::UnknownKey { kid: truncate(kid) })?;
        key.verify(&header.alg, compact.signing_input, &compact.signature)?;

        let claims: ExternalClaims = jwt::payload(compact.payload)?;
        if claims.iss != settings.issuer {
            return Err(TokenError::WrongIssuer {
                iss: truncate(&claims.iss),
            });
        }
        if !claims.aud.contains(&settings.audience) {
            return Err(TokenError::WrongAudience);
        }
        jwt::check_times(claims.exp, claims.nbf, claims.iat, now, self.leeway())?;
        let bound_to = claims
            .cnf
            .as_ref()
            .and_then(|c| jwt::parse_thumbprint(&c.x5t_s256));
        let claims = self.claims(
            claims.client_id.as_deref(),
            claims.scope.as_deref(),
            claims.jti.as_deref(),
            claims.iat.unwrap_or(now.0),
            claims.exp,
            bound_to,
        )?;
        let cached_until = claims
            .expires_at
            .0
            .saturating_add(self.leeway())
            .saturating_add(1);
        Ok(Answer {
            claims: Some(claims),
            cached_until,
            kid: Some(kid.to_owned()),
        })
    }

    /// The key set to verify `kid` with: the cached one while fresh and holding `kid`,
    /// otherwise a refetch (rate-limited for unknown `kid`s).
    async fn key_set_with(
        &self,
        state: &JwksState,
        kid: &str,
        now: UnixTime,
    ) -> Result<Arc<Jwks>, TokenError> {
        let ExternalCheck::Jwks {
            url,
            min_refetch_interval,
            ..
        } = &self.shared.settings.check
        else {
            return Err(TokenError::Malformed {
                reason: "issuer does not publish keys",
            });
        };
        if let Some(snapshot) = state.fresh_snapshot(now, self.refresh())
            && snapshot.key(kid).is_some()
        {
            return Ok(snapshot);
        }
        // One fetch at a time; whoever waited re-reads what the fetch brought.
        let _fetching = state.fetching.lock().await;
        let fresh = state.fresh_snapshot(now, self.refresh());
        if let Some(snapshot) = &fresh {
            if snapshot.key(kid).is_some() {
                return Ok(snapshot.clone());
            }
            let since = now
                .0
                .saturating_sub(state.last_fetch.load(Ordering::Acquire));
            if since < secs(*min_refetch_interval) {
                return Ok(snapshot.clone());
            }
        }
        state.last_fetch.store(now.0, Ordering::Release);
        match self.fetch_jwks(url).await {
            Ok(keys) => {
                let snapshot = Arc::new(Jwks {
                    keys,
                    fetched_at: now.0,
                });
                *state.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(snapshot.clone());
                Ok(snapshot)
            }
            Err(reason) => {
                tracing::warn!(issuer = %self.issuer(), %reason, "JWKS fetch failed.");
                // A fresh set (fetched within `refresh`) still serves the kids it has.
                fresh.ok_or(TokenError::IssuerUnavailable {
                    issuer: self.issuer().to_owned(),
                    reason,
                })
            }
        }
    }

    async fn fetch_jwks(&self, url: &str) -> Result<Vec<VerifyingKey>, String> {
        let request = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        let response = self
            .shared
            .http
            .call(request)
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("JWKS answered {}", response.status()));
        }
        let document: JwksDocument = serde_json::from_slice(response.body())
            .map_err(|e| format!("JWKS is not valid: {e}"))?;
        Ok(document
            .keys
            .into_iter()
            .filter_map(Jwk::into_key)
            .collect())
    }

    // === introspection ===

    async fn introspect(
        &self,
        client: &IntrospectionClient,
        token: &str,
        now: UnixTime,
    ) -> Result<Answer, TokenError> {
        let settings = &self.shared.settings;
        let ExternalCheck::Introspection { cache_ttl, .. } = &settings.check else {
            return Err(TokenError::Malformed {
                reason: "issuer does not introspect",
            });
        };
        let send = OAuthHttp(self.shared.http.clone());
        let access_token = AccessToken::new(token.to_owned());
        let response = client
            .introspect(&access_token)
            .request_async(&send)
            .await
            .map_err(|error| {
                tracing::warn!(issuer = %self.issuer(), %error, "Introspection failed.");
                TokenError::IssuerUnavailable {
                    issuer: self.issuer().to_owned(),
                    reason: error.to_string(),
                }
            })?;
        let ttl_until = now.0.saturating_add(secs(*cache_ttl));
        if !response.active() {
            return Ok(Answer::inactive(ttl_until));
        }
        if let Some(iss) = response.iss()
            && iss != settings.issuer
        {
            return Err(TokenError::WrongIssuer { iss: truncate(iss) });
        }
        if let Some(aud) = response.aud()
            && !aud.contains(&settings.audience)
        {
            return Err(TokenError::WrongAudience);
        }
        let exp = response.exp().map(|t| t.timestamp());
        let nbf = response.nbf().map(|t| t.timestamp());
        let iat = response.iat().map(|t| t.timestamp());
        let expires_at = exp.unwrap_or(ttl_until);
        jwt::check_times(expires_at, nbf, iat, now, self.leeway())?;
        let scope = response
            .scopes()
            .map(|s| s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "));
        let bound_to = response
            .extra_fields()
            .cnf
            .as_ref()
            .and_then(|c| jwt::parse_thumbprint(&c.x5t_s256));
        let claims = self.claims(
            response.client_id().map(|c| c.as_str()),
            scope.as_deref(),
            response.jti(),
            iat.unwrap_or(now.0),
            expires_at,
            bound_to,
        )?;
        let cached_until = ttl_until.min(expires_at.saturating_add(1));
        Ok(Answer {
            claims: Some(claims),
            cached_until,
            kid: None,
        })
    }

    /// Builds the claims common to both kinds, mapping the client to its partner.
    fn claims(
        &self,
        client_id: Option<&str>,
        scope: Option<&str>,
        jti: Option<&str>,
        iat: i64,
        exp: i64,
        bound_to: Option<Fingerprint>,
    ) -> Result<TokenClaims, TokenError> {
        let client_id = client_id.ok_or(TokenError::Malformed {
            reason: "client_id is missing",
        })?;
        let client_id = ClientId::parse(client_id).map_err(|_| TokenError::Malformed {
            reason: "client_id is not valid",
        })?;
        let Some(partner) = self.shared.settings.clients.get(&client_id) else {
            return Err(TokenError::UnknownClient {
                client_id: truncate(client_id.as_str()),
            });
        };
        let bound_to = bound_to.ok_or(TokenError::Malformed {
            reason: "token is not bound to a certificate (no cnf.x5t#S256)",
        })?;
        let scopes: ScopeSet = scope
            .unwrap_or_default()
            .split(' ')
            .filter_map(Scope::parse)
            .collect();
        Ok(TokenClaims {
            partner: partner.clone(),
            client_id,
            scopes,
            jti: Arc::from(jti.unwrap_or_default()),
            issued_at: UnixTime(iat),
            expires_at: UnixTime(exp),
            bound_to,
        })
    }
}

/// The gateway's own tokens and every external issuer behind one [`VerifyToken`].
///
/// A JWT goes to the verifier whose issuer matches its (not yet verified) `iss`; that verifier
/// then checks the signature with its own keys only, so the routing cannot be abused. An opaque
/// token goes to the introspecting issuer, if there is one.
pub struct Verifiers<R> {
    own: TokenVerifier<R>,
    external: Vec<ExternalIssuer>,
}

impl<R: RevocationStore + 'static> Verifiers<R> {
    /// The gateway's own verifier plus `external` issuers.
    pub fn new(own: TokenVerifier<R>, external: Vec<ExternalIssuer>) -> Self {
        Verifiers { own, external }
    }

    /// The gateway's own verifier.
    pub fn own(&self) -> &TokenVerifier<R> {
        &self.own
    }

    fn route(&self, token: &str) -> Result<Route<'_>, TokenError> {
        if token.len() > jwt::MAX_TOKEN_LEN {
            return Err(TokenError::TooLarge { len: token.len() });
        }
        if token.bytes().filter(|b| *b == b'.').count() != 2 {
            return match self.external.iter().find(|e| e.is_introspection()) {
                Some(issuer) => Ok(Route::External(issuer)),
                None => Err(TokenError::Malformed {
                    reason: "not a compact JWS",
                }),
            };
        }
        #[derive(Deserialize)]
        struct Iss {
            #[serde(default)]
            iss: Option<String>,
        }
        let payload = token.split('.').nth(1).unwrap_or_default();
        let iss: Iss = jwt::payload(payload)?;
        let iss = iss.iss.unwrap_or_default();
        if iss == self.own.issuer().settings().issuer {
            return Ok(Route::Own);
        }
        self.external
            .iter()
            .find(|e| !e.is_introspection() && e.issuer() == iss)
            .map(Route::External)
            .ok_or_else(|| TokenError::WrongIssuer {
                iss: truncate(&iss),
            })
    }
}

enum Route<'a> {
    Own,
    External(&'a ExternalIssuer),
}

impl<R: RevocationStore + 'static> VerifyToken for Verifiers<R> {
    async fn verify(
        &self,
        token: &str,
        peer: &Fingerprint,
        partner: &PartnerId,
        now: UnixTime,
    ) -> Result<TokenClaims, TokenError> {
        match self.route(token)? {
            Route::Own => self.own.verify(token, peer, partner, now).await,
            Route::External(issuer) => issuer.verify(token, peer, partner, now).await,
        }
    }

    fn verify_cached(
        &self,
        token: &str,
        peer: &Fingerprint,
        partner: &PartnerId,
        now: UnixTime,
    ) -> Option<Result<TokenClaims, TokenError>> {
        // The own cache first: the common case costs no routing.
        if let Some(answer) = self.own.verify_cached(token, peer, partner, now) {
            return Some(answer);
        }
        self.external
            .iter()
            .find_map(|e| e.verify_cached(token, peer, partner, now))
    }
}

// === helpers ===

/// The integrator's client as the `oauth2` crate's HTTP client, with a named `Send` future.
struct OAuthHttp(HttpClient);

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttp {
    type Error = HttpError;
    type Future = HttpFuture;

    fn call(&'c self, request: oauth2::HttpRequest) -> HttpFuture {
        self.0.call(request)
    }
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

struct ExternalShared {
    settings: ExternalIssuerSettings,
    http: HttpClient,
    mode: Mode,
    /// Full token string → the checked answer (inactive answers too, so garbage is not
    /// re-introspected on every request).
    cache: quick_cache::sync::Cache<Arc<str>, Answer>,
}

enum Mode {
    Jwks(JwksState),
    Introspection(Box<IntrospectionClient>),
}

struct JwksState {
    snapshot: RwLock<Option<Arc<Jwks>>>,
    /// When the last fetch started (seconds), for the unknown-`kid` refetch limit.
    last_fetch: AtomicI64,
    /// Held while fetching, so concurrent misses cause one fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl JwksState {
    fn fresh_snapshot(&self, now: UnixTime, refresh: i64) -> Option<Arc<Jwks>> {
        let snapshot = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        (now.0.saturating_sub(snapshot.fetched_at) < refresh).then_some(snapshot)
    }
}

struct Jwks {
    keys: Vec<VerifyingKey>,
    fetched_at: i64,
}

impl Jwks {
    fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

/// A checked token (or an inactive answer), valid until `cached_until` (exclusive).
#[derive(Clone)]
struct Answer {
    claims: Option<TokenClaims>,
    cached_until: i64,
    /// The key that verified a JWT.
    kid: Option<String>,
}

impl Answer {
    fn inactive(until: i64) -> Answer {
        Answer {
            claims: None,
            cached_until: until,
            kid: None,
        }
    }

    fn check(
        &self,
        peer: &Fingerprint,
        partner: &PartnerId,
        now: UnixTime,
        leeway: i64,
    ) -> Result<TokenClaims, TokenError> {
        let claims = self.claims.as_ref().ok_or(TokenError::Inactive)?;
        check_connection(claims, peer, partner, now, leeway)?;
        Ok(claims.clone())
    }
}

#[derive(Deserialize)]
struct ExternalClaims {
    iss: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    cnf: Option<Confirmation>,
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

impl Jwk {
    /// The verifying key, or `None` for keys we do not use (encryption keys, unsupported
    /// curves, keys without `kid`, an `alg` that contradicts the key type).
    fn into_key(self) -> Option<VerifyingKey> {
        if self.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let kid = self.kid?;
        let b64 = |v: Option<String>| v.and_then(|v| jwt::decode(&v, "jwk").ok());
        match (self.kty.as_str(), self.crv.as_deref(), self.alg.as_deref()) {
            ("EC", Some("P-256"), None | Some("ES256")) => {
                let (x, y) = (b64(self.x)?, b64(self.y)?);
                if x.len() != 32 || y.len() != 32 {
                    return None;
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                VerifyingKey::es256(kid, &point)
            }
            ("OKP", Some("Ed25519"), None | Some("EdDSA")) => {
                VerifyingKey::ed25519(kid, &b64(self.x)?)
            }
            ("RSA", _, alg) => {
                let algorithm = match alg {
                    None | Some("RS256") => JwsAlgorithm::Rs256,
                    Some("PS256") => JwsAlgorithm::Ps256,
                    Some(_) => return None,
                };
                Some(VerifyingKey::rsa(
                    kid,
                    algorithm,
                    b64(self.n)?,
                    b64(self.e)?,
                ))
            }
            _ => None,
        }
    }
}

/// RFC 8705 §3.2: the introspection answer carries the certificate binding.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BindingFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cnf: Option<ConfirmationWire>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ConfirmationWire {
    #[serde(rename = "x5t#S256")]
    x5t_s256: String,
}

impl ExtraTokenFields for BindingFields {}

type IntrospectionClient = oauth2::Client<
    BasicErrorResponse,
    BasicTokenResponse,
    StandardTokenIntrospectionResponse<BindingFields, BasicTokenType>,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
>;
