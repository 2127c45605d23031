//! The segment writer and the verifier, end to end on real files.

mod common;

use std::path::Path;

use common::{append_many, config_with_key, copy_dir, record, segments};
use gateway_audit::{
    Appended, AuditWriter, BreakKind, Durability, SearchFilter, VerifyError, verify,
};
use gateway_core::PartnerId;
use gateway_core::audit::{AuditTime, Decision};

/// Builds a clean, shut-down trail of `n` records in `dir`; returns the public key.
async fn clean_trail(dir: &Path, n: u64) -> [u8; 32] {
    let (config, signer) = config_with_key(dir);
    let writer = AuditWriter::open(config).await.unwrap();
    // A few batches, so segments rotate several times.
    for chunk in 0..n.div_ceil(10) {
        append_many(&writer, chunk * 10, 10.min(n - chunk * 10)).await;
    }
    writer.shutdown().await.unwrap();
    signer.public_key()
}

fn line_offsets(path: &Path) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    out
}

fn expect_break(dir: &Path, key: &[u8; 32]) -> VerifyError {
    verify(dir, Some(key)).expect_err("tampering must be detected")
}

#[tokio::test]
async fn a_clean_trail_verifies_across_segments_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (config, signer) = config_with_key(dir.path());
    let writer = AuditWriter::open(config.clone()).await.unwrap();
    let seqs = append_many(&writer, 0, 40).await;
    assert_eq!(seqs, (0..40).collect::<Vec<_>>());
    writer.shutdown().await.unwrap();

    // Reopen: the chain continues where it stopped.
    let writer = AuditWriter::open(config).await.unwrap();
    assert_eq!(writer.index().len(), 40);
    let seqs = append_many(&writer, 40, 25).await;
    assert_eq!(seqs, (40..65).collect::<Vec<_>>());
    writer.shutdown().await.unwrap();

    let summary = verify(dir.path(), Some(&signer.public_key())).unwrap();
    assert_eq!(summary.records, 65);
    assert_eq!(summary.last_seq, Some(64));
    assert_eq!(summary.last_checkpoint_seq, Some(64));
    assert_eq!(summary.unsigned_tail, 0);
    assert!(summary.segments >= 2, "{summary:?}");
    assert!(summary.signatures_checked);
    assert_eq!(summary.torn_tail, None);
}

#[tokio::test]
async fn appends_after_shutdown_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = config_with_key(dir.path());
    let writer = AuditWriter::open(config).await.unwrap();
    writer.shutdown().await.unwrap();
    assert_eq!(
        writer.append(&record(0)).await,
        Err(gateway_audit::AppendError::Closed)
    );
}

#[tokio::test]
async fn async_appends_resolve_on_enqueue_and_still_reach_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, signer) = config_with_key(dir.path());
    config.durability = Durability::Async;
    let writer = AuditWriter::open(config).await.unwrap();
    for i in 0..20 {
        assert_eq!(writer.append(&record(i)).await, Ok(Appended::Queued));
    }
    // An explicit Sync append waits for everything queued before it.
    let last = writer
        .append_with(&record(20), Durability::Sync)
        .await
        .unwrap();
    assert_eq!(last, Appended::Durable { seq: 20 });
    writer.shutdown().await.unwrap();
    assert_eq!(
        verify(dir.path(), Some(&signer.public_key()))
            .unwrap()
            .records,
        21
    );
}

#[tokio::test]
async fn a_torn_final_line_is_truncated_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let key = clean_trail(dir.path(), 12).await;
    let newest = segments(dir.path()).pop().unwrap();
    let clean_len = std::fs::metadata(&newest).unwrap().len();
    // A crash during a write leaves half a line (never acknowledged).
    std::fs::OpenOptions::new()
        .append(true)
        .open(&newest)
        .map(|mut f| std::io::Write::write_all(&mut f, b"{\"seq\":12,\"prev\":\"ab"))
        .unwrap()
        .unwrap();
    let summary = verify(dir.path(), Some(&key)).unwrap();
    assert_eq!(summary.torn_tail, Some((newest.clone(), clean_len)));

    let (mut config, _) = config_with_key(dir.path());
    config.signer = None;
    let writer = AuditWriter::open(config).await.unwrap();
    assert_eq!(std::fs::metadata(&newest).unwrap().len(), clean_len);
    assert_eq!(append_many(&writer, 12, 1).await, vec![12]);
    writer.shutdown().await.unwrap();
    let summary = verify(dir.path(), Some(&key)).unwrap();
    assert_eq!((summary.records, summary.torn_tail), (13, None));
}

#[tokio::test]
async fn tampering_is_detected_with_its_location() {
    let base = tempfile::tempdir().unwrap();
    let key = clean_trail(base.path(), 40).await;
    let segs = segments(base.path());
    assert!(segs.len() >= 4, "need several segments, got {}", segs.len());
    let name = |p: &Path| p.file_name().unwrap().to_owned();

    // Flip a byte inside the second record of the first segment.
    {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let path = dir.path().join(name(&segs[0]));
        let lines = line_offsets(&path);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = lines[1].0 + 120; // inside the record body of seq 1
        bytes[at] ^= 0x01;
        std::fs::write(&path, bytes).unwrap();
        let err = expect_break(dir.path(), &key);
        assert_eq!(err.file, path);
        assert_eq!(err.seq, Some(1));
        assert_eq!(err.offset, lines[1].0 as u64);
        assert!(
            matches!(
                err.kind,
                BreakKind::EditedRecord { next_seq: 2 } | BreakKind::Unparseable { .. }
            ),
            "{err}"
        );
    }
    // Delete a record in the middle of a segment.
    {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let path = dir.path().join(name(&segs[1]));
        let lines = line_offsets(&path);
        let bytes = std::fs::read(&path).unwrap();
        let first_seq = first_seq_of(&path);
        let mut out = bytes[..lines[1].0].to_vec();
        out.extend_from_slice(&bytes[lines[1].1..]);
        std::fs::write(&path, out).unwrap();
        let err = expect_break(dir.path(), &key);
        assert_eq!(
            (err.file.clone(), err.offset),
            (path.clone(), lines[1].0 as u64)
        );
        assert_eq!(
            err.kind,
            BreakKind::MissingRecords {
                expected: first_seq + 1,
                found: first_seq + 2
            }
        );
    }
    // Swap two records.
    {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let path = dir.path().join(name(&segs[1]));
        let lines = line_offsets(&path);
        let bytes = std::fs::read(&path).unwrap();
        let first_seq = first_seq_of(&path);
        let mut out = bytes[..lines[0].0].to_vec();
        out.extend_from_slice(&bytes[lines[1].0..lines[1].1]);
        out.extend_from_slice(&bytes[lines[0].0..lines[0].1]);
        out.extend_from_slice(&bytes[lines[1].1..]);
        std::fs::write(&path, out).unwrap();
        let err = expect_break(dir.path(), &key);
        assert_eq!((err.file.clone(), err.offset), (path.clone(), 0));
        assert_eq!(
            err.kind,
            BreakKind::Reordered {
                expected: first_seq,
                found: first_seq + 1
            }
        );
    }
    // Truncate the tail (cut the newest segment in half).
    {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let path = dir.path().join(name(segs.last().unwrap()));
        let lines = line_offsets(&path);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..lines[lines.len() / 2].1]).unwrap();
        let err = expect_break(dir.path(), &key);
        assert_eq!(err.file, dir.path().join("checkpoints.log"));
        assert!(
            matches!(
                err.kind,
                BreakKind::TruncatedTail {
                    checkpoint_seq: 39,
                    ..
                }
            ),
            "{err}"
        );
    }
    // Delete a whole middle segment.
    {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let missing = first_seq_of(&segs[2]);
        std::fs::remove_file(dir.path().join(name(&segs[2]))).unwrap();
        let err = expect_break(dir.path(), &key);
        assert_eq!(err.file, dir.path().join(name(&segs[3])));
        assert_eq!(err.offset, 0);
        assert_eq!(err.kind, BreakKind::MissingSegment { first_seq: missing });
    }
    // Delete the newest segment.
    {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let newest = segs.last().unwrap();
        let missing = first_seq_of(newest);
        std::fs::remove_file(dir.path().join(name(newest))).unwrap();
        let err = expect_break(dir.path(), &key);
        assert_eq!(err.file, dir.path().join("checkpoints.log"));
        assert_eq!(err.kind, BreakKind::MissingSegment { first_seq: missing });
    }
    // Forge a checkpoint: claim a later seq.
    {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.path(), dir.path());
        let path = dir.path().join("checkpoints.log");
        let text = std::fs::read_to_string(&path).unwrap();
        let last_start = text.trim_end().rfind('\n').map_or(0, |i| i + 1);
        let forged = text[..last_start].to_string()
            + &text[last_start..].replacen("\"seq\":39", "\"seq\":38", 1);
        std::fs::write(&path, forged).unwrap();
        let err = expect_break(dir.path(), &key);
        assert_eq!((err.file.clone(), err.offset), (path, last_start as u64));
        assert_eq!(err.kind, BreakKind::BadSignature);
    }
}

#[tokio::test]
async fn a_rechained_forgery_is_caught_by_the_signed_head() {
    let dir = tempfile::tempdir().unwrap();
    let key = clean_trail(dir.path(), 15).await;
    // Rewrite every record with a different status and recompute the whole chain: the
    // chain is valid again, but the signed heads no longer match.
    let mut chain = gateway_audit::format::Chain::genesis();
    for path in segments(dir.path()) {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out = Vec::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let mut rec = v["rec"].clone();
            rec["status"] = 500.into();
            chain.append(&serde_json::to_vec(&rec).unwrap(), &mut out);
        }
        std::fs::write(&path, out).unwrap();
    }
    let err = verify(dir.path(), Some(&key)).unwrap_err();
    assert!(
        matches!(err.kind, BreakKind::CheckpointMismatch { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_checkpoint_signed_by_another_key_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    clean_trail(dir.path(), 5).await;
    let other = gateway_audit::CheckpointSigner::generate().unwrap();
    let err = verify(dir.path(), Some(&other.public_key())).unwrap_err();
    assert_eq!((err.offset, err.kind), (0, BreakKind::BadSignature));
    // Without a trusted key the structure still verifies.
    assert!(!verify(dir.path(), None).unwrap().signatures_checked);
}

#[tokio::test]
async fn search_pages_through_partner_customer_time_and_decision() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = config_with_key(dir.path());
    let writer = AuditWriter::open(config.clone()).await.unwrap();
    append_many(&writer, 0, 60).await;
    writer.shutdown().await.unwrap();
    // The index is rebuilt from the files on open.
    let writer = AuditWriter::open(config).await.unwrap();

    let bank = PartnerId::parse("demo-bank").unwrap();
    let filter = SearchFilter {
        partner: Some(bank.clone()),
        ..SearchFilter::default()
    };
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = writer.search(filter.clone(), cursor, 7).await.unwrap();
        seen.extend(page.records.iter().map(|r| r.seq));
        assert!(
            page.records
                .iter()
                .all(|r| r.record.partner.as_ref() == Some(&bank))
        );
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<u64> = (0..60).rev().filter(|n| n % 3 == 0).collect();
    assert_eq!(seen, expected);

    let filter = SearchFilter {
        customer_hash: Some(common::customer(1)),
        decision: Some(Decision::Deny),
        from: Some(AuditTime::from_millis(1_800_000_000_000 + 10_000)),
        to: Some(AuditTime::from_millis(1_800_000_000_000 + 50_000)),
        ..SearchFilter::default()
    };
    let page = writer.search(filter, None, 100).await.unwrap();
    let seqs: Vec<u64> = page.records.iter().map(|r| r.seq).collect();
    let expected: Vec<u64> = (10..=50)
        .rev()
        .filter(|n| n % 4 == 1 && n % 5 == 4)
        .collect();
    assert_eq!(seqs, expected);
    assert_eq!(page.next, None);

    let log = writer.access_log(common::customer(2)).await.unwrap();
    let expected: Vec<u64> = (0..60).rev().filter(|n| n % 4 == 2 && n % 5 != 4).collect();
    assert_eq!(log.iter().map(|d| d.seq).collect::<Vec<_>>(), expected);
    assert_eq!(
        log[0].released,
        vec!["risk_level".to_string(), "mobile".to_string()]
    );
    assert_eq!(log[0].withheld[0].reason, "second_authorisation_required");
    writer.shutdown().await.unwrap();
}

fn first_seq_of(path: &Path) -> u64 {
    let name = path.file_name().unwrap().to_str().unwrap();
    name["segment-".len()..name.len() - ".log".len()]
        .parse()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn segments_rotate_by_age_and_checkpoints_follow_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, signer) = config_with_key(dir.path());
    config.segment_max_bytes = 1 << 30;
    config.segment_max_age = std::time::Duration::from_secs(60);
    config.checkpoint_interval = std::time::Duration::from_secs(10);
    let writer = AuditWriter::open(config).await.unwrap();
    append_many(&writer, 0, 2).await;
    let key = signer.public_key();
    assert_eq!(verify(dir.path(), Some(&key)).unwrap().checkpoints, 0);

    // The checkpoint timer fires on the (paused, advanced) tokio clock.
    tokio::time::advance(std::time::Duration::from_secs(11)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while verify(dir.path(), Some(&key)).unwrap().checkpoints == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no periodic checkpoint"
        );
        tokio::task::yield_now().await;
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(segments(dir.path()).len(), 1);

    tokio::time::advance(std::time::Duration::from_secs(60)).await;
    append_many(&writer, 2, 1).await;
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 2, "the old segment aged out");
    assert!(segs[1].ends_with("segment-00000000000000000002.log"));
    writer.shutdown().await.unwrap();
    let summary = verify(dir.path(), Some(&key)).unwrap();
    assert_eq!((summary.records, summary.last_checkpoint_seq), (3, Some(2)));
}
