//! kill -9 at a random moment loses no acknowledged record and leaves a verifiable trail.
//!
//! The test re-executes its own binary as a child (selected by an environment variable)
//! that appends records in `Sync` mode and prints each seq once its append resolved; the
//! parent SIGKILLs it at a random moment, reopens the trail, and checks.

mod common;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_audit::{AuditWriter, CheckpointSigner, WriterConfig, generate_dev_key_file, verify};

const CHILD_DIR: &str = "GATEWAY_AUDIT_CRASH_CHILD_DIR";
const ACK: &str = "ACK ";

fn config(dir: &Path) -> WriterConfig {
    let signer = CheckpointSigner::from_pem_file(&dir.join("key.pem")).unwrap();
    let mut config = WriterConfig::new(dir.join("audit"), "gw-crash");
    config.signer = Some(Arc::new(signer));
    config.segment_max_bytes = 8 * 1024;
    config.checkpoint_interval = Duration::from_millis(5);
    config
}

/// The child role: a no-op unless the parent selected it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let writer = AuditWriter::open(config(Path::new(&dir))).await.unwrap();
    let mut tasks = Vec::new();
    for worker in 0..8u64 {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let mut record = common::record(worker * 1_000_000 + i);
                record.interaction_id = Some(format!("w{worker}-{i}"));
                match writer.append(&record).await {
                    Ok(gateway_audit::Appended::Durable { seq }) => {
                        // One write per line: the parent reads whole lines.
                        println!("{ACK}{seq}");
                    }
                    other => panic!("append failed: {other:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn random_below(n: u64) -> u64 {
    RandomState::new().build_hasher().finish() % n
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let key = generate_dev_key_file(&dir.path().join("key.pem")).unwrap();
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let mut acknowledged: Vec<u64> = Vec::new();
    let mut rounds = 0;
    while rounds < 20 || (rounds < 40 && acknowledged.len() < 200) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "crash test took too long"
        );
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut seqs = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(seq) = line.strip_prefix(ACK) {
                    seqs.push(seq.parse::<u64>().unwrap());
                }
            }
            seqs
        });
        // Kill at a random moment: 20 to 80 ms after the start (the child needs ~10 ms to
        // open the trail, so some rounds kill it before or during recovery).
        let deadline = Instant::now() + Duration::from_millis(20 + random_below(60));
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                panic!("the child exited by itself");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let seqs = reader.join().unwrap();
        acknowledged.extend(&seqs);
        rounds += 1;

        // Offline verification first (a torn tail is allowed), then reopen and check that
        // every acknowledged seq is there.
        let audit = dir.path().join("audit");
        if !audit.exists() {
            continue;
        }
        verify(&audit, Some(&key)).unwrap_or_else(|e| panic!("round {rounds}: {e}"));
        let writer = AuditWriter::open(config(dir.path())).await.unwrap();
        let count = writer.index().len() as u64;
        for seq in &acknowledged {
            assert!(
                *seq < count,
                "round {rounds}: acknowledged seq {seq} missing ({count} records)"
            );
        }
        writer.shutdown().await.unwrap();
        let summary = verify(&audit, Some(&key)).unwrap();
        assert_eq!(summary.records, count);
        assert_eq!(summary.torn_tail, None);
    }
    assert!(
        !acknowledged.is_empty(),
        "no child ever acknowledged a record"
    );
    eprintln!(
        "{rounds} kills, {} acknowledged records, all present",
        acknowledged.len()
    );
}
