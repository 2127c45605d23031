//! The embedded backend: one redb file on local disk, for a single gateway node.
//!
//! Every trait method is one redb transaction. Writes commit with
//! [`Durability::Immediate`] before the method returns, so an answer given after a write survives
//! `kill -9` and power loss (redb is copy-on-write with checksummed commits). Reads are read
//! transactions over a consistent snapshot and never block writers.
//!
//! redb is blocking: each transaction runs on [`tokio::task::spawn_blocking`]. redb runs one write
//! transaction at a time, so concurrent writers queue in `begin_write`; that serialisation is
//! what makes the caps and the "one active grant" rule exact. A commit costs roughly
//! 0.1–0.2 ms of CPU plus an `fsync` (see `PERFORMANCE.md`): never put one on a read path.
//!
//! Changes (consent grants and revocations, token revocations) are broadcast in-process after
//! their commit; the persisted epoch counter ([`EmbeddedStore::current_epoch`]) is bumped in the
//! same transaction as the change.
//!
//! # Tables
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `consents` | consent id | JSON [`ConsentRecord`] (status included) |
//! | `consents_by_ref` | (partner, customer ref, seq) | consent id |
//! | `consents_by_customer` | (customer, seq) | consent id |
//! | `active_grants` | (customer, partner, purpose) | consent id of the active grant |
//! | `revoked_tokens` | jti | expiry (unix seconds) |
//! | `revoked_tokens_by_expiry` | (expiry, jti) | — (lazy purge index) |
//! | `idempotency` | key | JSON claim: fingerprint, claimed at, expiry, response |
//! | `idempotency_by_expiry` | (expiry, key) | — (lazy purge index) |
//! | `codes` | code | JSON [`CodeRecord`] |
//! | `code_conversions` | (code, event type) | count |
//! | `events` | event id | JSON [`ReferralEvent`] |
//! | `daily_issued` | (partner, campaign, UTC day) | count |
//! | `campaign_stats` | (campaign, partner) | JSON [`CampaignStats`] |
//! | `meta` | `"seq"`, `"epoch"` | counters |
//!
//! `seq` orders consents by grant ("oldest first"); expired revocations and idempotency keys are
//! purged a few at a time by later writes, never by a background task.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use gateway_core::time::UnixTime;
use gateway_core::{CampaignId, ConsentId, CustomerId, CustomerRef, PartnerId};

use crate::model::*;

/// How long a revoked token id is kept past its expiry, for clock skew between instances.
pub const REVOCATION_MARGIN_SECS: i64 = 300;

/// How many expired entries one write purges at most, so a purge never makes a write slow.
const PURGE_BATCH: usize = 16;

/// Capacity of the in-process change broadcast. A receiver that falls further behind gets
/// `RecvError::Lagged` and must treat it as [`Change::Resync`].
pub(crate) const CHANGE_CAPACITY: usize = 1024;

const CONSENTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("consents");
const CONSENTS_BY_REF: TableDefinition<'_, (&str, &str, u64), &str> =
    TableDefinition::new("consents_by_ref");
const CONSENTS_BY_CUSTOMER: TableDefinition<'_, (&str, u64), &str> =
    TableDefinition::new("consents_by_customer");
const ACTIVE_GRANTS: TableDefinition<'_, (&str, &str, &str), &str> =
    TableDefinition::new("active_grants");
const REVOKED_TOKENS: TableDefinition<'_, &str, i64> = TableDefinition::new("revoked_tokens");
const REVOKED_TOKENS_BY_EXPIRY: TableDefinition<'_, (i64, &str), ()> =
    TableDefinition::new("revoked_tokens_by_expiry");
const IDEMPOTENCY: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("idempotency");
const IDEMPOTENCY_BY_EXPIRY: TableDefinition<'_, (i64, &str), ()> =
    TableDefinition::new("idempotency_by_expiry");
const CODES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("codes");
const CODE_CONVERSIONS: TableDefinition<'_, (&str, &str), u64> =
    TableDefinition::new("code_conversions");
const EVENTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("events");
const DAILY_ISSUED: TableDefinition<'_, (&str, &str, i64), u64> =
    TableDefinition::new("daily_issued");
const CAMPAIGN_STATS: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("campaign_stats");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

const META_SEQ: &str = "seq";
const META_EPOCH: &str = "epoch";

/// The embedded, durable store. Cheap to clone: clones share one open database.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    path: PathBuf,
    /// Sends every committed change; receivers come from [`EmbeddedStore::subscribe`].
    changes: broadcast::Sender<Change>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the database file and its tables. Blocking: it may repair the file
    /// after a crash. One process at a time may open a file (redb takes a file lock).
    pub fn open(path: impl AsRef<Path>) -> Result<EmbeddedStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = Database::create(&path).map_err(|e| {
            StoreError::Unavailable(format!("embedded store {}: {e}", path.display()))
        })?;
        let txn = begin_write(&db)?;
        {
            // Creating every table up front lets read transactions open them unconditionally.
            txn.open_table(CONSENTS).db()?;
            txn.open_table(CONSENTS_BY_REF).db()?;
            txn.open_table(CONSENTS_BY_CUSTOMER).db()?;
            txn.open_table(ACTIVE_GRANTS).db()?;
            txn.open_table(REVOKED_TOKENS).db()?;
            txn.open_table(REVOKED_TOKENS_BY_EXPIRY).db()?;
            txn.open_table(IDEMPOTENCY).db()?;
            txn.open_table(IDEMPOTENCY_BY_EXPIRY).db()?;
            txn.open_table(CODES).db()?;
            txn.open_table(CODE_CONVERSIONS).db()?;
            txn.open_table(EVENTS).db()?;
            txn.open_table(DAILY_ISSUED).db()?;
            txn.open_table(CAMPAIGN_STATS).db()?;
            txn.open_table(META).db()?;
        }
        txn.commit().db()?;
        let (changes, _) = broadcast::channel(CHANGE_CAPACITY);
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db: Arc::new(db),
                path,
                changes,
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Receives every change committed through this store (all clones share one broadcast).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// The number of changes ever committed to this file (persisted, only grows).
    pub async fn current_epoch(&self) -> Result<u64, StoreError> {
        self.read(|txn| counter(&txn.open_table(META).db()?, META_EPOCH))
            .await
    }

    /// Whether the database answers a read transaction.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|txn| txn.open_table(META).db().map(|_| ())).await
    }

    /// Runs `f` in a read transaction on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.inner.db.clone();
        blocking(move || {
            let txn = db.begin_read().db()?;
            f(&txn)
        })
        .await
    }

    /// Runs `f` in a write transaction on the blocking pool and commits it with immediate
    /// durability when `f` succeeds; on error nothing is committed. A returned change is
    /// broadcast after the commit.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<(T, Option<Change>), StoreError> + Send + 'static,
    {
        let db = self.inner.db.clone();
        let (value, change) = blocking(move || {
            let txn = begin_write(&db)?;
            let (value, change) = f(&txn)?;
            if change.is_some() {
                bump(&txn, META_EPOCH)?;
            }
            txn.commit().db()?;
            Ok((value, change))
        })
        .await?;
        if let Some(change) = change {
            // No receiver is fine: nobody caches anything yet.
            let _ = self.inner.changes.send(change);
        }
        Ok(value)
    }
}

// === impl ConsentStore ===

impl ConsentStore for EmbeddedStore {
    async fn grant(&self, record: ConsentRecord) -> Result<GrantOutcome, StoreError> {
        self.write(move |txn| {
            let mut consents = txn.open_table(CONSENTS).db()?;
            if let Some(existing) = consents.get(record.consent_id.as_str()).db()? {
                // The id is taken: refuse rather than overwrite another grant.
                let existing =
                    decode::<ConsentRecord>(record.consent_id.as_str(), existing.value())?;
                return Ok((GrantOutcome::AlreadyGranted(existing), None));
            }
            let mut active = txn.open_table(ACTIVE_GRANTS).db()?;
            let index_key = (
                record.customer_id.as_str(),
                record.partner_id.as_str(),
                record.purpose.as_str(),
            );
            let current = active.get(index_key).db()?.map(|id| id.value().to_owned());
            if let Some(current) = current
                && let Some(found) = consents.get(current.as_str()).db()?
            {
                let found = decode::<ConsentRecord>(&current, found.value())?;
                // An expired grant no longer blocks a new one.
                if found.status == ConsentStatus::Active && found.expires_at > record.granted_at {
                    return Ok((GrantOutcome::AlreadyGranted(found), None));
                }
            }
            let seq = bump(txn, META_SEQ)?;
            consents
                .insert(record.consent_id.as_str(), encode(&record)?.as_slice())
                .db()?;
            if record.status == ConsentStatus::Active {
                active.insert(index_key, record.consent_id.as_str()).db()?;
            }
            txn.open_table(CONSENTS_BY_REF)
                .db()?
                .insert(
                    (
                        record.partner_id.as_str(),
                        record.customer_ref.as_str(),
                        seq,
                    ),
                    record.consent_id.as_str(),
                )
                .db()?;
            txn.open_table(CONSENTS_BY_CUSTOMER)
                .db()?
                .insert(
                    (record.customer_id.as_str(), seq),
                    record.consent_id.as_str(),
                )
                .db()?;
            let change = consent_change(&record);
            Ok((GrantOutcome::Granted(record), Some(change)))
        })
        .await
    }

    async fn revoke(&self, id: &ConsentId, now: UnixTime) -> Result<RevokeOutcome, StoreError> {
        let id = id.clone();
        self.write(move |txn| {
            let mut consents = txn.open_table(CONSENTS).db()?;
            let Some(found) = consents.get(id.as_str()).db()? else {
                return Ok((RevokeOutcome::NotFound, None));
            };
            let mut record = decode::<ConsentRecord>(id.as_str(), found.value())?;
            drop(found);
            if matches!(record.status, ConsentStatus::Revoked { .. }) {
                return Ok((RevokeOutcome::AlreadyRevoked(record), None));
            }
            record.status = ConsentStatus::Revoked { revoked_at: now };
            consents
                .insert(id.as_str(), encode(&record)?.as_slice())
                .db()?;
            let mut active = txn.open_table(ACTIVE_GRANTS).db()?;
            let index_key = (
                record.customer_id.as_str(),
                record.partner_id.as_str(),
                record.purpose.as_str(),
            );
            let points_here = active
                .get(index_key)
                .db()?
                .is_some_and(|v| v.value() == id.as_str());
            if points_here {
                active.remove(index_key).db()?;
            }
            let change = consent_change(&record);
            Ok((RevokeOutcome::Revoked(record), Some(change)))
        })
        .await
    }

    async fn consent(&self, id: &ConsentId) -> Result<Option<ConsentRecord>, StoreError> {
        let id = id.clone();
        self.read(move |txn| {
            let consents = txn.open_table(CONSENTS).db()?;
            consents
                .get(id.as_str())
                .db()?
                .map(|v| decode(id.as_str(), v.value()))
                .transpose()
        })
        .await
    }

    async fn consents_of_customer(
        &self,
        customer: &CustomerId,
    ) -> Result<Vec<ConsentRecord>, StoreError> {
        let customer = customer.clone();
        self.read(move |txn| {
            let index = txn.open_table(CONSENTS_BY_CUSTOMER).db()?;
            let consents = txn.open_table(CONSENTS).db()?;
            let range = (customer.as_str(), 0u64)..=(customer.as_str(), u64::MAX);
            let mut out = Vec::new();
            for entry in index.range(range).db()? {
                let (_, id) = entry.db()?;
                if let Some(v) = consents.get(id.value()).db()? {
                    out.push(decode(id.value(), v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn consents_by_ref(
        &self,
        partner: &PartnerId,
        customer_ref: &CustomerRef,
    ) -> Result<Vec<ConsentRecord>, StoreError> {
        let (partner, customer_ref) = (partner.clone(), customer_ref.clone());
        self.read(move |txn| {
            let index = txn.open_table(CONSENTS_BY_REF).db()?;
            let consents = txn.open_table(CONSENTS).db()?;
            let (p, r) = (partner.as_str(), customer_ref.as_str());
            let mut out = Vec::new();
            for entry in index.range((p, r, 0u64)..=(p, r, u64::MAX)).db()? {
                let (_, id) = entry.db()?;
                if let Some(v) = consents.get(id.value()).db()? {
                    out.push(decode(id.value(), v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }
}

// === impl RevocationStore ===

impl RevocationStore for EmbeddedStore {
    async fn revoke_token(&self, jti: &str, expires_at: UnixTime) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        self.write(move |txn| {
            let mut tokens = txn.open_table(REVOKED_TOKENS).db()?;
            let mut by_expiry = txn.open_table(REVOKED_TOKENS_BY_EXPIRY).db()?;
            // Purge by the wall clock with a margin: a late purge only keeps a dead id longer.
            let horizon = UnixTime::now().0 - REVOCATION_MARGIN_SECS;
            let expired: Vec<(i64, String)> = by_expiry
                .range(..(horizon, ""))
                .db()?
                .take(PURGE_BATCH)
                .map(|e| e.db().map(|(k, _)| (k.value().0, k.value().1.to_owned())))
                .collect::<Result<_, _>>()?;
            for (exp, old) in expired {
                by_expiry.remove((exp, old.as_str())).db()?;
                // Only if it was not revoked again with a later expiry since.
                let same = tokens
                    .get(old.as_str())
                    .db()?
                    .is_some_and(|v| v.value() == exp);
                if same {
                    tokens.remove(old.as_str()).db()?;
                }
            }
            let keep = tokens.get(jti.as_str()).db()?.map(|v| v.value());
            let exp = keep.map_or(expires_at.0, |old| old.max(expires_at.0));
            tokens.insert(jti.as_str(), exp).db()?;
            by_expiry.insert((exp, jti.as_str()), ()).db()?;
            Ok(((), Some(Change::TokenRevoked { jti })))
        })
        .await
    }

    async fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let jti = jti.to_owned();
        self.read(move |txn| {
            // An entry past its expiry still answers "revoked": the token is dead either way,
            // and failing closed costs nothing.
            Ok(txn
                .open_table(REVOKED_TOKENS)
                .db()?
                .get(jti.as_str())
                .db()?
                .is_some())
        })
        .await
    }
}

// === impl IdempotencyStore ===

/// One idempotency key as stored.
#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyEntry {
    fingerprint: [u8; 32],
    claimed_at: UnixTime,
    expires_at: UnixTime,
    response: Option<StoredResponse>,
}

impl IdempotencyStore for EmbeddedStore {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &[u8; 32],
        now: UnixTime,
        ttl_secs: u64,
    ) -> Result<IdempotencyClaim, StoreError> {
        let (key, fingerprint) = (key.to_owned(), *fingerprint);
        self.write(move |txn| {
            let mut entries = txn.open_table(IDEMPOTENCY).db()?;
            let mut by_expiry = txn.open_table(IDEMPOTENCY_BY_EXPIRY).db()?;
            let expired: Vec<(i64, String)> = by_expiry
                .range(..(now.0.saturating_add(1), ""))
                .db()?
                .take(PURGE_BATCH)
                .map(|e| e.db().map(|(k, _)| (k.value().0, k.value().1.to_owned())))
                .collect::<Result<_, _>>()?;
            for (exp, old) in expired {
                by_expiry.remove((exp, old.as_str())).db()?;
                let entry = entries.get(old.as_str()).db()?.map(|v| v.value().to_vec());
                if let Some(entry) = entry
                    && decode::<IdempotencyEntry>(&old, &entry)?.expires_at.0 == exp
                {
                    entries.remove(old.as_str()).db()?;
                }
            }
            let existing = entries.get(key.as_str()).db()?.map(|v| v.value().to_vec());
            if let Some(existing) = existing {
                let existing = decode::<IdempotencyEntry>(&key, &existing)?;
                if existing.expires_at > now {
                    let claim = if existing.fingerprint != fingerprint {
                        IdempotencyClaim::Mismatch
                    } else if let Some(response) = existing.response {
                        IdempotencyClaim::Replay(response)
                    } else {
                        IdempotencyClaim::InProgress
                    };
                    return Ok((claim, None));
                }
            }
            let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
            let expires_at = UnixTime(now.0.saturating_add(ttl));
            let entry = IdempotencyEntry {
                fingerprint,
                claimed_at: now,
                expires_at,
                response: None,
            };
            entries
                .insert(key.as_str(), encode(&entry)?.as_slice())
                .db()?;
            by_expiry.insert((expires_at.0, key.as_str()), ()).db()?;
            Ok((IdempotencyClaim::New, None))
        })
        .await
    }

    async fn complete(&self, key: &str, response: StoredResponse) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |txn| {
            let mut entries = txn.open_table(IDEMPOTENCY).db()?;
            let existing = entries.get(key.as_str()).db()?.map(|v| v.value().to_vec());
            // Completing a key that was never claimed (or already purged) stores nothing.
            if let Some(existing) = existing {
                let mut entry = decode::<IdempotencyEntry>(&key, &existing)?;
                entry.response = Some(response);
                entries
                    .insert(key.as_str(), encode(&entry)?.as_slice())
                    .db()?;
            }
            Ok(((), None))
        })
        .await
    }

    async fn abandon(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |txn| {
            let mut entries = txn.open_table(IDEMPOTENCY).db()?;
            let existing = entries.get(key.as_str()).db()?.map(|v| v.value().to_vec());
            if let Some(existing) = existing {
                let entry = decode::<IdempotencyEntry>(&key, &existing)?;
                // A completed key keeps its response: abandoning it would allow a second effect.
                if entry.response.is_none() {
                    entries.remove(key.as_str()).db()?;
                    let mut by_expiry = txn.open_table(IDEMPOTENCY_BY_EXPIRY).db()?;
                    by_expiry.remove((entry.expires_at.0, key.as_str())).db()?;
                }
            }
            Ok(((), None))
        })
        .await
    }
}

// === impl ReferralStore ===

impl ReferralStore for EmbeddedStore {
    async fn issue_code(
        &self,
        record: CodeRecord,
        daily_cap: u32,
    ) -> Result<IssueOutcome, StoreError> {
        self.write(move |txn| {
            let mut codes = txn.open_table(CODES).db()?;
            let mut daily = txn.open_table(DAILY_ISSUED).db()?;
            let day_key = (
                record.partner_id.as_str(),
                record.campaign_id.as_str(),
                record.issued_at.day(),
            );
            let issued = daily.get(day_key).db()?.map_or(0, |v| v.value());
            let existing = codes
                .get(record.code.as_str())
                .db()?
                .map(|v| v.value().to_vec());
            if let Some(existing) = existing {
                return duplicate_code(&record, &existing, issued).map(|o| (o, None));
            }
            if issued >= u64::from(daily_cap) {
                return Ok((IssueOutcome::CapReached, None));
            }
            codes
                .insert(record.code.as_str(), encode(&record)?.as_slice())
                .db()?;
            daily.insert(day_key, issued + 1).db()?;
            update_stats(txn, &record.campaign_id, &record.partner_id, |s| {
                s.codes_issued += 1
            })?;
            let issued_today = u32::try_from(issued + 1).unwrap_or(u32::MAX);
            Ok((IssueOutcome::Issued { issued_today }, None))
        })
        .await
    }

    async fn code(&self, code: &str) -> Result<Option<CodeRecord>, StoreError> {
        let code = code.to_owned();
        self.read(move |txn| {
            let codes = txn.open_table(CODES).db()?;
            codes
                .get(code.as_str())
                .db()?
                .map(|v| decode(&code, v.value()))
                .transpose()
        })
        .await
    }

    async fn code_conversions(&self, code: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        let code = code.to_owned();
        self.read(move |txn| conversions(&txn.open_table(CODE_CONVERSIONS).db()?, &code))
            .await
    }

    async fn record_event(
        &self,
        event: ReferralEvent,
        cap_per_code: u32,
    ) -> Result<EventOutcome, StoreError> {
        self.write(move |txn| {
            let mut events = txn.open_table(EVENTS).db()?;
            if let Some(first) = events.get(event.event_id.as_str()).db()? {
                let first = decode::<ReferralEvent>(&event.event_id, first.value())?;
                return Ok((EventOutcome::Replay(first), None));
            }
            let codes = txn.open_table(CODES).db()?;
            let Some(code) = codes.get(event.code.as_str()).db()? else {
                return Ok((EventOutcome::UnknownCode, None));
            };
            let code = decode::<CodeRecord>(&event.code, code.value())?;
            let mut per_code = txn.open_table(CODE_CONVERSIONS).db()?;
            let counted: u64 = conversions(&per_code, &event.code)?.values().sum();
            if counted >= u64::from(cap_per_code) {
                return Ok((EventOutcome::CapReached, None));
            }
            let key = (event.code.as_str(), event.event_type.as_str());
            let n = per_code.get(key).db()?.map_or(0, |v| v.value());
            per_code.insert(key, n + 1).db()?;
            events
                .insert(event.event_id.as_str(), encode(&event)?.as_slice())
                .db()?;
            update_stats(txn, &code.campaign_id, &code.partner_id, |s| {
                *s.conversions.entry(event.event_type.clone()).or_default() += 1;
                *s.rewards_minor.entry(event.currency.clone()).or_default() += event.reward_minor;
            })?;
            let conversions = u32::try_from(counted + 1).unwrap_or(u32::MAX);
            Ok((EventOutcome::Counted { conversions }, None))
        })
        .await
    }

    async fn campaign_stats(
        &self,
        campaign: &CampaignId,
        partner: &PartnerId,
    ) -> Result<CampaignStats, StoreError> {
        let (campaign, partner) = (campaign.clone(), partner.clone());
        self.read(move |txn| {
            let stats = txn.open_table(CAMPAIGN_STATS).db()?;
            match stats.get((campaign.as_str(), partner.as_str())).db()? {
                Some(v) => decode(&format!("stats:{campaign}:{partner}"), v.value()),
                None => Ok(CampaignStats::default()),
            }
        })
        .await
    }
}

// === helpers ===

/// Maps any redb error to [`StoreError::Unavailable`]: the disk or the file failed.
trait DbResult<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> DbResult<T> for Result<T, E> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Unavailable(format!("embedded store: {}", e.into())))
    }
}

fn begin_write(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write().db()?;
    // Immediate is redb's default; set it anyway because the 2xx-survives-kill-9 promise
    // rests on it.
    txn.set_durability(Durability::Immediate)
        .map_err(|e| StoreError::Unavailable(format!("embedded store: {e}")))?;
    Ok(txn)
}

async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("embedded store task failed: {e}")))?
}

fn counter(meta: &impl ReadableTable<&'static str, u64>, name: &str) -> Result<u64, StoreError> {
    Ok(meta.get(name).db()?.map_or(0, |v| v.value()))
}

/// Increments a `meta` counter inside `txn` and returns the new value.
fn bump(txn: &WriteTransaction, name: &str) -> Result<u64, StoreError> {
    let mut meta = txn.open_table(META).db()?;
    let next = counter(&meta, name)? + 1;
    meta.insert(name, next).db()?;
    Ok(next)
}

fn conversions(
    table: &impl ReadableTable<(&'static str, &'static str), u64>,
    code: &str,
) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut out = BTreeMap::new();
    for entry in table.range((code, "")..).db()? {
        let (k, v) = entry.db()?;
        let (c, event_type) = k.value();
        if c != code {
            break;
        }
        out.insert(event_type.to_owned(), v.value());
    }
    Ok(out)
}

fn update_stats(
    txn: &WriteTransaction,
    campaign: &CampaignId,
    partner: &PartnerId,
    f: impl FnOnce(&mut CampaignStats),
) -> Result<(), StoreError> {
    let mut table = txn.open_table(CAMPAIGN_STATS).db()?;
    let key = (campaign.as_str(), partner.as_str());
    let mut stats = match table.get(key).db()? {
        Some(v) => decode(&format!("stats:{campaign}:{partner}"), v.value())?,
        None => CampaignStats::default(),
    };
    f(&mut stats);
    table.insert(key, encode(&stats)?.as_slice()).db()?;
    Ok(())
}

/// A code that is already stored: the same record again is a retry and answers as issued; a
/// different record under the same code is refused (an 80-bit collision means a bug).
pub(crate) fn duplicate_code(
    record: &CodeRecord,
    existing: &[u8],
    issued: u64,
) -> Result<IssueOutcome, StoreError> {
    let existing = decode::<CodeRecord>(&record.code, existing)?;
    if existing == *record {
        Ok(IssueOutcome::Issued {
            issued_today: u32::try_from(issued).unwrap_or(u32::MAX),
        })
    } else {
        Err(StoreError::Corrupt {
            key: format!("code:{}", record.code),
            reason: "code already issued with another record".to_owned(),
        })
    }
}

pub(crate) fn consent_change(record: &ConsentRecord) -> Change {
    Change::Consent {
        partner_id: record.partner_id.clone(),
        customer_ref: record.customer_ref.clone(),
        consent_id: record.consent_id.clone(),
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    // Serialising our own plain records cannot fail, but a typed error costs nothing.
    serde_json::to_vec(value)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode a record: {e}")))
}

pub(crate) fn decode<T: for<'de> Deserialize<'de>>(
    key: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}
