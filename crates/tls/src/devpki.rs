//! The development PKI: a CA, a server certificate and one client certificate per partner.
//!
//! [`generate`] writes this layout (the one `certs/dev/README.md` documents):
//!
//! ```text
//! <dir>/ca.pem                  CA certificate, CN "Partner Gateway Dev CA": the partner CA
//!                               bundle and the issuer of the server certificate
//! <dir>/ca-key.pem              its private key
//! <dir>/server.pem              server certificate: SANs localhost, 127.0.0.1, ::1; serverAuth
//! <dir>/server-key.pem          its private key
//! <dir>/partners/<id>.pem       client certificate, subject CN=<id>,O=<organisation>; clientAuth
//! <dir>/partners/<id>-key.pem   its private key
//! ```
//!
//! Every key is ECDSA P-256 in PKCS#8 PEM, written with mode 0600; certificates are valid from
//! a day before generation for five years. Files are written to a temporary name and renamed,
//! and `ca.pem` last, so a directory with `ca.pem` is complete ([`ensure`] relies on it).
//!
//! [`DevCa`] is also the certificate factory of tests: a separate CA, a client certificate
//! with a chosen subject or validity (rotation: two certificates for one partner), or a CA
//! loaded back from `ca.pem` and `ca-key.pem`.
//!
//! Nothing here is for production: the CA key sits next to the certificates.

use std::fmt;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gateway_core::{Fingerprint, IdError, PartnerId};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls_pki_types::CertificateDer;

/// A partner that gets a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevPartner<'a> {
    /// The partner id: the certificate's CN and the file name under `partners/`.
    pub id: &'a str,
    /// The certificate's O.
    pub organisation: &'a str,
}

/// The sample partners of `partner-config/partners/`.
pub const SAMPLE_PARTNERS: &[DevPartner<'static>] = &[
    DevPartner {
        id: "demo-bank",
        organisation: "Demo Bank",
    },
    DevPartner {
        id: "demo-fund",
        organisation: "Demo Fund",
    },
    DevPartner {
        id: "demo-insurer",
        organisation: "Demo Insurer",
    },
];

/// The dev CA's common name.
pub const CA_COMMON_NAME: &str = "Partner Gateway Dev CA";
/// The names the dev server certificate is valid for.
pub const SERVER_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];
/// The CA certificate file, relative to the PKI directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key file.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The server certificate file.
pub const SERVER_CERT_FILE: &str = "server.pem";
/// The server key file.
pub const SERVER_KEY_FILE: &str = "server-key.pem";
/// The directory of partner certificates.
pub const PARTNERS_DIR: &str = "partners";

/// How long generated certificates stay valid.
const VALIDITY: Duration = Duration::from_secs(5 * 365 * 86_400);
/// How far before generation they become valid (clock skew between machines).
const BACKDATE: Duration = Duration::from_secs(86_400);

/// Why the dev PKI could not be generated or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A partner id would not make a safe file name.
    #[error("partner id {id:?} cannot name a certificate file: {cause}")]
    BadPartnerId {
        /// The rejected id.
        id: String,
        /// The rule it breaks.
        cause: IdError,
    },
    /// rcgen could not build a key or certificate.
    #[error("cannot generate the {what}: {cause}")]
    Generate {
        /// What was being generated, e.g. `client certificate for demo-bank`.
        what: String,
        /// rcgen's reason.
        cause: rcgen::Error,
    },
    /// A file could not be read.
    #[error("{}: cannot read: {cause}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        cause: io::Error,
    },
    /// A file could not be written.
    #[error("{}: cannot write: {cause}", file.display())]
    Write {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        cause: io::Error,
    },
    /// The CA certificate or key cannot be used to issue certificates.
    #[error("{}: cannot sign with this CA: {reason}", file.display())]
    BadCa {
        /// The certificate or key file (or `<CA PEM>` for in-memory input).
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// A certificate and its freshly generated private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The certificate, DER.
    pub cert_der: CertificateDer<'static>,
}

/// A certificate authority that can issue server and client certificates.
pub struct DevCa {
    /// The CA's own parameters: rcgen takes the issuer name, key identifier method and key
    /// usages from here when signing.
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

/// Writes a complete dev PKI for `partners` into `dir`, replacing any files already there.
///
/// ```no_run
/// use gateway_tls::devpki;
///
/// devpki::generate(std::path::Path::new("certs/dev"), devpki::SAMPLE_PARTNERS)?;
/// # Ok::<(), devpki::PkiError>(())
/// ```
pub fn generate(dir: &Path, partners: &[DevPartner<'_>]) -> Result<(), PkiError> {
    // Validate every id before writing anything: an id is a file name.
    for partner in partners {
        PartnerId::parse(partner.id).map_err(|cause| PkiError::BadPartnerId {
            id: partner.id.to_owned(),
            cause,
        })?;
    }
    let ca = DevCa::new(CA_COMMON_NAME)?;
    let server = ca.issue_server(SERVER_NAMES)?;
    let partners_dir = dir.join(PARTNERS_DIR);
    create_dir(&partners_dir)?;
    for partner in partners {
        let cert = ca.issue_client(partner.id, partner.organisation)?;
        write_file(&partner_key_path(dir, partner.id), &cert.key_pem, KEY_MODE)?;
        write_file(
            &partner_cert_path(dir, partner.id),
            &cert.cert_pem,
            CERT_MODE,
        )?;
    }
    write_file(&dir.join(SERVER_KEY_FILE), &server.key_pem, KEY_MODE)?;
    write_file(&dir.join(SERVER_CERT_FILE), &server.cert_pem, CERT_MODE)?;
    write_file(&dir.join(CA_KEY_FILE), &ca.key_pem(), KEY_MODE)?;
    // Last: its presence marks a complete PKI.
    write_file(&dir.join(CA_CERT_FILE), ca.cert_pem(), CERT_MODE)?;
    Ok(())
}

/// Generates the dev PKI when `dir` has no `ca.pem`; returns whether it generated.
///
/// An existing PKI is left alone, even if it lacks a partner of `partners`: regenerate with
/// [`generate`] (`partner-gateway pki --out certs/dev --force`).
pub fn ensure(dir: &Path, partners: &[DevPartner<'_>]) -> Result<bool, PkiError> {
    if dir.join(CA_CERT_FILE).exists() {
        return Ok(false);
    }
    generate(dir, partners)?;
    Ok(true)
}

/// `<dir>/partners/<id>.pem`.
pub fn partner_cert_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(PARTNERS_DIR).join(format!("{id}.pem"))
}

/// `<dir>/partners/<id>-key.pem`.
pub fn partner_key_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(PARTNERS_DIR).join(format!("{id}-key.pem"))
}

// === impl DevCa ===

impl DevCa {
    /// A new self-signed CA (ECDSA P-256) with the given common name, valid for five years.
    pub fn new(common_name: &str) -> Result<DevCa, PkiError> {
        let what = || format!("CA {common_name:?}");
        let key = KeyPair::generate().map_err(|cause| generate_error(what(), cause))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        // Path length 0: this CA signs leaf certificates only.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let (not_before, not_after) = default_validity();
        set_validity(&mut params, not_before, not_after);
        let cert = params
            .self_signed(&key)
            .map_err(|cause| generate_error(what(), cause))?;
        Ok(DevCa {
            params,
            key,
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
        })
    }

    /// Loads a CA from `<dir>/ca.pem` and `<dir>/ca-key.pem`.
    pub fn load(dir: &Path) -> Result<DevCa, PkiError> {
        let cert_file = dir.join(CA_CERT_FILE);
        let key_file = dir.join(CA_KEY_FILE);
        let cert_pem = read_file(&cert_file)?;
        let key_pem = read_file(&key_file)?;
        DevCa::from_pem_with_origin(&cert_pem, &key_pem, &cert_file, &key_file)
    }

    /// A CA from its certificate and PKCS#8 key, PEM.
    ///
    /// The certificate's subject must be single-valued RDNs of distinct types with UTF8String,
    /// PrintableString, IA5String, BMPString or UniversalString values (rcgen re-encodes it
    /// as the issuer of every certificate it signs), and the key must match it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<DevCa, PkiError> {
        DevCa::from_pem_with_origin(
            cert_pem,
            key_pem,
            Path::new("<CA PEM>"),
            Path::new("<CA key PEM>"),
        )
    }

    /// The CA certificate, PEM: what goes into a client CA bundle.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The CA private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A client certificate (clientAuth) for subject `CN=<common_name>,O=<organisation>`,
    /// valid from a day ago for five years, with a new key.
    pub fn issue_client(
        &self,
        common_name: &str,
        organisation: &str,
    ) -> Result<IssuedCert, PkiError> {
        let (not_before, not_after) = default_validity();
        self.issue_client_with_validity(common_name, organisation, not_before, not_after)
    }

    /// [`issue_client`](Self::issue_client) with an explicit validity window (expired and
    /// not-yet-valid certificates for tests). Times are clamped to 1970..9000.
    pub fn issue_client_with_validity(
        &self,
        common_name: &str,
        organisation: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        // Pushed in this order, the RFC 4514 form is `CN=<cn>,O=<organisation>`.
        params
            .distinguished_name
            .push(DnType::OrganizationName, organisation);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, not_before, not_after);
        self.issue(&params, format!("client certificate for {common_name:?}"))
    }

    /// A server certificate (serverAuth) for DNS names and IP addresses, with a new key.
    /// Its CN is the first name.
    pub fn issue_server(&self, names: &[&str]) -> Result<IssuedCert, PkiError> {
        let what = || "server certificate".to_owned();
        let sans: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let mut params =
            CertificateParams::new(sans).map_err(|cause| generate_error(what(), cause))?;
        params.distinguished_name = DistinguishedName::new();
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let (not_before, not_after) = default_validity();
        set_validity(&mut params, not_before, not_after);
        self.issue(&params, what())
    }

    fn issue(&self, params: &CertificateParams, what: String) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate().map_err(|cause| generate_error(what.clone(), cause))?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        // No serial number given: rcgen derives a positive 20-byte serial from the SHA-256
        // of the new public key, unique because every certificate gets a new key.
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|cause| generate_error(what, cause))?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
        })
    }

    fn from_pem_with_origin(
        cert_pem: &str,
        key_pem: &str,
        cert_origin: &Path,
        key_origin: &Path,
    ) -> Result<DevCa, PkiError> {
        let bad = |file: &Path, reason: String| PkiError::BadCa {
            file: file.to_owned(),
            reason,
        };
        let cert_der = crate::server::parse_certificates(cert_pem.as_bytes(), cert_origin)
            .map_err(|err| bad(cert_origin, err.to_string()))?
            .swap_remove(0);
        let key = KeyPair::from_pem(key_pem).map_err(|err| bad(key_origin, err.to_string()))?;
        let public = crate::subject::subject_public_key(&cert_der)
            .map_err(|err| bad(cert_origin, err.to_string()))?;
        if public != key.der_bytes() {
            return Err(bad(
                key_origin,
                "the key does not belong to the CA certificate".to_owned(),
            ));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name =
            issuer_name(&cert_der).map_err(|reason| bad(cert_origin, reason))?;
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ok(DevCa {
            params,
            key,
            cert_pem: cert_pem.to_owned(),
            cert_der,
        })
    }
}

impl fmt::Debug for DevCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("DevCa")
            .field("subject", &crate::subject(&self.cert_der).ok())
            .finish_non_exhaustive()
    }
}

// === impl IssuedCert ===

impl IssuedCert {
    /// The certificate's SHA-256 fingerprint, as partner pins name it.
    pub fn fingerprint(&self) -> Fingerprint {
        crate::fingerprint(&self.cert_der)
    }
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("IssuedCert")
            .field("subject", &crate::subject(&self.cert_der).ok())
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

// === helpers ===

#[cfg(unix)]
const KEY_MODE: u32 = 0o600;
#[cfg(unix)]
const CERT_MODE: u32 = 0o644;
#[cfg(not(unix))]
const KEY_MODE: u32 = 0;
#[cfg(not(unix))]
const CERT_MODE: u32 = 0;

fn generate_error(what: String, cause: rcgen::Error) -> PkiError {
    PkiError::Generate { what, cause }
}

fn default_validity() -> (SystemTime, SystemTime) {
    let now = SystemTime::now();
    (
        now.checked_sub(BACKDATE).unwrap_or(UNIX_EPOCH),
        now + VALIDITY,
    )
}

fn set_validity(params: &mut CertificateParams, not_before: SystemTime, not_after: SystemTime) {
    // rcgen takes `time::OffsetDateTime`; we build it from the epoch plus a std Duration so
    // this crate needs no `time` dependency. Clamping to year ~9000 keeps the addition from
    // overflowing `time`'s range (which would panic).
    const MAX_SINCE_EPOCH: Duration = Duration::from_secs(220_000_000_000);
    let since_epoch = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .min(MAX_SINCE_EPOCH)
    };
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + since_epoch(not_before);
    params.not_after = epoch + since_epoch(not_after);
}

/// Rebuilds a certificate's subject as an rcgen name, byte-for-byte re-encodable, so the
/// certificates we sign carry an issuer name equal to the CA's subject.
fn issuer_name(cert_der: &[u8]) -> Result<DistinguishedName, String> {
    let rdns = crate::subject::subject_rdns(cert_der).map_err(|err| err.to_string())?;
    let mut name = DistinguishedName::new();
    for rdn in rdns {
        let [attribute] = rdn.as_slice() else {
            return Err("multi-valued RDNs are not supported".to_owned());
        };
        let ty = DnType::from_oid(&attribute.oid);
        if name.get(&ty).is_some() {
            return Err(format!("attribute {ty:?} appears twice in the subject"));
        }
        let unsupported = || format!("attribute {ty:?} has an unsupported string type");
        let text = || crate::subject::decode_string(attribute.tag, attribute.value);
        let value = match attribute.tag {
            0x0c => DnValue::Utf8String(text().ok_or_else(unsupported)?),
            0x13 => DnValue::PrintableString(
                text()
                    .ok_or_else(unsupported)?
                    .try_into()
                    .map_err(|_| unsupported())?,
            ),
            0x16 => DnValue::Ia5String(
                text()
                    .ok_or_else(unsupported)?
                    .try_into()
                    .map_err(|_| unsupported())?,
            ),
            0x1e => DnValue::BmpString(
                rcgen::string::BmpString::from_utf16be(attribute.value.to_vec())
                    .map_err(|_| unsupported())?,
            ),
            0x1c => DnValue::UniversalString(
                rcgen::string::UniversalString::from_utf32be(attribute.value.to_vec())
                    .map_err(|_| unsupported())?,
            ),
            _ => return Err(unsupported()),
        };
        name.push(ty, value);
    }
    Ok(name)
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|cause| PkiError::Write {
        file: dir.to_owned(),
        cause,
    })
}

fn read_file(file: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(file).map_err(|cause| PkiError::Read {
        file: file.to_owned(),
        cause,
    })
}

/// Writes `contents` to a temporary file with `mode`, then renames it over `file`, so the
/// final file never exists with looser permissions or half its contents.
fn write_file(file: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let error = |cause| PkiError::Write {
        file: file.to_owned(),
        cause,
    };
    let file_name = file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = file.with_file_name(format!(".{file_name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    // A stale temporary file from an interrupted run may carry another mode: start afresh.
    let _ = std::fs::remove_file(&temporary);
    let mut out = options.open(&temporary).map_err(error)?;
    out.write_all(contents.as_bytes()).map_err(error)?;
    out.sync_all().map_err(error)?;
    drop(out);
    std::fs::rename(&temporary, file).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_subject_is_cn_then_o() {
        let ca = DevCa::new(CA_COMMON_NAME).unwrap();
        let cert = ca.issue_client("demo-fund", "Demo Fund").unwrap();
        assert_eq!(
            crate::subject(&cert.cert_der).unwrap(),
            "CN=demo-fund,O=Demo Fund"
        );
        assert!(cert.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn two_certificates_for_one_partner_differ() {
        let ca = DevCa::new(CA_COMMON_NAME).unwrap();
        let first = ca.issue_client("demo-bank", "Demo Bank").unwrap();
        let second = ca.issue_client("demo-bank", "Demo Bank").unwrap();
        assert_ne!(first.fingerprint(), second.fingerprint());
        assert_eq!(
            crate::subject(&first.cert_der),
            crate::subject(&second.cert_der)
        );
    }

    #[test]
    fn loaded_ca_keeps_its_subject_and_key() {
        let ca = DevCa::new("Loaded CA, Ltd").unwrap();
        let loaded = DevCa::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
        assert_eq!(loaded.cert_der(), ca.cert_der());
        assert_eq!(
            issuer_name(loaded.cert_der()).unwrap(),
            ca.params.distinguished_name
        );
    }

    #[test]
    fn loading_a_ca_with_a_foreign_key_is_refused() {
        let ca = DevCa::new("CA one").unwrap();
        let other = DevCa::new("CA two").unwrap();
        let err = DevCa::from_pem(ca.cert_pem(), &other.key_pem()).unwrap_err();
        assert!(
            matches!(&err, PkiError::BadCa { file, reason }
                if file == Path::new("<CA key PEM>") && reason.contains("does not belong")),
            "{err:?}"
        );
    }

    #[test]
    fn loading_garbage_as_a_ca_is_refused() {
        let ca = DevCa::new("CA one").unwrap();
        let err = DevCa::from_pem("not pem", &ca.key_pem()).unwrap_err();
        assert!(
            matches!(&err, PkiError::BadCa { file, .. } if file == Path::new("<CA PEM>")),
            "{err:?}"
        );
        let err = DevCa::from_pem(ca.cert_pem(), "not a key").unwrap_err();
        assert!(
            matches!(&err, PkiError::BadCa { file, .. } if file == Path::new("<CA key PEM>")),
            "{err:?}"
        );
    }

    #[test]
    fn unsafe_partner_id_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let partners = [DevPartner {
            id: "../escape",
            organisation: "Evil",
        }];
        let err = generate(dir.path(), &partners).unwrap_err();
        assert!(
            matches!(&err, PkiError::BadPartnerId { id, .. } if id == "../escape"),
            "{err:?}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn debug_output_never_shows_keys() {
        let ca = DevCa::new("Debug CA").unwrap();
        let cert = ca.issue_client("demo-bank", "Demo Bank").unwrap();
        let text = format!("{ca:?} {cert:?}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(text.contains("CN=Debug CA"), "{text}");
    }
}
