//! Real handshakes over TCP on 127.0.0.1 between a tokio-rustls server built by
//! `gateway_tls::server_config*` and rustls clients (or raw bytes for what rustls clients
//! cannot send).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gateway_core::PeerIdentity;
use gateway_tls::devpki::{DevCa, IssuedCert};
use gateway_tls::testing::{anonymous_client_config, client_config, raw_client_hello};
use gateway_tls::{MinTlsVersion, handshake_failure_reason, peer_identity, server_config_from_pem};
use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, HandshakeKind, ProtocolVersion, ServerConfig, SupportedProtocolVersion,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Every await in these tests finishes in milliseconds; this only turns a hang into a failure.
const DEADLINE: Duration = Duration::from_secs(5);

const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
const TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
const H2_AND_HTTP1: &[&[u8]] = &[b"h2", b"http/1.1"];

// === fixtures ===

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate for demo-bank.
struct Pki {
    ca: DevCa,
    server: IssuedCert,
    bank: IssuedCert,
}

fn pki() -> Pki {
    gateway_tls::install_crypto_provider();
    let ca = DevCa::new("Handshake Test CA").unwrap();
    let server = ca.issue_server(&["localhost", "127.0.0.1"]).unwrap();
    let bank = ca.issue_client("demo-bank", "Demo Bank").unwrap();
    Pki { ca, server, bank }
}

impl Pki {
    fn server_config(&self, min: MinTlsVersion) -> Arc<ServerConfig> {
        server_config_from_pem(
            self.server.cert_pem.as_bytes(),
            self.server.key_pem.as_bytes(),
            self.ca.cert_pem().as_bytes(),
            min,
        )
        .unwrap()
    }

    fn client(
        &self,
        cert: &IssuedCert,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        client_config(
            self.ca.cert_pem().as_bytes(),
            cert.cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
            versions,
            H2_AND_HTTP1,
        )
        .unwrap()
    }
}

/// What the server saw of one connection.
#[derive(Debug)]
struct Accepted {
    identity: PeerIdentity,
    version: ProtocolVersion,
    alpn: Option<Vec<u8>>,
    kind: HandshakeKind,
}

/// A server that accepts connections one after another and reports each handshake's outcome.
/// Dropping it aborts the accept task.
struct Server {
    addr: SocketAddr,
    outcomes: tokio::sync::mpsc::UnboundedReceiver<Result<Accepted, &'static str>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(config: Arc<ServerConfig>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, outcomes) = tokio::sync::mpsc::unbounded_channel();
        let acceptor = TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            let mut connection = 0;
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                connection += 1;
                let outcome = match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        let (_, conn) = tls.get_ref();
                        let accepted = Accepted {
                            identity: peer_identity(conn, connection).expect("identity"),
                            version: conn.protocol_version().expect("version"),
                            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
                            kind: conn.handshake_kind().expect("kind"),
                        };
                        // Tell the client it was accepted, then close cleanly.
                        let _ = tls.write_all(b"ok").await;
                        let _ = tls.shutdown().await;
                        Ok(accepted)
                    }
                    Err(err) => Err(handshake_failure_reason(&err)),
                };
                if tx.send(outcome).is_err() {
                    return;
                }
            }
        });
        Server {
            addr,
            outcomes,
            task,
        }
    }

    async fn next_outcome(&mut self) -> Result<Accepted, &'static str> {
        deadline(self.outcomes.recv())
            .await
            .expect("server task ended")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn deadline<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .expect("deadline passed")
}

/// Connects with `config`, and returns what the client read after the handshake: `Ok(b"ok")`
/// when the server accepted, or the client-side error.
async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: &str,
) -> std::io::Result<Vec<u8>> {
    deadline(async {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut tls = TlsConnector::from(config).connect(name, tcp).await?;
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await?;
        Ok(got)
    })
    .await
}

/// Sends raw bytes, closes the sending side, and returns everything the server sends back
/// until it closes.
async fn send_raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    deadline(async {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(bytes).await.unwrap();
        tcp.shutdown().await.unwrap();
        let mut got = Vec::new();
        // The server may reset after its alert; what arrived before is what matters.
        let _ = tcp.read_to_end(&mut got).await;
        got
    })
    .await
}

/// The first record must be a fatal alert with `description`, and no handshake record
/// (no ServerHello) may appear at all.
fn assert_only_alert(got: &[u8], description: u8) {
    assert!(got.len() >= 7, "expected an alert record, got {got:02x?}");
    assert_eq!(got[0], 0x15, "first record is not an alert: {got:02x?}");
    assert_eq!(&got[3..5], &[0x00, 0x02], "alert length");
    assert_eq!(got[5], 2, "alert level is not fatal");
    assert_eq!(got[6], description, "alert description");
    // Exactly one 7-byte record: nothing else, so no ServerHello either.
    assert_eq!(got.len(), 7, "anything besides the alert: {got:02x?}");
}

fn rustls_error(err: &std::io::Error) -> Option<&rustls::Error> {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
}

// === successful handshakes ===

#[tokio::test]
async fn tls13_handshake_yields_fingerprint_and_subject() {
    let pki = pki();
    let mut server = Server::start(pki.server_config(MinTlsVersion::Tls12)).await;

    let got = connect(server.addr, pki.client(&pki.bank, TLS13_ONLY), "localhost")
        .await
        .unwrap();
    assert_eq!(got, b"ok");

    let accepted = server.next_outcome().await.unwrap();
    assert_eq!(accepted.version, ProtocolVersion::TLSv1_3);
    assert_eq!(accepted.identity.fingerprint, pki.bank.fingerprint());
    assert_eq!(&*accepted.identity.subject, "CN=demo-bank,O=Demo Bank");
    assert_eq!(accepted.identity.connection, 1);
}

#[tokio::test]
async fn tls12_ecdhe_aead_handshake_yields_fingerprint_and_subject() {
    let pki = pki();
    let mut server = Server::start(pki.server_config(MinTlsVersion::Tls12)).await;

    let got = connect(server.addr, pki.client(&pki.bank, TLS12_ONLY), "127.0.0.1")
        .await
        .unwrap();
    assert_eq!(got, b"ok");

    let accepted = server.next_outcome().await.unwrap();
    assert_eq!(accepted.version, ProtocolVersion::TLSv1_2);
    assert_eq!(accepted.identity.fingerprint, pki.bank.fingerprint());
    assert_eq!(&*accepted.identity.subject, "CN=demo-bank,O=Demo Bank");
}

#[tokio::test]
async fn tls12_negotiates_an_ecdhe_aead_suite() {
    let pki = pki();
    let config = pki.server_config(MinTlsVersion::Tls12);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = TlsAcceptor::from(config).accept(tcp).await.unwrap();
        tls.get_ref().1.negotiated_cipher_suite().unwrap().suite()
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let _tls = deadline(TlsConnector::from(pki.client(&pki.bank, TLS12_ONLY)).connect(name, tcp))
        .await
        .unwrap();
    let suite = deadline(server).await.unwrap();
    assert!(
        format!("{suite:?}").starts_with("TLS_ECDHE_ECDSA_WITH_")
            && (format!("{suite:?}").contains("GCM") || format!("{suite:?}").contains("CHACHA20")),
        "{suite:?}"
    );
}

#[tokio::test]
async fn alpn_negotiates_h2_when_offered_and_http1_otherwise() {
    let pki = pki();
    let mut server = Server::start(pki.server_config(MinTlsVersion::Tls12)).await;

    connect(server.addr, pki.client(&pki.bank, BOTH), "localhost")
        .await
        .unwrap();
    assert_eq!(
        server.next_outcome().await.unwrap().alpn.as_deref(),
        Some(&b"h2"[..])
    );

    let http1_only = client_config(
        pki.ca.cert_pem().as_bytes(),
        pki.bank.cert_pem.as_bytes(),
        pki.bank.key_pem.as_bytes(),
        BOTH,
        &[b"http/1.1"],
    )
    .unwrap();
    connect(server.addr, http1_only, "localhost").await.unwrap();
    assert_eq!(
        server.next_outcome().await.unwrap().alpn.as_deref(),
        Some(&b"http/1.1"[..])
    );
}

#[tokio::test]
async fn resumed_session_keeps_the_client_identity() {
    let pki = pki();
    let mut server = Server::start(pki.server_config(MinTlsVersion::Tls12)).await;
    // One client config: its session cache holds the ticket of the first connection.
    let client = pki.client(&pki.bank, TLS13_ONLY);

    connect(server.addr, client.clone(), "localhost")
        .await
        .unwrap();
    let first = server.next_outcome().await.unwrap();
    assert_eq!(first.kind, HandshakeKind::Full);

    connect(server.addr, client, "localhost").await.unwrap();
    let second = server.next_outcome().await.unwrap();
    assert_eq!(second.kind, HandshakeKind::Resumed);
    assert_eq!(second.identity.fingerprint, first.identity.fingerprint);
    assert_eq!(second.identity.subject, first.identity.subject);
}

#[tokio::test]
async fn rotated_certificates_of_one_partner_both_connect_with_distinct_fingerprints() {
    let pki = pki();
    let mut server = Server::start(pki.server_config(MinTlsVersion::Tls12)).await;
    let next = pki.ca.issue_client("demo-bank", "Demo Bank").unwrap();

    connect(server.addr, pki.client(&pki.bank, BOTH), "localhost")
        .await
        .unwrap();
    connect(server.addr, pki.client(&next, BOTH), "localhost")
        .await
        .unwrap();
    let old = server.next_outcome().await.unwrap().identity;
    let new = server.next_outcome().await.unwrap().identity;
    assert_eq!(old.fingerprint, pki.bank.fingerprint());
    assert_eq!(new.fingerprint, next.fingerprint());
    assert_ne!(old.fingerprint, new.fingerprint);
    assert_eq!(old.subject, new.subject);
}

// === refused handshakes ===

#[tokio::test]
async fn handshake_without_client_certificate_fails() {
    let pki = pki();
    let mut server = Server::start(pki.server_config(MinTlsVersion::Tls12)).await;

    for versions in [TLS13_ONLY, TLS12_ONLY] {
        let client =
            anonymous_client_config(pki.ca.cert_pem().as_bytes(), versions, H2_AND_HTTP1).unwrap();
        let err = connect(server.addr, client, "localhost").await.unwrap_err();
        assert_eq!(
            rustls_error(&err),
            Some(&rustls::Error::AlertReceived(
                rustls::AlertDescription::CertificateRequired
            )),
            "{err}"
        );
        assert_eq!(
            server.next_outcome().await.unwrap_err(),
            "no_client_certificate"
        );
    }
}

#[tokio::test]
async fn client_certificate_from_another_ca_fails() {
    let pki = pki();
    let mut server = Server::start(pki.server_config(MinTlsVersion::Tls12)).await;
    let other_ca = DevCa::new("Other CA").unwrap();
    let impostor = other_ca.issue_client("demo-bank", "Demo Bank").unwrap();

    let err = connect(server.addr, pki.client(&impostor, BOTH), "localhost")
        .await
        .unwrap_err();
    assert_eq!(
        rustls_error(&err),
        Some(&rustls::Error::AlertReceived(
            rustls::AlertDescription::UnknownCA
        )),
        "{err}"
    );
    assert_eq!(server.next_outcome().await.unwrap_err(), "unknown_ca");
}

#[tokio::test]
async fn expired_client_certificate_fails() {
    let pki = pki();
    let mut server = Server::start(pki.server_config(MinTlsVersion::Tls12)).await;
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let expired = pki
        .ca
        .issue_client_with_validity("demo-bank", "Demo Bank", now - 30 * day, now - day)
        .unwrap();

    let err = connect(server.addr, pki.client(&expired, BOTH), "localhost")
        .await
        .unwrap_err();
    assert_eq!(
        rustls_error(&err),
        Some(&rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateExpired
        )),
        "{err}"
    );
    assert_eq!(server.next_outcome().await.unwrap_err(), "bad_certificate");
}

#[tokio::test]
async fn raw_tls11_client_hello_gets_a_protocol_version_alert() {
    let pki = pki();
    let mut server = Server::start(pki.server_config(MinTlsVersion::Tls12)).await;

    // TLS 1.1 with the suites a TLS 1.1 client offers, and with modern ones.
    for suites in [&[0xc009, 0xc013, 0x002f, 0x0035][..], &[0xc02b, 0xc02f][..]] {
        let got = send_raw(server.addr, &raw_client_hello(0x0302, suites)).await;
        assert_only_alert(&got, 70); // protocol_version
        assert_eq!(server.next_outcome().await.unwrap_err(), "protocol_version");
    }
}

#[tokio::test]
async fn raw_tls12_client_hello_with_only_cbc_suites_gets_a_handshake_failure_alert() {
    let pki = pki();
    let mut server = Server::start(pki.server_config(MinTlsVersion::Tls12)).await;

    // ECDHE-ECDSA/RSA and RSA key transport with AES-CBC (SHA-1 and SHA-256).
    let cbc = [
        0xc009, 0xc00a, 0xc013, 0xc014, 0xc023, 0xc027, 0x002f, 0x0035, 0x003c,
    ];
    let got = send_raw(server.addr, &raw_client_hello(0x0303, &cbc)).await;
    assert_only_alert(&got, 40); // handshake_failure
    assert_eq!(server.next_outcome().await.unwrap_err(), "no_shared_cipher");
}

#[tokio::test]
async fn raw_tls12_client_hello_with_an_aead_suite_gets_a_server_hello() {
    // The control for the two tests above: the raw hello itself is well-formed.
    let pki = pki();
    let server = Server::start(pki.server_config(MinTlsVersion::Tls12)).await;

    let got = deadline(async {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(&raw_client_hello(0x0303, &[0xc02b]))
            .await
            .unwrap();
        let mut header = [0u8; 6];
        tcp.read_exact(&mut header).await.unwrap();
        header
    })
    .await;
    assert_eq!(got[0], 0x16, "handshake record");
    assert_eq!(got[5], 0x02, "ServerHello");
}

#[tokio::test]
async fn minimum_tls13_refuses_a_tls12_only_client() {
    let pki = pki();
    let mut server = Server::start(pki.server_config(MinTlsVersion::Tls13)).await;

    let err = connect(server.addr, pki.client(&pki.bank, TLS12_ONLY), "localhost")
        .await
        .unwrap_err();
    assert_eq!(
        rustls_error(&err),
        Some(&rustls::Error::AlertReceived(
            rustls::AlertDescription::ProtocolVersion
        )),
        "{err}"
    );
    assert_eq!(server.next_outcome().await.unwrap_err(), "protocol_version");

    // And a raw TLS 1.2 hello with a good suite gets the same alert.
    let got = send_raw(server.addr, &raw_client_hello(0x0303, &[0xc02b])).await;
    assert_only_alert(&got, 70);
    assert_eq!(server.next_outcome().await.unwrap_err(), "protocol_version");

    // TLS 1.3 still works.
    connect(server.addr, pki.client(&pki.bank, TLS13_ONLY), "localhost")
        .await
        .unwrap();
    assert!(server.next_outcome().await.is_ok());
}

#[tokio::test]
async fn plain_http_on_the_tls_port_is_not_tls() {
    let pki = pki();
    let mut server = Server::start(pki.server_config(MinTlsVersion::Tls12)).await;

    send_raw(server.addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(server.next_outcome().await.unwrap_err(), "not_tls");
}

#[tokio::test]
async fn client_closing_mid_handshake_is_eof() {
    let pki = pki();
    let mut server = Server::start(pki.server_config(MinTlsVersion::Tls12)).await;

    // Half a ClientHello, then close.
    let hello = raw_client_hello(0x0303, &[0xc02b]);
    send_raw(server.addr, &hello[..hello.len() / 2]).await;
    assert_eq!(server.next_outcome().await.unwrap_err(), "eof");
}
