//! Runs the gateway on listeners it is given (STYLE §7: `run(listener, shutdown)`), so the
//! binary binds the configured addresses and tests bind `127.0.0.1:0`.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::admin::serve_admin;
use crate::listener::serve_partner;
use crate::state::GatewayState;

/// Serves the partner and admin listeners until `shutdown` is cancelled.
pub async fn run(
    partner: TcpListener,
    admin: TcpListener,
    state: Arc<GatewayState>,
    shutdown: CancellationToken,
) {
    let partner_task = tokio::spawn(serve_partner(partner, state.clone(), shutdown.clone()));
    let admin_task = tokio::spawn(serve_admin(admin, state.clone(), shutdown));
    let _ = tokio::join!(partner_task, admin_task);
    // Listeners are closed: sign a final checkpoint and stop background work.
    if let Err(err) = state.audit.shutdown().await {
        tracing::warn!(error = %err, "Audit trail did not shut down cleanly.");
    }
    state.background.cancel();
}
