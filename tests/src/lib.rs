//! The integration-test harness: real gateways, a real sandbox upstream, real mTLS clients.
//!
//! - [`TestGateway`]: a gateway served in-process on `127.0.0.1:0`, from a copy of the sample
//!   `partner-config/` in a temporary directory with its own dev PKI and secrets, in front of
//!   its own sandbox. Dropping it stops everything it started.
//! - [`GatewayProcess`]: the `partner-gateway` binary as a child process, for tests that
//!   kill it (`kill -9`) and restart it.
//! - [`PartnerClient`]: one TLS connection with a client certificate, speaking HTTP/1.1 or
//!   HTTP/2, so tests control keep-alive and see connection closes.
//!
//! Suites live in `tests/tests/*.rs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use gateway_core::time::{Clock, SystemClock};
use gateway_http::{GatewayState, Overrides};
use gateway_sandbox::SandboxHandle;
use gateway_tls::devpki::{self, DevCa, IssuedCert};

pub mod process;
pub use process::GatewayProcess;

/// The repository root (where `partner-config/` lives).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Installs the process-wide crypto provider (idempotent).
pub fn init() {
    gateway_tls::install_crypto_provider();
}

/// Copies `partner-config/` into `root/partner-config` and creates the dev PKI in
/// `root/certs/dev` and secrets in `root/data`, so the sample's relative paths
/// (`../certs/dev/…`, `../data/…`) resolve inside `root`.
pub fn prepare_root(root: &Path) -> anyhow::Result<()> {
    copy_dir(
        &repo_root().join("partner-config"),
        &root.join("partner-config"),
    )?;
    devpki::generate(&root.join("certs/dev"), devpki::SAMPLE_PARTNERS)?;
    gateway_http::devdata::ensure_dev_secrets(&root.join("data"))?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

// === TestGateway ===

/// Builds a [`TestGateway`].
#[derive(Debug)]
pub struct Builder {
    replacements: Vec<(String, String)>,
    files: Vec<(PathBuf, String)>,
    clock: Arc<dyn Clock>,
    peer_of: Option<PathBuf>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            replacements: Vec::new(),
            files: Vec::new(),
            clock: Arc::new(SystemClock),
            peer_of: None,
        }
    }
}

impl Builder {
    /// Replaces text in `gateway.yaml` (applied in order, each must match).
    pub fn gateway_yaml(mut self, from: &str, to: &str) -> Self {
        self.replacements.push((from.to_owned(), to.to_owned()));
        self
    }

    /// Writes a file under `partner-config/` (e.g. `partners/bank-b.yaml`).
    pub fn file(mut self, path: &str, contents: &str) -> Self {
        self.files.push((PathBuf::from(path), contents.to_owned()));
        self
    }

    /// Uses the store at `redis_url` (every instance sharing it forms a cluster) with
    /// `instances` gateways sharing each quota.
    pub fn redis(self, redis_url: &str, instances: u32) -> Self {
        self.gateway_yaml(
            "backend: embedded\n  path: ../data/state.redb",
            &format!("backend: redis\n  urls: [\"{redis_url}\"]"),
        )
        .gateway_yaml("instances: 1 ", &format!("instances: {instances} "))
    }

    /// Joins the cluster of `other`: the same PKI, token signing keys, secrets and admin
    /// token (each instance keeps its own audit trail and embedded files).
    pub fn peer_of(mut self, other: &TestGateway) -> Self {
        self.peer_of = Some(other.root().to_owned());
        self
    }

    /// Uses this clock for tokens, consents and campaigns.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Starts the sandbox and the gateway.
    pub async fn start(self) -> TestGateway {
        self.try_start().await.expect("start the test gateway")
    }

    async fn try_start(self) -> anyhow::Result<TestGateway> {
        init();
        let root = tempfile::tempdir()?;
        prepare_root(root.path())?;
        if let Some(peer) = &self.peer_of {
            std::fs::remove_dir_all(root.path().join("certs/dev"))?;
            copy_dir(&peer.join("certs/dev"), &root.path().join("certs/dev"))?;
            std::fs::remove_dir_all(root.path().join("data/keys"))?;
            copy_dir(&peer.join("data/keys"), &root.path().join("data/keys"))?;
            std::fs::copy(
                peer.join("data/admin.token"),
                root.path().join("data/admin.token"),
            )?;
        }
        let sandbox = gateway_sandbox::start("127.0.0.1:0".parse()?).await?;
        let config_dir = root.path().join("partner-config");
        let gateway_yaml = config_dir.join("gateway.yaml");
        let mut text = std::fs::read_to_string(&gateway_yaml)?;
        let mut replacements = vec![("127.0.0.1:8600".to_owned(), sandbox.addr().to_string())];
        replacements.extend(self.replacements);
        for (from, to) in replacements {
            if !text.contains(&from) {
                bail!("gateway.yaml does not contain {from:?}");
            }
            text = text.replace(&from, &to);
        }
        std::fs::write(&gateway_yaml, text)?;
        for (path, contents) in self.files {
            let path = config_dir.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, contents)?;
        }
        let prepared = gateway_http::prepare(&config_dir, &Overrides::default())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let admin_token = std::fs::read_to_string(root.path().join("data/admin.token"))?
            .trim()
            .to_owned();
        let state = Arc::new(
            GatewayState::start_with_clock(
                config_dir,
                Overrides::default(),
                prepared,
                admin_token.clone(),
                self.clock.clone(),
            )
            .await?,
        );
        let partner = TcpListener::bind("127.0.0.1:0").await?;
        let admin = TcpListener::bind("127.0.0.1:0").await?;
        let partner_addr = partner.local_addr()?;
        let admin_addr = admin.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(gateway_http::server::run(
            partner,
            admin,
            state.clone(),
            shutdown.clone(),
        ));
        Ok(TestGateway {
            root: Some(root),
            partner_addr,
            admin_addr,
            state,
            sandbox: Some(sandbox),
            shutdown,
            task: Some(task),
            admin_token,
        })
    }
}

/// A gateway served in-process, with its own sandbox, PKI and configuration copy.
#[derive(Debug)]
pub struct TestGateway {
    root: Option<tempfile::TempDir>,
    /// The partner listener.
    pub partner_addr: SocketAddr,
    /// The admin listener.
    pub admin_addr: SocketAddr,
    /// The gateway's shared state.
    pub state: Arc<GatewayState>,
    sandbox: Option<SandboxHandle>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<()>>,
    admin_token: String,
}

impl TestGateway {
    /// A builder over the sample configuration.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A gateway on the unchanged sample configuration.
    pub async fn start() -> TestGateway {
        Builder::default().start().await
    }

    /// The temporary root (`partner-config/`, `certs/dev/`, `data/`).
    pub fn root(&self) -> &Path {
        self.root.as_ref().expect("root kept until drop").path()
    }

    /// The configuration directory.
    pub fn config_dir(&self) -> PathBuf {
        self.root().join("partner-config")
    }

    /// The dev PKI directory.
    pub fn certs_dir(&self) -> PathBuf {
        self.root().join("certs/dev")
    }

    /// The dev CA (to issue more client certificates).
    pub fn ca(&self) -> DevCa {
        DevCa::load(&self.certs_dir()).expect("load the test CA")
    }

    /// The sandbox upstream.
    pub fn sandbox(&self) -> &SandboxHandle {
        self.sandbox.as_ref().expect("sandbox running")
    }

    /// Stops the sandbox (the upstream goes away).
    pub async fn stop_sandbox(&mut self) {
        if let Some(sandbox) = self.sandbox.take() {
            sandbox.shutdown().await;
        }
    }

    /// The admin token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The sample certificate of a sample partner.
    pub fn partner_cert(&self, partner: &str) -> IssuedCert {
        let dir = self.certs_dir();
        let cert_pem = std::fs::read_to_string(devpki::partner_cert_path(&dir, partner))
            .expect("partner certificate");
        let key_pem =
            std::fs::read_to_string(devpki::partner_key_path(&dir, partner)).expect("partner key");
        let cert_der = <rustls_pki_types::CertificateDer<'static> as rustls_pki_types::pem::PemObject>::from_pem_slice(cert_pem.as_bytes())
            .expect("certificate PEM");
        IssuedCert {
            cert_pem,
            key_pem,
            cert_der,
        }
    }

    /// Connects as a sample partner over HTTP/1.1 and obtains an access token for every scope
    /// the partner may have; later requests carry it.
    pub async fn client(&self, partner: &str) -> PartnerClient {
        let mut client = self
            .connect(&self.partner_cert(partner), Alpn::Http1)
            .await
            .expect("connect as partner");
        client.authorize(partner, "").await.expect("obtain a token");
        client
    }

    /// Connects with any certificate.
    pub async fn connect(&self, cert: &IssuedCert, alpn: Alpn) -> anyhow::Result<PartnerClient> {
        let ca = std::fs::read(self.certs_dir().join(devpki::CA_CERT_FILE))?;
        let config = gateway_tls::testing::client_config(
            &ca,
            cert.cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
            &[&rustls::version::TLS13, &rustls::version::TLS12],
            alpn.ids(),
        )?;
        PartnerClient::connect(self.partner_addr, config, alpn).await
    }

    /// Opens a raw TLS connection as a sample partner (HTTP/1.1 by ALPN), for tests that
    /// write bytes a well-behaved client would not.
    pub async fn raw_tls(&self, partner: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
        self.raw_tls_alpn(partner, b"http/1.1").await
    }

    /// [`TestGateway::raw_tls`] offering one ALPN protocol (`b"h2"` for a raw HTTP/2 client).
    pub async fn raw_tls_alpn(
        &self,
        partner: &str,
        alpn: &[u8],
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        let cert = self.partner_cert(partner);
        let ca = std::fs::read(self.certs_dir().join(devpki::CA_CERT_FILE)).expect("CA");
        let config = gateway_tls::testing::client_config(
            &ca,
            cert.cert_pem.as_bytes(),
            cert.key_pem.as_bytes(),
            &[&rustls::version::TLS13],
            &[alpn],
        )
        .expect("client config");
        let tcp = TcpStream::connect(self.partner_addr)
            .await
            .expect("connect");
        tokio_rustls::TlsConnector::from(config)
            .connect(
                rustls_pki_types::ServerName::try_from("localhost").expect("name"),
                tcp,
            )
            .await
            .expect("TLS handshake")
    }

    /// Writes `request` (a whole HTTP/1.1 request) on a fresh raw connection and returns the
    /// response text the server sent before closing or within 10 s.
    pub async fn raw_request(&self, partner: &str, request: &[u8]) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut stream = self.raw_tls(partner).await;
        // The server may answer (and stop reading) before the whole body is written.
        let _ = stream.write_all(request).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 8192];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
                if response_complete(&out) {
                    break;
                }
            }
        })
        .await;
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Writes a file under `partner-config/`.
    pub fn write_config(&self, path: &str, contents: &str) {
        let path = self.config_dir().join(path);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// Reads a file under `partner-config/`.
    pub fn read_config(&self, path: &str) -> String {
        std::fs::read_to_string(self.config_dir().join(path)).expect("read config file")
    }

    /// Calls the admin API with the admin token.
    pub async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> TestResponse {
        let token = self.admin_token.clone();
        admin_request(self.admin_addr, method, path, body, Some(&token))
            .await
            .expect("admin request")
    }

    /// Records a consent through the admin API; returns `(consent_id, customer_ref)`.
    pub async fn grant(
        &self,
        customer: &str,
        partner: &str,
        purpose: &str,
        fields: serde_json::Value,
        second_authorisation: bool,
    ) -> (String, String) {
        let response = self
            .admin(
                Method::POST,
                "/admin/v1/consents",
                Some(serde_json::json!({
                    "customer_id": customer,
                    "partner_id": partner,
                    "purpose": purpose,
                    "fields": fields,
                    "expires_at": "2030-01-01T00:00:00Z",
                    "second_authorisation": second_authorisation,
                })),
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::CREATED,
            "grant: {}",
            String::from_utf8_lossy(&response.body)
        );
        let doc = response.json();
        (
            doc["consent_id"].as_str().expect("consent_id").to_owned(),
            doc["customer_ref"]
                .as_str()
                .expect("customer_ref")
                .to_owned(),
        )
    }

    /// `POST /admin/v1/reload`.
    pub async fn reload(&self) -> TestResponse {
        self.admin(Method::POST, "/admin/v1/reload", None).await
    }

    /// Stops the gateway and waits for it; returns its root directory (configuration, PKI,
    /// data and audit trail), which lives as long as the returned guard.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.stop_sandbox().await;
        self.root.take().expect("root kept until stop")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Connects to a gateway at `addr` as a sample partner of the PKI under `root/certs/dev`,
/// without a token.
pub async fn partner_client_raw(
    root: &Path,
    addr: SocketAddr,
    partner: &str,
) -> anyhow::Result<PartnerClient> {
    let certs = root.join("certs/dev");
    let config = gateway_tls::testing::client_config(
        &std::fs::read(certs.join("ca.pem"))?,
        &std::fs::read(devpki::partner_cert_path(&certs, partner))?,
        &std::fs::read(devpki::partner_key_path(&certs, partner))?,
        &[&rustls::version::TLS13],
        &[b"http/1.1"],
    )?;
    PartnerClient::connect(addr, config, Alpn::Http1).await
}

/// Connects to a gateway at `addr` as a sample partner of the PKI under `root/certs/dev`
/// and obtains a token for `scope`.
pub async fn partner_client(
    root: &Path,
    addr: SocketAddr,
    partner: &str,
    scope: &str,
) -> PartnerClient {
    let certs = root.join("certs/dev");
    let read =
        |p: PathBuf| std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    let config = gateway_tls::testing::client_config(
        &read(certs.join("ca.pem")),
        &read(devpki::partner_cert_path(&certs, partner)),
        &read(devpki::partner_key_path(&certs, partner)),
        &[&rustls::version::TLS13],
        &[b"http/1.1"],
    )
    .expect("client config");
    let mut client = PartnerClient::connect(addr, config, Alpn::Http1)
        .await
        .expect("connect");
    client
        .authorize(partner, &scope.replace(' ', "%20"))
        .await
        .expect("token");
    client
}

/// Sends one request to an admin listener (plain HTTP/1.1).
pub async fn admin_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    token: Option<&str>,
) -> anyhow::Result<TestResponse> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let task = tokio::spawn(conn);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(value) => {
            builder = builder.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(&value)?)
        }
        None => Bytes::new(),
    };
    let response = sender.send_request(builder.body(Full::new(body))?).await?;
    let response = TestResponse::read(response).await?;
    drop(sender);
    let _ = task.await;
    Ok(response)
}

// === PartnerClient ===

/// Which HTTP version to offer by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `http/1.1`
    Http1,
    /// `h2`
    Http2,
}

impl Alpn {
    fn ids(self) -> &'static [&'static [u8]] {
        match self {
            Alpn::Http1 => &[b"http/1.1"],
            Alpn::Http2 => &[b"h2"],
        }
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One mTLS connection to the partner listener.
pub struct PartnerClient {
    sender: Sender,
    token: Option<String>,
    connection: JoinHandle<()>,
    closed: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for PartnerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerClient")
            .field("closed", &*self.closed.borrow())
            .finish()
    }
}

impl PartnerClient {
    /// Connects, completes the TLS handshake and the HTTP handshake.
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        alpn: Alpn,
    ) -> anyhow::Result<PartnerClient> {
        let tcp = TcpStream::connect(addr).await?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let name = rustls_pki_types::ServerName::try_from("localhost")?;
        let tls = connector.connect(name, tcp).await?;
        let io = TokioIo::new(tls);
        let (closed_tx, closed) = tokio::sync::watch::channel(false);
        let (sender, connection) = match alpn {
            Alpn::Http1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
                let task = tokio::spawn(async move {
                    let _ = conn.await;
                    let _ = closed_tx.send(true);
                });
                (Sender::H1(sender), task)
            }
            Alpn::Http2 => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                let task = tokio::spawn(async move {
                    let _ = conn.await;
                    let _ = closed_tx.send(true);
                });
                (Sender::H2(sender), task)
            }
        };
        Ok(PartnerClient {
            sender,
            token: None,
            connection,
            closed,
        })
    }

    /// Obtains an access token (`client_credentials`, `tls_client_auth`) over this connection;
    /// later requests carry it unless they set their own `Authorization`.
    pub async fn authorize(&mut self, client_id: &str, scope: &str) -> anyhow::Result<String> {
        let form = format!("grant_type=client_credentials&client_id={client_id}&scope={scope}");
        let response = self
            .post(
                "/oauth2/token",
                "application/x-www-form-urlencoded",
                form,
                &[],
            )
            .await?;
        if response.status != StatusCode::OK {
            bail!(
                "token request refused: {} {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        let token = response.json()["access_token"]
            .as_str()
            .context("access_token in the token response")?
            .to_owned();
        self.token = Some(token.clone());
        Ok(token)
    }

    /// Uses this token (or none) on later requests.
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// The token in use.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Sends a request on this connection. `uri` is a path (and query).
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<TestResponse> {
        let (mut parts, body) = req.into_parts();
        if let Some(token) = &self.token
            && !parts.headers.contains_key("authorization")
            && !parts.uri.path().starts_with("/oauth2/")
        {
            parts
                .headers
                .insert("authorization", format!("Bearer {token}").parse()?);
        }
        let response = match &mut self.sender {
            Sender::H1(sender) => {
                parts
                    .headers
                    .entry("host")
                    .or_insert(http::HeaderValue::from_static("localhost"));
                sender.ready().await?;
                sender
                    .send_request(Request::from_parts(parts, body))
                    .await?
            }
            Sender::H2(sender) => {
                let path = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                parts.uri = format!("https://localhost{path}").parse()?;
                sender.ready().await?;
                sender
                    .send_request(Request::from_parts(parts, body))
                    .await?
            }
        };
        TestResponse::read(response).await
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<TestResponse> {
        self.send(Request::get(path).body(Full::new(Bytes::new()))?)
            .await
    }

    /// `GET path` with headers.
    pub async fn get_with(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<TestResponse> {
        let mut builder = Request::get(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.send(builder.body(Full::new(Bytes::new()))?).await
    }

    /// `POST path` with a body and content type.
    pub async fn post(
        &mut self,
        path: &str,
        content_type: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<TestResponse> {
        let mut builder = Request::post(path).header("content-type", content_type);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        self.send(builder.body(Full::new(body.into()))?).await
    }

    /// Whether the server closed the connection.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow() || self.connection.is_finished()
    }

    /// Waits until the connection is closed, at most `within`; returns whether it closed.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let mut closed = self.closed.clone();
        tokio::time::timeout(within, closed.wait_for(|c| *c))
            .await
            .is_ok()
    }
}

impl Drop for PartnerClient {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

/// A response read in full.
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl TestResponse {
    /// Reads a hyper response in full.
    pub async fn read(
        response: http::Response<hyper::body::Incoming>,
    ) -> anyhow::Result<TestResponse> {
        let (parts, body) = response.into_parts();
        let body = gateway_http::body::read_limited(body, 64 << 20).await?;
        Ok(TestResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem of `status` and type slug `slug`; returns the document.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, slug: &str) -> serde_json::Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "status; body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "content type"
        );
        let doc = self.json();
        assert_eq!(
            doc["type"],
            format!("https://partner-gateway.dev/problems/{slug}"),
            "type: {doc}"
        );
        assert_eq!(doc["status"], status, "status member");
        assert!(
            self.header(gateway_core::X_FAPI_INTERACTION_ID).is_some(),
            "interaction id"
        );
        doc
    }
}

/// Whether `bytes` hold a whole response with a `content-length` body.
fn response_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..end]
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    bytes.len() >= end + 4 + length
}

/// Polls an async `condition` until it holds or `within` passes.
pub async fn eventually_async<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `condition` every few milliseconds until it holds or `within` passes.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
