//! Cost of an audit record: serialisation, chaining (SHA-256 of the line), and the group
//! commit that makes it durable.
//!
//! `cargo bench -p gateway-audit --bench record`. The group-commit benches also print the
//! process CPU time per record (user + system, from /proc/self/stat), which is what
//! PERFORMANCE.md budgets.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_audit::format::{Chain, encode_record};
use gateway_audit::{AuditWriter, WriterConfig};
use gateway_core::audit::{
    AuditRecord, AuditTime, CustomerHash, Decision, RecordKind, WithheldField,
};
use gateway_core::{ClientId, ConsentId, CustomerRef, Fingerprint, PartnerId};

/// A typical customer-data record (~700 bytes as a line).
fn typical() -> AuditRecord {
    let mut r = AuditRecord::new(RecordKind::PartnerRequest, AuditTime::now(), "gw-1");
    r.partner = Some(PartnerId::parse("demo-bank").unwrap());
    r.cert_fingerprint = Some(Fingerprint([0xab; 32]));
    r.client_id = Some(ClientId::parse("demo-bank").unwrap());
    r.method = Some("GET".into());
    r.route = Some("customer_tags".into());
    r.status = 200;
    r.customer_ref = Some(CustomerRef::parse(&"R".repeat(43)).unwrap());
    r.customer_hash = Some(CustomerHash([7; 32]));
    r.consent_id = Some(ConsentId::parse("0193a5f2-7c1e-7d3a-9b5e-2f4c8a1d6e90").unwrap());
    r.scope = Some("tags:read products:read".into());
    r.decision = Decision::Allow;
    r.reason = Some("consented".into());
    r.released = [
        "name",
        "risk_level",
        "investment_preference",
        "mobile",
        "asset_tier",
    ]
    .map(String::from)
    .to_vec();
    r.withheld = vec![
        WithheldField::new("home_address", "second_authorisation_required"),
        WithheldField::new("holdings", "no_consent"),
    ];
    r.latency_us = 1834;
    r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
    r.interaction_id = Some("c770aef3-6784-41f7-8e0e-ff5f97bddb3a".into());
    r
}

fn encoding(c: &mut Criterion) {
    let record = typical();
    let body = encode_record(&record);
    let mut line = Vec::with_capacity(1024);
    let mut chain = Chain::genesis();
    chain.append(&body, &mut line);
    eprintln!("record line: {} bytes", line.len());

    c.bench_function("record/serialise", |b| {
        b.iter(|| encode_record(black_box(&record)))
    });
    c.bench_function("record/chain (envelope + sha256)", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            chain.append(black_box(&body), &mut out)
        })
    });
    c.bench_function("record/serialise + chain", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            let body = encode_record(black_box(&record));
            chain.append(&body, &mut out)
        })
    });
}

/// Process CPU time (user + system) so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after "(comm) ".
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn group_commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cases = [
        ("greedy", Duration::ZERO, 64u64),
        ("1ms cadence", Duration::from_millis(1), 64),
        ("greedy", Duration::ZERO, 256),
        ("1ms cadence", Duration::from_millis(1), 256),
    ];
    for (name, interval, concurrency) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut config = WriterConfig::new(dir.path(), "gw-bench");
        config.commit_interval = interval;
        let writer = runtime.block_on(AuditWriter::open(config)).unwrap();
        let record = typical();
        let mut cpu = Duration::ZERO;
        let mut records = 0u64;
        c.bench_function(
            &format!("group commit/{name}, {concurrency} concurrent appenders"),
            |b| {
                b.iter_custom(|iters| {
                    let started = Instant::now();
                    let cpu_before = cpu_time();
                    runtime.block_on(async {
                        let mut tasks = Vec::new();
                        for t in 0..concurrency {
                            let writer = writer.clone();
                            let record = record.clone();
                            let n = iters / concurrency + u64::from(t < iters % concurrency);
                            tasks.push(tokio::spawn(async move {
                                for _ in 0..n {
                                    writer.append(&record).await.unwrap();
                                }
                            }));
                        }
                        for t in tasks {
                            t.await.unwrap();
                        }
                    });
                    cpu += cpu_time() - cpu_before;
                    records += iters;
                    started.elapsed()
                })
            },
        );
        if records > 0 {
            eprintln!(
                "group commit/{name}, {concurrency} appenders: {:.1} µs CPU per record over {records} records",
                cpu.as_secs_f64() * 1e6 / records as f64
            );
        }
        runtime.block_on(writer.shutdown()).unwrap();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = encoding, group_commit
}
criterion_main!(benches);
