//! The HTTP client side shared by `loadgen` and the setup steps of `run`: an mTLS (or plain)
//! connection speaking HTTP/1.1 or HTTP/2, and one request at a time over it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Why a client could not be set up or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A PEM file could not be read.
    #[error("{}: {cause}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        cause: String,
    },
    /// rustls refused the client configuration.
    #[error("TLS client configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The TCP connection failed.
    #[error("connect {addr}: {cause}")]
    Connect {
        /// The server.
        addr: SocketAddr,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {addr}: {cause}")]
    Handshake {
        /// The server.
        addr: SocketAddr,
        /// The I/O error (rustls errors arrive wrapped in it).
        cause: std::io::Error,
    },
    /// hyper failed (connection closed, protocol error).
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The connection was closed (e.g. by the server, gracefully) before the request was
    /// sent: reconnect, nothing was lost.
    #[error("connection closed before the request was sent: {0}")]
    Closed(hyper::Error),
    /// A request could not be built from the given parts.
    #[error("bad request parts: {0}")]
    Build(String),
    /// The response body was larger than allowed.
    #[error("response body larger than {0} bytes")]
    TooLarge(usize),
    /// The operation did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Which key exchange groups the client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyExchange {
    /// X25519 only: what every server here (nginx with OpenSSL 3.0 included) negotiates, so
    /// handshakes cost the same work everywhere.
    X25519,
    /// rustls's defaults (X25519MLKEM768 first): rustls servers then pick the post-quantum
    /// hybrid, OpenSSL 3.0 falls back to X25519.
    Default,
}

/// PEM files of a client identity and the CA that signs the server certificate.
#[derive(Debug, Clone)]
pub struct ClientPki {
    /// The CA bundle trusted for the server certificate.
    pub ca: PathBuf,
    /// The client certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// Builds an mTLS client configuration.
///
/// `resumption: false` makes every connection a full handshake (no tickets, no session
/// cache), as the new-connection scenario needs.
pub fn client_config(
    pki: &ClientPki,
    h2: bool,
    resumption: bool,
    kx: KeyExchange,
) -> Result<Arc<ClientConfig>, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(&pki.ca)? {
        roots.add(cert)?;
    }
    let chain = read_certs(&pki.cert)?;
    let key = PrivateKeyDer::from_pem_file(&pki.key).map_err(|e| ClientError::Pem {
        path: pki.key.clone(),
        cause: e.to_string(),
    })?;
    let mut provider = aws_lc_rs::default_provider();
    if kx == KeyExchange::X25519 {
        provider.kx_groups = vec![aws_lc_rs::kx_group::X25519];
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![if h2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    if !resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ClientError::Pem {
            path: path.to_owned(),
            cause: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(ClientError::Pem {
            path: path.to_owned(),
            cause: "no certificate".into(),
        });
    }
    Ok(certs)
}

/// Where to connect and how.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The server's address.
    pub addr: SocketAddr,
    /// TLS configuration and the name to verify, or `None` for plain HTTP.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// Speak HTTP/2 (needs TLS with ALPN `h2`).
    pub h2: bool,
}

impl Endpoint {
    /// The `Host` header / `:authority` value.
    pub fn authority(&self) -> String {
        match &self.tls {
            Some((_, ServerName::DnsName(name))) => {
                format!("{}:{}", name.as_ref(), self.addr.port())
            }
            _ => self.addr.to_string(),
        }
    }
}

/// One open connection.
#[derive(Debug)]
pub enum Connection {
    /// HTTP/1.1: one request at a time.
    H1(http1::SendRequest<Full<Bytes>>),
    /// HTTP/2: clone the sender for concurrent streams.
    H2(http2::SendRequest<Full<Bytes>>),
}

/// Opens a connection (TCP, then TLS when configured, then the HTTP handshake). The
/// connection's driver runs as a spawned task until the connection closes.
pub async fn connect(endpoint: &Endpoint) -> Result<Connection, ClientError> {
    let addr = endpoint.addr;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|cause| ClientError::Connect { addr, cause })?;
    let _ = tcp.set_nodelay(true);
    match &endpoint.tls {
        Some((config, name)) => {
            let tls = TlsConnector::from(config.clone())
                .connect(name.clone(), tcp)
                .await
                .map_err(|cause| ClientError::Handshake { addr, cause })?;
            handshake(TokioIo::new(tls), endpoint.h2).await
        }
        None => handshake(TokioIo::new(tcp), endpoint.h2).await,
    }
}

async fn handshake<T>(io: T, h2: bool) -> Result<Connection, ClientError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if h2 {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection::H2(sender))
    } else {
        let (sender, conn) = http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection::H1(sender))
    }
}

/// A response: status and body (the body only when kept).
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// Body length, bytes.
    pub body_len: usize,
    /// The body, when asked for.
    pub body: Option<Vec<u8>>,
}

impl Connection {
    /// Sends `req` and reads the whole response body, keeping it when `keep`; bodies longer
    /// than `limit` fail.
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        keep: bool,
        limit: usize,
    ) -> Result<Answer, ClientError> {
        let response = match self {
            Connection::H1(sender) => {
                sender.ready().await.map_err(ClientError::Closed)?;
                sender.send_request(req).await?
            }
            Connection::H2(sender) => {
                sender.ready().await.map_err(ClientError::Closed)?;
                sender.send_request(req).await?
            }
        };
        let (parts, incoming) = response.into_parts();
        let (body_len, body) = read_body(incoming, keep, limit).await?;
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body_len,
            body,
        })
    }

    /// A sender for another concurrent request (HTTP/2 only).
    pub fn clone_h2(&self) -> Option<Connection> {
        match self {
            Connection::H2(sender) => Some(Connection::H2(sender.clone())),
            Connection::H1(_) => None,
        }
    }
}

/// Reads a body frame by frame, never holding more than `limit` bytes.
async fn read_body(
    mut body: Incoming,
    keep: bool,
    limit: usize,
) -> Result<(usize, Option<Vec<u8>>), ClientError> {
    let mut len = 0;
    let mut kept = keep.then(Vec::new);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            len += data.len();
            if len > limit {
                return Err(ClientError::TooLarge(limit));
            }
            if let Some(kept) = kept.as_mut() {
                kept.extend_from_slice(&data);
            }
        }
    }
    Ok((len, kept))
}

/// Builds a request: an absolute-form URI for HTTP/2, origin-form plus `Host` for HTTP/1.1.
pub fn request(
    endpoint: &Endpoint,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, ClientError> {
    let authority = endpoint.authority();
    let uri: Uri = if endpoint.h2 {
        let scheme = if endpoint.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{authority}{path}").parse()
    } else {
        path.parse()
    }
    .map_err(|e: http::uri::InvalidUri| ClientError::Build(e.to_string()))?;
    let mut req = Request::builder()
        .method(method.clone())
        .uri(uri)
        .body(Full::new(body))
        .map_err(|e| ClientError::Build(e.to_string()))?;
    *req.headers_mut() = headers.clone();
    if !endpoint.h2 {
        let host =
            HeaderValue::from_str(&authority).map_err(|e| ClientError::Build(e.to_string()))?;
        req.headers_mut().insert(http::header::HOST, host);
    }
    Ok(req)
}

/// Parses `Name: value` into a header.
pub fn parse_header(line: &str) -> Result<(HeaderName, String), ClientError> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| ClientError::Build(format!("header {line:?} has no ':'")))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|e| ClientError::Build(format!("header name {name:?}: {e}")))?;
    Ok((name, value.trim().to_owned()))
}

/// Connects, sends one request and returns the answer with its body, within `timeout`:
/// the setup steps of `run` (token, consent, probe).
pub async fn one_shot(
    endpoint: &Endpoint,
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
    timeout: Duration,
) -> Result<Answer, ClientError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ClientError::Build(e.to_string()))?;
        let value = HeaderValue::from_str(value).map_err(|e| ClientError::Build(e.to_string()))?;
        map.insert(name, value);
    }
    let exchange = async {
        let mut conn = connect(endpoint).await?;
        let req = request(endpoint, &method, path, &map, body)?;
        conn.send(req, true, 4 << 20).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_with_or_without_spaces() {
        let (name, value) = parse_header("Authorization: Bearer abc").unwrap();
        assert_eq!(name, http::header::AUTHORIZATION);
        assert_eq!(value, "Bearer abc");
        let (name, value) = parse_header("idempotency-key:lt-{run}-{n}").unwrap();
        assert_eq!(name.as_str(), "idempotency-key");
        assert_eq!(value, "lt-{run}-{n}");
        assert!(matches!(
            parse_header("no colon"),
            Err(ClientError::Build(_))
        ));
    }

    #[test]
    fn http1_requests_carry_host_and_http2_an_absolute_uri() {
        let plain = Endpoint {
            addr: "127.0.0.1:8080".parse().unwrap(),
            tls: None,
            h2: false,
        };
        let req = request(
            &plain,
            &Method::GET,
            "/x?y=1",
            &HeaderMap::new(),
            Bytes::new(),
        )
        .unwrap();
        assert_eq!(req.uri(), "/x?y=1");
        assert_eq!(req.headers()["host"], "127.0.0.1:8080");
        let h2 = Endpoint { h2: true, ..plain };
        let req = request(&h2, &Method::GET, "/x", &HeaderMap::new(), Bytes::new()).unwrap();
        assert_eq!(req.uri(), "http://127.0.0.1:8080/x");
        assert!(req.headers().get("host").is_none());
    }
}
