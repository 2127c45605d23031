//! Signed checkpoints over the chain head, and the Ed25519 keys that sign them.
//!
//! A checkpoint says "the record with `seq` hashes to `head`, and segment `segment` is the
//! one being written", signed with the instance's Ed25519 key. Checkpoints go to the sidecar
//! file `checkpoints.log` in the audit directory, one JSON line each:
//!
//! ```text
//! {"seq":41,"head":"<64 hex>","segment":0,"time":"2026-11-27T18:00:00.123Z","instance":"gw-1","key":"<16 hex>","sig":"<base64url>"}
//! ```
//!
//! They are written every `checkpoint_interval` (when the head moved), whenever a new segment
//! is opened, and at clean shutdown. Kept apart from the segments on purpose: truncating
//! the segments leaves the sidecar naming records (or a segment) that are gone, which the
//! verifier reports; a re-chained forgery of the segments no longer matches a signed head.
//! An attacker able to rewrite both files can still cut the tail back to an older
//! checkpoint; the forwarded copy of the stream is the defence against that.

use std::path::Path;

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gateway_core::audit::AuditTime;
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use crate::format::{hash_hex, parse_hash};

/// The domain separator at the start of every signed message.
const CONTEXT: &str = "partner-gateway audit checkpoint v1";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), followed by the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why a checkpoint key could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("checkpoint key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a PKCS#8 PEM Ed25519 private key.
    #[error("checkpoint key file {path} is not a PKCS#8 PEM Ed25519 private key: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The text is not an Ed25519 public key (PEM `PUBLIC KEY` or 64 hex digits).
    #[error("not an Ed25519 public key (PEM PUBLIC KEY or 64 hex digits)")]
    InvalidPublicKey,
    /// The system random generator failed.
    #[error("could not generate a key")]
    Generate,
}

/// The Ed25519 key that signs checkpoints.
#[derive(Debug)]
pub struct CheckpointSigner {
    key: Ed25519KeyPair,
    key_id: String,
}

impl CheckpointSigner {
    /// Loads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) Ed25519 key.
    pub fn from_pem_file(path: &Path) -> Result<CheckpointSigner, KeyError> {
        let text = std::fs::read(path).map_err(|source| KeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_pem(&text).map_err(|reason| KeyError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses a PKCS#8 PEM Ed25519 key.
    pub fn from_pem(pem: &[u8]) -> Result<CheckpointSigner, String> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem).map_err(|e| e.to_string())?;
        Self::from_pkcs8_der(der.secret_pkcs8_der())
    }

    /// Parses a DER PKCS#8 Ed25519 key (v1 or v2).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<CheckpointSigner, String> {
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|e| e.to_string())?;
        let key_id = key_id(&public_key_bytes(&key));
        Ok(CheckpointSigner { key, key_id })
    }

    /// A fresh random key (tests, and [`generate_dev_key_file`]).
    pub fn generate() -> Result<CheckpointSigner, KeyError> {
        let key = Ed25519KeyPair::generate().map_err(|_| KeyError::Generate)?;
        let key_id = key_id(&public_key_bytes(&key));
        Ok(CheckpointSigner { key, key_id })
    }

    /// The raw 32-byte public key: what [`verify()`](crate::verify()) takes as the trusted key.
    pub fn public_key(&self) -> [u8; 32] {
        public_key_bytes(&self.key)
    }

    /// First 8 bytes of SHA-256 of the public key, in hex; written into each checkpoint so an
    /// operator can tell which key signed it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The private key as PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let doc = self.key.to_pkcs8().map_err(|_| KeyError::Generate)?;
        Ok(pem("PRIVATE KEY", doc.as_ref()))
    }

    pub(crate) fn sign(&self, body: &CheckpointBody) -> Checkpoint {
        let sig = self.key.sign(&body.message());
        Checkpoint {
            body: body.clone(),
            signature: sig.as_ref().to_vec(),
        }
    }
}

/// Writes a new random Ed25519 key as PKCS#8 PEM to `path` (mode 0600, parent directories
/// created) and returns its public key. For dev setups; refuses to overwrite a file.
pub fn generate_dev_key_file(path: &Path) -> Result<[u8; 32], KeyError> {
    let io = |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    };
    let signer = CheckpointSigner::generate()?;
    let text = signer.to_pem()?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(signer.public_key())
}

/// The public key as PEM `PUBLIC KEY` (SubjectPublicKeyInfo), for `audit verify --key`.
pub fn public_key_pem(public_key: &[u8; 32]) -> String {
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(public_key);
    pem("PUBLIC KEY", &der)
}

/// Parses a trusted public key: PEM `PUBLIC KEY` or 64 hex digits.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], KeyError> {
    let text = text.trim();
    if let Some(bytes) = gateway_core::hex::decode(text).filter(|b| b.len() == 32) {
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        return Ok(out);
    }
    let b64: String = text
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN PUBLIC KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END PUBLIC KEY-----")
        .collect();
    let der = STANDARD
        .decode(b64)
        .map_err(|_| KeyError::InvalidPublicKey)?;
    match der.strip_prefix(&ED25519_SPKI_PREFIX[..]) {
        Some(key) if key.len() == 32 => {
            let mut out = [0u8; 32];
            out.copy_from_slice(key);
            Ok(out)
        }
        _ => Err(KeyError::InvalidPublicKey),
    }
}

fn public_key_bytes(key: &Ed25519KeyPair) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(key.public_key().as_ref());
    out
}

fn key_id(public_key: &[u8; 32]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, public_key);
    gateway_core::hex::encode(&d.as_ref()[..8])
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// What a checkpoint asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointBody {
    /// The last record covered.
    pub seq: u64,
    /// SHA-256 of that record's line.
    pub head: [u8; 32],
    /// First seq (= file name) of the segment being written when the checkpoint was made.
    pub segment: u64,
    /// When it was made.
    pub time: AuditTime,
    /// The instance that made it.
    pub instance: String,
    /// The signing key's id.
    pub key_id: String,
}

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// What it asserts.
    pub body: CheckpointBody,
    /// Ed25519 signature over [`CheckpointBody::message`].
    pub signature: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointLine {
    seq: u64,
    head: String,
    segment: u64,
    time: AuditTime,
    instance: String,
    key: String,
    sig: String,
}

impl CheckpointBody {
    /// The signed bytes: a context string and every field, one per line.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "{CONTEXT}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.seq,
            hash_hex(&self.head),
            self.segment,
            self.time.as_millis(),
            self.instance,
            self.key_id
        )
        .into_bytes()
    }
}

impl Checkpoint {
    /// Whether the signature verifies under `public_key`.
    pub fn verify(&self, public_key: &[u8]) -> bool {
        UnparsedPublicKey::new(&signature::ED25519, public_key)
            .verify(&self.body.message(), &self.signature)
            .is_ok()
    }

    /// The sidecar line, `\n` included.
    pub(crate) fn to_line(&self) -> Vec<u8> {
        let line = CheckpointLine {
            seq: self.body.seq,
            head: hash_hex(&self.body.head),
            segment: self.body.segment,
            time: self.body.time,
            instance: self.body.instance.clone(),
            key: self.body.key_id.clone(),
            sig: URL_SAFE_NO_PAD.encode(&self.signature),
        };
        let mut out = serde_json::to_vec(&line).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Parses a sidecar line (with or without its `\n`).
    pub(crate) fn parse(line: &[u8]) -> Result<Checkpoint, String> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let parsed: CheckpointLine = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let head = parse_hash(&parsed.head).ok_or("bad head")?;
        let signature = URL_SAFE_NO_PAD
            .decode(&parsed.sig)
            .map_err(|e| e.to_string())?;
        Ok(Checkpoint {
            body: CheckpointBody {
                seq: parsed.seq,
                head,
                segment: parsed.segment,
                time: parsed.time,
                instance: parsed.instance,
                key_id: parsed.key,
            },
            signature,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> CheckpointBody {
        CheckpointBody {
            seq: 41,
            head: [9; 32],
            segment: 0,
            time: AuditTime::from_millis(1_000_123),
            instance: "gw-1".into(),
            key_id: "k".into(),
        }
    }

    #[test]
    fn checkpoints_sign_round_trip_and_detect_edits() {
        let signer = CheckpointSigner::generate().unwrap();
        let cp = signer.sign(&body());
        let parsed = Checkpoint::parse(&cp.to_line()).unwrap();
        assert_eq!(parsed, cp);
        assert!(parsed.verify(&signer.public_key()));
        let mut forged = parsed.clone();
        forged.body.seq = 40;
        assert!(!forged.verify(&signer.public_key()));
        let other = CheckpointSigner::generate().unwrap();
        assert!(!parsed.verify(&other.public_key()));
    }

    #[test]
    fn dev_key_files_load_and_public_keys_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.pem");
        let public = generate_dev_key_file(&path).unwrap();
        let signer = CheckpointSigner::from_pem_file(&path).unwrap();
        assert_eq!(signer.public_key(), public);
        assert!(matches!(
            generate_dev_key_file(&path),
            Err(KeyError::Io { .. })
        ));
        assert_eq!(parse_public_key(&public_key_pem(&public)).unwrap(), public);
        assert_eq!(
            parse_public_key(&gateway_core::hex::encode(&public)).unwrap(),
            public
        );
        assert!(matches!(
            parse_public_key("nope"),
            Err(KeyError::InvalidPublicKey)
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(
            CheckpointSigner::from_pem(
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            )
            .is_err()
        );
        assert!(CheckpointSigner::from_pem(b"hello").is_err());
    }
}
