//! The keyed hash of internal customer ids written into records.
//!
//! HMAC-SHA256 under a secret only the gateway holds: equal ids give equal hashes (so the
//! index finds every record of a customer), but the hash cannot be reversed by trying the
//! small space of customer ids without the key.

use std::path::Path;

use aws_lc_rs::hmac;
use gateway_core::CustomerId;
use gateway_core::audit::CustomerHash;

/// Why a customer hash key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum HashKeyError {
    /// The file could not be read or written.
    #[error("customer hash key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Fewer than 32 bytes of key.
    #[error("customer hash key file {path} holds fewer than 32 bytes of key")]
    TooShort {
        /// The file.
        path: String,
    },
    /// The system random generator failed.
    #[error("could not generate a key")]
    Generate,
}

/// Computes [`CustomerHash`]es. Cheap to clone.
#[derive(Clone)]
pub struct CustomerHasher {
    key: hmac::Key,
}

impl std::fmt::Debug for CustomerHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerHasher(<secret>)")
    }
}

impl CustomerHasher {
    /// A hasher with the given secret (at least 32 bytes recommended).
    pub fn new(secret: &[u8]) -> CustomerHasher {
        CustomerHasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// Loads the secret from a file: 64+ hex digits (decoded), or else the raw bytes; either
    /// way at least 32 bytes of key.
    pub fn from_key_file(path: &Path) -> Result<CustomerHasher, HashKeyError> {
        let raw = std::fs::read(path).map_err(|source| HashKeyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let text = std::str::from_utf8(&raw).map(str::trim).ok();
        let key = match text.and_then(gateway_core::hex::decode) {
            Some(bytes) if bytes.len() >= 32 => bytes,
            _ => raw,
        };
        if key.len() < 32 {
            return Err(HashKeyError::TooShort {
                path: path.display().to_string(),
            });
        }
        Ok(CustomerHasher::new(&key))
    }

    /// Writes a new random key (64 hex digits, mode 0600) unless the file exists, then
    /// loads it. For dev setups.
    pub fn create_dev_key_file(path: &Path) -> Result<CustomerHasher, HashKeyError> {
        let io = |source| HashKeyError::Io {
            path: path.display().to_string(),
            source,
        };
        if !path.exists() {
            let mut secret = [0u8; 32];
            aws_lc_rs::rand::fill(&mut secret).map_err(|_| HashKeyError::Generate)?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).map_err(io)?;
            let text = format!("{}\n", gateway_core::hex::encode(&secret));
            std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Self::from_key_file(path)
    }

    /// The keyed hash of an internal customer id.
    pub fn hash(&self, customer: &CustomerId) -> CustomerHash {
        let tag = hmac::sign(&self.key, customer.as_str().as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        CustomerHash(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_keyed_and_stable() {
        let id = CustomerId::parse("C000001").unwrap();
        let a = CustomerHasher::new(&[1; 32]);
        let b = CustomerHasher::new(&[2; 32]);
        assert_eq!(a.hash(&id), a.hash(&id));
        assert_ne!(a.hash(&id), b.hash(&id));
        assert_ne!(a.hash(&id), a.hash(&CustomerId::parse("C000002").unwrap()));
        assert!(!format!("{a:?}").contains('1'));
    }

    #[test]
    fn key_files_are_created_once_and_must_be_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/customer.secret");
        let id = CustomerId::parse("C000001").unwrap();
        let first = CustomerHasher::create_dev_key_file(&path)
            .unwrap()
            .hash(&id);
        let again = CustomerHasher::create_dev_key_file(&path)
            .unwrap()
            .hash(&id);
        assert_eq!(first, again);
        let short = dir.path().join("short");
        std::fs::write(&short, "abcd").unwrap();
        assert!(matches!(
            CustomerHasher::from_key_file(&short),
            Err(HashKeyError::TooShort { .. })
        ));
    }
}
