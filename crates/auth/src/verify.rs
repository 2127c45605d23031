//! Verifying the gateway's own access tokens, with a hot-path cache that never lets a revoked
//! token or a token presented over another certificate through.
//!
//! # What a verification checks
//!
//! 1. size (at most 4 KiB) and compact-JWS shape;
//! 2. the header's `alg` is allow-listed (`ES256`, `EdDSA`), `typ` is `at+jwt`, the `kid`
//!    names a key of the current [`KeySet`](crate::KeySet), and that key's own algorithm is
//!    the header's `alg`; the signature verifies;
//! 3. `iss`, `aud`, and `exp`/`nbf`/`iat` with the configured leeway;
//! 4. `sub` is the partner of the connection, `cnf.x5t#S256` is the connection's certificate;
//! 5. the `jti` is not revoked.
//!
//! # The cache
//!
//! Steps 1–3 cost an ECDSA verification (~70 µs); steps 4–5 depend on the connection and on
//! time. The cache keeps, per full token string, the claims that passed 1–3 under a given key
//! set. A hit redoes 4 and the expiry check against *this* connection and *this* instant,
//! consults the in-memory revoked set, and skips the store only when the entry's revocation
//! check is still current:
//!
//! - `Change::TokenRevoked` notifications (from the store's broadcast) fill the revoked set;
//!   they are drained at the start of every verification, so a notification delivered before
//!   a request starts is always seen by it.
//! - `Change::Resync` (or a lagging receiver) bumps an epoch: every entry checked under an
//!   older epoch goes back to the store on its next use.
//! - Without a notification receiver, or once it has closed, every use goes to the store: the
//!   cache then saves only the signature check.
//! - A new key set (rotation, reload) invalidates every entry made under the old one, so a
//!   removed key stops verifying at once.
//!
//! If the store cannot be reached when a check is due, the token is refused
//! ([`TokenError::StoreUnavailable`], 503): revocation is never skipped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use serde::Deserialize;
use tokio::sync::broadcast::{self, error::TryRecvError};

use gateway_core::time::UnixTime;
use gateway_core::{
    ClientId, Fingerprint, PartnerId, PeerIdentity, ProblemType, ScopeSet, TokenClaims,
};
use gateway_store::{Change, RevocationStore};

use crate::issue::{ClientRegistration, Issuer};
use crate::jwt::{self, Audience, Confirmation};
use crate::keys::truncate;
use crate::oauth_error::OAuthError;
use crate::revoke::{self, Revocation};

/// Why an access token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `Authorization` header was sent.
    #[error("no access token was presented")]
    Missing,
    /// The token or the header carrying it is not well-formed.
    #[error("access token is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// The token is longer than [`crate::MAX_TOKEN_LEN`].
    #[error("access token is {len} bytes, more than the 4096 accepted")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The `kid` names no key the verifier holds (or is absent).
    #[error("access token names unknown key {kid:?}")]
    UnknownKey {
        /// The `kid`, truncated.
        kid: String,
    },
    /// The signature does not verify.
    #[error("access token signature does not verify")]
    BadSignature,
    /// The `alg` is not allow-listed, or is not the algorithm of the key named by `kid`.
    #[error("signature algorithm {alg:?} is not allowed")]
    AlgorithmNotAllowed {
        /// The `alg`, truncated.
        alg: String,
    },
    /// `exp` has passed (beyond the leeway).
    #[error("access token expired at {exp}")]
    Expired {
        /// The token's `exp`.
        exp: UnixTime,
    },
    /// `nbf` or `iat` lies in the future (beyond the leeway).
    #[error("access token is not valid before {nbf}")]
    NotYetValid {
        /// The offending `nbf` or `iat`.
        nbf: UnixTime,
    },
    /// `iss` is not a trusted issuer.
    #[error("access token was issued by {iss:?}, not by a trusted issuer")]
    WrongIssuer {
        /// The `iss`, truncated.
        iss: String,
    },
    /// `aud` does not name this gateway.
    #[error("access token is meant for another audience")]
    WrongAudience,
    /// `cnf.x5t#S256` is not the certificate of this connection.
    #[error("access token is bound to a different client certificate")]
    CertificateMismatch,
    /// The token was issued to another partner than the connection's.
    #[error("access token was issued to {token:?}, not to {connection}")]
    PartnerMismatch {
        /// The partner (or external client id) in the token.
        token: String,
        /// The partner of the connection.
        connection: PartnerId,
    },
    /// An external token names a client that belongs to no partner of this issuer.
    #[error("access token was issued to client {client_id:?}, unknown here")]
    UnknownClient {
        /// The `client_id`, truncated.
        client_id: String,
    },
    /// The `jti` is revoked.
    #[error("access token was revoked")]
    Revoked,
    /// An external authorization server says the token is not active (RFC 7662).
    #[error("access token is not active")]
    Inactive,
    /// The revocation state could not be read; the token is refused (fail closed).
    #[error("revocation state unavailable: {reason}")]
    StoreUnavailable {
        /// The store's error.
        reason: String,
    },
    /// An external authorization server (JWKS or introspection) could not be reached.
    #[error("authorization server {issuer} unavailable: {reason}")]
    IssuerUnavailable {
        /// Its `iss`.
        issuer: String,
        /// What failed.
        reason: String,
    },
}

impl TokenError {
    /// The problem this error answers with.
    pub fn problem_type(&self) -> ProblemType {
        ProblemType::from(self)
    }
}

impl From<&TokenError> for ProblemType {
    fn from(error: &TokenError) -> ProblemType {
        match error {
            TokenError::Missing
            | TokenError::Malformed { .. }
            | TokenError::TooLarge { .. }
            | TokenError::UnknownKey { .. }
            | TokenError::BadSignature
            | TokenError::AlgorithmNotAllowed { .. }
            | TokenError::Expired { .. }
            | TokenError::NotYetValid { .. }
            | TokenError::WrongIssuer { .. }
            | TokenError::WrongAudience
            | TokenError::UnknownClient { .. }
            | TokenError::Revoked
            | TokenError::Inactive => ProblemType::InvalidToken,
            // A token of another partner is necessarily bound to another certificate.
            TokenError::CertificateMismatch | TokenError::PartnerMismatch { .. } => {
                ProblemType::TokenCertificateMismatch
            }
            TokenError::StoreUnavailable { .. } => ProblemType::StoreUnavailable,
            TokenError::IssuerUnavailable { .. } => ProblemType::UpstreamUnavailable,
        }
    }
}

/// The pluggable token check of [`crate::RequireTokenLayer`].
///
/// Implemented by [`TokenVerifier`] (the gateway's own tokens), [`crate::Verifiers`] (own
/// and external issuers) and by closures `Fn(&str, &Fingerprint, &PartnerId, UnixTime) ->
/// impl Future<Output = Result<TokenClaims, TokenError>>` (tests).
pub trait VerifyToken: Send + Sync + 'static {
    /// Verifies `token` as presented over a connection whose certificate is `peer` and whose
    /// partner is `partner`, at `now`.
    fn verify<'a>(
        &'a self,
        token: &'a str,
        peer: &'a Fingerprint,
        partner: &'a PartnerId,
        now: UnixTime,
    ) -> impl Future<Output = Result<TokenClaims, TokenError>> + Send + 'a;

    /// Answers without I/O when it can (a cache hit whose revocation check is current), so the
    /// layer need not allocate a future. `None` means "call [`VerifyToken::verify`]".
    fn verify_cached(
        &self,
        _token: &str,
        _peer: &Fingerprint,
        _partner: &PartnerId,
        _now: UnixTime,
    ) -> Option<Result<TokenClaims, TokenError>> {
        None
    }
}

impl<F, Fut> VerifyToken for F
where
    F: Fn(&str, &Fingerprint, &PartnerId, UnixTime) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<TokenClaims, TokenError>> + Send + 'static,
{
    fn verify<'a>(
        &'a self,
        token: &'a str,
        peer: &'a Fingerprint,
        partner: &'a PartnerId,
        now: UnixTime,
    ) -> impl Future<Output = Result<TokenClaims, TokenError>> + Send + 'a {
        self(token, peer, partner, now)
    }
}

/// The default number of verified tokens kept (about 1 KiB each).
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// Verifies the gateway's own tokens against its [`Issuer`] and a [`RevocationStore`].
///
/// Cheap to clone: clones share the cache and the revocation state.
pub struct TokenVerifier<R> {
    shared: Arc<Shared<R>>,
}

/// Builds a [`TokenVerifier`].
pub struct TokenVerifierBuilder<R> {
    issuer: Arc<Issuer>,
    store: R,
    capacity: usize,
    notifications: Option<broadcast::Receiver<Change>>,
}

impl<R: RevocationStore + 'static> TokenVerifierBuilder<R> {
    /// How many verified tokens to keep (default [`DEFAULT_CACHE_CAPACITY`]).
    pub fn cache_capacity(mut self, entries: usize) -> Self {
        self.capacity = entries.max(1);
        self
    }

    /// The store's change notifications (`Store::subscribe()`). With them, a cache hit skips
    /// the store; without them every use checks the store.
    pub fn notifications(mut self, receiver: broadcast::Receiver<Change>) -> Self {
        self.notifications = Some(receiver);
        self
    }

    /// The verifier.
    pub fn build(self) -> TokenVerifier<R> {
        let lifetime = self.issuer.settings().lifetime.as_secs();
        let leeway = self.issuer.settings().leeway.as_secs();
        let listening = self.notifications.is_some();
        TokenVerifier {
            shared: Arc::new(Shared {
                issuer: ArcSwap::new(self.issuer),
                store: self.store,
                cache: quick_cache::sync::Cache::new(self.capacity),
                revocations: Revocations {
                    receiver: self.notifications.map(Mutex::new),
                    listening: AtomicBool::new(listening),
                    revoked: RwLock::new(HashMap::default()),
                    epoch: AtomicU64::new(1),
                    next_prune: AtomicU64::new(0),
                    retain_secs: AtomicU64::new(lifetime.saturating_add(leeway)),
                },
            }),
        }
    }
}

impl<R: RevocationStore + 'static> TokenVerifier<R> {
    /// A builder for a verifier of `issuer`'s tokens, checking revocations in `store`.
    pub fn builder(issuer: Arc<Issuer>, store: R) -> TokenVerifierBuilder<R> {
        TokenVerifierBuilder {
            issuer,
            store,
            capacity: DEFAULT_CACHE_CAPACITY,
            notifications: None,
        }
    }

    /// Replaces the issuer (a reload or key rotation). Cached verifications made under the old
    /// key set are redone on next use, so a removed key stops verifying at once.
    pub fn set_issuer(&self, issuer: Arc<Issuer>) {
        let settings = issuer.settings();
        let retain = settings
            .lifetime
            .as_secs()
            .saturating_add(settings.leeway.as_secs());
        // Never shorten how long revocations are remembered: tokens issued under a longer
        // lifetime may still be live.
        self.shared
            .revocations
            .retain_secs
            .fetch_max(retain, Ordering::Relaxed);
        self.shared.issuer.store(issuer);
    }

    /// The issuer in force.
    pub fn issuer(&self) -> Arc<Issuer> {
        self.shared.issuer.load_full()
    }

    /// The revocation store.
    pub fn store(&self) -> &R {
        &self.shared.store
    }

    /// Verifies `token` presented over the certificate `peer` by `partner` (see the module
    /// docs for every check).
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
        let shared = &*self.shared;
        let issuer = shared.issuer.load_full();
        let leeway = leeway(&issuer);
        let generation = issuer.keys().generation();
        let entry = match shared.cache.get(token) {
            Some(entry) if entry.generation == generation => entry,
            _ => {
                let claims = decode_own(token, &issuer, Some(now))?;
                let entry = Arc::new(CacheEntry {
                    claims,
                    generation,
                    checked_epoch: AtomicU64::new(NEVER_CHECKED),
                });
                // Cached before the connection checks: a stolen token replayed over another
                // certificate is then refused without a second signature verification.
                shared.cache.insert(Arc::from(token), entry.clone());
                entry
            }
        };
        check_connection(&entry.claims, peer, partner, now, leeway)?;
        if shared.revocations.is_revoked(&entry.claims.jti) {
            return Err(TokenError::Revoked);
        }
        // Taken before the store is asked: a resync during the call leaves the entry stale.
        let epoch = shared.revocations.epoch.load(Ordering::Acquire);
        match shared.store.is_token_revoked(&entry.claims.jti).await {
            Ok(false) => {}
            Ok(true) => {
                shared.revocations.note(&entry.claims.jti, now);
                return Err(TokenError::Revoked);
            }
            Err(error) => {
                tracing::warn!(%error, "Token refused: revocation state unavailable.");
                return Err(TokenError::StoreUnavailable {
                    reason: error.to_string(),
                });
            }
        }
        entry.checked_epoch.store(epoch, Ordering::Release);
        Ok(entry.claims.clone())
    }

    /// The I/O-free part of [`TokenVerifier::verify`]: `Some` when the cache can answer.
    pub fn verify_cached(
        &self,
        token: &str,
        peer: &Fingerprint,
        partner: &PartnerId,
        now: UnixTime,
    ) -> Option<Result<TokenClaims, TokenError>> {
        let shared = &*self.shared;
        shared.revocations.drain(now);
        if token.len() > jwt::MAX_TOKEN_LEN {
            return Some(Err(TokenError::TooLarge { len: token.len() }));
        }
        let issuer = shared.issuer.load();
        let entry = shared.cache.get(token)?;
        if entry.generation != issuer.keys().generation() {
            return None;
        }
        if let Err(error) = check_connection(&entry.claims, peer, partner, now, leeway(&issuer)) {
            return Some(Err(error));
        }
        if shared.revocations.is_revoked(&entry.claims.jti) {
            return Some(Err(TokenError::Revoked));
        }
        let current = shared.revocations.listening.load(Ordering::Acquire)
            && entry.checked_epoch.load(Ordering::Acquire)
                == shared.revocations.epoch.load(Ordering::Acquire);
        current.then(|| Ok(entry.claims.clone()))
    }

    /// Handles `POST /oauth2/revoke` (RFC 7009) and makes the revocation effective in this
    /// verifier at once, before the store's notification comes back. See
    /// [`crate::revoke_request`] for the rules.
    pub async fn revoke_request(
        &self,
        form: &[u8],
        content_type: Option<&str>,
        peer: &PeerIdentity,
        registration: Option<&ClientRegistration>,
        now: UnixTime,
    ) -> Result<Revocation, OAuthError> {
        let issuer = self.issuer();
        let outcome = revoke::revoke_request(
            &issuer,
            form,
            content_type,
            peer,
            registration,
            &self.shared.store,
            now,
        )
        .await?;
        if let Revocation::Revoked { jti } = &outcome {
            self.shared.revocations.note(jti, now);
        }
        Ok(outcome)
    }
}

impl<R> Clone for TokenVerifier<R> {
    fn clone(&self) -> Self {
        TokenVerifier {
            shared: self.shared.clone(),
        }
    }
}

impl<R> std::fmt::Debug for TokenVerifier<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("cached", &self.shared.cache.len())
            .finish_non_exhaustive()
    }
}

impl<R: RevocationStore + 'static> VerifyToken for TokenVerifier<R> {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        peer: &'a Fingerprint,
        partner: &'a PartnerId,
        now: UnixTime,
    ) -> impl Future<Output = Result<TokenClaims, TokenError>> + Send + 'a {
        TokenVerifier::verify(self, token, peer, partner, now)
    }

    fn verify_cached(
        &self,
        token: &str,
        peer: &Fingerprint,
        partner: &PartnerId,
        now: UnixTime,
    ) -> Option<Result<TokenClaims, TokenError>> {
        TokenVerifier::verify_cached(self, token, peer, partner, now)
    }
}

// === verification steps ===

/// Decodes and verifies one of our own tokens: shape, allow-listed algorithm, `typ`, key,
/// signature, `iss`, `aud`, and with `now` also `exp`/`nbf`/`iat`.
pub(crate) fn decode_own(
    token: &str,
    issuer: &Issuer,
    now: Option<UnixTime>,
) -> Result<TokenClaims, TokenError> {
    let compact = jwt::split(token)?;
    let header = &compact.header;
    // The allow-list comes first, before any key is looked up.
    if !matches!(header.alg.as_str(), "ES256" | "EdDSA") {
        return Err(TokenError::AlgorithmNotAllowed {
            alg: truncate(&header.alg),
        });
    }
    if !header.typ.as_deref().is_some_and(is_access_token_typ) {
        return Err(TokenError::Malformed {
            reason: "typ is not at+jwt",
        });
    }
    let kid = header.kid.as_deref().unwrap_or_default();
    let key = issuer
        .keys()
        .key(kid)
        .ok_or_else(|| TokenError::UnknownKey { kid: truncate(kid) })?;
    key.verify(&header.alg, compact.signing_input, &compact.signature)?;

    let claims: OwnClaims = jwt::payload(compact.payload)?;
    let settings = issuer.settings();
    if claims.iss != settings.issuer {
        return Err(TokenError::WrongIssuer {
            iss: truncate(&claims.iss),
        });
    }
    if !claims.aud.contains(&settings.audience) {
        return Err(TokenError::WrongAudience);
    }
    if let Some(now) = now {
        jwt::check_times(
            claims.exp,
            claims.nbf,
            Some(claims.iat),
            now,
            leeway(issuer),
        )?;
    }
    let malformed = |reason| TokenError::Malformed { reason };
    Ok(TokenClaims {
        partner: PartnerId::parse(&claims.sub).map_err(|_| malformed("sub is not a partner id"))?,
        client_id: ClientId::parse(&claims.client_id)
            .map_err(|_| malformed("client_id is not valid"))?,
        scopes: ScopeSet::parse_space_separated(&claims.scope)
            .map_err(|_| malformed("scope names an unknown scope"))?,
        jti: Arc::from(claims.jti),
        issued_at: UnixTime(claims.iat),
        expires_at: UnixTime(claims.exp),
        bound_to: jwt::parse_thumbprint(&claims.cnf.x5t_s256)
            .ok_or_else(|| malformed("cnf.x5t#S256 is not a SHA-256 thumbprint"))?,
    })
}

/// The checks that depend on the connection and the instant: expiry, partner, certificate.
pub(crate) fn check_connection(
    claims: &TokenClaims,
    peer: &Fingerprint,
    partner: &PartnerId,
    now: UnixTime,
    leeway: i64,
) -> Result<(), TokenError> {
    if now.0 > claims.expires_at.0.saturating_add(leeway) {
        return Err(TokenError::Expired {
            exp: claims.expires_at,
        });
    }
    if claims.partner != *partner {
        return Err(TokenError::PartnerMismatch {
            token: claims.partner.to_string(),
            connection: partner.clone(),
        });
    }
    if claims.bound_to != *peer {
        return Err(TokenError::CertificateMismatch);
    }
    Ok(())
}

fn is_access_token_typ(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
}

pub(crate) fn leeway(issuer: &Issuer) -> i64 {
    i64::try_from(issuer.settings().leeway.as_secs()).unwrap_or(i64::MAX)
}

#[derive(Deserialize)]
struct OwnClaims {
    iss: String,
    aud: Audience,
    sub: String,
    client_id: String,
    scope: String,
    iat: i64,
    #[serde(default)]
    nbf: Option<i64>,
    exp: i64,
    jti: String,
    cnf: Confirmation,
}

// === shared state ===

/// `checked_epoch` of an entry whose revocation state was never read from the store.
const NEVER_CHECKED: u64 = 0;

struct Shared<R> {
    /// The issuer in force; replaced on reload.
    issuer: ArcSwap<Issuer>,
    store: R,
    /// Full token string → claims verified under a key set.
    cache: quick_cache::sync::Cache<Arc<str>, Arc<CacheEntry>>,
    revocations: Revocations,
}

struct CacheEntry {
    claims: TokenClaims,
    /// The [`crate::KeySet`] generation the signature was verified under.
    generation: u64,
    /// The revocation epoch at which the store last said "not revoked".
    checked_epoch: AtomicU64,
}

/// What this verifier knows about revocations between store reads.
struct Revocations {
    /// The store's notifications, drained at the start of every verification. The mutex is
    /// held only while draining; nothing awaits under it.
    receiver: Option<Mutex<broadcast::Receiver<Change>>>,
    /// Whether notifications can be trusted to be complete: false without a receiver or once
    /// it has closed, and then every use checks the store.
    listening: AtomicBool,
    /// Revoked `jti`s learned from notifications or from our own revocations, with when we
    /// learned them (to forget them once every token they could name has expired).
    revoked: RwLock<HashMap<Arc<str>, i64, quick_cache::DefaultHashBuilder>>,
    /// Bumped when notifications may have been missed (resync, lag, forgetting).
    epoch: AtomicU64,
    /// When to next forget old revocations.
    next_prune: AtomicU64,
    /// How long a revocation must be remembered: the longest token lifetime plus leeway.
    retain_secs: AtomicU64,
}

impl Revocations {
    fn is_revoked(&self, jti: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains_key(jti)
    }

    fn note(&self, jti: &str, now: UnixTime) {
        self.revoked
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(Arc::from(jti), now.0);
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Applies every notification delivered so far.
    fn drain(&self, now: UnixTime) {
        if let Some(receiver) = &self.receiver {
            let mut receiver = receiver
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            loop {
                match receiver.try_recv() {
                    Ok(Change::TokenRevoked { jti }) => self.note(&jti, now),
                    Ok(Change::Resync) | Err(TryRecvError::Lagged(_)) => self.bump(),
                    Ok(Change::Consent { .. }) => {}
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => {
                        if self.listening.swap(false, Ordering::AcqRel) {
                            tracing::warn!(
                                "Revocation notifications closed; checking the store on every use."
                            );
                        }
                        break;
                    }
                }
            }
        }
        self.prune(now);
    }

    /// Forgets revocations older than any token they could name. Rare (once per retention
    /// period) and followed by an epoch bump, so no cached entry relies on a forgotten one.
    fn prune(&self, now: UnixTime) {
        let now_secs = u64::try_from(now.0).unwrap_or(0);
        let due = self.next_prune.load(Ordering::Relaxed);
        if now_secs < due {
            return;
        }
        let retain = self.retain_secs.load(Ordering::Relaxed);
        if self
            .next_prune
            .compare_exchange(
                due,
                now_secs.saturating_add(retain.max(1)),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return;
        }
        let cutoff = now
            .0
            .saturating_sub(i64::try_from(retain).unwrap_or(i64::MAX));
        let mut revoked = self
            .revoked
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before = revoked.len();
        revoked.retain(|_, learned| *learned >= cutoff);
        if revoked.len() != before {
            self.bump();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_token_error_maps_to_a_problem() {
        let partner = PartnerId::parse("demo-bank").unwrap();
        let cases = [
            (TokenError::Missing, ProblemType::InvalidToken),
            (
                TokenError::Malformed { reason: "x" },
                ProblemType::InvalidToken,
            ),
            (
                TokenError::TooLarge { len: 5000 },
                ProblemType::InvalidToken,
            ),
            (
                TokenError::UnknownKey { kid: "k".into() },
                ProblemType::InvalidToken,
            ),
            (TokenError::BadSignature, ProblemType::InvalidToken),
            (
                TokenError::AlgorithmNotAllowed { alg: "none".into() },
                ProblemType::InvalidToken,
            ),
            (
                TokenError::Expired { exp: UnixTime(1) },
                ProblemType::InvalidToken,
            ),
            (
                TokenError::NotYetValid { nbf: UnixTime(1) },
                ProblemType::InvalidToken,
            ),
            (
                TokenError::WrongIssuer { iss: "i".into() },
                ProblemType::InvalidToken,
            ),
            (TokenError::WrongAudience, ProblemType::InvalidToken),
            (
                TokenError::CertificateMismatch,
                ProblemType::TokenCertificateMismatch,
            ),
            (
                TokenError::PartnerMismatch {
                    token: "a".into(),
                    connection: partner,
                },
                ProblemType::TokenCertificateMismatch,
            ),
            (
                TokenError::UnknownClient {
                    client_id: "c".into(),
                },
                ProblemType::InvalidToken,
            ),
            (TokenError::Revoked, ProblemType::InvalidToken),
            (TokenError::Inactive, ProblemType::InvalidToken),
            (
                TokenError::StoreUnavailable { reason: "r".into() },
                ProblemType::StoreUnavailable,
            ),
            (
                TokenError::IssuerUnavailable {
                    issuer: "i".into(),
                    reason: "r".into(),
                },
                ProblemType::UpstreamUnavailable,
            ),
        ];
        for (error, problem) in cases {
            assert_eq!(error.problem_type(), problem, "{error:?}");
            assert!(!error.to_string().is_empty());
        }
    }

    proptest::proptest! {
        #[test]
        fn parsing_a_token_never_panics(token in "\\PC{0,300}") {
            let _ = jwt::split(&token);
            let _ = jwt::payload::<OwnClaims>(&token);
        }

        #[test]
        fn parsing_jws_shaped_garbage_never_panics(
            header in "[A-Za-z0-9_-]{0,80}",
            payload in "[A-Za-z0-9_-]{0,80}",
            signature in "[A-Za-z0-9_-]{0,90}",
        ) {
            let token = format!("{header}.{payload}.{signature}");
            if let Ok(compact) = jwt::split(&token) {
                let _ = jwt::payload::<OwnClaims>(compact.payload);
            }
        }
    }
}
