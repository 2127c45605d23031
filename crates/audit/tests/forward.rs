//! Forwarding to a real redis-server: outages, restarts, resumption, duplicates.

mod common;

use std::time::Duration;

use common::{append_many, config_with_key, segments};
use gateway_audit::{AuditWriter, ForwardError, Forwarder, RedisStreamSink};
use gateway_testutil::RedisServer;

const STREAM: &str = "audit:records";

/// (seq, instance) of every entry of the stream, in stream order.
fn stream_entries(redis: &RedisServer) -> Vec<(u64, String)> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(STREAM)
        .arg("-")
        .arg("+")
        .query(&mut con)
        .unwrap();
    entries
        .into_iter()
        .map(|(_, fields)| {
            let get = |name: &str| {
                let i = fields.iter().position(|f| f == name).unwrap();
                fields[i + 1].clone()
            };
            let record = get("record");
            let line: serde_json::Value = serde_json::from_str(&record).unwrap();
            let seq: u64 = get("seq").parse().unwrap();
            assert_eq!(line["seq"], seq, "the record line carries the same seq");
            (seq, get("instance"))
        })
        .collect()
}

fn stream_len(redis: &RedisServer) -> Option<u64> {
    let client = redis::Client::open(redis.url()).ok()?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_millis(200))
        .ok()?;
    redis::cmd("XLEN").arg(STREAM).query(&mut con).ok()
}

fn durable_redis() -> RedisServer {
    // Redis must keep what it acknowledged across its own restart.
    RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_arrives_in_order_across_a_redis_restart() {
    let mut redis = durable_redis();
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = config_with_key(dir.path());
    let writer = AuditWriter::open(config).await.unwrap();
    let sink = RedisStreamSink::new(&redis.url(), STREAM, "gw-test").unwrap();
    let forwarder = Forwarder::new(dir.path(), sink)
        .unwrap()
        .max_batch(16)
        .poll_interval(Duration::from_millis(20))
        .follow(writer.durable());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(forwarder.run(async move {
        let _ = stopped.await;
    }));

    append_many(&writer, 0, 100).await;
    // Wait until forwarding is under way, then pull the plug while more records arrive.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stream_len(&redis).unwrap_or(0) == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing forwarded");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    redis.kill();
    append_many(&writer, 100, 100).await;
    redis.restart();
    append_many(&writer, 200, 100).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stream_len(&redis) != Some(300) {
        assert!(
            std::time::Instant::now() < deadline,
            "stream has {:?} of 300 records",
            stream_len(&redis)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let entries = stream_entries(&redis);
    let seqs: Vec<u64> = entries.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (0..300).collect::<Vec<_>>(),
        "every record once, in order"
    );
    assert!(entries.iter().all(|(_, instance)| instance == "gw-test"));

    let _ = stop.send(());
    task.await.unwrap().unwrap();
    writer.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_new_forwarder_resumes_at_its_cursor_and_repeats_are_dropped() {
    let redis = durable_redis();
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = config_with_key(dir.path());
    let writer = AuditWriter::open(config.clone()).await.unwrap();
    append_many(&writer, 0, 50).await;
    writer.shutdown().await.unwrap();

    let sink = || RedisStreamSink::new(&redis.url(), STREAM, "gw-test").unwrap();
    let mut first = Forwarder::new(dir.path(), sink()).unwrap().max_batch(7);
    assert_eq!(first.forward_available().await.unwrap(), Ok(50));
    let cursor = first.cursor();
    assert_eq!(cursor.next_seq, 50);

    let writer = AuditWriter::open(config).await.unwrap();
    append_many(&writer, 50, 30).await;
    writer.shutdown().await.unwrap();
    let mut second = Forwarder::new(dir.path(), sink()).unwrap();
    assert_eq!(second.cursor(), cursor, "the cursor was persisted");
    assert_eq!(second.forward_available().await.unwrap(), Ok(30));

    // A lost cursor re-sends everything: Redis drops what it already has.
    std::fs::remove_file(dir.path().join("forward-redis.cursor")).unwrap();
    let mut third = Forwarder::new(dir.path(), sink()).unwrap();
    assert_eq!(third.forward_available().await.unwrap(), Ok(80));
    let seqs: Vec<u64> = stream_entries(&redis)
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(seqs, (0..80).collect::<Vec<_>>());
}

#[tokio::test]
async fn forwarding_stops_at_a_missing_segment() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = config_with_key(dir.path());
    let writer = AuditWriter::open(config).await.unwrap();
    for chunk in 0..6 {
        append_many(&writer, chunk * 10, 10).await;
    }
    writer.shutdown().await.unwrap();
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    std::fs::remove_file(&segs[1]).unwrap();

    let sink = RedisStreamSink::new(&redis.url(), STREAM, "gw-test").unwrap();
    let mut forwarder = Forwarder::new(dir.path(), sink).unwrap();
    let err = forwarder.forward_available().await.unwrap_err();
    assert!(
        matches!(err, ForwardError::Gap { found: Some(_), .. }),
        "{err}"
    );
    // What came before the gap was forwarded, nothing after it.
    let before = forwarder.cursor().next_seq;
    assert_eq!(stream_len(&redis), Some(before));
}
