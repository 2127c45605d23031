//! The partner listener's rustls server configuration, and the PEM loading behind it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{CryptoProvider, SupportedKxGroup, aws_lc_rs};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";

/// The ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// BCP 195 (RFC 9325 §4.2) cipher suites, strongest first within each version.
///
/// TLS 1.3: every AEAD suite rustls has. TLS 1.2: ECDHE key exchange (forward secrecy) with
/// AES-GCM or ChaCha20-Poly1305 only — no CBC, no RSA key transport, no static DH, none of
/// which rustls implements anyway; listing them explicitly keeps the policy visible and
/// immune to a future change of the provider's defaults.
static CIPHER_SUITES: &[SupportedCipherSuite] = &[
    aws_lc_rs::cipher_suite::TLS13_AES_256_GCM_SHA384,
    aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256,
    aws_lc_rs::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    aws_lc_rs::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// Key exchange groups: the post-quantum hybrid first, then the BCP 195 curves.
///
/// The server takes the first group of the *client's* list that it supports, so this order
/// only matters for clients that list several without preference.
static KX_GROUPS: &[&dyn SupportedKxGroup] = &[
    aws_lc_rs::kx_group::X25519MLKEM768,
    aws_lc_rs::kx_group::X25519,
    aws_lc_rs::kx_group::SECP256R1,
    aws_lc_rs::kx_group::SECP384R1,
];

/// The lowest TLS version the partner listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MinTlsVersion {
    /// TLS 1.2 (ECDHE + AEAD suites only) and TLS 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Why a TLS configuration could not be built. Each variant names the file at fault.
///
/// For the PEM-bytes entry points the "file" is a label such as `<client CA PEM>`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read (missing, unreadable).
    #[error("{}: cannot read: {cause}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        cause: io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("{}: malformed PEM: {cause}", file.display())]
    Pem {
        /// The file.
        file: PathBuf,
        /// What the PEM parser objected to.
        cause: pem::Error,
    },
    /// The file holds no `CERTIFICATE` block.
    #[error("{}: no certificate found (expected a PEM `BEGIN CERTIFICATE` block)", file.display())]
    NoCertificate {
        /// The file.
        file: PathBuf,
    },
    /// The file holds no private key block.
    #[error("{}: no private key found (expected PEM `PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY`)", file.display())]
    NoPrivateKey {
        /// The file.
        file: PathBuf,
    },
    /// The private key cannot be used (unsupported algorithm, corrupt encoding).
    #[error("{}: unusable private key: {cause}", file.display())]
    BadKey {
        /// The key file.
        file: PathBuf,
        /// Why rustls refused it.
        cause: rustls::Error,
    },
    /// The leaf certificate of the server chain cannot be used.
    #[error("{}: unusable server certificate: {cause}", file.display())]
    BadCertificate {
        /// The certificate file.
        file: PathBuf,
        /// Why rustls refused it.
        cause: rustls::Error,
    },
    /// The private key does not belong to the leaf certificate.
    #[error("{}: private key does not match the certificate in {}", key.display(), certificate.display())]
    KeyMismatch {
        /// The certificate chain file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// A certificate of the client CA bundle is not usable as a trust anchor.
    #[error("{}: CA certificate #{index} (counting from 1) is not a usable trust anchor: {cause}", file.display())]
    BadCaCertificate {
        /// The CA bundle file.
        file: PathBuf,
        /// Position of the certificate in the bundle, from 1.
        index: usize,
        /// Why rustls refused it.
        cause: rustls::Error,
    },
    /// rustls refused the assembled configuration (a bug here, not an operator error).
    #[error("TLS configuration rejected: {cause}")]
    Config {
        /// Why rustls refused it.
        cause: String,
    },
}

/// Installs this crate's aws-lc-rs provider ([`crypto_provider`]) as the process default.
///
/// Idempotent: when a default is already installed (by an earlier call, or by anyone else),
/// the existing one stays and nothing happens.
pub fn install_crypto_provider() {
    // `Err` only means "already installed"; both outcomes leave a provider in place.
    let _ = crypto_provider().install_default();
}

/// The aws-lc-rs provider restricted to the BCP 195 cipher suites and key exchange groups.
///
/// TLS 1.3: AES-256-GCM, AES-128-GCM, ChaCha20-Poly1305. TLS 1.2: ECDHE-ECDSA and ECDHE-RSA
/// with AES-GCM or ChaCha20-Poly1305. Groups: X25519MLKEM768, X25519, secp256r1, secp384r1.
pub fn crypto_provider() -> CryptoProvider {
    CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        kx_groups: KX_GROUPS.to_vec(),
        ..aws_lc_rs::default_provider()
    }
}

/// Builds the partner listener's server configuration from PEM files.
///
/// - `cert_chain`: the server certificate, then any intermediates.
/// - `key`: its private key (PKCS#8, SEC1 or PKCS#1).
/// - `client_ca`: the partner CA bundle; every client must present a certificate chaining to
///   one of these (no anonymous fallback).
///
/// Session resumption uses stateless tickets encrypted under a key that lives and dies with
/// the returned configuration: after a reload, tickets of the old configuration no longer
/// resume, so every connection is verified against the CA bundle in force.
///
/// ```no_run
/// # use std::path::Path;
/// use gateway_tls::{MinTlsVersion, server_config};
///
/// gateway_tls::install_crypto_provider();
/// let config = server_config(
///     Path::new("certs/dev/server.pem"),
///     Path::new("certs/dev/server-key.pem"),
///     Path::new("certs/dev/ca.pem"),
///     MinTlsVersion::Tls12,
/// )?;
/// # Ok::<(), gateway_tls::TlsError>(())
/// ```
pub fn server_config(
    cert_chain: &Path,
    key: &Path,
    client_ca: &Path,
    min_version: MinTlsVersion,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certificates(cert_chain)?;
    let key_der = read_private_key(key)?;
    let roots = read_client_roots(client_ca)?;
    build(
        chain,
        key_der,
        roots,
        min_version,
        cert_chain,
        key,
        client_ca,
    )
}

/// [`server_config`] from PEM bytes held in memory (tests, embedded material).
///
/// Errors name the inputs `<cert chain PEM>`, `<key PEM>` and `<client CA PEM>`.
pub fn server_config_from_pem(
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: &[u8],
    min_version: MinTlsVersion,
) -> Result<Arc<ServerConfig>, TlsError> {
    let (chain_origin, key_origin, ca_origin) = (
        Path::new("<cert chain PEM>"),
        Path::new("<key PEM>"),
        Path::new("<client CA PEM>"),
    );
    let chain = parse_certificates(cert_chain_pem, chain_origin)?;
    let key_der = parse_private_key(key_pem, key_origin)?;
    let roots = parse_client_roots(client_ca_pem, ca_origin)?;
    build(
        chain,
        key_der,
        roots,
        min_version,
        chain_origin,
        key_origin,
        ca_origin,
    )
}

/// Reads every certificate of a PEM file, in file order; at least one.
pub fn read_certificates(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certificates(&read(file)?, file)
}

/// Reads the first private key of a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn read_private_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    parse_private_key(&read(file)?, file)
}

/// Reads a CA bundle into a root store; every certificate in it must be a usable trust anchor.
pub fn read_client_roots(file: &Path) -> Result<RootCertStore, TlsError> {
    parse_client_roots(&read(file)?, file)
}

// === helpers ===

fn read(file: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file).map_err(|cause| TlsError::Read {
        file: file.to_owned(),
        cause,
    })
}

pub(crate) fn parse_certificates(
    pem_bytes: &[u8],
    origin: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|cause| TlsError::Pem {
            file: origin.to_owned(),
            cause,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            file: origin.to_owned(),
        });
    }
    Ok(certs)
}

pub(crate) fn parse_private_key(
    pem_bytes: &[u8],
    origin: &Path,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem_bytes).map_err(|cause| match cause {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            file: origin.to_owned(),
        },
        cause => TlsError::Pem {
            file: origin.to_owned(),
            cause,
        },
    })
}

pub(crate) fn parse_client_roots(
    pem_bytes: &[u8],
    origin: &Path,
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (index, cert) in parse_certificates(pem_bytes, origin)?
        .into_iter()
        .enumerate()
    {
        roots
            .add(cert)
            .map_err(|cause| TlsError::BadCaCertificate {
                file: origin.to_owned(),
                index: index + 1,
                cause,
            })?;
    }
    Ok(roots)
}

fn versions(min_version: MinTlsVersion) -> &'static [&'static SupportedProtocolVersion] {
    static TLS12_AND_13: [&SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static TLS13: [&SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match min_version {
        MinTlsVersion::Tls12 => &TLS12_AND_13,
        MinTlsVersion::Tls13 => &TLS13,
    }
}

fn build(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: RootCertStore,
    min_version: MinTlsVersion,
    chain_origin: &Path,
    key_origin: &Path,
    ca_origin: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(crypto_provider());
    let config_error = |cause: &dyn std::fmt::Display| TlsError::Config {
        cause: cause.to_string(),
    };

    // Mandatory client authentication: the builder's default. Never call
    // `allow_unauthenticated()` here — a connection without a certificate must not complete.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|cause| match cause {
            // Unreachable in practice: `parse_client_roots` rejects an empty bundle.
            rustls::server::VerifierBuilderError::NoRootAnchors => TlsError::NoCertificate {
                file: ca_origin.to_owned(),
            },
            cause => config_error(&cause),
        })?;

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions(min_version))
        .map_err(|cause| config_error(&cause))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|cause| match cause {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                certificate: chain_origin.to_owned(),
                key: key_origin.to_owned(),
            },
            rustls::Error::InvalidCertificate(_) => TlsError::BadCertificate {
                file: chain_origin.to_owned(),
                cause,
            },
            cause => TlsError::BadKey {
                file: key_origin.to_owned(),
                cause,
            },
        })?;

    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP_1_1.to_vec()];
    // A ticket key per configuration (rotated by rustls every 6 hours): a reload starts
    // a fresh key, so tickets issued under an older CA bundle cannot resume.
    config.ticketer = aws_lc_rs::Ticketer::new().map_err(|cause| config_error(&cause))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devpki::DevCa;

    #[test]
    fn provider_offers_only_bcp195_suites_and_groups() {
        let provider = crypto_provider();
        let suites: Vec<String> = provider
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(
            suites,
            [
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            ]
        );
        let groups: Vec<String> = provider
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        assert_eq!(
            groups,
            ["X25519MLKEM768", "X25519", "secp256r1", "secp384r1"]
        );
    }

    #[test]
    fn server_config_offers_h2_and_tickets_without_early_data() {
        let ca = DevCa::new("Test CA").unwrap();
        let server = ca.issue_server(&["localhost"]).unwrap();
        let config = server_config_from_pem(
            server.cert_pem.as_bytes(),
            server.key_pem.as_bytes(),
            ca.cert_pem().as_bytes(),
            MinTlsVersion::Tls12,
        )
        .unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(config.max_early_data_size, 0);
        assert!(config.ticketer.enabled());
    }

    #[test]
    fn missing_file_is_reported_with_its_path() {
        let err = read_certificates(Path::new("/nonexistent/server.pem")).unwrap_err();
        assert!(
            matches!(&err, TlsError::Read { file, cause }
                if file == Path::new("/nonexistent/server.pem")
                    && cause.kind() == io::ErrorKind::NotFound),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("/nonexistent/server.pem: cannot read")
        );
    }

    #[test]
    fn pem_without_certificate_is_no_certificate() {
        let ca = DevCa::new("Test CA").unwrap();
        // A key file given where the certificate belongs.
        let err = server_config_from_pem(
            ca.key_pem().as_bytes(),
            ca.key_pem().as_bytes(),
            ca.cert_pem().as_bytes(),
            MinTlsVersion::Tls12,
        )
        .unwrap_err();
        assert!(
            matches!(&err, TlsError::NoCertificate { file } if file == Path::new("<cert chain PEM>")),
            "{err:?}"
        );
        let err = server_config_from_pem(b"", b"", b"", MinTlsVersion::Tls12).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
    }

    #[test]
    fn certificate_given_as_key_is_no_private_key() {
        let ca = DevCa::new("Test CA").unwrap();
        let server = ca.issue_server(&["localhost"]).unwrap();
        let err = server_config_from_pem(
            server.cert_pem.as_bytes(),
            server.cert_pem.as_bytes(),
            ca.cert_pem().as_bytes(),
            MinTlsVersion::Tls12,
        )
        .unwrap_err();
        assert!(
            matches!(&err, TlsError::NoPrivateKey { file } if file == Path::new("<key PEM>")),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_pem_is_malformed() {
        let ca = DevCa::new("Test CA").unwrap();
        let pem = ca.cert_pem();
        let truncated = &pem[..pem.len() - 30];
        let err = read_client_roots_from(truncated.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
    }

    #[test]
    fn garbage_in_ca_bundle_is_a_bad_ca_certificate() {
        let ca = DevCa::new("Test CA").unwrap();
        let garbage = "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n";
        let bundle = format!("{}{garbage}", ca.cert_pem());
        let err = read_client_roots_from(bundle.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, TlsError::BadCaCertificate { index: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("CA certificate #2"), "{err}");
    }

    #[test]
    fn key_of_another_certificate_is_a_mismatch() {
        let ca = DevCa::new("Test CA").unwrap();
        let server = ca.issue_server(&["localhost"]).unwrap();
        let other = ca.issue_server(&["localhost"]).unwrap();
        let err = server_config_from_pem(
            server.cert_pem.as_bytes(),
            other.key_pem.as_bytes(),
            ca.cert_pem().as_bytes(),
            MinTlsVersion::Tls13,
        )
        .unwrap_err();
        assert!(
            matches!(&err, TlsError::KeyMismatch { certificate, key }
                if certificate == Path::new("<cert chain PEM>") && key == Path::new("<key PEM>")),
            "{err:?}"
        );
    }

    fn read_client_roots_from(pem_bytes: &[u8]) -> Result<RootCertStore, TlsError> {
        parse_client_roots(pem_bytes, Path::new("<client CA PEM>"))
    }
}
