//! The command line (PRODUCT.md §9).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Partner Gateway: the open-banking door to the broker's customer tags, product catalogue
/// and referral programme.
#[derive(Debug, Parser)]
#[command(name = "partner-gateway", version)]
pub(crate) struct Cli {
    /// Log format (default: text for `dev`, json otherwise). `RUST_LOG` sets the level.
    #[arg(long, global = true, value_enum, env = "PGW_LOG_FORMAT")]
    pub(crate) log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Everything on one machine: dev PKI, sandbox upstream, embedded store, gateway.
    Dev(DevArgs),
    /// Production: run on a configuration directory; nothing generated, nothing sandboxed.
    Run {
        /// The configuration directory.
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        listen: ListenArgs,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// The sandbox upstream alone.
    Sandbox {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8600")]
        addr: SocketAddr,
    },
    /// Audit trail tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Generate the dev PKI (CA, server certificate, sample partner certificates).
    Pki {
        /// Output directory.
        #[arg(long, default_value = "certs/dev")]
        out: PathBuf,
        /// Replace an existing PKI.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Validate a configuration directory: exit 0 when clean, 1 with a report otherwise.
    Check {
        /// The configuration directory.
        #[arg(long, default_value = "partner-config")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the hash chain and signed checkpoints of an audit directory: exit 0 when intact,
    /// 1 at the first break (file, offset, record).
    Verify {
        /// The audit directory (e.g. `data/audit`).
        dir: PathBuf,
        /// The checkpoint public key (PEM, as printed by `audit public-key`).
        #[arg(long, conflicts_with = "config")]
        public_key: Option<PathBuf>,
        /// Take the checkpoint key from this configuration directory's `audit.checkpoint_key`.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the public key of a checkpoint signing key, for verifiers.
    PublicKey {
        /// The Ed25519 PKCS#8 PEM private key (`audit.checkpoint_key`).
        key: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Partner listener address (`127.0.0.1:0` picks a free port).
    #[arg(long)]
    pub(crate) partner_addr: Option<SocketAddr>,
    /// Admin listener address (`127.0.0.1:0` picks a free port).
    #[arg(long)]
    pub(crate) admin_addr: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// The configuration directory.
    #[arg(long, default_value = "partner-config")]
    pub(crate) config: PathBuf,
    /// Where the dev PKI lives (created when missing).
    #[arg(long, default_value = "certs/dev")]
    pub(crate) certs: PathBuf,
    /// Where dev secrets and state live (created when missing).
    #[arg(long, default_value = "data")]
    pub(crate) data: PathBuf,
    /// Where the sandbox upstream listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub(crate) sandbox_addr: SocketAddr,
    #[command(flatten)]
    pub(crate) listen: ListenArgs,
}
