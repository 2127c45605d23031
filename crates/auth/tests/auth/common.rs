//! Fixtures shared by the suites: keys, an issuer, partners, certificates and an in-memory
//! revocation store that notifies like the real ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

use gateway_auth::keys::generate_pem;
use gateway_auth::{
    ClientRegistration, Issuer, IssuerSettings, KeySet, KeyStatus, SigningAlgorithm,
    SigningKeyFile, TokenVerifier,
};
use gateway_core::time::UnixTime;
use gateway_core::{ClientId, Fingerprint, PartnerId, PeerIdentity, Scope, ScopeSet};
use gateway_store::{Change, RevocationStore, StoreError};

pub(crate) const ISSUER: &str = "https://gateway.test";
pub(crate) const AUDIENCE: &str = "https://gateway.test/v1";
pub(crate) const LIFETIME: u64 = 300;
pub(crate) const LEEWAY: i64 = 5;
pub(crate) const NOW: UnixTime = UnixTime(1_800_000_000);

pub(crate) fn settings() -> IssuerSettings {
    IssuerSettings {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        lifetime: Duration::from_secs(LIFETIME),
        leeway: Duration::from_secs(LEEWAY as u64),
    }
}

/// A key file with a fresh key.
pub(crate) fn key(kid: &str, algorithm: SigningAlgorithm, status: KeyStatus) -> SigningKeyFile {
    SigningKeyFile {
        kid: kid.into(),
        algorithm,
        pem: generate_pem(algorithm).unwrap().into_bytes(),
        status,
    }
}

/// The same key file in another rotation state.
pub(crate) fn with_status(file: &SigningKeyFile, status: KeyStatus) -> SigningKeyFile {
    SigningKeyFile {
        status,
        ..file.clone()
    }
}

pub(crate) fn issuer_with(settings: IssuerSettings, files: &[SigningKeyFile]) -> Arc<Issuer> {
    Issuer::new(settings, KeySet::load(files).unwrap())
}

pub(crate) fn partner(id: &str) -> PartnerId {
    PartnerId::parse(id).unwrap()
}

pub(crate) fn all_scopes() -> ScopeSet {
    Scope::ALL.into_iter().collect()
}

pub(crate) fn registration(id: &str) -> ClientRegistration {
    ClientRegistration {
        partner: partner(id),
        client_id: ClientId::parse(id).unwrap(),
        scopes: [Scope::TagsRead, Scope::ProductsRead].into_iter().collect(),
        active: true,
    }
}

/// A certificate fingerprint; `n` tells certificates apart.
pub(crate) fn cert(n: u8) -> Fingerprint {
    Fingerprint([n; 32])
}

pub(crate) fn peer(n: u8) -> PeerIdentity {
    PeerIdentity {
        fingerprint: cert(n),
        subject: Arc::from("CN=test"),
        connection: n as u64,
    }
}

/// One gateway's worth of auth: an ES256 issuer with key `k1`, a store, a verifier.
pub(crate) struct Fixture {
    pub(crate) key: SigningKeyFile,
    pub(crate) issuer: Arc<Issuer>,
    pub(crate) store: MemoryStore,
    pub(crate) verifier: TokenVerifier<MemoryStore>,
}

impl Fixture {
    /// A verifier listening to the store's notifications.
    pub(crate) fn new() -> Fixture {
        let key = key("k1", SigningAlgorithm::Es256, KeyStatus::Active);
        let issuer = issuer_with(settings(), std::slice::from_ref(&key));
        let store = MemoryStore::default();
        let verifier = TokenVerifier::builder(issuer.clone(), store.clone())
            .notifications(store.subscribe())
            .build();
        Fixture {
            key,
            issuer,
            store,
            verifier,
        }
    }

    /// A token for `partner` bound to certificate `cert_n`, issued at `now`.
    pub(crate) fn token(&self, partner_id: &str, cert_n: u8, now: UnixTime) -> String {
        self.issuer
            .issue(
                &registration(partner_id),
                registration(partner_id).scopes,
                &cert(cert_n),
                now,
            )
            .unwrap()
            .access_token
    }
}

/// An in-memory [`RevocationStore`] that broadcasts `Change::TokenRevoked` like the real
/// backends, counts reads, and can be taken "down".
#[derive(Clone)]
pub(crate) struct MemoryStore {
    inner: Arc<MemoryInner>,
}

struct MemoryInner {
    revoked: Mutex<HashMap<String, UnixTime>>,
    down: AtomicBool,
    reads: AtomicUsize,
    changes: broadcast::Sender<Change>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            inner: Arc::new(MemoryInner {
                revoked: Mutex::new(HashMap::new()),
                down: AtomicBool::new(false),
                reads: AtomicUsize::new(0),
                changes: broadcast::channel(64).0,
            }),
        }
    }
}

impl MemoryStore {
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    pub(crate) fn send(&self, change: Change) {
        let _ = self.inner.changes.send(change);
    }

    pub(crate) fn set_down(&self, down: bool) {
        self.inner.down.store(down, Ordering::SeqCst);
    }

    pub(crate) fn reads(&self) -> usize {
        self.inner.reads.load(Ordering::SeqCst)
    }

    pub(crate) fn revoked(&self) -> HashMap<String, UnixTime> {
        self.inner.revoked.lock().unwrap().clone()
    }

    /// Records a revocation without notifying anyone (a lost notification).
    pub(crate) fn inner_revoke_silently(&self, jti: &str) {
        self.inner
            .revoked
            .lock()
            .unwrap()
            .insert(jti.to_owned(), UnixTime(i64::MAX));
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.inner.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("connection refused".into()));
        }
        Ok(())
    }
}

impl RevocationStore for MemoryStore {
    async fn revoke_token(&self, jti: &str, expires_at: UnixTime) -> Result<(), StoreError> {
        self.check()?;
        self.inner
            .revoked
            .lock()
            .unwrap()
            .insert(jti.to_owned(), expires_at);
        self.send(Change::TokenRevoked {
            jti: jti.to_owned(),
        });
        Ok(())
    }

    async fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.inner.revoked.lock().unwrap().contains_key(jti))
    }
}

/// Claims of a token, decoded without verification (to look inside in tests).
pub(crate) fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// The decoded header of a token.
pub(crate) fn header_of(token: &str) -> serde_json::Value {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Re-encodes `header` and `claims` with the given signature bytes.
pub(crate) fn assemble(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    signature: &[u8],
) -> String {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    format!(
        "{}.{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap()),
        b64(signature)
    )
}

/// Reads a whole body of at most `limit` bytes (the workspace bans unbounded `collect`).
pub(crate) async fn read_body<B>(body: B, limit: usize) -> Result<bytes::Bytes, String>
where
    B: http_body::Body,
    B::Error: std::fmt::Display,
{
    use http_body_util::BodyExt;
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(data) = frame.into_data() {
            use bytes::Buf;
            out.extend_from_slice(data.chunk());
            if out.len() > limit {
                return Err(format!("body larger than {limit} bytes"));
            }
        }
    }
    Ok(out.into())
}
