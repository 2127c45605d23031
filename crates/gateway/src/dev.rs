//! `partner-gateway dev`: everything on one machine.
//!
//! Creates what is missing — the dev PKI in `certs/dev/`, the admin token and dev keys under
//! `data/` — starts the sandbox upstream on loopback, points the upstreams at it, and serves
//! `partner-config/` with the embedded store under `data/`. Nothing that exists is replaced.

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use tracing::info;

use gateway_http::{GatewayState, Overrides};

use crate::cli::DevArgs;

/// Files `dev` generates under the data directory, as the sample `gateway.yaml` names them.
const ADMIN_TOKEN: &str = "admin.token";
const TOKEN_SIGNING_KEY: &str = "keys/token-dev-1.pem";
const CUSTOMER_REF_SECRET: &str = "keys/customer-ref.secret";
const AUDIT_CHECKPOINT_KEY: &str = "keys/audit-checkpoint.pem";
const AUDIT_CUSTOMER_SECRET: &str = "keys/audit-customer.secret";

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    if gateway_tls::devpki::ensure(&args.certs, gateway_tls::devpki::SAMPLE_PARTNERS)
        .with_context(|| format!("create the dev PKI in {}", args.certs.display()))?
    {
        info!(dir = %args.certs.display(), "Generated the dev PKI.");
    }
    ensure_dev_secrets(&args.data)?;
    let sandbox = gateway_sandbox::start(args.sandbox_addr)
        .await
        .context("start the sandbox upstream")?;
    info!("sandbox upstream on {}", sandbox.addr());
    let overrides = Overrides {
        upstream_authority: Some(sandbox.addr().to_string()),
    };
    let certs = args.certs.clone();
    let banner = Box::new(
        move |partner: SocketAddr, admin: SocketAddr, state: &GatewayState| {
            print_banner(&certs, partner, admin, &state.admin_token());
        },
    );
    let result = crate::serve(
        &args.config,
        overrides,
        args.listen.partner_addr,
        args.listen.admin_addr,
        Some(banner),
    )
    .await;
    sandbox.shutdown().await;
    result
}

fn print_banner(certs: &Path, partner: SocketAddr, admin: SocketAddr, admin_token: &str) {
    let port = partner.port();
    let certs = certs.display();
    println!(
        "\nPartner Gateway (dev) is up.\n\
         \n  partner listener  https://localhost:{port}  (mTLS; dev CA {certs}/ca.pem)\
         \n  admin listener    http://{admin}\
         \n  admin token       {admin_token}\
         \n\nTry it as demo-bank:\n\n  \
         curl --cacert {certs}/ca.pem --cert {certs}/partners/demo-bank.pem \\\n       \
         --key {certs}/partners/demo-bank-key.pem https://localhost:{port}/v1/products?limit=2\n"
    );
}

/// Creates the dev secrets and keys the sample configuration names, when missing.
fn ensure_dev_secrets(data: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(data.join("keys")).with_context(|| format!("create {}", data.display()))?;
    let rng = SystemRandom::new();
    let random_hex = || -> anyhow::Result<Vec<u8>> {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes)
            .map_err(|_| anyhow::anyhow!("no system randomness"))?;
        Ok(gateway_core::hex::encode(&bytes).into_bytes())
    };
    for name in [ADMIN_TOKEN, CUSTOMER_REF_SECRET, AUDIT_CUSTOMER_SECRET] {
        write_if_missing(&data.join(name), random_hex)?;
    }
    write_if_missing(&data.join(TOKEN_SIGNING_KEY), || {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("generate an ES256 key"))?;
        Ok(pem("PRIVATE KEY", pkcs8.as_ref()).into_bytes())
    })?;
    write_if_missing(&data.join(AUDIT_CHECKPOINT_KEY), || {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("generate an Ed25519 key"))?;
        Ok(pem("PRIVATE KEY", pkcs8.as_ref()).into_bytes())
    })?;
    Ok(())
}

fn write_if_missing(
    path: &Path,
    make: impl FnOnce() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let contents = make()?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(&contents)?;
    file.sync_all()?;
    info!(file = %path.display(), "Generated a dev secret.");
    Ok(())
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
