//! The dev PKI on disk: every file parses, the key files are private, the chains verify in a
//! real handshake, and `ensure` generates only once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gateway_tls::devpki::{
    self, CA_CERT_FILE, CA_KEY_FILE, DevCa, SAMPLE_PARTNERS, SERVER_CERT_FILE, SERVER_KEY_FILE,
    partner_cert_path, partner_key_path,
};
use gateway_tls::testing::client_config;
use gateway_tls::{MinTlsVersion, peer_identity, read_certificates, server_config};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const DEADLINE: Duration = Duration::from_secs(5);

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// One handshake against `config` with the given client files; returns the server's view
/// of the peer (fingerprint, subject).
async fn handshake(
    config: Arc<rustls::ServerConfig>,
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
    server_name: &str,
) -> (gateway_core::Fingerprint, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(config).accept(tcp).await.unwrap();
        let identity = peer_identity(tls.get_ref().1, 7).unwrap();
        tls.write_all(b"ok").await.unwrap();
        tls.shutdown().await.unwrap();
        identity
    });
    let client = client_config(
        ca_pem,
        cert_pem,
        key_pem,
        &[&rustls::version::TLS13],
        &[b"h2"],
    )
    .unwrap();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let got = tokio::time::timeout(DEADLINE, async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = TlsConnector::from(client).connect(name, tcp).await.unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.unwrap();
        got
    })
    .await
    .unwrap();
    assert_eq!(got, b"ok");
    let identity = tokio::time::timeout(DEADLINE, server)
        .await
        .unwrap()
        .unwrap();
    (identity.fingerprint, identity.subject.to_string())
}

#[tokio::test]
async fn generated_files_parse_and_every_partner_chain_verifies() {
    gateway_tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    devpki::generate(dir, SAMPLE_PARTNERS).unwrap();

    let ca_pem = read(&dir.join(CA_CERT_FILE));
    let ca = read_certificates(&dir.join(CA_CERT_FILE)).unwrap();
    assert_eq!(ca.len(), 1);
    assert_eq!(
        gateway_tls::subject(&ca[0]).unwrap(),
        "CN=Partner Gateway Dev CA"
    );

    // The server files build a server config: they parse and the key matches.
    let config = server_config(
        &dir.join(SERVER_CERT_FILE),
        &dir.join(SERVER_KEY_FILE),
        &dir.join(CA_CERT_FILE),
        MinTlsVersion::Tls12,
    )
    .unwrap();

    for partner in SAMPLE_PARTNERS {
        let cert_pem = read(&partner_cert_path(dir, partner.id));
        let key_pem = read(&partner_key_path(dir, partner.id));
        let leaf = read_certificates(&partner_cert_path(dir, partner.id)).unwrap();
        let (fingerprint, subject) =
            handshake(config.clone(), &ca_pem, &cert_pem, &key_pem, "localhost").await;
        assert_eq!(fingerprint, gateway_tls::fingerprint(&leaf[0]));
        assert_eq!(
            subject,
            format!("CN={},O={}", partner.id, partner.organisation)
        );
    }

    // The server certificate is valid for the loopback IP as well as localhost.
    let bank = SAMPLE_PARTNERS[0];
    handshake(
        config,
        &ca_pem,
        &read(&partner_cert_path(dir, bank.id)),
        &read(&partner_key_path(dir, bank.id)),
        "127.0.0.1",
    )
    .await;
}

#[cfg(unix)]
#[test]
fn key_files_are_private_and_certificates_readable() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    devpki::generate(dir, SAMPLE_PARTNERS).unwrap();
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;

    let mut keys = vec![dir.join(CA_KEY_FILE), dir.join(SERVER_KEY_FILE)];
    let mut certs = vec![dir.join(CA_CERT_FILE), dir.join(SERVER_CERT_FILE)];
    for partner in SAMPLE_PARTNERS {
        keys.push(partner_key_path(dir, partner.id));
        certs.push(partner_cert_path(dir, partner.id));
    }
    for key in &keys {
        assert_eq!(mode(key), 0o600, "{}", key.display());
        let pem = std::fs::read_to_string(key).unwrap();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{} is not PKCS#8",
            key.display()
        );
    }
    for cert in &certs {
        assert_eq!(mode(cert), 0o644, "{}", cert.display());
    }
    // Nothing else: no temporary files left behind.
    let mut names: Vec<String> = walk(dir)
        .iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "ca-key.pem",
            "ca.pem",
            "partners/demo-bank-key.pem",
            "partners/demo-bank.pem",
            "partners/demo-fund-key.pem",
            "partners/demo-fund.pem",
            "partners/demo-insurer-key.pem",
            "partners/demo-insurer.pem",
            "server-key.pem",
            "server.pem",
        ]
    );
}

#[cfg(unix)]
#[test]
fn regenerating_keeps_key_files_private() {
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    devpki::generate(dir, SAMPLE_PARTNERS).unwrap();
    let key = dir.join(CA_KEY_FILE);
    // Someone loosened a key file; `--force` regeneration must not keep the loose mode.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o666)).unwrap();
    let before = std::fs::read(&key).unwrap();
    devpki::generate(dir, SAMPLE_PARTNERS).unwrap();
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_ne!(
        std::fs::read(&key).unwrap(),
        before,
        "a new CA key was generated"
    );
}

#[test]
fn ensure_generates_only_when_the_ca_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().join("certs").join("dev");

    assert!(devpki::ensure(&dir, SAMPLE_PARTNERS).unwrap());
    let ca_before = std::fs::read(dir.join(CA_CERT_FILE)).unwrap();
    let bank_before = std::fs::read(partner_cert_path(&dir, "demo-bank")).unwrap();

    assert!(!devpki::ensure(&dir, SAMPLE_PARTNERS).unwrap());
    assert_eq!(std::fs::read(dir.join(CA_CERT_FILE)).unwrap(), ca_before);
    assert_eq!(
        std::fs::read(partner_cert_path(&dir, "demo-bank")).unwrap(),
        bank_before
    );

    std::fs::remove_file(dir.join(CA_CERT_FILE)).unwrap();
    assert!(devpki::ensure(&dir, SAMPLE_PARTNERS).unwrap());
    assert_ne!(std::fs::read(dir.join(CA_CERT_FILE)).unwrap(), ca_before);
}

#[tokio::test]
async fn ca_loaded_from_files_issues_certificates_the_server_trusts() {
    gateway_tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    devpki::generate(dir, SAMPLE_PARTNERS).unwrap();

    let ca = DevCa::load(dir).unwrap();
    assert_eq!(ca.cert_pem().as_bytes(), read(&dir.join(CA_CERT_FILE)));
    // Rotation: a second certificate for demo-bank, from the same CA on disk.
    let rotated = ca.issue_client("demo-bank", "Demo Bank").unwrap();
    let original = read_certificates(&partner_cert_path(dir, "demo-bank")).unwrap();
    assert_ne!(
        rotated.fingerprint(),
        gateway_tls::fingerprint(&original[0])
    );

    let config = server_config(
        &dir.join(SERVER_CERT_FILE),
        &dir.join(SERVER_KEY_FILE),
        &dir.join(CA_CERT_FILE),
        MinTlsVersion::Tls13,
    )
    .unwrap();
    let (fingerprint, subject) = handshake(
        config,
        ca.cert_pem().as_bytes(),
        rotated.cert_pem.as_bytes(),
        rotated.key_pem.as_bytes(),
        "localhost",
    )
    .await;
    assert_eq!(fingerprint, rotated.fingerprint());
    assert_eq!(subject, "CN=demo-bank,O=Demo Bank");
}

#[test]
fn loading_from_a_directory_without_a_pki_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = DevCa::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, devpki::PkiError::Read { file, cause }
            if file == &dir.path().join(CA_CERT_FILE) && cause.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
