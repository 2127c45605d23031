//! Request extensions through which the concern crates share facts.
//!
//! - [`PeerIdentity`] is computed once per TLS connection from the verified client certificate.
//! - [`PartnerContext`] is resolved per request against the configuration in force, so a
//!   suspension or removed pin applies to the very next request.
//! - [`TokenClaims`] is set by the token check; later layers and handlers read it.
//! - [`InteractionId`] is the FAPI interaction id, echoed or minted.

use std::fmt;
use std::sync::Arc;

use crate::ids::{ClientId, PartnerId};
use crate::scope::ScopeSet;
use crate::time::UnixTime;

/// SHA-256 of a certificate's DER encoding (the RFC 8705 `x5t#S256` thumbprint, unencoded).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Parses 64 hex digits, optionally separated by `:` (the form `openssl x509 -fingerprint` prints).
    pub fn parse(text: &str) -> Option<Fingerprint> {
        let compact: String = text.chars().filter(|c| *c != ':').collect();
        if compact.len() != 64 {
            return None;
        }
        let bytes = crate::hex::decode(&compact)?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        Some(Fingerprint(out))
    }

    /// Lower-case hex without separators.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

/// Who is on the other end of a TLS connection: the verified client certificate.
///
/// Built once, when the handshake completes, and cloned into every request of the connection.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    /// SHA-256 of the leaf certificate.
    pub fingerprint: Fingerprint,
    /// The leaf's subject as an RFC 4514 string, e.g. `CN=demo-bank,O=Demo Bank`.
    pub subject: Arc<str>,
    /// A process-unique connection number (logs, connection registry).
    pub connection: u64,
}

/// The partner a request comes from, resolved against the configuration in force.
///
/// Only present on requests of an *active* partner; the listener answers the rest itself.
#[derive(Debug, Clone)]
pub struct PartnerContext {
    /// The partner.
    pub partner: PartnerId,
}

/// The verified claims of a certificate-bound access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// `sub`: the partner.
    pub partner: PartnerId,
    /// `client_id`.
    pub client_id: ClientId,
    /// `scope`.
    pub scopes: ScopeSet,
    /// `jti`.
    pub jti: Arc<str>,
    /// `iat`.
    pub issued_at: UnixTime,
    /// `exp`.
    pub expires_at: UnixTime,
    /// `cnf.x5t#S256`: the certificate the token is bound to.
    pub bound_to: Fingerprint,
}

/// The FAPI interaction id of a request (`x-fapi-interaction-id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InteractionId(Arc<str>);

impl InteractionId {
    /// Accepts a caller-supplied id: 1 to 64 characters of `A-Z a-z 0-9 - _ .`.
    /// Anything else could smuggle data into logs or headers and is refused.
    pub fn parse(value: &str) -> Option<InteractionId> {
        let ok = !value.is_empty()
            && value.len() <= 64
            && value
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
        ok.then(|| InteractionId(Arc::from(value)))
    }

    /// Wraps an id the gateway minted itself (a UUID).
    pub fn minted(value: String) -> InteractionId {
        InteractionId(Arc::from(value))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InteractionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(Fingerprint::parse(&hex), Fingerprint::parse(&colons));
        assert_eq!(Fingerprint::parse(&hex).unwrap().to_hex(), hex);
        assert!(Fingerprint::parse("abcd").is_none());
        assert!(Fingerprint::parse(&"zz".repeat(32)).is_none());
    }

    #[test]
    fn interaction_ids_refuse_header_injection() {
        assert!(InteractionId::parse("c770aef3-6784-41f7-8e0e-ff5f97bddb3a").is_some());
        for bad in ["", "a\r\nx-evil: 1", "a b", &"a".repeat(65), "ü"] {
            assert!(InteractionId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
