//! `partner-gateway dev`: everything on one machine.
//!
//! Creates what is missing — the dev PKI in `certs/dev/`, the admin token and dev keys under
//! `data/` — starts the sandbox upstream on loopback, points the upstreams at it, and serves
//! `partner-config/` with the embedded store under `data/`. Nothing that exists is replaced.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context as _;

use gateway_http::{GatewayState, Overrides};

use crate::cli::DevArgs;

pub(crate) async fn run(args: DevArgs, format: crate::cli::LogFormat) -> anyhow::Result<()> {
    if gateway_tls::devpki::ensure(&args.certs, gateway_tls::devpki::SAMPLE_PARTNERS)
        .with_context(|| format!("create the dev PKI in {}", args.certs.display()))?
    {
        // Logging starts with the configuration (serve); say it on stderr meanwhile.
        eprintln!("Generated the dev PKI in {}.", args.certs.display());
    }
    gateway_http::devdata::ensure_dev_secrets(&args.data)
        .with_context(|| format!("create dev secrets in {}", args.data.display()))?;
    let sandbox = gateway_sandbox::start(args.sandbox_addr)
        .await
        .context("start the sandbox upstream")?;
    eprintln!("sandbox upstream on {}", sandbox.addr());
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
        format,
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
         MTLS=\"--cacert {certs}/ca.pem --cert {certs}/partners/demo-bank.pem --key {certs}/partners/demo-bank-key.pem\"\n  \
         TOKEN=$(curl -sS $MTLS https://localhost:{port}/oauth2/token \\\n    \
         -d grant_type=client_credentials -d client_id=demo-bank -d 'scope=products:read tags:read' \\\n    \
         | sed -E 's/.*\"access_token\":\"([^\"]+)\".*/\\1/')\n  \
         curl -sS $MTLS -H \"Authorization: Bearer $TOKEN\" 'https://localhost:{port}/v1/products?limit=2'\n"
    );
}
