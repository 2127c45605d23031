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

/// W3C trace context of a request (`traceparent`), continued from the caller or started here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 16-byte trace id (never all zero).
    pub trace_id: [u8; 16],
    /// This hop's 8-byte span id (the parent id of calls the gateway makes).
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// Parses a version-00 `traceparent` header: `00-<32 hex>-<16 hex>-<2 hex>`.
    /// Returns the caller's trace id and flags; all-zero ids and other versions' malformed
    /// values are refused (the caller then starts a new trace).
    pub fn parse_traceparent(value: &str) -> Option<([u8; 16], u8)> {
        let b = value.as_bytes();
        if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = crate::hex::decode(&value[0..2])?;
        if version[0] == 0xff || (version[0] == 0 && b.len() != 55) {
            return None;
        }
        let trace = crate::hex::decode(&value[3..35])?;
        let parent = crate::hex::decode(&value[36..52])?;
        let flags = crate::hex::decode(&value[53..55])?;
        if trace.iter().all(|x| *x == 0) || parent.iter().all(|x| *x == 0) {
            return None;
        }
        if value[3..52].bytes().any(|c| c.is_ascii_uppercase()) {
            return None;
        }
        let mut trace_id = [0u8; 16];
        trace_id.copy_from_slice(&trace);
        Some((trace_id, flags[0]))
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        crate::hex::encode(&self.trace_id)
    }

    /// The `traceparent` value for calls made from this hop.
    pub fn traceparent(&self) -> String {
        let mut out = String::with_capacity(55);
        out.push_str("00-");
        crate::hex::encode_into(&self.trace_id, &mut out);
        out.push('-');
        crate::hex::encode_into(&self.span_id, &mut out);
        out.push('-');
        crate::hex::encode_into(&[self.flags], &mut out);
        out
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
    fn traceparent_round_trip_and_garbage() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (trace, flags) = TraceContext::parse_traceparent(header).unwrap();
        assert_eq!(flags, 1);
        let ctx = TraceContext {
            trace_id: trace,
            span_id: [1; 8],
            flags,
        };
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            ctx.traceparent(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0101010101010101-01"
        );
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn interaction_ids_refuse_header_injection() {
        assert!(InteractionId::parse("c770aef3-6784-41f7-8e0e-ff5f97bddb3a").is_some());
        for bad in ["", "a\r\nx-evil: 1", "a b", &"a".repeat(65), "ü"] {
            assert!(InteractionId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
