//! (a) The upstream: a fixed 1 KiB JSON answer to every request, plain HTTP/1.1 with
//! keep-alive, one thread. The floor of every comparison, and what (b), (c) and (e) proxy to.
//!
//! `upstream --addr 127.0.0.1:0` prints `listening on <addr>`; SIGTERM stops it.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use clap::Parser;
use http::{Response, header};
use http_body_util::{BodyExt as _, Full};

/// A fixed 1 KiB JSON responder (plain HTTP, one thread).
#[derive(Debug, Parser)]
struct Args {
    /// Where to listen (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let body = Bytes::from(load_tests::fixture::fixed_body());
    load_tests::server::runtime()?.block_on(async move {
        let listener = load_tests::server::bind(args.addr).await?;
        load_tests::server::serve(
            listener,
            None,
            move |req: http::Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move {
                    // Drain whatever the client sent so the connection stays reusable.
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
