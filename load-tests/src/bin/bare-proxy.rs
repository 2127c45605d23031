//! (e) The minimum any proxy costs: rustls + hyper with the gateway's TLS settings, forwarding
//! every request to the upstream through a pooled hyper-util client and streaming the answer
//! back. Current-thread runtime.
//!
//! `bare-proxy --upstream 127.0.0.1:PORT --cert … --key … --ca …` prints
//! `listening on <addr>`; SIGTERM stops it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::{HeaderName, Request, Response, StatusCode, Uri, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// rustls + hyper mTLS reverse proxy to a plain-HTTP upstream.
#[derive(Debug, Parser)]
struct Args {
    /// Where to listen (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// The upstream, `host:port` (plain HTTP).
    #[arg(long)]
    upstream: String,
    /// Server certificate chain (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Server key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// CA bundle client certificates must chain to (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// Idle upstream connections kept.
    #[arg(long, default_value_t = 256)]
    pool: usize,
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) never forwarded.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::HOST,
];

type ProxyBody = Either<Incoming, Full<Bytes>>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    gateway_tls::install_crypto_provider();
    let tls = gateway_tls::server_config(
        &args.cert,
        &args.key,
        &args.ca,
        gateway_tls::MinTlsVersion::Tls12,
    )?;
    let upstream = args.upstream.clone();
    load_tests::server::runtime()?.block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_millis(500)));
        let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(args.pool)
            .build(connector);
        let listener = load_tests::server::bind(args.addr).await?;
        load_tests::server::serve(listener, Some(tls), move |req: Request<Incoming>| {
            let client = client.clone();
            let upstream = upstream.clone();
            async move { Ok::<_, Infallible>(forward(&client, &upstream, req).await) }
        })
        .await;
        Ok(())
    })
}

async fn forward(
    client: &Client<HttpConnector, Incoming>,
    upstream: &str,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(uri) = format!("http://{upstream}{path}").parse::<Uri>() else {
        return error(StatusCode::BAD_REQUEST);
    };
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    match client.request(Request::from_parts(parts, body)).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            for name in HOP_BY_HOP {
                parts.headers.remove(name);
            }
            Response::from_parts(parts, Either::Left(body))
        }
        Err(_) => error(StatusCode::BAD_GATEWAY),
    }
}

fn error(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = status;
    response
}
