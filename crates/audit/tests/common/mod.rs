//! Helpers shared by the audit integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gateway_audit::{AuditWriter, CheckpointSigner, WriterConfig};
use gateway_core::audit::{
    AuditRecord, AuditTime, CustomerHash, Decision, RecordKind, WithheldField,
};
use gateway_core::{ConsentId, PartnerId};

/// A writer config for `dir` with a fresh signing key, small segments and no commit delay.
pub fn config_with_key(dir: &Path) -> (WriterConfig, Arc<CheckpointSigner>) {
    let signer = Arc::new(CheckpointSigner::generate().unwrap());
    let mut config = WriterConfig::new(dir, "gw-test");
    config.signer = Some(signer.clone());
    config.segment_max_bytes = 4 * 1024;
    config.commit_interval = Duration::ZERO;
    config.retry_interval = Duration::from_millis(20);
    (config, signer)
}

/// A partner request record; `n` varies the partner, customer and decision.
pub fn record(n: u64) -> AuditRecord {
    let mut r = AuditRecord::new(
        RecordKind::PartnerRequest,
        AuditTime::from_millis(1_800_000_000_000 + n as i64 * 1000),
        "gw-test",
    );
    let partner = ["demo-bank", "demo-fund", "demo-insurer"][(n % 3) as usize];
    r.partner = Some(PartnerId::parse(partner).unwrap());
    r.method = Some("GET".into());
    r.route = Some("customer_tags".into());
    r.status = if n % 5 == 4 { 404 } else { 200 };
    r.decision = if n % 5 == 4 {
        Decision::Deny
    } else {
        Decision::Allow
    };
    r.customer_hash = Some(customer(n % 4));
    r.consent_id = Some(ConsentId::parse(&format!("consent-{}", n % 4)).unwrap());
    r.released = vec!["risk_level".into(), "mobile".into()];
    r.withheld = vec![WithheldField::new(
        "home_address",
        "second_authorisation_required",
    )];
    r.latency_us = 100 + n;
    r.interaction_id = Some(format!("req-{n}"));
    r
}

/// The customer hash used by [`record`] for customer `c`.
pub fn customer(c: u64) -> CustomerHash {
    CustomerHash([c as u8 + 1; 32])
}

/// Appends `n` records starting at `start` concurrently and returns their seqs.
pub async fn append_many(writer: &AuditWriter, start: u64, n: u64) -> Vec<u64> {
    let appends: Vec<_> = (start..start + n)
        .map(|i| writer.append(&record(i)))
        .collect();
    let mut seqs = Vec::new();
    for a in appends {
        match a.await.unwrap() {
            gateway_audit::Appended::Durable { seq } => seqs.push(seq),
            other => panic!("expected a durable append, got {other:?}"),
        }
    }
    seqs
}

/// Copies every file of `from` into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The segment files of `dir`, sorted.
pub fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("segment-")
        })
        .collect();
    out.sort();
    out
}
