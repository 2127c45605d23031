//! Pairwise customer references: one opaque `customer_ref` per (customer, partner).
//!
//! `customer_ref = base64url_nopad(HMAC-SHA256(secret, customer_id || 0x00 || partner_id))`:
//! 43 characters, stable for a pair, unlinkable across partners without the secret. The `0x00`
//! separator cannot occur in either id, so no two pairs hash the same input.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use gateway_core::{CustomerId, CustomerRef, PartnerId};

/// The fewest secret bytes accepted (the HMAC-SHA256 block of security: 256 bits).
pub const MIN_REF_SECRET_BYTES: usize = 32;

/// The key that derives pairwise customer references. Cheap to clone; never printed.
#[derive(Clone)]
pub struct RefKey {
    key: hmac::Key,
}

/// Why the customer-ref secret could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RefKeyError {
    /// The file could not be read.
    #[error("cannot read the customer-ref secret {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The secret is too short to key the refs safely.
    #[error(
        "the customer-ref secret {} holds {len} bytes; at least {MIN_REF_SECRET_BYTES} are needed",
        path.as_deref().map_or_else(|| "given".to_owned(), |p| p.display().to_string())
    )]
    TooShort {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// Bytes found (after trimming surrounding whitespace).
        len: usize,
    },
}

impl RefKey {
    /// A key from secret bytes (at least [`MIN_REF_SECRET_BYTES`]).
    pub fn new(secret: &[u8]) -> Result<RefKey, RefKeyError> {
        if secret.len() < MIN_REF_SECRET_BYTES {
            return Err(RefKeyError::TooShort {
                path: None,
                len: secret.len(),
            });
        }
        Ok(RefKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    /// Reads the secret from a file (`consent.ref_secret_file`). The key is the file's content
    /// without surrounding ASCII whitespace, so a trailing newline does not change every ref;
    /// at least [`MIN_REF_SECRET_BYTES`] must remain. Blocking: call it while loading config.
    pub fn from_file(path: impl AsRef<Path>) -> Result<RefKey, RefKeyError> {
        let path = path.as_ref();
        let content = std::fs::read(path).map_err(|source| RefKeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let secret = content.trim_ascii();
        RefKey::new(secret).map_err(|_| RefKeyError::TooShort {
            path: Some(path.to_path_buf()),
            len: secret.len(),
        })
    }

    /// The pairwise reference of `customer` for `partner` (~0.5 µs).
    pub fn customer_ref(&self, customer: &CustomerId, partner: &PartnerId) -> CustomerRef {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(customer.as_str().as_bytes());
        context.update(&[0]);
        context.update(partner.as_str().as_bytes());
        let tag = context.sign();
        let text = URL_SAFE_NO_PAD.encode(tag.as_ref());
        // 32 bytes always encode to 43 URL-safe base64 characters: exactly the ref syntax.
        CustomerRef::parse(&text).expect("a SHA-256 tag encodes to a valid customer ref")
    }
}

impl fmt::Debug for RefKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn ids(customer: &str, partner: &str) -> (CustomerId, PartnerId) {
        (
            CustomerId::parse(customer).unwrap(),
            PartnerId::parse(partner).unwrap(),
        )
    }

    #[test]
    fn refs_match_the_documented_construction() {
        let secret = [7u8; 32];
        let key = RefKey::new(&secret).unwrap();
        let (c, p) = ids("C000001", "demo-bank");
        let expected = URL_SAFE_NO_PAD.encode(
            hmac::sign(
                &hmac::Key::new(hmac::HMAC_SHA256, &secret),
                b"C000001\0demo-bank",
            )
            .as_ref(),
        );
        let r = key.customer_ref(&c, &p);
        assert_eq!(r.as_str(), expected);
        assert_eq!(r.as_str().len(), 43);
    }

    #[test]
    fn refs_are_pairwise() {
        let key = RefKey::new(&[1u8; 40]).unwrap();
        let (c1, bank) = ids("C000001", "demo-bank");
        let (c2, fund) = ids("C000002", "demo-fund");
        let all = [
            key.customer_ref(&c1, &bank),
            key.customer_ref(&c1, &fund),
            key.customer_ref(&c2, &bank),
            key.customer_ref(&c2, &fund),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(key.customer_ref(&c1, &bank), all[0]);
        let other = RefKey::new(&[2u8; 40]).unwrap();
        assert_ne!(other.customer_ref(&c1, &bank), all[0]);
    }

    #[test]
    fn secret_files_are_trimmed_and_must_hold_32_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.secret");
        let hex = "ab".repeat(32);
        std::fs::File::create(&good)
            .unwrap()
            .write_all(format!("{hex}\n").as_bytes())
            .unwrap();
        let (c, p) = ids("C000001", "demo-bank");
        assert_eq!(
            RefKey::from_file(&good).unwrap().customer_ref(&c, &p),
            RefKey::new(hex.as_bytes()).unwrap().customer_ref(&c, &p)
        );

        let short = dir.path().join("short.secret");
        std::fs::write(&short, format!("  {}\n\n", "x".repeat(31))).unwrap();
        match RefKey::from_file(&short) {
            Err(RefKeyError::TooShort { path, len }) => {
                assert_eq!(path.as_deref(), Some(short.as_path()));
                assert_eq!(len, 31);
            }
            other => panic!("expected TooShort, got {other:?}"),
        }
        assert!(matches!(
            RefKey::from_file(dir.path().join("missing")),
            Err(RefKeyError::Read { .. })
        ));
        assert!(matches!(
            RefKey::new(b""),
            Err(RefKeyError::TooShort { path: None, len: 0 })
        ));
    }

    #[test]
    fn the_key_is_never_printed() {
        let key = RefKey::new(b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(format!("{key:?}"), "RefKey(<redacted>)");
    }
}
