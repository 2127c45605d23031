//! The listener: accept loop, HTTP/1.1 + h2c per connection, graceful shutdown, and the
//! [`SandboxHandle`] fixture.

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tracing::{debug, error, info, warn};

use crate::controls::Controls;
use crate::data;
use crate::service::{State, handle};

/// How long connections get to finish in-flight requests after shutdown starts; then they are
/// aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Binds `addr` and serves the sandbox on it in a background task, with fresh [`Controls`].
///
/// Use `127.0.0.1:0` for a free port and read it back with [`SandboxHandle::addr`]. The data
/// is built before this returns, so the first request is as fast as the rest.
pub async fn start(addr: SocketAddr) -> std::io::Result<SandboxHandle> {
    start_with(addr, Arc::new(Controls::new())).await
}

/// Like [`start`], with controls the caller made (e.g. [`Controls::with_clock`]).
pub async fn start_with(
    addr: SocketAddr,
    controls: Arc<Controls>,
) -> std::io::Result<SandboxHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    warm().await;
    let (shutdown, signal) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, controls.clone(), async move {
        // Fires on `shutdown()` and when the handle is dropped (the sender is dropped).
        let _ = signal.await;
    }));
    Ok(SandboxHandle {
        addr,
        controls,
        shutdown: Some(shutdown),
        task: Some(task),
    })
}

/// Serves the sandbox on `listener` until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish (stalled ones answer 503 at once) for up to a second, and
/// returns.
///
/// Every connection speaks HTTP/1.1 with keep-alive or HTTP/2 with prior knowledge (h2c),
/// detected from its first bytes.
///
/// # Panics
///
/// If a connection task panicked (a bug in the sandbox), that panic is resumed here after
/// shutdown, so a test awaiting the server sees it. The server keeps serving other
/// connections until then.
pub async fn serve(
    listener: TcpListener,
    controls: Arc<Controls>,
    shutdown: impl Future<Output = ()>,
) {
    warm().await;
    // `closing` is set once, after the accept loop ends; every stalled request holds a
    // receiver clone and answers as soon as it flips. The sender lives until `serve` returns.
    let (closing, closing_rx) = watch::channel(false);
    let state = Arc::new(State::new(controls, closing_rx));
    // One builder for all connections; each connection task holds an `Arc` of it.
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let graceful = GracefulShutdown::new();
    // Owns every connection task: reaped as they finish, aborted after the grace period.
    let mut connections = JoinSet::new();
    let mut panic: Option<Box<dyn Any + Send>> = None;
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "Sandbox listening.");
    }

    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "Sandbox accept failed.");
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        // Small JSON answers: send them now rather than waiting for Nagle.
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        connections.spawn(async move {
            let service = service_fn(move |request| handle(state.clone(), request));
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection).await {
                debug!(%peer, error = %e, "Sandbox connection ended with an error.");
            }
        });
        while let Some(result) = connections.try_join_next() {
            keep_panic(result, &mut panic);
        }
    }

    drop(listener);
    closing.send_replace(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("Sandbox connections still open after the grace period; aborting them.");
    }
    connections.abort_all();
    while let Some(result) = connections.join_next().await {
        keep_panic(result, &mut panic);
    }
    if let Some(payload) = panic {
        std::panic::resume_unwind(payload);
    }
}

/// A running sandbox. Dropping it stops the server (in the background); call
/// [`shutdown`](SandboxHandle::shutdown) to wait for that and to see a server panic.
#[derive(Debug)]
pub struct SandboxHandle {
    addr: SocketAddr,
    controls: Arc<Controls>,
    /// Dropped or fired → the server's shutdown future completes.
    shutdown: Option<oneshot::Sender<()>>,
    /// The `serve` task; joined by `shutdown()`, detached on drop.
    task: Option<JoinHandle<()>>,
}

impl SandboxHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The live controls of this sandbox.
    pub fn controls(&self) -> &Arc<Controls> {
        &self.controls
    }

    /// Stops the server and waits until it has stopped; resumes a panic of the server.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Builds the data off the async threads (first call only).
async fn warm() {
    if tokio::task::spawn_blocking(data::warm).await.is_err() {
        // The generator panicked: a bug. Build in place so the panic surfaces here.
        data::warm();
    }
}

fn keep_panic(result: Result<(), JoinError>, panic: &mut Option<Box<dyn Any + Send>>) {
    if let Err(e) = result
        && e.is_panic()
    {
        error!("A sandbox connection task panicked.");
        if panic.is_none() {
            *panic = Some(e.into_panic());
        }
    }
}
