//! Signing keys: loading, rotation states, the JWKS document and dev key generation.
//!
//! A [`KeySet`] holds every key named in `gateway.yaml`. Exactly one is [`KeyStatus::Active`]
//! and signs new tokens; [`KeyStatus::Next`] keys are published ahead of a rotation so caches
//! of the JWKS hold them before the first token they sign appears; [`KeyStatus::Retired`] keys
//! keep verifying the tokens they signed until those expire. All three are published and
//! verify; a key removed from the set verifies nothing.
//!
//! Rotation, step by step: add the new key as `Next` (reload); once every relying party has
//! fetched the JWKS, make it `Active` and the old one `Retired` (reload); after the token
//! lifetime has passed, remove the old key (reload).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey, RsaPublicKeyComponents,
};
use base64::Engine;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

use crate::jwt;
use crate::verify::TokenError;

/// The algorithms the gateway signs its own tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// ECDSA over P-256 with SHA-256 (`ES256`).
    Es256,
    /// Ed25519 (`EdDSA`).
    EdDsa,
}

impl SigningAlgorithm {
    /// The JWS `alg` name.
    pub const fn name(self) -> &'static str {
        self.jws().name()
    }

    const fn jws(self) -> JwsAlgorithm {
        match self {
            SigningAlgorithm::Es256 => JwsAlgorithm::Es256,
            SigningAlgorithm::EdDsa => JwsAlgorithm::EdDsa,
        }
    }
}

/// Where a key is in its rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyStatus {
    /// Signs new tokens (exactly one key) and verifies.
    Active,
    /// Published and verifies; does not sign yet.
    Next,
    /// Verifies the tokens it signed until they expire; no longer signs.
    Retired,
}

/// One signing key as the integrator reads it from the file named in the configuration.
#[derive(Clone)]
pub struct SigningKeyFile {
    /// Key id (`kid`): 1 to 64 characters of `A-Z a-z 0-9 - _ .`.
    pub kid: String,
    /// The key's algorithm; the PEM must hold a key of this type.
    pub algorithm: SigningAlgorithm,
    /// The PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub pem: Vec<u8>,
    /// Rotation state.
    pub status: KeyStatus,
}

impl fmt::Debug for SigningKeyFile {
    /// Never prints the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyFile")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Why a key set could not be built or a key generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The file holds no PKCS#8 `PRIVATE KEY` PEM block.
    #[error("key {kid}: no PKCS#8 PEM private key found")]
    NotPkcs8Pem {
        /// The key id.
        kid: String,
    },
    /// The key is not a valid key of the declared algorithm.
    #[error("key {kid}: not a valid {algorithm} private key")]
    Rejected {
        /// The key id.
        kid: String,
        /// The declared algorithm.
        algorithm: &'static str,
    },
    /// The key id is empty, too long or has characters outside `A-Z a-z 0-9 - _ .`.
    #[error("key id {kid:?} is not valid: 1 to 64 of A-Z a-z 0-9 - _ .")]
    BadKid {
        /// The key id.
        kid: String,
    },
    /// Two keys share a key id.
    #[error("key id {kid} appears more than once")]
    DuplicateKid {
        /// The key id.
        kid: String,
    },
    /// No key is `Active`.
    #[error("no signing key is active")]
    NoActiveKey,
    /// More than one key is `Active`.
    #[error("more than one signing key is active: {kids:?}")]
    SeveralActiveKeys {
        /// Their key ids.
        kids: Vec<String>,
    },
    /// Signing failed inside the crypto library.
    #[error("signing with key {kid} failed")]
    Signing {
        /// The key id.
        kid: String,
    },
    /// Key generation or writing the key file failed.
    #[error("cannot create key file {path}: {reason}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The keys of the gateway's authorization server, ready to sign and verify.
///
/// Immutable: a rotation builds a new set and hands it to the issuer and verifier.
pub struct KeySet {
    signer: Signer,
    verifiers: Vec<Arc<VerifyingKey>>,
    jwks: Arc<[u8]>,
    generation: u64,
}

impl KeySet {
    /// Loads every key; exactly one must be `Active`, and key ids must be unique.
    pub fn load(files: &[SigningKeyFile]) -> Result<KeySet, KeyError> {
        let active: Vec<&SigningKeyFile> = files
            .iter()
            .filter(|f| f.status == KeyStatus::Active)
            .collect();
        match active.as_slice() {
            [] => return Err(KeyError::NoActiveKey),
            [_] => {}
            several => {
                return Err(KeyError::SeveralActiveKeys {
                    kids: several.iter().map(|f| f.kid.clone()).collect(),
                });
            }
        }
        let mut signer = None;
        let mut verifiers: Vec<Arc<VerifyingKey>> = Vec::with_capacity(files.len());
        for file in files {
            if !valid_kid(&file.kid) {
                return Err(KeyError::BadKid {
                    kid: file.kid.clone(),
                });
            }
            if verifiers.iter().any(|v| v.kid == file.kid) {
                return Err(KeyError::DuplicateKid {
                    kid: file.kid.clone(),
                });
            }
            let private = PrivateKey::from_pem(file)?;
            verifiers.push(Arc::new(private.verifying_key(&file.kid, file.algorithm)?));
            if file.status == KeyStatus::Active {
                signer = Some(Signer {
                    kid: file.kid.clone(),
                    key: private,
                });
            }
        }
        // The match above returned unless exactly one file is Active, and the loop visited it.
        let signer = signer.ok_or(KeyError::NoActiveKey)?;
        let jwks = jwks_document(&verifiers);
        Ok(KeySet {
            signer,
            verifiers,
            jwks,
            generation: next_generation(),
        })
    }

    /// The `kid` of the key that signs new tokens.
    pub fn active_kid(&self) -> &str {
        &self.signer.kid
    }

    /// The JWKS document (RFC 7517): the public halves of every key, for `GET /jwks.json`.
    pub fn jwks(&self) -> &[u8] {
        &self.jwks
    }

    /// Signs `signing_input` with the active key; returns the raw JWS signature.
    pub(crate) fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, KeyError> {
        self.signer.sign(signing_input)
    }

    /// The `alg` of the active key.
    pub(crate) fn active_algorithm(&self) -> SigningAlgorithm {
        match self.signer.key {
            PrivateKey::Es256(_) => SigningAlgorithm::Es256,
            PrivateKey::EdDsa(_) => SigningAlgorithm::EdDsa,
        }
    }

    /// The verifying key with id `kid`.
    pub(crate) fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.verifiers.iter().find(|v| v.kid == kid).map(|v| &**v)
    }

    /// A process-unique number of this set: cached verifications made under another set are
    /// redone, so a removed key stops verifying at once.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("active", &self.signer.kid)
            .field(
                "kids",
                &self.verifiers.iter().map(|v| &v.kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Generates a fresh key of `algorithm` and returns it as PKCS#8 PEM.
pub fn generate_pem(algorithm: SigningAlgorithm) -> Result<String, KeyError> {
    let failed = |reason: &str| KeyError::Write {
        path: String::new(),
        reason: reason.into(),
    };
    let rng = SystemRandom::new();
    let document = match algorithm {
        SigningAlgorithm::Es256 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| failed("ECDSA key generation failed"))?
        }
        SigningAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| failed("Ed25519 key generation failed"))?,
    };
    Ok(pem_encode("PRIVATE KEY", document.as_ref()))
}

/// Writes a new ES256 key to `path` as PKCS#8 PEM, readable by the owner only (mode 0600).
///
/// Refuses to overwrite an existing file: a dev setup generates its key once, and replacing a
/// key silently would invalidate every token it signed.
pub fn generate_dev_key(path: &Path) -> Result<(), KeyError> {
    use std::io::Write;

    let failed = |reason: String| KeyError::Write {
        path: path.display().to_string(),
        reason,
    };
    let pem = generate_pem(SigningAlgorithm::Es256).map_err(|e| failed(e.to_string()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| failed(e.to_string()))?;
    file.write_all(pem.as_bytes())
        .map_err(|e| failed(e.to_string()))?;
    file.sync_all().map_err(|e| failed(e.to_string()))
}

// === JWS algorithms and verifying keys ===

/// Every JWS algorithm any verifier of the gateway accepts. `none` and the HMAC family are
/// absent on purpose: no token can pick them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum JwsAlgorithm {
    Es256,
    EdDsa,
    Rs256,
    Ps256,
}

impl JwsAlgorithm {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            JwsAlgorithm::Es256 => "ES256",
            JwsAlgorithm::EdDsa => "EdDSA",
            JwsAlgorithm::Rs256 => "RS256",
            JwsAlgorithm::Ps256 => "PS256",
        }
    }
}

/// A public key with the one algorithm it may be used with.
pub(crate) struct VerifyingKey {
    pub(crate) kid: String,
    pub(crate) algorithm: JwsAlgorithm,
    material: PublicMaterial,
}

enum PublicMaterial {
    /// EC and Ed25519 keys, parsed once (verification skips re-parsing the point).
    Parsed {
        key: ParsedPublicKey,
        jwk: serde_json::Value,
    },
    /// RSA modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl VerifyingKey {
    /// A P-256 key from its uncompressed point `04 || x || y`.
    pub(crate) fn es256(kid: String, point: &[u8]) -> Option<VerifyingKey> {
        let key = ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).ok()?;
        let (x, y) = point.get(1..)?.split_at_checked(32)?;
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": jwt::encode(x), "y": jwt::encode(y)});
        Some(VerifyingKey {
            kid,
            algorithm: JwsAlgorithm::Es256,
            material: PublicMaterial::Parsed { key, jwk },
        })
    }

    /// An Ed25519 key from its 32 raw bytes.
    pub(crate) fn ed25519(kid: String, raw: &[u8]) -> Option<VerifyingKey> {
        let key = ParsedPublicKey::new(&signature::ED25519, raw).ok()?;
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": jwt::encode(raw)});
        Some(VerifyingKey {
            kid,
            algorithm: JwsAlgorithm::EdDsa,
            material: PublicMaterial::Parsed { key, jwk },
        })
    }

    /// An RSA key (modulus and exponent, big-endian) for `RS256` or `PS256`.
    pub(crate) fn rsa(
        kid: String,
        algorithm: JwsAlgorithm,
        n: Vec<u8>,
        e: Vec<u8>,
    ) -> VerifyingKey {
        VerifyingKey {
            kid,
            algorithm,
            material: PublicMaterial::Rsa { n, e },
        }
    }

    /// Verifies a signature made with the algorithm named in the token header.
    ///
    /// The header's `alg` must be this key's own algorithm: a key never verifies under another
    /// algorithm (no RS/HS or ES/HS confusion), whatever the token claims.
    pub(crate) fn verify(
        &self,
        alg: &str,
        input: &[u8],
        signature: &[u8],
    ) -> Result<(), TokenError> {
        if alg != self.algorithm.name() {
            return Err(TokenError::AlgorithmNotAllowed { alg: truncate(alg) });
        }
        let verified = match &self.material {
            PublicMaterial::Parsed { key, .. } => key.verify_sig(input, signature),
            PublicMaterial::Rsa { n, e } => {
                let params = match self.algorithm {
                    JwsAlgorithm::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    _ => &signature::RSA_PKCS1_2048_8192_SHA256,
                };
                RsaPublicKeyComponents { n, e }.verify(params, input, signature)
            }
        };
        verified.map_err(|_| TokenError::BadSignature)
    }

    fn jwk(&self) -> serde_json::Value {
        let mut jwk = match &self.material {
            PublicMaterial::Parsed { jwk, .. } => jwk.clone(),
            PublicMaterial::Rsa { n, e } => {
                json!({"kty": "RSA", "n": jwt::encode(n), "e": jwt::encode(e)})
            }
        };
        if let Some(object) = jwk.as_object_mut() {
            object.insert("kid".into(), self.kid.clone().into());
            object.insert("use".into(), "sig".into());
            object.insert("alg".into(), self.algorithm.name().into());
        }
        jwk
    }
}

/// An `alg` value cut to a loggable length.
pub(crate) fn truncate(value: &str) -> String {
    value.chars().take(32).collect()
}

// === private keys ===

enum PrivateKey {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl PrivateKey {
    fn from_pem(file: &SigningKeyFile) -> Result<PrivateKey, KeyError> {
        let der =
            PrivatePkcs8KeyDer::from_pem_slice(&file.pem).map_err(|_| KeyError::NotPkcs8Pem {
                kid: file.kid.clone(),
            })?;
        let rejected = || KeyError::Rejected {
            kid: file.kid.clone(),
            algorithm: file.algorithm.name(),
        };
        match file.algorithm {
            SigningAlgorithm::Es256 => EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                der.secret_pkcs8_der(),
            )
            .map(PrivateKey::Es256)
            .map_err(|_| rejected()),
            // PKCS#8 v1 files (as `openssl genpkey` writes them) carry no public key; the
            // unchecked constructor derives it from the seed.
            SigningAlgorithm::EdDsa => Ed25519KeyPair::from_pkcs8(der.secret_pkcs8_der())
                .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der()))
                .map(PrivateKey::EdDsa)
                .map_err(|_| rejected()),
        }
    }

    fn verifying_key(
        &self,
        kid: &str,
        algorithm: SigningAlgorithm,
    ) -> Result<VerifyingKey, KeyError> {
        let key = match self {
            PrivateKey::Es256(pair) => VerifyingKey::es256(kid.into(), pair.public_key().as_ref()),
            PrivateKey::EdDsa(pair) => {
                VerifyingKey::ed25519(kid.into(), pair.public_key().as_ref())
            }
        };
        key.ok_or(KeyError::Rejected {
            kid: kid.into(),
            algorithm: algorithm.name(),
        })
    }
}

struct Signer {
    kid: String,
    key: PrivateKey,
}

impl Signer {
    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.key {
            PrivateKey::Es256(pair) => pair
                .sign(&SystemRandom::new(), input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Signing {
                    kid: self.kid.clone(),
                }),
            PrivateKey::EdDsa(pair) => Ok(pair.sign(input).as_ref().to_vec()),
        }
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= 64
        && kid
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn next_generation() -> u64 {
    static GENERATION: AtomicU64 = AtomicU64::new(1);
    GENERATION.fetch_add(1, Ordering::Relaxed)
}

fn jwks_document(keys: &[Arc<VerifyingKey>]) -> Arc<[u8]> {
    let keys: Vec<serde_json::Value> = keys.iter().map(|k| k.jwk()).collect();
    // A `Value` built from strings always serialises.
    serde_json::to_vec(&json!({ "keys": keys }))
        .unwrap_or_default()
        .into()
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(kid: &str, algorithm: SigningAlgorithm, status: KeyStatus) -> SigningKeyFile {
        SigningKeyFile {
            kid: kid.into(),
            algorithm,
            pem: generate_pem(algorithm).unwrap().into_bytes(),
            status,
        }
    }

    #[test]
    fn exactly_one_key_must_be_active() {
        let next = file("n", SigningAlgorithm::Es256, KeyStatus::Next);
        assert_eq!(
            KeySet::load(std::slice::from_ref(&next)).unwrap_err(),
            KeyError::NoActiveKey
        );
        let a = file("a", SigningAlgorithm::Es256, KeyStatus::Active);
        let b = file("b", SigningAlgorithm::EdDsa, KeyStatus::Active);
        assert_eq!(
            KeySet::load(&[a.clone(), b]).unwrap_err(),
            KeyError::SeveralActiveKeys {
                kids: vec!["a".into(), "b".into()]
            }
        );
        let set = KeySet::load(&[a, next]).unwrap();
        assert_eq!(set.active_kid(), "a");
    }

    #[test]
    fn key_ids_are_unique_and_well_formed() {
        let a = file("a", SigningAlgorithm::Es256, KeyStatus::Active);
        let mut dup = file("a", SigningAlgorithm::EdDsa, KeyStatus::Retired);
        assert_eq!(
            KeySet::load(&[a.clone(), dup.clone()]).unwrap_err(),
            KeyError::DuplicateKid { kid: "a".into() }
        );
        dup.kid = "a b".into();
        assert_eq!(
            KeySet::load(&[a, dup]).unwrap_err(),
            KeyError::BadKid { kid: "a b".into() }
        );
    }

    #[test]
    fn a_key_of_the_wrong_type_is_refused() {
        let mut wrong = file("a", SigningAlgorithm::EdDsa, KeyStatus::Active);
        wrong.algorithm = SigningAlgorithm::Es256;
        assert_eq!(
            KeySet::load(&[wrong]).unwrap_err(),
            KeyError::Rejected {
                kid: "a".into(),
                algorithm: "ES256"
            }
        );
        let garbage = SigningKeyFile {
            kid: "g".into(),
            algorithm: SigningAlgorithm::Es256,
            pem: b"not a pem".to_vec(),
            status: KeyStatus::Active,
        };
        assert_eq!(
            KeySet::load(&[garbage]).unwrap_err(),
            KeyError::NotPkcs8Pem { kid: "g".into() }
        );
    }

    #[test]
    fn jwks_publishes_public_keys_only() {
        let set = KeySet::load(&[
            file("es", SigningAlgorithm::Es256, KeyStatus::Active),
            file("ed", SigningAlgorithm::EdDsa, KeyStatus::Next),
            file("old", SigningAlgorithm::Es256, KeyStatus::Retired),
        ])
        .unwrap();
        let jwks: serde_json::Value = serde_json::from_slice(set.jwks()).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[0]["kty"], "EC");
        assert_eq!(keys[0]["alg"], "ES256");
        assert_eq!(keys[1]["kty"], "OKP");
        assert_eq!(keys[1]["alg"], "EdDSA");
        assert_eq!(keys[2]["kid"], "old");
        for key in keys {
            assert!(key.get("d").is_none(), "private part published: {key}");
            assert_eq!(key["use"], "sig");
        }
    }

    #[test]
    fn a_key_verifies_only_under_its_own_algorithm() {
        let set = KeySet::load(&[file("es", SigningAlgorithm::Es256, KeyStatus::Active)]).unwrap();
        let signature = set.sign(b"input").unwrap();
        let key = set.key("es").unwrap();
        assert_eq!(key.verify("ES256", b"input", &signature), Ok(()));
        assert_eq!(
            key.verify("ES256", b"other", &signature),
            Err(TokenError::BadSignature)
        );
        for alg in ["none", "HS256", "ES384", "EdDSA", "es256"] {
            assert_eq!(
                key.verify(alg, b"input", &signature),
                Err(TokenError::AlgorithmNotAllowed { alg: alg.into() })
            );
        }
    }

    #[test]
    fn dev_key_is_written_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing-key.pem");
        generate_dev_key(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let pem = std::fs::read(&path).unwrap();
        let set = KeySet::load(&[SigningKeyFile {
            kid: "dev".into(),
            algorithm: SigningAlgorithm::Es256,
            pem,
            status: KeyStatus::Active,
        }]);
        assert!(set.is_ok());
        assert!(matches!(
            generate_dev_key(&path),
            Err(KeyError::Write { .. })
        ));
    }
}
