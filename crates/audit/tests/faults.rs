//! Fail closed: disk full and I/O errors fail appends, mark the writer unhealthy, and it
//! recovers by itself when writes succeed again.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{append_many, config_with_key, record};
use gateway_audit::fs::FaultyFs;
use gateway_audit::{AppendError, AuditWriter, Health, verify};

/// Waits (polling, with a deadline) until the writer's health is `want`.
async fn wait_health(writer: &AuditWriter, healthy: bool) {
    let mut rx = writer.health();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    tokio::time::timeout_at(deadline, rx.wait_for(|h| h.is_healthy() == healthy))
        .await
        .expect("health did not change in time")
        .unwrap();
}

#[tokio::test]
async fn an_injected_disk_full_fails_appends_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, signer) = config_with_key(dir.path());
    let fs = FaultyFs::new();
    let faults = fs.faults();
    config.fs = Arc::new(fs);
    let writer = AuditWriter::open(config).await.unwrap();
    assert_eq!(append_many(&writer, 0, 5).await, vec![0, 1, 2, 3, 4]);

    faults.disk_full.store(true, Ordering::SeqCst);
    let err = writer.append(&record(5)).await.unwrap_err();
    assert!(
        matches!(&err, AppendError::Io { cause } if cause.contains("No space left")),
        "{err}"
    );
    assert!(!writer.is_healthy());
    assert!(
        matches!(&*writer.health().borrow(), Health::Failing { error, .. } if error.contains("No space"))
    );
    // Still failing: every append is a retry, and fails.
    assert!(matches!(
        writer.append(&record(6)).await,
        Err(AppendError::Io { .. })
    ));

    // Space returns: the idle writer's probe notices without any append.
    faults.disk_full.store(false, Ordering::SeqCst);
    wait_health(&writer, true).await;
    // The chain continues after the last durable record: the failed ones never happened.
    assert_eq!(append_many(&writer, 7, 2).await, vec![5, 6]);
    writer.shutdown().await.unwrap();
    let summary = verify(dir.path(), Some(&signer.public_key())).unwrap();
    assert_eq!(summary.records, 7);
}

#[tokio::test]
async fn a_failed_fsync_fails_the_batch_and_the_next_success_heals() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, signer) = config_with_key(dir.path());
    config.retry_interval = Duration::from_secs(3600); // recovery through an append only
    let fs = FaultyFs::new();
    let faults = fs.faults();
    config.fs = Arc::new(fs);
    let writer = AuditWriter::open(config).await.unwrap();
    append_many(&writer, 0, 3).await;

    faults.sync_fails.store(true, Ordering::SeqCst);
    let err = writer.append(&record(3)).await.unwrap_err();
    assert!(
        matches!(&err, AppendError::Io { cause } if cause.contains("Input/output error")),
        "{err}"
    );
    assert!(!writer.is_healthy());

    faults.sync_fails.store(false, Ordering::SeqCst);
    // The written-but-unsynced bytes of the failed batch are cut away before this one.
    assert_eq!(append_many(&writer, 4, 1).await, vec![3]);
    assert!(writer.is_healthy());
    writer.shutdown().await.unwrap();
    let summary = verify(dir.path(), Some(&signer.public_key())).unwrap();
    assert_eq!(summary.records, 4);
}

#[tokio::test]
async fn async_appends_are_refused_while_unhealthy() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _) = config_with_key(dir.path());
    config.durability = gateway_audit::Durability::Async;
    config.retry_interval = Duration::from_secs(3600);
    let fs = FaultyFs::new();
    let faults = fs.faults();
    config.fs = Arc::new(fs);
    let writer = AuditWriter::open(config).await.unwrap();
    faults.disk_full.store(true, Ordering::SeqCst);
    // Queued, then lost when the batch fails (logged); the writer turns unhealthy.
    assert!(writer.append(&record(0)).await.is_ok());
    wait_health(&writer, false).await;
    assert!(matches!(
        writer.append(&record(1)).await,
        Err(AppendError::Unhealthy { .. })
    ));
    writer.shutdown().await.ok();
}

/// A tmpfs of a few hundred KiB mounted for one test; unmounted on drop.
struct SmallFs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(kib: u32) -> Result<SmallFs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(SmallFs { path, _dir: dir })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Fills the file system holding `dir` until a write fails with ENOSPC.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the small file system: {e}"),
        }
        assert!(Instant::now() < deadline, "the file system never filled up");
    }
    path
}

#[tokio::test]
async fn a_real_full_disk_fails_closed_and_recovers_when_space_returns() {
    let small = match SmallFs::mount(512) {
        Ok(small) => Some(small),
        Err(e) => {
            eprintln!("mount not permitted here ({e}); testing with an injected ENOSPC instead");
            None
        }
    };
    let holder = tempfile::tempdir().unwrap();
    let dir = small
        .as_ref()
        .map_or(holder.path(), |s| s.path.as_path())
        .join("audit");
    let (mut config, signer) = config_with_key(&dir);
    let faults = if small.is_none() {
        let fs = FaultyFs::new();
        let faults = fs.faults();
        config.fs = Arc::new(fs);
        Some(faults)
    } else {
        None
    };
    let writer = AuditWriter::open(config).await.unwrap();
    append_many(&writer, 0, 10).await;

    let filler = match &faults {
        None => Some(fill(small.as_ref().unwrap().path.as_path())),
        Some(f) => {
            f.disk_full.store(true, Ordering::SeqCst);
            None
        }
    };
    // A few records: each batch hits ENOSPC (some may fit in the last partial page).
    let mut failed = None;
    for i in 10..200 {
        if let Err(e) = writer.append(&record(i)).await {
            failed = Some(e);
            break;
        }
    }
    let err = failed.expect("appends must fail on a full disk");
    assert!(
        matches!(&err, AppendError::Io { cause } if cause.contains("No space left")),
        "{err}"
    );
    assert!(!writer.is_healthy());

    match (&filler, &faults) {
        (Some(path), _) => std::fs::remove_file(path).unwrap(),
        (None, Some(f)) => f.disk_full.store(false, Ordering::SeqCst),
        (None, None) => unreachable!(),
    }
    wait_health(&writer, true).await;
    append_many(&writer, 1000, 3).await;
    writer.shutdown().await.unwrap();
    let summary = verify(&dir, Some(&signer.public_key())).unwrap();
    assert!(summary.records >= 13, "{summary:?}");
    assert_eq!(summary.torn_tail, None);
    drop(small);
}
