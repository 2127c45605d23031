//! Forwarding the trail off the machine, from the segment files (never from memory).
//!
//! A [`Forwarder`] reads records from a persisted cursor (`forward-<sink>.cursor` in the audit
//! directory: segment, byte offset, next seq), hands them in batches to a [`ForwardSink`],
//! and advances the cursor only after the sink acknowledged the batch. A sink that fails is
//! retried with exponential backoff (100 ms to 5 s) on the same batch, so an outage delays
//! records but never skips one; after a restart the forwarder resumes at its cursor. Living
//! next to a writer it never reads past the writer's durable seq, so nothing is forwarded that
//! a crash could still take back.
//!
//! Delivery is at least once: a batch whose acknowledgement was lost is sent again. Every
//! record carries its `seq` (and the instance), so a consumer can drop repeats;
//! [`RedisStreamSink`] goes further and drops them inside Redis, atomically.
//!
//! A second sink (OpenTelemetry logs, say) is a second `Forwarder` with its own sink name
//! and therefore its own cursor.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::format::{Lines, list_segments, peek_seq, segment_name};

/// One record as forwarded: its seq and its full line (without the final `\n`), which
/// carries `prev` too, so the receiver can check the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRecord {
    /// The record's seq.
    pub seq: u64,
    /// `{"seq":..,"prev":..,"rec":{..}}`.
    pub line: Bytes,
}

/// A sink refused or failed a batch; it will be retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit sink failed: {0}")]
pub struct SinkError(pub String);

/// Where forwarded records go.
pub trait ForwardSink: Send {
    /// A short, stable name (`redis`, `otlp`); names the cursor file.
    fn name(&self) -> &str;

    /// Delivers a batch, in order. Returning `Ok` means every record is stored on the far
    /// side; an `Err` makes the forwarder send the same batch again later.
    fn send(
        &mut self,
        batch: &[ForwardRecord],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}

/// Why forwarding stopped.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The trail could not be read, or the cursor not written.
    #[error("audit forwarder I/O on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The files skip a seq (or a segment): the trail is damaged; run `audit verify`.
    #[error("audit trail gap at {file}:{offset}: expected seq {expected}, found {found:?}")]
    Gap {
        /// The file.
        file: PathBuf,
        /// Where.
        offset: u64,
        /// The seq the cursor expects.
        expected: u64,
        /// What was there.
        found: Option<u64>,
    },
}

/// The persisted position of a forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// First seq (file name) of the segment being read.
    pub segment: u64,
    /// Byte offset of the next line in it.
    pub offset: u64,
    /// Seq of the next record to forward.
    pub next_seq: u64,
}

/// Reads the trail from a cursor and feeds a sink.
#[derive(Debug)]
pub struct Forwarder<S> {
    dir: PathBuf,
    sink: S,
    cursor_path: PathBuf,
    cursor: Cursor,
    durable: Option<watch::Receiver<Option<u64>>>,
    max_batch: usize,
    poll_interval: Duration,
}

impl<S: ForwardSink> Forwarder<S> {
    /// A forwarder over the trail in `dir`, resuming from its cursor file if there is one
    /// (else from the start of the trail).
    pub fn new(dir: impl Into<PathBuf>, sink: S) -> Result<Forwarder<S>, ForwardError> {
        let dir = dir.into();
        let cursor_path = dir.join(format!("forward-{}.cursor", sink.name()));
        let cursor = match std::fs::read(&cursor_path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(cursor) => cursor,
                Err(e) => {
                    // Only a crash of the file system between write and rename could do this;
                    // starting over re-sends records the consumer drops by seq.
                    warn!(file = %cursor_path.display(), error = %e, "Unreadable forward cursor; starting from the beginning.");
                    Cursor {
                        segment: 0,
                        offset: 0,
                        next_seq: 0,
                    }
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Cursor {
                segment: 0,
                offset: 0,
                next_seq: 0,
            },
            Err(source) => {
                return Err(ForwardError::Io {
                    path: cursor_path,
                    source,
                });
            }
        };
        Ok(Forwarder {
            dir,
            sink,
            cursor_path,
            cursor,
            durable: None,
            max_batch: 256,
            poll_interval: Duration::from_millis(500),
        })
    }

    /// Follows a live writer: never reads past its durable seq
    /// ([`AuditWriter::durable`](crate::AuditWriter::durable)), and wakes when it moves.
    pub fn follow(mut self, durable: watch::Receiver<Option<u64>>) -> Self {
        self.durable = Some(durable);
        self
    }

    /// Records per batch (256).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.max(1);
        self
    }

    /// How often to look for new records without a writer to follow (500 ms).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// The current cursor.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// Forwards until `shutdown` resolves. Returns early only on a damaged trail or an
    /// unwritable cursor; sink failures are retried forever.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ForwardError> {
        tokio::pin!(shutdown);
        let mut backoff = Backoff::new();
        loop {
            let batch = self.read_batch()?;
            if batch.records.is_empty() {
                let durable = self.durable.as_mut();
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    _ = changed(durable) => {}
                    _ = tokio::time::sleep(self.poll_interval) => {}
                }
                continue;
            }
            loop {
                match self.sink.send(&batch.records).await {
                    Ok(()) => break,
                    Err(e) => {
                        let wait = backoff.next();
                        warn!(sink = self.sink.name(), error = %e, retry_in_ms = wait.as_millis() as u64, "Audit forwarding failed; retrying.");
                        tokio::select! {
                            _ = &mut shutdown => return Ok(()),
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
            if backoff.failures > 0 {
                info!(sink = self.sink.name(), "Audit forwarding resumed.");
            }
            backoff = Backoff::new();
            self.advance(batch.end)?;
        }
    }

    /// Forwards everything available now, once, without retrying a failed send. Returns the
    /// number of records forwarded. For tools and tests.
    pub async fn forward_available(&mut self) -> Result<Result<u64, SinkError>, ForwardError> {
        let mut total = 0;
        loop {
            let batch = self.read_batch()?;
            if batch.records.is_empty() {
                return Ok(Ok(total));
            }
            if let Err(e) = self.sink.send(&batch.records).await {
                return Ok(Err(e));
            }
            total += batch.records.len() as u64;
            self.advance(batch.end)?;
        }
    }

    fn advance(&mut self, end: Cursor) -> Result<(), ForwardError> {
        self.cursor = end;
        write_cursor(&self.cursor_path, &end).map_err(|source| ForwardError::Io {
            path: self.cursor_path.clone(),
            source,
        })
    }

    /// Reads up to `max_batch` complete, durable lines from the cursor on.
    fn read_batch(&mut self) -> Result<Batch, ForwardError> {
        let limit = match &self.durable {
            Some(rx) => match *rx.borrow() {
                Some(seq) => Some(seq),
                None => {
                    return Ok(Batch {
                        records: Vec::new(),
                        end: self.cursor,
                    });
                }
            },
            None => None,
        };
        let mut cursor = self.cursor;
        let mut records = Vec::new();
        loop {
            let path = self.dir.join(segment_name(cursor.segment));
            let io_err = |source| ForwardError::Io {
                path: path.clone(),
                source,
            };
            let file = match std::fs::File::open(&path) {
                Ok(file) => Some(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(io_err(e)),
            };
            if let Some(mut file) = file {
                io::Seek::seek(&mut file, io::SeekFrom::Start(cursor.offset)).map_err(io_err)?;
                let mut lines = Lines::new(file, cursor.offset);
                while records.len() < self.max_batch {
                    let Some((offset, line)) = lines.next_line().map_err(io_err)? else {
                        break;
                    };
                    if !line.ends_with(b"\n") {
                        break; // still being written (or torn; the writer will cut it)
                    }
                    let seq = peek_seq(line);
                    if seq != Some(cursor.next_seq) {
                        return Err(ForwardError::Gap {
                            file: path.clone(),
                            offset,
                            expected: cursor.next_seq,
                            found: seq,
                        });
                    }
                    if limit.is_some_and(|durable| cursor.next_seq > durable) {
                        break;
                    }
                    records.push(ForwardRecord {
                        seq: cursor.next_seq,
                        line: Bytes::copy_from_slice(&line[..line.len() - 1]),
                    });
                    cursor.offset = offset + line.len() as u64;
                    cursor.next_seq += 1;
                }
            }
            if records.len() >= self.max_batch {
                break;
            }
            // End of this segment: move on if a later one exists. The writer never appends
            // to a segment once it has started the next.
            let later = list_segments(&self.dir)
                .map_err(|source| ForwardError::Io {
                    path: self.dir.clone(),
                    source,
                })?
                .into_iter()
                .map(|(first, _)| first)
                .find(|first| *first > cursor.segment);
            match later {
                Some(first) if first == cursor.next_seq => {
                    cursor = Cursor {
                        segment: first,
                        offset: 0,
                        next_seq: first,
                    };
                }
                Some(first) => {
                    return Err(ForwardError::Gap {
                        file: self.dir.join(segment_name(first)),
                        offset: 0,
                        expected: cursor.next_seq,
                        found: Some(first),
                    });
                }
                None => break,
            }
        }
        Ok(Batch {
            records,
            end: cursor,
        })
    }
}

struct Batch {
    records: Vec<ForwardRecord>,
    end: Cursor,
}

async fn changed(rx: Option<&mut watch::Receiver<Option<u64>>>) {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                // The writer is gone; fall back to polling.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Writes the cursor atomically: a synced temporary file renamed over the old one.
fn write_cursor(path: &Path, cursor: &Cursor) -> io::Result<()> {
    let tmp = path.with_extension("cursor.tmp");
    let bytes = serde_json::to_vec(cursor).map_err(io::Error::other)?;
    let mut file = std::fs::File::create(&tmp)?;
    io::Write::write_all(&mut file, &bytes)?;
    file.sync_data()?;
    std::fs::rename(&tmp, path)
}

struct Backoff {
    failures: u32,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { failures: 0 }
    }

    fn next(&mut self) -> Duration {
        let wait = Duration::from_millis(100) * 2u32.saturating_pow(self.failures.min(6));
        self.failures += 1;
        wait.min(Duration::from_secs(5))
    }
}

// === Redis Streams ===

/// Appends records to a Redis stream with `XADD`, one entry per record with the fields
/// `instance`, `seq` and `record` (the full line).
///
/// Duplicates are dropped inside Redis: a Lua script keeps, per instance, the highest seq
/// added (hash `<stream>:hwm`) and skips records at or below it, atomically with the `XADD`.
/// On Redis Cluster, give the stream a hash tag (`{audit}:records`) so both keys share a slot.
/// Consumers can also drop repeats themselves by `(instance, seq)`.
///
/// Redis must persist what it acknowledges (`appendonly yes`, `appendfsync always`) for
/// "forwarded" to mean "stored".
pub struct RedisStreamSink {
    client: redis::Client,
    connection: Option<redis::aio::MultiplexedConnection>,
    stream: String,
    hwm_key: String,
    instance: String,
    script: redis::Script,
}

const XADD_ONCE: &str = r"
local hwm = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '-1')
local added = 0
for i = 2, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if seq > hwm then
    redis.call('XADD', KEYS[1], '*', 'instance', ARGV[1], 'seq', ARGV[i], 'record', ARGV[i + 1])
    hwm = seq
    added = added + 1
  end
end
redis.call('HSET', KEYS[2], ARGV[1], tostring(hwm))
return added
";

impl std::fmt::Debug for RedisStreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamSink")
            .field("stream", &self.stream)
            .field("instance", &self.instance)
            .field("connected", &self.connection.is_some())
            .finish()
    }
}

impl RedisStreamSink {
    /// A sink for `stream` on the Redis at `url`; connects lazily (and again after errors).
    pub fn new(
        url: &str,
        stream: impl Into<String>,
        instance: impl Into<String>,
    ) -> Result<Self, SinkError> {
        let client = redis::Client::open(url).map_err(|e| SinkError(e.to_string()))?;
        let stream = stream.into();
        Ok(RedisStreamSink {
            client,
            connection: None,
            hwm_key: format!("{stream}:hwm"),
            stream,
            instance: instance.into(),
            script: redis::Script::new(XADD_ONCE),
        })
    }

    /// The stream key.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    async fn connect(&mut self) -> Result<(), SinkError> {
        if self.connection.is_none() {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(Duration::from_secs(5)));
            let conn = self
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|e| SinkError(e.to_string()))?;
            self.connection = Some(conn);
        }
        Ok(())
    }
}

impl ForwardSink for RedisStreamSink {
    fn name(&self) -> &str {
        "redis"
    }

    async fn send(&mut self, batch: &[ForwardRecord]) -> Result<(), SinkError> {
        self.connect().await?;
        let Some(conn) = self.connection.as_mut() else {
            return Err(SinkError("not connected".into()));
        };
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(&self.stream)
            .key(&self.hwm_key)
            .arg(&self.instance);
        for record in batch {
            invocation.arg(record.seq).arg(record.line.as_ref());
        }
        let result: Result<i64, SinkError> = invocation
            .invoke_async(conn)
            .await
            .map_err(|e| SinkError(e.to_string()));
        if result.is_err() {
            // Reconnect next time rather than reuse a connection in an unknown state.
            self.connection = None;
        }
        result.map(|_| ())
    }
}
