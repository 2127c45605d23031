//! (d) The ceiling: rustls + hyper with the gateway's own TLS settings
//! (`gateway_tls::server_config`: BCP 195 suites, client certificate required), answering
//! the same 1 KiB JSON directly. Current-thread runtime.
//!
//! `bare-server --cert server.pem --key server-key.pem --ca ca.pem` prints
//! `listening on <addr>`; SIGTERM stops it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

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
    load_tests::server::serve_fixed(args.addr, Some(tls))
}
