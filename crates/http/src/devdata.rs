//! Dev secrets: what `partner-gateway dev` (and the test harness) generate under the data
//! directory so the sample `partner-config/gateway.yaml` finds every file it names.
//!
//! Nothing that exists is replaced. Secrets are 32 random bytes (hex); keys are PKCS#8 PEM;
//! every file is created with mode 0600.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use tracing::info;

/// Files generated under the data directory, as the sample `gateway.yaml` names them.
pub const ADMIN_TOKEN: &str = "admin.token";
/// ES256 token signing key (PKCS#8 PEM).
pub const TOKEN_SIGNING_KEY: &str = "keys/token-dev-1.pem";
/// Secret keying pairwise customer refs.
pub const CUSTOMER_REF_SECRET: &str = "keys/customer-ref.secret";
/// Ed25519 key signing audit checkpoints (PKCS#8 PEM).
pub const AUDIT_CHECKPOINT_KEY: &str = "keys/audit-checkpoint.pem";
/// Secret keying customer-id hashes in audit records.
pub const AUDIT_CUSTOMER_SECRET: &str = "keys/audit-customer.secret";

/// Why dev secrets could not be created.
#[derive(Debug, thiserror::Error)]
pub enum DevDataError {
    /// A file or directory could not be written.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    /// Key generation failed.
    #[error("{0}")]
    Crypto(&'static str),
}

/// Creates the dev secrets and keys the sample configuration names, when missing.
pub fn ensure_dev_secrets(data: &Path) -> Result<(), DevDataError> {
    fs::create_dir_all(data.join("keys"))
        .map_err(|e| DevDataError::Io(data.display().to_string(), e))?;
    let rng = SystemRandom::new();
    let random_hex = || -> Result<Vec<u8>, DevDataError> {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes)
            .map_err(|_| DevDataError::Crypto("no system randomness"))?;
        Ok(gateway_core::hex::encode(&bytes).into_bytes())
    };
    for name in [ADMIN_TOKEN, CUSTOMER_REF_SECRET, AUDIT_CUSTOMER_SECRET] {
        write_if_missing(&data.join(name), random_hex)?;
    }
    write_if_missing(&data.join(TOKEN_SIGNING_KEY), || {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| DevDataError::Crypto("generate an ES256 key"))?;
        Ok(pem("PRIVATE KEY", pkcs8.as_ref()).into_bytes())
    })?;
    write_if_missing(&data.join(AUDIT_CHECKPOINT_KEY), || {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| DevDataError::Crypto("generate an Ed25519 key"))?;
        Ok(pem("PRIVATE KEY", pkcs8.as_ref()).into_bytes())
    })?;
    Ok(())
}

fn write_if_missing(
    path: &Path,
    make: impl FnOnce() -> Result<Vec<u8>, DevDataError>,
) -> Result<(), DevDataError> {
    if path.exists() {
        return Ok(());
    }
    let contents = make()?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| DevDataError::Io(path.display().to_string(), e))?;
    file.write_all(&contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| DevDataError::Io(path.display().to_string(), e))?;
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
