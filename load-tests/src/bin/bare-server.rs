//! (d) The ceiling: rustls + hyper with the gateway's own TLS settings
//! (`gateway_tls::server_config`: BCP 195 suites, client certificate required), answering
//! the same 1 KiB JSON directly. Current-thread runtime.
//!
//! `bare-server --cert server.pem --key server-key.pem --ca ca.pem` prints
//! `listening on <addr>`; SIGTERM stops it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use clap::Parser;
use http::{Response, header};
use http_body_util::{BodyExt as _, Full};

/// rustls + hyper mTLS server answering a fixed 1 KiB JSON.
#[derive(Debug, Parser)]
struct Args {
    /// Where to listen (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    /// Server certificate chain (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Server key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// CA bundle client certificates must chain to (PEM).
    #[arg(long)]
    ca: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    gateway_tls::install_crypto_provider();
    let tls = gateway_tls::server_config(
        &args.cert,
        &args.key,
        &args.ca,
        gateway_tls::MinTlsVersion::Tls12,
    )?;
    let body = Bytes::from(load_tests::fixture::fixed_body());
    load_tests::server::runtime()?.block_on(async move {
        let listener = load_tests::server::bind(args.addr).await?;
        load_tests::server::serve(
            listener,
            Some(tls),
            move |req: http::Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move {
                    let mut incoming = req.into_body();
                    while let Some(Ok(_)) = incoming.frame().await {}
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Full::new(body))
                            // Static, valid parts: building cannot fail.
                            .unwrap_or_default(),
                    )
                }
            },
        )
        .await;
        Ok(())
    })
}
