//! (a) The upstream: a fixed 1 KiB JSON answer to every request, plain HTTP/1.1 with
//! keep-alive, one thread. The floor of every comparison, and what (b), (c) and (e) proxy to.
//!
//! `upstream --addr 127.0.0.1:0` prints `listening on <addr>`; SIGTERM stops it.

use std::net::SocketAddr;

use clap::Parser;

/// A fixed 1 KiB JSON responder (plain HTTP, one thread).
#[derive(Debug, Parser)]
struct Args {
    /// Where to listen (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    load_tests::server::serve_fixed(args.addr, None)
}
