//! `partner-gateway audit …`: verify a trail, print a checkpoint public key.

use std::process::ExitCode;

use crate::cli::AuditCommand;

pub(crate) fn run(command: AuditCommand) -> ExitCode {
    match command {
        AuditCommand::Verify {
            dir,
            public_key,
            config,
        } => {
            let key = match trusted_key(public_key.as_deref(), config.as_deref()) {
                Ok(key) => key,
                Err(err) => {
                    eprintln!("partner-gateway audit verify: {err}");
                    return ExitCode::FAILURE;
                }
            };
            match gateway_audit::verify(&dir, key.as_ref().map(|k| &k[..])) {
                Ok(summary) => {
                    println!(
                        "{}: intact: {} records in {} segments, last seq {}, {} checkpoints ({})",
                        dir.display(),
                        summary.records,
                        summary.segments,
                        summary.last_seq.map_or("-".into(), |s| s.to_string()),
                        summary.checkpoints,
                        if summary.signatures_checked {
                            "signatures verified"
                        } else {
                            "signatures NOT checked: pass --public-key or --config"
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    println!("{}: BROKEN: {err}", dir.display());
                    ExitCode::FAILURE
                }
            }
        }
        AuditCommand::PublicKey { key } => {
            match gateway_audit::CheckpointSigner::from_pem_file(&key) {
                Ok(signer) => {
                    print!("{}", gateway_audit::public_key_pem(&signer.public_key()));
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("partner-gateway audit public-key: {}: {err}", key.display());
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn trusted_key(
    public_key: Option<&std::path::Path>,
    config: Option<&std::path::Path>,
) -> Result<Option<[u8; 32]>, String> {
    if let Some(path) = public_key {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return gateway_audit::parse_public_key(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    if let Some(dir) = config {
        let config = gateway_config::load(dir).map_err(|report| report.to_string())?;
        let path = &config.gateway.audit.checkpoint_key;
        let signer = gateway_audit::CheckpointSigner::from_pem_file(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(Some(signer.public_key()));
    }
    Ok(None)
}
