//! Test helpers (feature `test-util`): rustls clients and a hand-made `ClientHello`.
//!
//! The clients use the full aws-lc-rs provider, not this crate's restricted one, so they
//! behave like an ordinary partner client; what they offer is narrowed by `versions`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, SupportedProtocolVersion};

use crate::TlsError;
use crate::server::{parse_certificates, parse_client_roots, parse_private_key};

/// A client that trusts `ca_pem`, presents `client_cert_pem` (with `client_key_pem`), speaks
/// only `versions` and offers the ALPN ids `alpn`.
///
/// ```
/// use gateway_tls::testing::client_config;
///
/// let ca = gateway_tls::devpki::DevCa::new("Test CA")?;
/// let bank = ca.issue_client("demo-bank", "Demo Bank")?;
/// let config = client_config(
///     ca.cert_pem().as_bytes(),
///     bank.cert_pem.as_bytes(),
///     bank.key_pem.as_bytes(),
///     &[&rustls::version::TLS13],
///     &[b"h2"],
/// )?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn client_config(
    ca_pem: &[u8],
    client_cert_pem: &[u8],
    client_key_pem: &[u8],
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let chain = parse_certificates(client_cert_pem, Path::new("<client cert PEM>"))?;
    let key = parse_private_key(client_key_pem, Path::new("<client key PEM>"))?;
    let mut config = builder(ca_pem, versions)?
        .with_client_auth_cert(chain, key)
        .map_err(|cause| TlsError::BadKey {
            file: "<client key PEM>".into(),
            cause,
        })?;
    config.alpn_protocols = alpn.iter().map(|id| id.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A client that trusts `ca_pem` and presents **no** certificate.
pub fn anonymous_client_config(
    ca_pem: &[u8],
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = builder(ca_pem, versions)?.with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|id| id.to_vec()).collect();
    Ok(Arc::new(config))
}

/// One TLS record holding a `ClientHello` with `legacy_version` (e.g. `0x0302` for TLS 1.1)
/// offering exactly `cipher_suites` (IANA code points), and no `supported_versions`
/// extension — what an old or misconfigured client sends, which rustls clients cannot.
///
/// It carries just enough extensions for a TLS 1.2 server to negotiate ECDHE with ECDSA:
/// `supported_groups` (x25519, secp256r1), `ec_point_formats` (uncompressed) and
/// `signature_algorithms` (ECDSA/RSA-PSS/RSA with SHA-256).
pub fn raw_client_hello(legacy_version: u16, cipher_suites: &[u16]) -> Vec<u8> {
    let mut extensions = Vec::new();
    // supported_groups: x25519, secp256r1
    push_extension(
        &mut extensions,
        0x000a,
        &[0x00, 0x04, 0x00, 0x1d, 0x00, 0x17],
    );
    // ec_point_formats: uncompressed
    push_extension(&mut extensions, 0x000b, &[0x01, 0x00]);
    // signature_algorithms: ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256
    push_extension(
        &mut extensions,
        0x000d,
        &[0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
    );

    let mut hello = Vec::new();
    hello.extend_from_slice(&legacy_version.to_be_bytes());
    hello.extend_from_slice(&[0x5a; 32]); // random: any value will do
    hello.push(0); // legacy_session_id: empty
    push_u16_length(&mut hello, cipher_suites.len() * 2);
    for suite in cipher_suites {
        hello.extend_from_slice(&suite.to_be_bytes());
    }
    hello.extend_from_slice(&[0x01, 0x00]); // compression_methods: null only
    push_u16_length(&mut hello, extensions.len());
    hello.extend_from_slice(&extensions);

    let mut handshake = vec![0x01]; // HandshakeType client_hello
    handshake.extend_from_slice(&u32_to_u24(hello.len()));
    handshake.extend_from_slice(&hello);

    // Record: handshake, legacy record version TLS 1.0 (as RFC 8446 §5.1 advises for the
    // first ClientHello), length.
    let mut record = vec![0x16, 0x03, 0x01];
    push_u16_length(&mut record, handshake.len());
    record.extend_from_slice(&handshake);
    record
}

// === helpers ===

fn builder(
    ca_pem: &[u8],
    versions: &[&'static SupportedProtocolVersion],
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let roots = parse_client_roots(ca_pem, Path::new("<CA PEM>"))?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|cause| TlsError::Config {
            cause: cause.to_string(),
        })?;
    Ok(ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|cause| TlsError::Config {
            cause: cause.to_string(),
        })?
        .with_webpki_verifier(verifier))
}

fn push_extension(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    push_u16_length(out, body.len());
    out.extend_from_slice(body);
}

fn push_u16_length(out: &mut Vec<u8>, length: usize) {
    // Test inputs are tiny; a longer list would be a broken test.
    let length = u16::try_from(length).unwrap_or(u16::MAX);
    out.extend_from_slice(&length.to_be_bytes());
}

fn u32_to_u24(length: usize) -> [u8; 3] {
    let bytes = u32::try_from(length).unwrap_or(u32::MAX).to_be_bytes();
    [bytes[1], bytes[2], bytes[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_client_hello_lengths_are_consistent() {
        let record = raw_client_hello(0x0302, &[0xc013, 0x002f]);
        assert_eq!(record[0], 0x16);
        let record_len = usize::from(u16::from_be_bytes([record[3], record[4]]));
        assert_eq!(record.len(), 5 + record_len);
        assert_eq!(record[5], 0x01);
        let hello_len = usize::from_be_bytes([0, 0, 0, 0, 0, record[6], record[7], record[8]]);
        assert_eq!(record_len, 4 + hello_len);
        assert_eq!(&record[9..11], &[0x03, 0x02]);
        // Suites start after version (2), random (32) and the empty session id (1).
        assert_eq!(&record[44..50], &[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]);
    }
}
