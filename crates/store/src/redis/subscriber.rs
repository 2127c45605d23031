//! The change subscriber: one task per [`RedisStore`](super::RedisStore) that forwards pub/sub
//! messages to the in-process broadcast and turns every way of losing a message into
//! [`Change::Resync`].
//!
//! It holds a dedicated RESP2 pub/sub connection (standalone: the server; Cluster: one seed
//! node at a time, as a cluster forwards `PUBLISH` to every node). Messages carry the epoch
//! taken for the change, so the task knows which epochs it has seen:
//!
//! - After each (re)subscription it reads the epoch and sends `Resync`: anything published
//!   while it was not subscribed is covered.
//! - When the connection ends (server killed, network cut, `PING` unanswered) it sends
//!   `Resync` at once, then reconnects with backoff.
//! - Every `epoch_check_interval` it pings the pub/sub connection and reads the epoch; an epoch
//!   taken (by any instance) but not delivered within `resync_grace` means a lost message:
//!   `Resync`. An epoch that went backwards means Redis lost its data: `Resync`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::redis::aio::{PubSubSink, PubSubStream};
use ::redis::{Msg, Value};
use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::connection::Connection;
use crate::model::{Change, ConsentRecord};

/// More missing epochs than this at once is treated as a lost stream: `Resync`.
const MAX_MISSING: u64 = 10_000;

/// Everything the task needs; it owns clones, never the store itself, so dropping the last
/// store handle (which aborts the task) frees everything.
pub(crate) struct Subscriber {
    /// Pub/sub endpoints, tried in turn.
    pub(crate) urls: Vec<String>,
    pub(crate) channel: String,
    /// The command connection, for reading the epoch.
    pub(crate) connection: Connection,
    pub(crate) epoch_key: String,
    pub(crate) timeout: Duration,
    pub(crate) check_interval: Duration,
    pub(crate) grace: Duration,
    /// Where changes go; the store hands out receivers.
    pub(crate) changes: broadcast::Sender<Change>,
    /// `true` while subscribed; the store reads it for `is_subscribed`.
    pub(crate) subscribed: watch::Sender<bool>,
    /// Every epoch up to this one was delivered or covered by a `Resync`.
    pub(crate) delivered: Arc<AtomicU64>,
}

impl Subscriber {
    /// Runs until aborted.
    pub(crate) async fn run(self) {
        let mut attempt: u32 = 0;
        let mut next_url = 0usize;
        loop {
            let url = &self.urls[next_url % self.urls.len()];
            next_url = next_url.wrapping_add(1);
            match self.connect(url).await {
                Ok((sink, stream, baseline)) => {
                    attempt = 0;
                    let mut tracker = EpochTracker::new(baseline);
                    // Whatever changed before this subscription was live may be missed. The
                    // Resync goes out before `delivered` vouches for the baseline, so no
                    // reader can see the epoch covered without the caches dropped first.
                    let _ = self.changes.send(Change::Resync);
                    self.delivered.store(baseline, Ordering::Release);
                    let _ = self.subscribed.send(true);
                    tracing::debug!(url = %redact(url), epoch = baseline, "Change subscription up.");
                    self.pump(sink, stream, &mut tracker).await;
                    let _ = self.subscribed.send(false);
                    let _ = self.changes.send(Change::Resync);
                    tracing::warn!(url = %redact(url), "Change subscription lost; caches dropped.");
                }
                Err(reason) => {
                    tracing::debug!(url = %redact(url), %reason, "Change subscription failed.");
                    // Backoff between reconnection attempts (not a readiness wait): 20 ms
                    // doubling to 500 ms, so a restarted Redis is picked up quickly.
                    let delay = Duration::from_millis(20u64 << attempt.min(5))
                        .min(Duration::from_millis(500));
                    attempt = attempt.saturating_add(1);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Connects, subscribes, then reads the epoch (in that order: a change whose epoch is above
    /// the baseline is published after the subscription, so it arrives).
    async fn connect(&self, url: &str) -> Result<(PubSubSink, PubSubStream, u64), String> {
        // Connecting may take longer than one command on a busy machine.
        let bound = self.timeout.max(Duration::from_secs(1));
        let subscribe = async {
            let client = ::redis::Client::open(url).map_err(|e| e.to_string())?;
            let (mut sink, stream) = client
                .get_async_pubsub()
                .await
                .map_err(|e| e.to_string())?
                .split();
            sink.subscribe(&self.channel)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((sink, stream))
        };
        let (sink, stream) = tokio::time::timeout(bound, subscribe)
            .await
            .map_err(|_| "timed out".to_owned())??;
        let baseline = self.read_epoch().await?;
        Ok((sink, stream, baseline))
    }

    async fn read_epoch(&self) -> Result<u64, String> {
        let mut con = self.connection.clone();
        let mut cmd = ::redis::cmd("GET");
        let read = cmd
            .arg(&self.epoch_key)
            .query_async::<Option<u64>>(&mut con);
        match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(epoch)) => Ok(epoch.unwrap_or(0)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("epoch read timed out".to_owned()),
        }
    }

    /// Forwards messages until the connection is deemed broken.
    async fn pump(
        &self,
        mut sink: PubSubSink,
        mut stream: PubSubStream,
        tracker: &mut EpochTracker,
    ) {
        let mut tick = tokio::time::interval(self.check_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; we just read the epoch
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else { return };
                    self.handle(&message, tracker);
                }
                _ = tick.tick() => {
                    let ping = sink.ping::<Value>();
                    if !matches!(tokio::time::timeout(self.timeout, ping).await, Ok(Ok(_))) {
                        return;
                    }
                    // A failed read only means the command path is down too; operations
                    // report that themselves.
                    if let Ok(current) = self.read_epoch().await
                        && tracker.observe(current, Instant::now())
                    {
                        self.resync(tracker, current);
                    }
                    if tracker.overdue(Instant::now(), self.grace) {
                        let expected = tracker.expected;
                        self.resync(tracker, expected);
                    }
                }
            }
        }
    }

    fn handle(&self, message: &Msg, tracker: &mut EpochTracker) {
        let Some((epoch, change)) = parse_message(message.get_payload_bytes()) else {
            tracing::warn!(channel = %self.channel, "Unreadable change message; caches dropped.");
            let expected = tracker.expected;
            self.resync(tracker, expected);
            return;
        };
        if tracker.delivered(epoch, Instant::now()) {
            self.resync(tracker, epoch);
        }
        if let Some(change) = change {
            let _ = self.changes.send(change);
        }
        self.delivered
            .store(tracker.complete_up_to(), Ordering::Release);
    }

    fn resync(&self, tracker: &mut EpochTracker, epoch: u64) {
        tracker.reset(epoch);
        // Signal first, then vouch (see `run`).
        let _ = self.changes.send(Change::Resync);
        self.delivered.store(epoch, Ordering::Release);
    }
}

/// Which epochs were taken and which of them have been delivered.
#[derive(Debug)]
pub(crate) struct EpochTracker {
    /// The highest epoch known to exist.
    expected: u64,
    /// Epochs at or below `expected` not delivered yet, with when we learnt of them.
    missing: BTreeMap<u64, Instant>,
}

impl EpochTracker {
    pub(crate) fn new(baseline: u64) -> EpochTracker {
        EpochTracker {
            expected: baseline,
            missing: BTreeMap::new(),
        }
    }

    pub(crate) fn reset(&mut self, epoch: u64) {
        self.expected = epoch;
        self.missing.clear();
    }

    /// A message for `epoch` arrived. Returns `true` when a resync is needed now.
    pub(crate) fn delivered(&mut self, epoch: u64, now: Instant) -> bool {
        if epoch > self.expected {
            if !self.expect(epoch, now) {
                return true;
            }
            self.missing.remove(&epoch);
        } else {
            self.missing.remove(&epoch);
        }
        false
    }

    /// The epoch counter reads `current`. Returns `true` when a resync is needed now.
    pub(crate) fn observe(&mut self, current: u64, now: Instant) -> bool {
        if current < self.expected {
            return true; // Redis lost its data (restart without persistence)
        }
        !self.expect(current, now)
    }

    /// Whether an epoch has stayed undelivered for `grace`.
    pub(crate) fn overdue(&self, now: Instant, grace: Duration) -> bool {
        self.missing
            .values()
            .any(|&since| now.duration_since(since) >= grace)
    }

    /// Every epoch up to the returned one is delivered.
    pub(crate) fn complete_up_to(&self) -> u64 {
        self.missing
            .keys()
            .next()
            .map_or(self.expected, |first| first - 1)
    }

    /// Notes that epochs up to `epoch` exist. `false` if too many are missing to track.
    fn expect(&mut self, epoch: u64, now: Instant) -> bool {
        if epoch <= self.expected {
            return true;
        }
        if epoch - self.expected > MAX_MISSING
            || self.missing.len() as u64 + (epoch - self.expected) > MAX_MISSING
        {
            return false;
        }
        for e in self.expected + 1..=epoch {
            self.missing.insert(e, now);
        }
        self.expected = epoch;
        true
    }
}

/// Parses `"<epoch> <kind> [<payload>]"`; `None` if malformed.
pub(crate) fn parse_message(payload: &[u8]) -> Option<(u64, Option<Change>)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (epoch, rest) = text.split_once(' ')?;
    let epoch: u64 = epoch.parse().ok()?;
    let (kind, body) = rest.split_once(' ').unwrap_or((rest, ""));
    let change = match kind {
        "noop" => None,
        "token" => Some(Change::TokenRevoked {
            jti: body.to_owned(),
        }),
        "consent" => {
            let record: ConsentRecord = serde_json::from_str(body).ok()?;
            Some(crate::embedded::consent_change(&record))
        }
        _ => return None,
    };
    Some((epoch, change))
}

/// A URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_by_kind() {
        assert_eq!(parse_message(b"7 noop"), Some((7, None)));
        assert_eq!(
            parse_message(b"8 token abc def"),
            Some((
                8,
                Some(Change::TokenRevoked {
                    jti: "abc def".to_owned()
                })
            ))
        );
        assert_eq!(parse_message(b"x noop"), None);
        assert_eq!(parse_message(b"9 consent {not json"), None);
        assert_eq!(parse_message(b"9 other"), None);
    }

    #[test]
    fn a_gap_is_tolerated_for_the_grace_then_resyncs() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(1);
        let mut tracker = EpochTracker::new(10);
        assert!(!tracker.delivered(12, t0)); // 11 not seen yet: maybe still in flight
        assert_eq!(tracker.complete_up_to(), 10);
        assert!(!tracker.overdue(t0 + Duration::from_millis(999), grace));
        assert!(tracker.overdue(t0 + grace, grace));
        assert!(!tracker.delivered(11, t0 + Duration::from_millis(5)));
        assert_eq!(tracker.complete_up_to(), 12);
        assert!(!tracker.overdue(t0 + grace * 2, grace));
    }

    #[test]
    fn an_epoch_taken_but_never_published_is_overdue() {
        let t0 = Instant::now();
        let mut tracker = EpochTracker::new(3);
        assert!(!tracker.observe(5, t0));
        assert!(tracker.overdue(t0 + Duration::from_secs(2), Duration::from_secs(1)));
    }

    #[test]
    fn an_epoch_going_backwards_resyncs_at_once() {
        let mut tracker = EpochTracker::new(30);
        assert!(tracker.observe(2, Instant::now()));
    }

    #[test]
    fn a_huge_jump_resyncs_at_once() {
        let mut tracker = EpochTracker::new(0);
        assert!(tracker.delivered(MAX_MISSING + 5, Instant::now()));
    }

    #[test]
    fn passwords_are_not_logged() {
        assert_eq!(
            redact("redis://:secret@127.0.0.1:6379/"),
            "redis://***@127.0.0.1:6379/"
        );
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
    }
}
