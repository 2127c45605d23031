//! The identity of the verified client certificate, computed once per connection.

use std::sync::Arc;

use gateway_core::{Fingerprint, PeerIdentity};

/// The [`PeerIdentity`] of a connection whose handshake completed.
///
/// `connection` is the caller's process-unique connection number. Returns `None` when the
/// peer presented no certificate (impossible once [`server_config`](crate::server_config)'s
/// handshake completed) or when the leaf's subject is not well-formed DER: webpki verifies
/// the chain without parsing the subject's attributes, and a certificate we cannot name is
/// refused rather than given a made-up name (fail closed).
pub fn peer_identity(conn: &rustls::ServerConnection, connection: u64) -> Option<PeerIdentity> {
    let leaf = conn.peer_certificates()?.first()?;
    let subject = crate::subject(leaf).ok()?;
    Some(PeerIdentity {
        fingerprint: fingerprint(leaf),
        subject: Arc::from(subject),
        connection,
    })
}

/// The SHA-256 of a certificate's DER encoding: what partner pins and RFC 8705 `x5t#S256`
/// token bindings compare.
pub fn fingerprint(der: &[u8]) -> Fingerprint {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = [0u8; 32];
    // SHA-256 output is always 32 bytes, so the lengths agree.
    out.copy_from_slice(digest.as_ref());
    Fingerprint(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_sha256_of_der() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            fingerprint(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
