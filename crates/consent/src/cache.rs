//! The per-instance consent cache: which answers may be served without asking the store, and
//! when a lookup must fail closed instead.
//!
//! # What is cached
//!
//! Per (partner, customer ref): the store's answer to `consents_by_ref` — every consent of any
//! status reachable through that ref *for that partner*, possibly none — and `fetched_at`, the
//! instant just before that store read was sent. The decision itself (active, not expired at
//! `now`, purpose allowed, partner active) is made again from the cached records on every
//! lookup, so expiry and config changes (purposes, suspension) apply at once, without an
//! invalidation. The cache is bounded (`quick_cache`, `capacity` entries) and an entry is
//! never used after `ttl` (`consent.cache_ttl_ms`).
//!
//! # Push invalidation
//!
//! The cache holds its own receiver of [`Store::subscribe`]. Every lookup first drains it (a
//! mutex held only for `try_recv`, nothing awaited under it), so a change delivered to this
//! instance before a lookup starts is always applied before it:
//!
//! - `Change::Consent { partner_id, customer_ref, .. }` drops that key;
//! - `Change::Resync`, or a lagging receiver (changes were dropped unseen), drops every entry;
//! - the service's own grants and revocations drop their key at once, before returning: the
//!   Redis backend delivers changes through pub/sub, asynchronously even to the instance that
//!   made them.
//!
//! A store read that overlaps an invalidation of its key is not cached: each key belongs to one
//! of 64 stripes whose counter is bumped *before* the entry is removed (a clear bumps a global
//! counter); a reader notes the counters before its store read and checks them again after its
//! insert, removing its own entry when they moved.
//!
//! # The staleness bound
//!
//! An answer *knows* the store's state as of an instant: its own `fetched_at`, or the cache's
//! `validated_at` (below) when that is later. A cached answer is served only while that
//! instant is less than `staleness_bound` (`consent.staleness_bound_ms`, default 2 s) ago.
//! Otherwise the lookup re-checks before answering:
//!
//! 1. **Validation**, one store round trip shared by every entry, at most one in flight: read
//!    the shared change epoch `C` ([`Store::current_epoch`]), then this instance's delivered
//!    epoch `D` ([`Store::delivered_epoch`]: every change up to `D` has been put into the
//!    broadcast). If `D ≥ C`, drain the receiver: every change committed before the validation
//!    started is now applied, and `validated_at` becomes the instant the validation started.
//!    Lookups that queued behind a validation take its outcome rather than repeating it.
//! 2. If validation cannot vouch (`D < C`: a change is in flight or its message was lost, or
//!    the receiver closed), **re-read** this key from the store.
//!
//! If the store cannot be reached during the re-check, the lookup fails with
//! `ConsentError::Unavailable` (503). So no cached answer, positive or negative, is served
//! whose knowledge is older than the bound: a revocation committed at `t` is never served
//! stale after `t + staleness_bound`, whether Redis, its pub/sub or this process's tasks fail.
//! Within the bound, push invalidation normally makes the answer current within milliseconds.
//!
//! Validation also watches the epoch: if `C` went backwards (Redis lost its data) or changes
//! seen undelivered at the previous validation are still undelivered, every entry is dropped.
//!
//! One caveat belongs to the backends, not to this cache: the embedded store advances its
//! epoch when a change commits and broadcasts it right after, and the Redis subscriber advances
//! `D` just before it broadcasts the `Resync` of a reconnection. In those microsecond windows a
//! validation may vouch for a change not yet in the queue; the next lookup drains it.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use quick_cache::Equivalent;
use tokio::sync::broadcast::{self, error::TryRecvError};

use gateway_core::{CustomerRef, PartnerId};
use gateway_store::{Change, ConsentRecord, ConsentStore, Store, StoreError};

/// How the consent cache behaves; mirrors `gateway_config::ConsentSettings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Most (partner, ref) answers kept.
    pub capacity: usize,
    /// Longest time an answer stays cached (`consent.cache_ttl_ms`).
    pub ttl: Duration,
    /// Oldest knowledge an answer may be served from (`consent.staleness_bound_ms`).
    pub staleness_bound: Duration,
}

impl Default for CacheSettings {
    /// 100 000 answers, 30 s TTL, 2 s staleness bound (the config defaults).
    fn default() -> Self {
        CacheSettings {
            capacity: 100_000,
            ttl: Duration::from_secs(30),
            staleness_bound: Duration::from_secs(2),
        }
    }
}

/// The consents reachable through one ref for one partner, as the store answered.
pub(crate) type Records = Arc<[Arc<ConsentRecord>]>;

const STRIPES: usize = 64;

pub(crate) struct ConsentCache {
    entries: quick_cache::sync::Cache<(PartnerId, CustomerRef), Entry>,
    /// Bumped before an invalidation of a key in the stripe removes it.
    stripes: [AtomicU64; STRIPES],
    /// Bumped before a clear removes everything.
    global: AtomicU64,
    /// The store's change notifications; locked only to drain them, never across an await.
    changes: Mutex<broadcast::Receiver<Change>>,
    /// False once the receiver closed: validation can then no longer vouch for anything.
    listening: AtomicBool,
    ttl: Duration,
    bound: Duration,
    /// The origin of `validated_at`.
    base: Instant,
    /// When the last successful validation started, in nanoseconds after `base` plus one;
    /// 0 when there was none.
    validated_at: AtomicU64,
    /// Serialises validations (one store round trip at a time) and keeps what they saw.
    validation: tokio::sync::Mutex<EpochWatch>,
}

#[derive(Clone)]
struct Entry {
    records: Records,
    /// Just before the store read that produced `records` was sent.
    fetched_at: Instant,
}

#[derive(Debug, Default)]
struct EpochWatch {
    /// The change epoch the last validation read.
    last_current: u64,
    /// An epoch that was not delivered at the last validation, if any.
    undelivered: Option<u64>,
    /// When the last validation finished and how it went, so that lookups that queued behind
    /// it take its outcome instead of repeating it (no herd on a slow or dead store).
    last: Option<(Instant, Outcome)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Vouched,
    NotVouched,
    Failed,
}

/// Counter values noted before a store read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Generation {
    global: u64,
    stripe: u64,
}

impl ConsentCache {
    pub(crate) fn new(changes: broadcast::Receiver<Change>, settings: &CacheSettings) -> Self {
        ConsentCache {
            entries: quick_cache::sync::Cache::new(settings.capacity.max(1)),
            stripes: std::array::from_fn(|_| AtomicU64::new(0)),
            global: AtomicU64::new(0),
            changes: Mutex::new(changes),
            listening: AtomicBool::new(true),
            ttl: settings.ttl,
            bound: settings.staleness_bound,
            base: Instant::now(),
            validated_at: AtomicU64::new(0),
            validation: tokio::sync::Mutex::new(EpochWatch::default()),
        }
    }

    /// The consents reachable through `customer_ref` for `partner`: from the cache when its
    /// knowledge is within the staleness bound, else from the store (see the module docs).
    pub(crate) async fn lookup(
        &self,
        store: &Store,
        partner: &PartnerId,
        customer_ref: &CustomerRef,
    ) -> Result<Records, StoreError> {
        self.drain();
        let key = KeyRef(partner, customer_ref);
        if let Some(entry) = self.entries.get(&key) {
            let now = Instant::now();
            if now.saturating_duration_since(entry.fetched_at) < self.ttl {
                if self.within_bound(entry.fetched_at, now) || self.validated_within_bound(now) {
                    return Ok(entry.records);
                }
                // Too old to trust as is. A store failure here means 503: this entry must not
                // be used.
                if self.validate(store).await?
                    && let Some(entry) = self.entries.get(&key)
                {
                    return Ok(entry.records);
                }
            }
        }
        let seen = self.generation(customer_ref);
        let fetched_at = Instant::now();
        let records: Records = store
            .consents_by_ref(partner, customer_ref)
            .await?
            .into_iter()
            .map(Arc::new)
            .collect();
        self.insert(
            partner,
            customer_ref,
            Entry {
                records: records.clone(),
                fetched_at,
            },
            seen,
        );
        Ok(records)
    }

    /// Drops the answer for one key.
    pub(crate) fn invalidate(&self, partner: &PartnerId, customer_ref: &CustomerRef) {
        // Bump first: a reader that inserts after this sees the new count and backs out.
        self.stripes[stripe_of(customer_ref)].fetch_add(1, Ordering::SeqCst);
        self.entries.remove(&KeyRef(partner, customer_ref));
    }

    /// Drops every answer.
    pub(crate) fn clear(&self) {
        self.global.fetch_add(1, Ordering::SeqCst);
        self.entries.clear();
    }

    /// How many answers are cached now.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Applies every change delivered so far.
    fn drain(&self) {
        let mut changes = self.changes.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match changes.try_recv() {
                Ok(Change::Consent {
                    partner_id,
                    customer_ref,
                    ..
                }) => self.invalidate(&partner_id, &customer_ref),
                Ok(Change::TokenRevoked { .. }) => {}
                Ok(Change::Resync) | Err(TryRecvError::Lagged(_)) => self.clear(),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => {
                    if self.listening.swap(false, Ordering::AcqRel) {
                        tracing::warn!(
                            "Consent change notifications closed; cached answers now live only \
                             for the staleness bound."
                        );
                    }
                    break;
                }
            }
        }
    }

    /// Whether every change committed before the validation started is applied here; see the
    /// module docs. `Err` when the store cannot be reached.
    async fn validate(&self, store: &Store) -> Result<bool, StoreError> {
        let queued_at = Instant::now();
        let mut watch = self.validation.lock().await;
        let started = Instant::now();
        if self.validated_within_bound(started) {
            return Ok(true); // another lookup validated while this one waited
        }
        match watch.last {
            Some((finished, Outcome::Failed)) if finished >= queued_at => {
                return Err(StoreError::Unavailable(
                    "the store did not answer the change-epoch check just made".to_owned(),
                ));
            }
            Some((finished, _)) if finished >= queued_at => return Ok(false),
            _ => {}
        }
        if !self.listening.load(Ordering::Acquire) {
            return Ok(false);
        }
        let result = self.check_epochs(store, &mut watch, started).await;
        let outcome = match result {
            Ok(true) => Outcome::Vouched,
            Ok(false) => Outcome::NotVouched,
            Err(_) => Outcome::Failed,
        };
        watch.last = Some((Instant::now(), outcome));
        result
    }

    async fn check_epochs(
        &self,
        store: &Store,
        watch: &mut EpochWatch,
        started: Instant,
    ) -> Result<bool, StoreError> {
        // C first, then D: D >= C then means every change numbered up to C is in our queue.
        let current = store.current_epoch().await?;
        let delivered = store.delivered_epoch().await?;
        if current < watch.last_current {
            tracing::warn!(
                current,
                previous = watch.last_current,
                "Store change epoch went backwards; consent cache dropped."
            );
            self.clear();
        } else if watch.undelivered.is_some_and(|epoch| delivered < epoch) {
            tracing::warn!(
                delivered,
                "Consent changes stayed undelivered; consent cache dropped."
            );
            self.clear();
        }
        watch.last_current = current;
        if delivered >= current {
            watch.undelivered = None;
            self.drain();
            self.validated_at
                .store(self.offset_of(started), Ordering::Release);
            Ok(true)
        } else {
            watch.undelivered = Some(current);
            Ok(false)
        }
    }

    fn within_bound(&self, known_at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(known_at) < self.bound
    }

    fn validated_within_bound(&self, now: Instant) -> bool {
        match self.validated_at.load(Ordering::Acquire) {
            0 => false,
            offset => {
                let at = self.base + Duration::from_nanos(offset - 1);
                self.within_bound(at, now)
            }
        }
    }

    fn offset_of(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.base).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1
    }

    fn generation(&self, customer_ref: &CustomerRef) -> Generation {
        Generation {
            global: self.global.load(Ordering::SeqCst),
            stripe: self.stripes[stripe_of(customer_ref)].load(Ordering::SeqCst),
        }
    }

    fn insert(
        &self,
        partner: &PartnerId,
        customer_ref: &CustomerRef,
        entry: Entry,
        seen: Generation,
    ) {
        if self.generation(customer_ref) != seen {
            return; // invalidated while we read: the answer may predate the change
        }
        let records = entry.records.clone();
        self.entries
            .insert((partner.clone(), customer_ref.clone()), entry);
        if self.generation(customer_ref) != seen {
            self.entries.remove_if(&KeyRef(partner, customer_ref), |e| {
                Arc::ptr_eq(&e.records, &records)
            });
        }
    }
}

/// Looks a `(PartnerId, CustomerRef)` key up without cloning it; hashes as the tuple does.
struct KeyRef<'a>(&'a PartnerId, &'a CustomerRef);

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
        self.1.hash(state);
    }
}

impl Equivalent<(PartnerId, CustomerRef)> for KeyRef<'_> {
    fn equivalent(&self, key: &(PartnerId, CustomerRef)) -> bool {
        *self.0 == key.0 && *self.1 == key.1
    }
}

fn stripe_of(customer_ref: &CustomerRef) -> usize {
    // Refs are HMAC output (uniform); two characters spread any probing pattern enough.
    let b = customer_ref.as_str().as_bytes();
    let (x, y) = (
        usize::from(b.first().copied().unwrap_or(0)),
        usize::from(b.get(1).copied().unwrap_or(0)),
    );
    (x * 31 + y) % STRIPES
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use super::*;

    #[test]
    fn borrowed_keys_hash_like_owned_ones() {
        let p = PartnerId::parse("demo-bank").unwrap();
        let r =
            CustomerRef::parse(&"Ab".repeat(21).chars().chain(['c']).collect::<String>()).unwrap();
        let mut a = DefaultHasher::new();
        (p.clone(), r.clone()).hash(&mut a);
        let mut b = DefaultHasher::new();
        KeyRef(&p, &r).hash(&mut b);
        assert_eq!(a.finish(), b.finish());
        assert!(KeyRef(&p, &r).equivalent(&(p.clone(), r.clone())));
    }
}
