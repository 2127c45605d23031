//! The partner listener: TCP accept, TLS handshake with a required client certificate,
//! one [`PeerIdentity`] per connection, and HTTP/1.1 or HTTP/2 (by ALPN) on top.
//!
//! Per connection, in order:
//! 1. refuse it outright when `http.max_connections` are open (the others are unaffected);
//! 2. TLS handshake within the header-read timeout with the TLS configuration in force;
//! 3. compute the [`PeerIdentity`] once and register the connection, refusing it when its
//!    partner already has `http.max_connections_per_partner` open;
//! 4. serve HTTP with the slow-client and HTTP/2 limits of `gateway.yaml`;
//! 5. close gracefully (then within a second, forcibly) when the registry says the
//!    configuration no longer allows the certificate, or at shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::partner::partner_service;
use crate::state::GatewayState;

/// How long a connection asked to close may finish its in-flight request.
const CLOSE_GRACE: Duration = Duration::from_millis(900);

/// Accepts partner connections until `shutdown` is cancelled, then waits (bounded) for open
/// connections to finish.
pub async fn serve_partner(
    listener: TcpListener,
    state: Arc<GatewayState>,
    shutdown: CancellationToken,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE and friends: back off briefly instead of spinning.
                warn!(error = %err, "Accept failed.");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let max = state.config().gateway.http.max_connections;
        if open.load(Ordering::Acquire) >= max {
            state.metrics.connection_closed("max_connections");
            debug!(%remote, "Connection refused: max_connections reached.");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.fetch_add(1, Ordering::AcqRel);
        let state = state.clone();
        let shutdown = shutdown.clone();
        let open = open.clone();
        tracker.spawn(async move {
            state.metrics.connections_open().inc();
            serve_connection(stream, &state, &shutdown).await;
            state.metrics.connections_open().dec();
            open.fetch_sub(1, Ordering::AcqRel);
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
}

async fn serve_connection(
    stream: TcpStream,
    state: &Arc<GatewayState>,
    shutdown: &CancellationToken,
) {
    let config = state.config();
    let limits = &config.gateway.http;
    let acceptor = tokio_rustls::TlsAcceptor::from(state.tls());
    let tls = match tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream)).await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            let reason = gateway_tls::handshake_failure_reason(&err);
            state.metrics.handshake("failed", reason);
            debug!(reason, error = %err, "TLS handshake failed.");
            return;
        }
        Err(_) => {
            state.metrics.handshake("failed", "timeout");
            return;
        }
    };
    let connection = state.next_connection_id();
    let Some(peer) = gateway_tls::peer_identity(tls.get_ref().1, connection) else {
        // Client authentication is mandatory, so a completed handshake has a certificate.
        state.metrics.handshake("failed", "no_client_certificate");
        return;
    };
    state.metrics.handshake("ok", "none");
    let registration =
        match state
            .registry
            .register(&peer, &config, limits.max_connections_per_partner)
        {
            Ok(registration) => registration,
            Err(_) => {
                state
                    .metrics
                    .connection_closed("max_connections_per_partner");
                return;
            }
        };
    let (hard_max_headers, hard_max_head_bytes) = crate::partner::hard_head_limits(limits);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(hard_max_headers)
        .max_buf_size(hard_max_head_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_reset_streams)
        .max_local_error_reset_streams(limits.h2_max_pending_reset_streams)
        .max_header_list_size(u32::try_from(hard_max_head_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    drop(config);
    let service = TowerToHyperService::new(partner_service(state.clone(), peer));
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let reason = tokio::select! {
        result = conn.as_mut() => {
            if let Err(err) = result {
                debug!(connection, error = %err, "Connection ended with an error.");
            }
            return;
        }
        _ = registration.closed() => "config_change",
        _ = shutdown.cancelled() => "shutdown",
    };
    conn.as_mut().graceful_shutdown();
    if tokio::time::timeout(CLOSE_GRACE, conn.as_mut())
        .await
        .is_err()
    {
        info!(
            connection,
            reason, "Connection closed forcibly after the grace period."
        );
    }
}
