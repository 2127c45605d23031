//! The accept loop of the reference servers: plain HTTP/1.1 (the upstream) or mTLS with
//! HTTP/1.1 and HTTP/2 (the bare server and proxy), on a current-thread runtime.
//!
//! Each binary prints `listening on <addr>` on stdout once bound, which `run` waits for, and
//! exits on SIGTERM or SIGINT.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Binds `addr` and prints `listening on <bound addr>` (flushed) for the orchestrator.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    use std::io::Write as _;
    std::io::stdout().flush()?;
    Ok(listener)
}

/// Serves `handler` on every connection until SIGTERM or SIGINT: TLS (when `tls` is set)
/// then HTTP/1.1 or HTTP/2, or plain HTTP/1.1 without TLS.
pub async fn serve<H, F, B>(listener: TcpListener, tls: Option<Arc<ServerConfig>>, handler: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = tls.map(TlsAcceptor::from);
    let accept_loop = async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let handler = handler.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let service = service_fn(handler);
                match acceptor {
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let builder = auto::Builder::new(TokioExecutor::new());
                        let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                    }
                    None => {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                    }
                }
            });
        }
    };
    tokio::select! {
        () = accept_loop => {}
        () = stop_signal() => {}
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// A current-thread runtime, as every reference server uses (one core each).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Serves the fixed 1 KiB JSON fixture to every request on `addr` (over TLS when `tls` is set)
/// until SIGTERM: the upstream (a) and the ceiling (d).
pub fn serve_fixed(addr: SocketAddr, tls: Option<Arc<ServerConfig>>) -> anyhow::Result<()> {
    use http_body_util::{BodyExt as _, Full};

    let body = bytes::Bytes::from(crate::fixture::fixed_body());
    runtime()?.block_on(async move {
        let listener = bind(addr).await?;
        serve(listener, tls, move |req: Request<Incoming>| {
            let body = body.clone();
            async move {
                // Drain whatever the client sent so the connection stays reusable.
                let mut incoming = req.into_body();
                while let Some(Ok(_)) = incoming.frame().await {}
                Ok::<_, Infallible>(
                    Response::builder()
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Full::new(body))
                        // Static, valid parts: building cannot fail.
                        .unwrap_or_default(),
                )
            }
        })
        .await;
        Ok(())
    })
}
