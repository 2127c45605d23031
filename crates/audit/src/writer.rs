//! The segment writer: one task owns the files; appenders queue records and wait for the
//! group commit that makes them durable.
//!
//! # Group commit
//!
//! Appenders serialise their record (in parallel, on their own task) and send it over a
//! bounded channel with a oneshot for the acknowledgement. The writer task takes the first
//! record, then everything else already queued (up to `max_batch`), and hands the batch to a
//! blocking thread that chains the lines (one SHA-256 each), appends them with one `write`,
//! and calls `fdatasync` once. Then every record of the batch is acknowledged. Records that
//! arrive during that fsync queue up and form the next batch. With `commit_interval` set, the
//! writer also leaves at least that long between the starts of two fsyncs, so under load a
//! batch collects about one interval's worth of records (PERFORMANCE.md: ~1.5–4 µs CPU per
//! record on a 1 ms cadence, against ~15 µs when fsyncing greedily); an idle writer commits
//! a lone record at once.
//!
//! # Failure
//!
//! A failed write or fsync fails every append of the batch with [`AppendError::Io`], marks
//! the writer unhealthy ([`AuditWriter::health`]) and rolls the chain back to the last
//! durable record; before the next write the segment is truncated back to its durable
//! length, so a torn batch never stays in the file. While unhealthy the writer keeps trying:
//! every new batch is a retry, and when idle it probes the directory every `retry_interval`.
//! The first success makes it healthy again.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use gateway_core::audit::{AuditRecord, AuditTime, CustomerHash};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::checkpoint::{CheckpointBody, CheckpointSigner};
use crate::format::{
    CHECKPOINT_FILE, Chain, LineError, Lines, encode_record, line_hash, list_segments,
    parse_envelope, segment_name,
};
use crate::fs::{AppendFile, AuditFs, StdFs};
use crate::index::{
    AuditIndex, Disclosure, IndexFields, Location, PageCursor, SearchError, SearchFilter,
    SearchPage,
};

/// When an append counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The append resolves once the record is on disk (fsynced). A response that waited for
    /// it can never be missing from the trail, even after `kill -9` or power loss. Costs the
    /// request the wait for the next group commit (typically well under a millisecond).
    #[default]
    Sync,
    /// The append resolves once the record is queued. Responses do not wait; a crash loses
    /// the records still queued or in the batch being written (at most about one commit
    /// interval's worth), and an I/O failure discovered later fails them silently (logged).
    /// The chain stays intact either way: lost records are never half-written.
    Async,
}

/// How the writer is set up. [`WriterConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// The audit directory (created if missing).
    pub dir: PathBuf,
    /// This instance's name, written into records by the layer and into checkpoints.
    pub instance: String,
    /// Sync or async appends.
    pub durability: Durability,
    /// Start a new segment once the current one reaches this size (64 MiB).
    pub segment_max_bytes: u64,
    /// ... or this age (1 h), counted from when it was opened by this process.
    pub segment_max_age: Duration,
    /// Sign a checkpoint this often when the head moved (10 s).
    pub checkpoint_interval: Duration,
    /// The checkpoint key; `None` writes no checkpoints (tests only: the verifier then
    /// cannot detect a truncated tail).
    pub signer: Option<Arc<CheckpointSigner>>,
    /// Records that may wait in the queue before appends fail with
    /// [`AppendError::QueueFull`] (65 536).
    pub queue_capacity: usize,
    /// Minimum time between the starts of two fsyncs (1 ms); zero fsyncs greedily.
    pub commit_interval: Duration,
    /// Most records per batch (4096).
    pub max_batch: usize,
    /// While unhealthy and idle, probe the disk this often (1 s).
    pub retry_interval: Duration,
    /// The file system (the real one by default; tests inject faults).
    pub fs: Arc<dyn AuditFs>,
}

/// The writer's health, published on a `watch` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Appends are being made durable.
    Healthy,
    /// The last write or fsync failed; appends fail until one succeeds.
    Failing {
        /// The I/O error.
        error: String,
        /// Since when.
        since: AuditTime,
    },
}

/// What a successful append achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The record is durable with this sequence number.
    Durable {
        /// Its sequence number.
        seq: u64,
    },
    /// The record is queued ([`Durability::Async`]).
    Queued,
}

/// Why an append failed. The request it records must not release data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The batch could not be written or synced (disk full, I/O error).
    #[error("audit record could not be made durable: {cause}")]
    Io {
        /// The I/O error.
        cause: String,
    },
    /// The writer is unhealthy; refused without queueing (async appends only).
    #[error("audit trail is unhealthy: {cause}")]
    Unhealthy {
        /// The last I/O error.
        cause: String,
    },
    /// The queue is full: the disk does not keep up.
    #[error("audit queue is full")]
    QueueFull,
    /// The writer was shut down.
    #[error("audit writer is shut down")]
    Closed,
}

/// Why the trail could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A file or directory could not be read, created, truncated or synced.
    #[error("audit directory {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The newest segment holds a complete line that is not a record. Only a torn final
    /// line (a crash during a write) is repaired automatically; anything else needs an
    /// operator: run `audit verify` and move the damaged segment aside.
    #[error("audit segment {file} is damaged at byte {offset}: {reason}")]
    Corrupt {
        /// The segment.
        file: PathBuf,
        /// Where.
        offset: u64,
        /// What.
        reason: String,
    },
}

/// Handle on the audit trail: append, health, index. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    shared: Arc<Shared>,
}

/// The future of [`AuditWriter::append`].
#[derive(Debug)]
#[must_use = "an append does nothing durable unless awaited"]
pub struct Append(AppendState);

#[derive(Debug)]
enum AppendState {
    Ready(Option<Result<Appended, AppendError>>),
    Waiting(oneshot::Receiver<Result<u64, AppendError>>),
}

// === impl WriterConfig ===

impl WriterConfig {
    /// Defaults for `dir`, sync durability, no checkpoint key.
    pub fn new(dir: impl Into<PathBuf>, instance: impl Into<String>) -> WriterConfig {
        WriterConfig {
            dir: dir.into(),
            instance: instance.into(),
            durability: Durability::Sync,
            segment_max_bytes: 64 * 1024 * 1024,
            segment_max_age: Duration::from_secs(3600),
            checkpoint_interval: Duration::from_secs(10),
            signer: None,
            queue_capacity: 65_536,
            commit_interval: Duration::from_millis(1),
            max_batch: 4096,
            retry_interval: Duration::from_secs(1),
            fs: Arc::new(StdFs),
        }
    }
}

// === impl Health ===

impl Health {
    /// Whether appends are being made durable.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }
}

// === impl AuditWriter ===

impl AuditWriter {
    /// Opens the trail in `config.dir`, recovering after a crash, rebuilding the index, and
    /// starts the writer task on the current runtime.
    ///
    /// Recovery: the chain continues from the last record of the newest segment; a torn
    /// final line (written but never acknowledged) is truncated away with a warning; the
    /// newest segment is synced so everything in it is durable before new appends.
    pub async fn open(config: WriterConfig) -> Result<AuditWriter, OpenError> {
        let cfg = config.clone();
        let opened = tokio::task::spawn_blocking(move || State::open(&cfg))
            .await
            .map_err(|e| OpenError::Io {
                path: config.dir.clone(),
                source: io::Error::other(e),
            })??;
        let (state, index) = opened;
        let durable_seq = state.chain.next_seq().checked_sub(1);
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let (health_tx, health_rx) = watch::channel(Health::Healthy);
        let (durable_tx, durable_rx) = watch::channel(durable_seq);
        let task = Task {
            state: Some(Box::new(state)),
            rx,
            index: index.clone(),
            health: health_tx,
            durable: durable_tx,
            checkpoint_interval: config.checkpoint_interval,
            commit_interval: config.commit_interval,
            max_batch: config.max_batch.max(1),
            retry_interval: config.retry_interval,
        };
        let handle = tokio::spawn(task.run());
        Ok(AuditWriter {
            shared: Arc::new(Shared {
                tx,
                durability: config.durability,
                instance: Arc::from(config.instance.as_str()),
                health: health_rx,
                durable: durable_rx,
                index,
                task: Mutex::new(Some(handle)),
            }),
        })
    }

    /// Appends a record with the configured durability.
    pub fn append(&self, record: &AuditRecord) -> Append {
        self.append_with(record, self.shared.durability)
    }

    /// Appends a record with the given durability (admin changes are always `Sync`).
    pub fn append_with(&self, record: &AuditRecord, durability: Durability) -> Append {
        let body = encode_record(record);
        let fields = IndexFields::of(record);
        match durability {
            Durability::Sync => {
                let (ack, rx) = oneshot::channel();
                match self.enqueue(Pending {
                    body,
                    fields,
                    ack: Some(ack),
                }) {
                    Ok(()) => Append(AppendState::Waiting(rx)),
                    Err(e) => Append(AppendState::Ready(Some(Err(e)))),
                }
            }
            Durability::Async => {
                // Fail closed even without waiting: a writer known to be failing refuses.
                if let Health::Failing { error, .. } = &*self.shared.health.borrow() {
                    return Append(AppendState::Ready(Some(Err(AppendError::Unhealthy {
                        cause: error.clone(),
                    }))));
                }
                let result = self
                    .enqueue(Pending {
                        body,
                        fields,
                        ack: None,
                    })
                    .map(|()| Appended::Queued);
                Append(AppendState::Ready(Some(result)))
            }
        }
    }

    fn enqueue(&self, pending: Pending) -> Result<(), AppendError> {
        self.shared
            .tx
            .try_send(Command::Append(pending))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => AppendError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => AppendError::Closed,
            })
    }

    /// The configured durability.
    pub fn durability(&self) -> Durability {
        self.shared.durability
    }

    /// This instance's name.
    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// Whether the last write succeeded.
    pub fn is_healthy(&self) -> bool {
        self.shared.health.borrow().is_healthy()
    }

    /// Health changes, for `/readyz`, metrics and logs.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.shared.health.clone()
    }

    /// The seq of the last durable record (`None` while the trail is empty). The forwarder
    /// never reads past it.
    pub fn durable(&self) -> watch::Receiver<Option<u64>> {
        self.shared.durable.clone()
    }

    /// The search index.
    pub fn index(&self) -> &AuditIndex {
        &self.shared.index
    }

    /// [`AuditIndex::search`] on a blocking thread.
    pub async fn search(
        &self,
        filter: SearchFilter,
        after: Option<PageCursor>,
        limit: usize,
    ) -> Result<SearchPage, SearchError> {
        let index = self.shared.index.clone();
        tokio::task::spawn_blocking(move || index.search(&filter, after.as_ref(), limit))
            .await
            .map_err(|e| SearchError::Io {
                file: PathBuf::new(),
                message: e.to_string(),
            })?
    }

    /// [`AuditIndex::access_log`] on a blocking thread.
    pub async fn access_log(&self, customer: CustomerHash) -> Result<Vec<Disclosure>, SearchError> {
        let index = self.shared.index.clone();
        tokio::task::spawn_blocking(move || index.access_log(&customer))
            .await
            .map_err(|e| SearchError::Io {
                file: PathBuf::new(),
                message: e.to_string(),
            })?
    }

    /// Writes a checkpoint now (if there is a key and at least one record).
    pub async fn checkpoint(&self) -> Result<(), AppendError> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Command::Checkpoint(tx))
            .await
            .map_err(|_| AppendError::Closed)?;
        rx.await.map_err(|_| AppendError::Closed)?
    }

    /// Commits everything queued, writes a final checkpoint, and stops the writer task.
    /// Later appends fail with [`AppendError::Closed`].
    pub async fn shutdown(&self) -> Result<(), AppendError> {
        let (tx, rx) = oneshot::channel();
        let result = match self.shared.tx.send(Command::Shutdown(tx)).await {
            Ok(()) => rx.await.map_err(|_| AppendError::Closed)?,
            Err(_) => Ok(()),
        };
        let handle = self
            .shared
            .task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
        result
    }
}

// === impl Append ===

impl std::future::Future for Append {
    type Output = Result<Appended, AppendError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            AppendState::Ready(result) => {
                Poll::Ready(result.take().unwrap_or(Err(AppendError::Closed)))
            }
            AppendState::Waiting(rx) => match std::pin::Pin::new(rx).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(Ok(seq))) => Poll::Ready(Ok(Appended::Durable { seq })),
                Poll::Ready(Ok(Err(e))) => Poll::Ready(Err(e)),
                // The writer task ended without answering: it was shut down or the runtime
                // is going away. Nothing was acknowledged.
                Poll::Ready(Err(_)) => Poll::Ready(Err(AppendError::Closed)),
            },
        }
    }
}

// === the writer task ===

/// Shared by every handle. Dropping the last handle drops `tx`; the task then commits what
/// is queued, writes a final checkpoint and ends.
#[derive(Debug)]
struct Shared {
    /// Appenders' side of the queue.
    tx: mpsc::Sender<Command>,
    durability: Durability,
    instance: Arc<str>,
    health: watch::Receiver<Health>,
    durable: watch::Receiver<Option<u64>>,
    index: AuditIndex,
    /// Taken and awaited by `shutdown`.
    task: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
enum Command {
    Append(Pending),
    Checkpoint(oneshot::Sender<Result<(), AppendError>>),
    Shutdown(oneshot::Sender<Result<(), AppendError>>),
}

#[derive(Debug)]
struct Pending {
    /// The record's JSON.
    body: Vec<u8>,
    fields: IndexFields,
    /// `None` for async appends.
    ack: Option<oneshot::Sender<Result<u64, AppendError>>>,
}

/// The writer task. Owns the receiver and, between batches, the file state (which moves to
/// a blocking thread for each write and comes back).
struct Task {
    state: Option<Box<State>>,
    rx: mpsc::Receiver<Command>,
    index: AuditIndex,
    health: watch::Sender<Health>,
    durable: watch::Sender<Option<u64>>,
    checkpoint_interval: Duration,
    commit_interval: Duration,
    max_batch: usize,
    retry_interval: Duration,
}

#[derive(Default)]
struct Round {
    batch: Vec<Pending>,
    checkpoints: Vec<oneshot::Sender<Result<(), AppendError>>>,
    shutdown: Option<oneshot::Sender<Result<(), AppendError>>>,
}

impl Round {
    fn take(&mut self, cmd: Command) {
        match cmd {
            Command::Append(p) => self.batch.push(p),
            Command::Checkpoint(tx) => self.checkpoints.push(tx),
            Command::Shutdown(tx) => self.shutdown = Some(tx),
        }
    }
}

impl Task {
    async fn run(mut self) {
        let period = self.checkpoint_interval.max(Duration::from_millis(1));
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_commit: Option<Instant> = None;
        loop {
            let unhealthy = !self.health.borrow().is_healthy();
            let first = tokio::select! {
                cmd = self.rx.recv() => cmd,
                _ = ticker.tick() => {
                    // A failure is logged and turns the writer unhealthy; the next tick retries.
                    let _ = self.checkpoint(false).await;
                    continue;
                }
                _ = tokio::time::sleep(self.retry_interval), if unhealthy => {
                    self.probe().await;
                    continue;
                }
            };
            let Some(first) = first else {
                // Every handle is gone: finish like a shutdown (failures are logged).
                let _ = self.checkpoint(false).await;
                return;
            };
            let mut round = Round::default();
            round.take(first);
            if !round.batch.is_empty()
                && round.shutdown.is_none()
                && let Some(due) = last_commit.map(|t| t + self.commit_interval)
            {
                // Let a batch form: records arriving meanwhile join it.
                tokio::time::sleep_until(due).await;
            }
            while round.batch.len() < self.max_batch {
                match self.rx.try_recv() {
                    Ok(cmd) => round.take(cmd),
                    Err(_) => break,
                }
            }
            if !round.batch.is_empty() {
                last_commit = Some(Instant::now());
                self.commit(std::mem::take(&mut round.batch)).await;
            }
            if !round.checkpoints.is_empty() {
                let result = self.checkpoint(true).await;
                for tx in round.checkpoints {
                    let _ = tx.send(result.clone());
                }
            }
            if let Some(tx) = round.shutdown {
                // Refuse new appends, then commit everything already queued.
                self.rx.close();
                let mut rest = Vec::new();
                while let Some(cmd) = self.rx.recv().await {
                    match cmd {
                        Command::Append(p) => rest.push(p),
                        Command::Checkpoint(tx) | Command::Shutdown(tx) => {
                            let _ = tx.send(Err(AppendError::Closed));
                        }
                    }
                    if rest.len() >= self.max_batch {
                        self.commit(std::mem::take(&mut rest)).await;
                    }
                }
                if !rest.is_empty() {
                    self.commit(rest).await;
                }
                let result = self.checkpoint(false).await;
                let _ = tx.send(result);
                return;
            }
        }
    }

    /// Runs `f` on the file state on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut State) -> T + Send + 'static,
    ) -> Option<T> {
        let mut state = self.state.take()?;
        match tokio::task::spawn_blocking(move || {
            let out = f(&mut state);
            (state, out)
        })
        .await
        {
            Ok((state, out)) => {
                self.state = Some(state);
                Some(out)
            }
            Err(e) => {
                // The state is lost with the panicked thread: fail closed for good.
                error!(error = %e, "Audit writer thread failed; the trail is closed.");
                self.set_failing(format!("writer thread failed: {e}"));
                self.rx.close();
                None
            }
        }
    }

    async fn commit(&mut self, mut batch: Vec<Pending>) {
        let bodies: Vec<Vec<u8>> = batch
            .iter_mut()
            .map(|p| std::mem::take(&mut p.body))
            .collect();
        let result = self.blocking(move |state| state.commit(&bodies)).await;
        match result {
            Some(Ok(locations)) => {
                let last = locations.last().map(|(seq, _)| *seq);
                self.index.insert_batch(
                    locations
                        .iter()
                        .zip(batch.iter())
                        .map(|((seq, loc), p)| (*seq, *loc, p.fields.clone())),
                );
                self.set_healthy();
                if last.is_some() {
                    self.durable.send_replace(last);
                }
                for ((seq, _), p) in locations.into_iter().zip(batch) {
                    if let Some(ack) = p.ack {
                        let _ = ack.send(Ok(seq));
                    }
                }
            }
            Some(Err(e)) => {
                let cause = e.to_string();
                self.set_failing(cause.clone());
                let mut lost = 0usize;
                for p in batch {
                    match p.ack {
                        Some(ack) => {
                            let _ = ack.send(Err(AppendError::Io {
                                cause: cause.clone(),
                            }));
                        }
                        None => lost += 1,
                    }
                }
                if lost > 0 {
                    error!(records = lost, error = %cause, "Async audit records lost.");
                }
            }
            None => {
                for p in batch {
                    if let Some(ack) = p.ack {
                        let _ = ack.send(Err(AppendError::Closed));
                    }
                }
            }
        }
    }

    async fn checkpoint(&mut self, force: bool) -> Result<(), AppendError> {
        match self.blocking(move |state| state.checkpoint(force)).await {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => {
                let cause = e.to_string();
                self.set_failing(cause.clone());
                Err(AppendError::Io { cause })
            }
            None => Err(AppendError::Closed),
        }
    }

    async fn probe(&mut self) {
        match self.blocking(State::probe).await {
            Some(Ok(())) => self.set_healthy(),
            Some(Err(e)) => warn!(error = %e, "Audit trail still unavailable."),
            None => {}
        }
    }

    fn set_healthy(&self) {
        if !self.health.borrow().is_healthy() {
            info!("Audit trail recovered: records are durable again.");
            self.health.send_replace(Health::Healthy);
        }
    }

    fn set_failing(&self, cause: String) {
        if self.health.borrow().is_healthy() {
            error!(error = %cause, "Audit trail unavailable: appends fail until writes succeed.");
            self.health.send_replace(Health::Failing {
                error: cause,
                since: AuditTime::now(),
            });
        }
    }
}

// === file state ===

/// Everything the blocking side touches. Moved to a blocking thread per operation.
struct State {
    dir: PathBuf,
    fs: Arc<dyn AuditFs>,
    instance: String,
    max_bytes: u64,
    max_age: Duration,
    /// The active segment.
    file: Box<dyn AppendFile>,
    /// Its first seq (its name).
    segment: u64,
    /// Its durable length; bytes past it are garbage from a failed write.
    segment_len: u64,
    segment_records: u64,
    segment_opened: Instant,
    /// A write failed: truncate to `segment_len` before the next one.
    repair: bool,
    /// The chain up to the last durable record.
    chain: Chain,
    signer: Option<Arc<CheckpointSigner>>,
    sidecar: Option<Sidecar>,
    /// (seq, segment) of the last checkpoint written.
    last_checkpoint: Option<(u64, u64)>,
    /// A new segment is not yet named by a checkpoint.
    segment_unannounced: bool,
    /// Reused line buffer.
    buf: Vec<u8>,
}

struct Sidecar {
    file: Box<dyn AppendFile>,
    len: u64,
    repair: bool,
}

impl State {
    fn open(cfg: &WriterConfig) -> Result<(State, AuditIndex), OpenError> {
        let dir = cfg.dir.clone();
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let segments = list_segments(&dir).map_err(io_err(&dir))?;
        let index = AuditIndex::new(&dir);
        let mut last: Option<(u64, [u8; 32])> = None;
        let mut newest_len = 0u64;
        let mut newest_records = 0u64;
        for (i, (first, path)) in segments.iter().enumerate() {
            let newest = i + 1 == segments.len();
            let mut lines = Lines::open(path).map_err(io_err(path))?;
            let mut valid_end = 0u64;
            let mut records = 0u64;
            let mut batch = Vec::new();
            while let Some((offset, line)) = lines.next_line().map_err(io_err(path))? {
                match parse_envelope(line) {
                    Ok((seq, _, rec)) => {
                        last = Some((seq, line_hash(line)));
                        valid_end = offset + line.len() as u64;
                        records += 1;
                        match IndexFields::parse(rec.get()) {
                            Some(fields) => {
                                let loc = Location {
                                    segment: *first,
                                    offset,
                                    len: line.len() as u32,
                                };
                                batch.push((seq, loc, fields));
                            }
                            None => {
                                warn!(file = %path.display(), offset, "Audit record not indexed: unparseable; run audit verify.")
                            }
                        }
                    }
                    Err(LineError::Torn) if newest => {
                        warn!(
                            file = %path.display(),
                            offset,
                            bytes = line.len(),
                            "Truncating a torn audit line left by a crash (it was never acknowledged)."
                        );
                    }
                    Err(LineError::Torn | LineError::Malformed(_)) if !newest => {
                        warn!(file = %path.display(), offset, "Damaged audit line in an older segment; run audit verify.");
                    }
                    Err(LineError::Torn) => {}
                    Err(LineError::Malformed(reason)) => {
                        return Err(OpenError::Corrupt {
                            file: path.clone(),
                            offset,
                            reason,
                        });
                    }
                }
            }
            index.insert_batch(batch);
            if newest {
                newest_len = valid_end;
                newest_records = records;
            }
        }
        let chain = match last {
            Some((seq, head)) => Chain::resume(seq, head),
            None => Chain::genesis(),
        };
        let (segment, path) = match segments.last() {
            Some((first, path)) => (*first, path.clone()),
            None => (chain.next_seq(), dir.join(segment_name(chain.next_seq()))),
        };
        let mut file = cfg.fs.open_append(&path).map_err(io_err(&path))?;
        // Drop a torn tail, and make what a killed process left in the page cache durable
        // before anything new is acknowledged on top of it.
        file.set_len(newest_len).map_err(io_err(&path))?;
        file.sync_data().map_err(io_err(&path))?;
        cfg.fs.sync_dir(&dir).map_err(io_err(&dir))?;

        let mut last_checkpoint = None;
        let sidecar = match &cfg.signer {
            None => None,
            Some(_) => {
                let path = dir.join(CHECKPOINT_FILE);
                let mut len = 0u64;
                if path.exists() {
                    let mut lines = Lines::open(&path).map_err(io_err(&path))?;
                    while let Some((offset, line)) = lines.next_line().map_err(io_err(&path))? {
                        if !line.ends_with(b"\n") {
                            warn!(file = %path.display(), offset, "Truncating a torn checkpoint line left by a crash.");
                            break;
                        }
                        if let Ok(cp) = crate::checkpoint::Checkpoint::parse(line) {
                            last_checkpoint = Some((cp.body.seq, cp.body.segment));
                        }
                        len = offset + line.len() as u64;
                    }
                }
                let mut file = cfg.fs.open_append(&path).map_err(io_err(&path))?;
                file.set_len(len).map_err(io_err(&path))?;
                file.sync_data().map_err(io_err(&path))?;
                Some(Sidecar {
                    file,
                    len,
                    repair: false,
                })
            }
        };
        let state = State {
            dir,
            fs: cfg.fs.clone(),
            instance: cfg.instance.clone(),
            max_bytes: cfg.segment_max_bytes.max(1),
            max_age: cfg.segment_max_age,
            file,
            segment,
            segment_len: newest_len,
            segment_records: newest_records,
            segment_opened: Instant::now(),
            repair: false,
            chain,
            signer: cfg.signer.clone(),
            sidecar,
            last_checkpoint,
            segment_unannounced: false,
            buf: Vec::with_capacity(64 * 1024),
        };
        Ok((state, index))
    }

    /// Chains, writes and syncs one batch. On error nothing is committed.
    fn commit(&mut self, bodies: &[Vec<u8>]) -> io::Result<Vec<(u64, Location)>> {
        self.repair_segment()?;
        if self.segment_records > 0
            && (self.segment_len >= self.max_bytes || self.segment_opened.elapsed() >= self.max_age)
        {
            self.rotate()?;
        }
        if self.segment_unannounced {
            self.checkpoint(true)?;
        }
        let mut chain = self.chain;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut locations = Vec::with_capacity(bodies.len());
        for body in bodies {
            let start = buf.len();
            let seq = chain.append(body, &mut buf);
            let location = Location {
                segment: self.segment,
                offset: self.segment_len + start as u64,
                len: (buf.len() - start) as u32,
            };
            locations.push((seq, location));
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        let len = buf.len() as u64;
        self.buf = buf;
        if let Err(e) = written {
            // Unknown bytes of this batch may be in the file (or in a page the kernel
            // dropped after a failed fsync): cut back to the durable length first next time.
            self.repair = true;
            return Err(e);
        }
        self.chain = chain;
        self.segment_len += len;
        self.segment_records += bodies.len() as u64;
        Ok(locations)
    }

    fn repair_segment(&mut self) -> io::Result<()> {
        if self.repair {
            self.file.set_len(self.segment_len)?;
            self.file.sync_data()?;
            self.repair = false;
        }
        Ok(())
    }

    /// Starts the segment named after the next seq and announces it in a checkpoint, so
    /// deleting the newest segment is detectable.
    fn rotate(&mut self) -> io::Result<()> {
        let first = self.chain.next_seq();
        let path = self.dir.join(segment_name(first));
        let mut file = self.fs.open_append(&path)?;
        // No record with this seq was ever acknowledged: anything in the file is debris.
        file.set_len(0)?;
        self.fs.sync_dir(&self.dir)?;
        self.file = file;
        self.segment = first;
        self.segment_len = 0;
        self.segment_records = 0;
        self.segment_opened = Instant::now();
        self.repair = false;
        self.segment_unannounced = self.signer.is_some();
        if self.segment_unannounced {
            self.checkpoint(true)?;
        }
        Ok(())
    }

    /// Signs and appends a checkpoint if the head or segment moved (or `force`). Returns
    /// whether one was written.
    fn checkpoint(&mut self, force: bool) -> io::Result<bool> {
        let (Some(signer), Some(sidecar)) = (&self.signer, &mut self.sidecar) else {
            return Ok(false);
        };
        let Some(seq) = self.chain.next_seq().checked_sub(1) else {
            return Ok(false);
        };
        if !force && self.last_checkpoint == Some((seq, self.segment)) {
            return Ok(false);
        }
        if sidecar.repair {
            sidecar.file.set_len(sidecar.len)?;
            sidecar.file.sync_data()?;
            sidecar.repair = false;
        }
        let body = CheckpointBody {
            seq,
            head: self.chain.head(),
            segment: self.segment,
            time: AuditTime::now(),
            instance: self.instance.clone(),
            key_id: signer.key_id().to_string(),
        };
        let line = signer.sign(&body).to_line();
        if let Err(e) = sidecar
            .file
            .write_all(&line)
            .and_then(|()| sidecar.file.sync_data())
        {
            sidecar.repair = true;
            return Err(e);
        }
        sidecar.len += line.len() as u64;
        self.last_checkpoint = Some((seq, self.segment));
        self.segment_unannounced = false;
        Ok(true)
    }

    /// While unhealthy and idle: can the disk take writes again?
    fn probe(&mut self) -> io::Result<()> {
        self.repair_segment()?;
        self.fs.probe(&self.dir, 4096)?;
        if self.segment_unannounced {
            self.checkpoint(true)?;
        }
        Ok(())
    }
}
