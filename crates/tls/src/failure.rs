//! Classifying failed handshakes into a bounded set of metric labels.

use std::io;

use rustls::{CertificateError, InvalidMessage, PeerIncompatible};

/// Every value [`handshake_failure_reason`] returns, for registering metric label sets up front.
pub const HANDSHAKE_FAILURE_REASONS: [&str; 8] = [
    "no_client_certificate",
    "unknown_ca",
    "bad_certificate",
    "protocol_version",
    "no_shared_cipher",
    "not_tls",
    "eof",
    "other",
];

/// Why a server handshake failed, as a metric label (one of [`HANDSHAKE_FAILURE_REASONS`]).
///
/// `err` is what `tokio_rustls::TlsAcceptor::accept` returned; tokio-rustls wraps the
/// [`rustls::Error`] in an [`io::Error`] of kind `InvalidData`.
///
/// | label | cause |
/// | --- | --- |
/// | `no_client_certificate` | the client sent no certificate |
/// | `unknown_ca` | its certificate does not chain to the partner CA bundle |
/// | `bad_certificate` | any other certificate problem: expired, not yet valid, wrong key usage, bad signature, bad encoding |
/// | `protocol_version` | TLS 1.1 or older, or TLS 1.2 when the minimum is 1.3 |
/// | `no_shared_cipher` | no common cipher suite, key exchange group or signature scheme (CBC-only clients) |
/// | `not_tls` | the first bytes are not a TLS record (plain HTTP on the TLS port) |
/// | `eof` | the peer closed or reset the connection mid-handshake |
/// | `other` | everything else, including alerts the *client* sent (for example when it rejects our server certificate) |
pub fn handshake_failure_reason(err: &io::Error) -> &'static str {
    if let Some(tls) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return tls_reason(tls);
    }
    match err.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => "eof",
        _ => "other",
    }
}

fn tls_reason(err: &rustls::Error) -> &'static str {
    match err {
        rustls::Error::NoCertificatesPresented => "no_client_certificate",
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => "unknown_ca",
        rustls::Error::InvalidCertificate(_) => "bad_certificate",
        rustls::Error::PeerIncompatible(incompatible) => match incompatible {
            PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::SupportedVersionsExtensionRequired => "protocol_version",
            PeerIncompatible::NoCipherSuitesInCommon
            | PeerIncompatible::NoKxGroupsInCommon
            | PeerIncompatible::NoSignatureSchemesInCommon
            | PeerIncompatible::NoEcPointFormatsInCommon => "no_shared_cipher",
            _ => "other",
        },
        rustls::Error::InvalidMessage(
            InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion,
        ) => "not_tls",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(err: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, err)
    }

    #[test]
    fn rustls_errors_map_to_labels() {
        let cases = [
            (
                rustls::Error::NoCertificatesPresented,
                "no_client_certificate",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "unknown_ca",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                "bad_certificate",
            ),
            (
                rustls::Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered),
                "protocol_version",
            ),
            (
                rustls::Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon),
                "no_shared_cipher",
            ),
            (
                rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType),
                "not_tls",
            ),
            (
                rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate),
                "other",
            ),
        ];
        for (err, label) in cases {
            assert_eq!(handshake_failure_reason(&wrapped(err)), label);
        }
    }

    #[test]
    fn io_errors_map_to_eof_or_other() {
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(handshake_failure_reason(&eof), "eof");
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(handshake_failure_reason(&reset), "eof");
        let timeout = io::Error::from(io::ErrorKind::TimedOut);
        assert_eq!(handshake_failure_reason(&timeout), "other");
    }

    #[test]
    fn every_label_is_listed() {
        for label in [
            "no_client_certificate",
            "unknown_ca",
            "bad_certificate",
            "protocol_version",
            "no_shared_cipher",
            "not_tls",
            "eof",
            "other",
        ] {
            assert!(HANDSHAKE_FAILURE_REASONS.contains(&label));
        }
    }
}
