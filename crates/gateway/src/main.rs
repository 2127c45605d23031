//! `partner-gateway`: the binary. Parses the command line, loads configuration, binds the
//! listeners and runs them; everything else lives in the library crates.

mod audit;
mod cli;
mod dev;

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use gateway_http::{GatewayState, Overrides, PrepareError};

use crate::cli::{Cli, Command, ConfigCommand, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    gateway_tls::install_crypto_provider();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Check { config },
        } => config_check(&config),
        Command::Audit { command } => audit::run(command),
        command => {
            let format = cli.log_format.unwrap_or(match command {
                Command::Dev { .. } => LogFormat::Text,
                _ => LogFormat::Json,
            });
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    eprintln!("cannot start the tokio runtime: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run_command(command, format)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    error!(error = format!("{err:#}"), "Stopped.");
                    eprintln!("partner-gateway: {err:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run_command(command: Command, format: LogFormat) -> anyhow::Result<()> {
    match command {
        Command::Dev(args) => dev::run(args, format).await,
        Command::Run { config, listen } => {
            serve(
                &config,
                Overrides::default(),
                listen.partner_addr,
                listen.admin_addr,
                None,
                format,
            )
            .await
        }
        Command::Sandbox { addr } => {
            let _telemetry = telemetry(format, None)?;
            let sandbox = gateway_sandbox::start(addr)
                .await
                .context("start the sandbox")?;
            info!("sandbox listening on {}", sandbox.addr());
            shutdown_signal().await;
            sandbox.shutdown().await;
            Ok(())
        }
        Command::Pki { out, force } => {
            if out.join("ca.pem").exists() && !force {
                anyhow::bail!(
                    "{} already holds a PKI; pass --force to replace it",
                    out.display()
                );
            }
            gateway_tls::devpki::generate(&out, gateway_tls::devpki::SAMPLE_PARTNERS)
                .with_context(|| format!("generate the dev PKI in {}", out.display()))?;
            println!("dev PKI written to {}", out.display());
            Ok(())
        }
        Command::Config { .. } | Command::Audit { .. } => {
            unreachable!("handled before the runtime starts")
        }
    }
}

/// Called once both listeners are bound (the `dev` banner).
pub(crate) type OnReady = Box<dyn FnOnce(SocketAddr, SocketAddr, &GatewayState) + Send>;

/// Loads, binds and serves until SIGTERM/SIGINT; SIGHUP and file changes reload.
pub(crate) async fn serve(
    config_dir: &Path,
    overrides: Overrides,
    partner_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    on_ready: Option<OnReady>,
    format: LogFormat,
) -> anyhow::Result<()> {
    // Load and check everything before binding a port (STYLE §6).
    let dir = config_dir.to_path_buf();
    let prepared = match gateway_http::prepare(&dir, &overrides) {
        Ok(prepared) => prepared,
        Err(PrepareError::Config(report)) => {
            anyhow::bail!("configuration in {} has problems:\n{report}", dir.display())
        }
        Err(err) => return Err(err.into()),
    };
    // Logs, and OpenTelemetry export when gateway.yaml names an OTLP endpoint.
    let _telemetry = telemetry(format, Some(&prepared.config))?;
    let admin_token = gateway_config::admin_token(
        &prepared.config.gateway.admin_listener,
        &gateway_config::SystemEnv,
    )
    .map_err(|e| anyhow::anyhow!("admin credential: {e}"))?;
    let partner_addr = partner_addr.unwrap_or(prepared.config.gateway.partner_listener.addr);
    let admin_addr = admin_addr.unwrap_or(prepared.config.gateway.admin_listener.addr);
    let state = Arc::new(
        GatewayState::start(dir.clone(), overrides, prepared, admin_token)
            .await
            .context("start the gateway")?,
    );

    let partner = TcpListener::bind(partner_addr)
        .await
        .with_context(|| format!("bind the partner listener on {partner_addr}"))?;
    let admin = TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("bind the admin listener on {admin_addr}"))?;
    let partner_addr = partner.local_addr()?;
    let admin_addr = admin.local_addr()?;
    info!("partner listener on {partner_addr}");
    info!("admin listener on {admin_addr}");
    if let Some(on_ready) = on_ready {
        on_ready(partner_addr, admin_addr, &state);
    }

    let shutdown = CancellationToken::new();
    tokio::spawn(reload_on_sighup(state.clone(), shutdown.clone()));
    let _watcher = match watch_config(&dir, state.clone()) {
        Ok(watcher) => Some(watcher),
        Err(err) => {
            warn!(error = %err, "File watching unavailable; reload with SIGHUP or the admin API.");
            None
        }
    };
    let server = tokio::spawn(gateway_http::server::run(
        partner,
        admin,
        state,
        shutdown.clone(),
    ));
    shutdown_signal().await;
    info!("Shutting down.");
    shutdown.cancel();
    let _ = server.await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn reload_on_sighup(state: Arc<GatewayState>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("SIGHUP handler unavailable.");
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            received = hup.recv() => if received.is_none() { return },
        }
        info!(trigger = "sighup", "Reloading configuration.");
        let _ = state.reload().await;
    }
}

/// Watches the configuration directory and reloads after changes settle (debounced).
fn watch_config(
    dir: &Path,
    state: Arc<GatewayState>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
        {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(dir, notify::RecursiveMode::Recursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: editors write files in several steps.
            loop {
                match tokio::time::timeout(std::time::Duration::from_millis(300), rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            info!(trigger = "file_change", "Reloading configuration.");
            let _ = state.reload().await;
        }
    });
    Ok(watcher)
}

fn config_check(dir: &Path) -> ExitCode {
    match gateway_http::prepare(dir, &Overrides::default()) {
        Ok(prepared) => {
            println!(
                "{}: ok ({} partners, {} campaigns, {} fields)",
                dir.display(),
                prepared.config.partners.len(),
                prepared.config.campaigns.len(),
                prepared.config.gateway.fields.len()
            );
            ExitCode::SUCCESS
        }
        Err(PrepareError::Config(report)) => {
            println!("{report}");
            ExitCode::FAILURE
        }
        Err(err) => {
            println!("gateway.yaml: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Installs logging (and OTLP export when configured); the guard flushes on drop.
fn telemetry(
    format: LogFormat,
    config: Option<&gateway_config::Config>,
) -> anyhow::Result<gateway_telemetry::TelemetryGuard> {
    let settings = gateway_telemetry::TelemetrySettings {
        log_format: match format {
            LogFormat::Json => gateway_telemetry::LogFormat::Json,
            LogFormat::Text => gateway_telemetry::LogFormat::Text,
        },
        filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        otlp_endpoint: config.and_then(|c| c.gateway.telemetry.otlp_endpoint.clone()),
        service_name: config.map_or_else(
            || "partner-gateway".into(),
            |c| c.gateway.telemetry.service_name.clone(),
        ),
        instance_id: config.map_or_else(|| "local".into(), |c| c.gateway.instance_id.clone()),
    };
    gateway_telemetry::init(&settings).map_err(|e| anyhow::anyhow!("telemetry: {e}"))
}
