//! The Redis backend: shared state for several gateway instances, on standalone Redis or
//! Redis Cluster.
//!
//! # Atomicity and slots
//!
//! Every key carries a hash tag (`{…}`), and every atomic step touches keys of one tag only, so
//! it runs on one node even in a cluster. Multi-key updates are Lua scripts (`EVALSHA`, loaded
//! again automatically after a `NOSCRIPT`). Where an operation needs two slots, the step in the
//! second slot is an immutable, idempotent locator written first (`SET … NX`), so a failure
//! between the steps leaves nothing a reader could misread.
//!
//! # Key layout
//!
//! `P` is the configured key prefix (no `{` or `}` allowed in it).
//!
//! | key | type | contents |
//! | --- | --- | --- |
//! | `P{c:<customer>}:consents` | hash | consent id → record JSON as granted |
//! | `P{c:<customer>}:revoked` | hash | consent id → `revoked_at` |
//! | `P{c:<customer>}:meta` | hash | consent id → `"<expires_at> <partner>\|<purpose>"` |
//! | `P{c:<customer>}:active` | hash | `"<partner>\|<purpose>"` → id of the active grant |
//! | `P{c:<customer>}:order` | list | consent ids, oldest first |
//! | `P{i:<consent id>}` | string | customer id (locator, written once) |
//! | `P{r:<partner>:<customer ref>}` | string | customer id (locator, written once) |
//! | `P{t:<jti>}` | string | `1`; expires 5 min after the token |
//! | `P{k:<idempotency key>}` | hash | `fp`, `at`, `exp`, then `status`, `body`; expires after the TTL |
//! | `P{x:<code>}` | string | `"<campaign>/<partner>"`: where the code's records live (locator) |
//! | `P{e:<event id>}` | string | `"<campaign>/<partner>"`: where the event is counted (guard) |
//! | `P{p:<campaign>:<partner>}:code:<code>` | string | code record JSON |
//! | `P{p:<campaign>:<partner>}:day:<UTC day>` | string | codes issued that day; expires after 3 days |
//! | `P{p:<campaign>:<partner>}:stats` | hash | `codes`, `conv:<event type>`, `reward:<currency>` |
//! | `P{p:<campaign>:<partner>}:event:<event id>` | string | event JSON as first counted |
//! | `P{p:<campaign>:<partner>}:conv:<code>` | hash | event type → count |
//! | `P{p:<campaign>:<partner>}:convn:<code>` | string | events counted for the code (the cap) |
//! | `P{g}:epoch` | string | change epoch, `INCR` per change |
//! | `Pchanges` | channel | `"<epoch> consent <record JSON>"`, `"<epoch> token <jti>"`, `"<epoch> noop"` |
//!
//! # Operations
//!
//! | operation | round trips | atomic step |
//! | --- | --- | --- |
//! | `grant` | 2: locators `{i:}` `{r:}` + `INCR` epoch together, then script | script on `{c:}`: refuse a second unexpired active grant, store, index, `PUBLISH` |
//! | `revoke` | 2: locator `{i:}` + `INCR` epoch, then script | script on `{c:}`: mark revoked, free the active slot, `PUBLISH` |
//! | `consent` | 2: locator `{i:}`, then `MULTI` on `{c:}` | — |
//! | `consents_of_customer` | 1: `MULTI` on `{c:}` | — |
//! | `consents_by_ref` | 2: locator `{r:}`, then `MULTI` on `{c:}` | — |
//! | `revoke_token` | 2: `INCR` epoch, then script | script on `{t:}`: `SET EX`, `PUBLISH` |
//! | `is_token_revoked` | 1: `EXISTS` | — |
//! | `claim`, `complete`, `abandon` | 1: script | script on `{k:}` |
//! | `issue_code` | 2: locator `{x:}`, then script | script on `{p:}`: daily cap, store, count |
//! | `code`, `code_conversions` | 2: locator `{x:}`, then `{p:}` | — |
//! | `record_event` | 3: locator `{x:}`, guard `{e:}`, then script | script on `{p:}`: once per event id, cap per code, counters |
//! | `campaign_stats` | 1: `HGETALL` on `{p:}` | — |
//!
//! Event ids are counted once across codes: the `{e:}` guard names the slot that owns an event
//! id, and a replay of it with another code answers with the event first counted there.
//!
//! # Failures
//!
//! Each operation, all its round trips included, is bounded by one `timeout` (default
//! [`DEFAULT_REDIS_TIMEOUT`](crate::DEFAULT_REDIS_TIMEOUT)); every failure or timeout is
//! [`StoreError::Unavailable`]. Operations are safe to retry after an ambiguous failure: a
//! retried grant answers `AlreadyGranted`, a retried revoke `AlreadyRevoked` (and publishes
//! again), a retried code or event is recognised.
//!
//! # Changes
//!
//! Consent and token changes are published by the same script that makes them, under an epoch
//! taken just before (`INCR P{g}:epoch`). See the `subscriber` module for how a lost
//! message becomes [`Change::Resync`].

mod connection;
mod keys;
mod scripts;
mod subscriber;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ::redis::Script;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use gateway_core::time::UnixTime;
use gateway_core::{CampaignId, ConsentId, CustomerId, CustomerRef, PartnerId};

use self::connection::{Connection, Reply, pairs, redis_error};
use self::keys::{Keys, location, parse_location};
use self::subscriber::Subscriber;
use crate::embedded::{CHANGE_CAPACITY, REVOCATION_MARGIN_SECS, decode, encode};
use crate::model::*;

/// How to reach Redis and how to watch for lost change messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// `redis://` URL (standalone: the first is used) or seed nodes (cluster).
    pub urls: Vec<String>,
    /// Whether the URLs are Redis Cluster nodes.
    pub cluster: bool,
    /// Bound on one store operation, all its round trips included.
    pub timeout: Duration,
    /// Prepended to every key and to the change channel; must not contain `{` or `}`.
    pub key_prefix: String,
    /// How often the subscriber pings its connection and compares epochs.
    pub epoch_check_interval: Duration,
    /// How long a change may stay undelivered before the subscriber sends `Resync`.
    pub resync_grace: Duration,
}

impl RedisOptions {
    /// Standalone, [`DEFAULT_REDIS_TIMEOUT`](crate::DEFAULT_REDIS_TIMEOUT), prefix `pgw:`,
    /// epoch check every 500 ms, resync after 1 s.
    pub fn new(urls: Vec<String>) -> RedisOptions {
        RedisOptions {
            urls,
            cluster: false,
            timeout: crate::DEFAULT_REDIS_TIMEOUT,
            key_prefix: "pgw:".to_owned(),
            epoch_check_interval: Duration::from_millis(500),
            resync_grace: Duration::from_secs(1),
        }
    }
}

/// The Redis store. Cheap to clone; the last clone dropped stops the subscriber task.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    keys: Keys,
    channel: String,
    epoch_key: String,
    timeout: Duration,
    cluster: bool,
    /// Receivers come from `subscribe`; the subscriber task holds a sender clone.
    changes: broadcast::Sender<Change>,
    /// `true` while the subscriber task is subscribed.
    subscribed: watch::Receiver<bool>,
    /// Written by the subscriber task, see `Subscriber::delivered`.
    delivered: Arc<AtomicU64>,
    /// Aborted when the last store handle drops.
    subscriber: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &self.inner.cluster)
            .field("channel", &self.inner.channel)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

impl RedisStore {
    /// Prepares the connection (made lazily by the first command) and starts the change
    /// subscriber, waiting at most `timeout` for it to subscribe. Fails only on a malformed URL
    /// or key prefix. Must run inside a Tokio runtime.
    pub async fn connect(options: RedisOptions) -> Result<RedisStore, StoreError> {
        if options.key_prefix.contains(['{', '}']) {
            return Err(StoreError::Unavailable(format!(
                "invalid store configuration: key prefix {:?} contains a brace",
                options.key_prefix
            )));
        }
        if options.urls.is_empty() {
            return Err(StoreError::Unavailable(
                "invalid store configuration: no Redis URL".to_owned(),
            ));
        }
        let connection = Connection::open(&options.urls, options.cluster, options.timeout)?;
        let keys = Keys::new(&options.key_prefix);
        let (changes, _) = broadcast::channel(CHANGE_CAPACITY);
        let (subscribed_tx, subscribed) = watch::channel(false);
        let delivered = Arc::new(AtomicU64::new(0));
        let task = Subscriber {
            // Standalone uses the first URL for commands, so the subscription uses it too.
            urls: if options.cluster {
                options.urls.clone()
            } else {
                options.urls[..1].to_vec()
            },
            channel: keys.channel(),
            connection: connection.clone(),
            epoch_key: keys.epoch(),
            timeout: options.timeout,
            check_interval: options.epoch_check_interval,
            grace: options.resync_grace,
            changes: changes.clone(),
            subscribed: subscribed_tx,
            delivered: delivered.clone(),
        };
        let subscriber = tokio::spawn(task.run());
        let store = RedisStore {
            inner: Arc::new(Inner {
                connection,
                channel: keys.channel(),
                epoch_key: keys.epoch(),
                keys,
                timeout: options.timeout,
                cluster: options.cluster,
                changes,
                subscribed,
                delivered,
                subscriber,
            }),
        };
        let mut ready = store.inner.subscribed.clone();
        // Not an error if Redis is down now: `ping` reports readiness, and the subscriber
        // sends `Resync` once it is up.
        let _ = tokio::time::timeout(options.timeout, ready.wait_for(|up| *up)).await;
        Ok(store)
    }

    /// Receives every change made through any store sharing this Redis and prefix.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// Whether the change subscription is up.
    pub fn is_subscribed(&self) -> bool {
        *self.inner.subscribed.borrow()
    }

    /// Every change up to this epoch was delivered to subscribers here (or covered by a
    /// `Resync`).
    pub fn delivered_epoch(&self) -> u64 {
        self.inner.delivered.load(Ordering::Acquire)
    }

    /// The shared change epoch, as Redis has it now.
    pub async fn current_epoch(&self) -> Result<u64, StoreError> {
        self.bounded(async {
            let epoch: Option<u64> = ::redis::cmd("GET")
                .arg(&self.inner.epoch_key)
                .query_async(&mut self.con())
                .await
                .map_err(redis_error)?;
            Ok(epoch.unwrap_or(0))
        })
        .await
    }

    /// `PING`, within the timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async {
            ::redis::cmd("PING")
                .query_async::<::redis::Value>(&mut self.con())
                .await
                .map(|_| ())
                .map_err(redis_error)
        })
        .await
    }

    fn con(&self) -> Connection {
        self.inner.connection.clone()
    }

    /// Runs one operation under the store's timeout.
    async fn bounded<T>(
        &self,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.inner.timeout, operation).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable(format!(
                "redis: no answer within {} ms",
                self.inner.timeout.as_millis()
            ))),
        }
    }

    async fn take_epoch(&self) -> Result<u64, StoreError> {
        ::redis::cmd("INCR")
            .arg(&self.inner.epoch_key)
            .query_async(&mut self.con())
            .await
            .map_err(redis_error)
    }

    /// Publishes that `epoch` changed nothing, so no subscriber waits for it.
    async fn publish_noop(&self, epoch: u64) -> Result<(), StoreError> {
        ::redis::cmd("PUBLISH")
            .arg(&self.inner.channel)
            .arg(format!("{epoch} noop"))
            .query_async::<::redis::Value>(&mut self.con())
            .await
            .map(|_| ())
            .map_err(redis_error)
    }

    async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        ::redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.con())
            .await
            .map_err(redis_error)
    }

    /// `SET key value NX GET`: `None` when we created it, else the value already there.
    async fn set_once(&self, key: &str, value: &str) -> Result<Option<String>, StoreError> {
        ::redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("GET")
            .query_async(&mut self.con())
            .await
            .map_err(redis_error)
    }

    async fn run(
        &self,
        invocation: &mut ::redis::ScriptInvocation<'_>,
    ) -> Result<::redis::Value, StoreError> {
        invocation
            .invoke_async(&mut self.con())
            .await
            .map_err(redis_error)
    }

    /// Undoes a locator or guard we wrote, if it still holds our value. Best effort: a leftover
    /// one is harmless (readers check the slot it points to).
    async fn delete_if(&self, key: &str, value: &str) {
        let mut invocation = script(&scripts::DELETE_IF);
        invocation.key(key).arg(value);
        if let Err(e) = self.run(&mut invocation).await {
            tracing::debug!(error = %e, "Could not undo a locator.");
        }
    }

    /// The consents of one customer, oldest first, in one consistent read.
    async fn read_customer(&self, customer: &CustomerId) -> Result<Vec<ConsentRecord>, StoreError> {
        let keys = self.inner.keys.customer(customer);
        let (order, consents, revoked): (
            Vec<String>,
            HashMap<String, String>,
            HashMap<String, String>,
        ) = ::redis::pipe()
            .atomic()
            .cmd("LRANGE")
            .arg(&keys.order)
            .arg(0)
            .arg(-1)
            .cmd("HGETALL")
            .arg(&keys.consents)
            .cmd("HGETALL")
            .arg(&keys.revoked)
            .query_async(&mut self.con())
            .await
            .map_err(redis_error)?;
        let mut out = Vec::with_capacity(order.len());
        for id in order {
            if let Some(json) = consents.get(&id) {
                out.push(assemble(
                    &keys.consents,
                    json,
                    revoked.get(&id).map(String::as_str),
                )?);
            }
        }
        Ok(out)
    }

    /// The customer a locator names.
    async fn customer_at(&self, locator: &str) -> Result<Option<CustomerId>, StoreError> {
        match self.get(locator).await? {
            None => Ok(None),
            Some(c) => CustomerId::parse(&c)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    key: locator.to_owned(),
                    reason: e.to_string(),
                }),
        }
    }

    /// Where a code's records live.
    async fn code_location(
        &self,
        code: &str,
    ) -> Result<Option<(CampaignId, PartnerId)>, StoreError> {
        let key = self.inner.keys.code_locator(code);
        match self.get(&key).await? {
            None => Ok(None),
            Some(text) => parse_location(&text)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt {
                    key,
                    reason: format!("not a location: {text:?}"),
                }),
        }
    }

    async fn read_consent(&self, id: &ConsentId) -> Result<Option<ConsentRecord>, StoreError> {
        let Some(customer) = self
            .customer_at(&self.inner.keys.consent_locator(id))
            .await?
        else {
            return Ok(None);
        };
        let keys = self.inner.keys.customer(&customer);
        let (json, revoked): (Option<String>, Option<String>) = ::redis::pipe()
            .atomic()
            .cmd("HGET")
            .arg(&keys.consents)
            .arg(id.as_str())
            .cmd("HGET")
            .arg(&keys.revoked)
            .arg(id.as_str())
            .query_async(&mut self.con())
            .await
            .map_err(redis_error)?;
        json.map(|json| assemble(&keys.consents, &json, revoked.as_deref()))
            .transpose()
    }
}

// === impl ConsentStore ===

impl ConsentStore for RedisStore {
    async fn grant(&self, record: ConsentRecord) -> Result<GrantOutcome, StoreError> {
        self.bounded(async {
            let keys = &self.inner.keys;
            let customer = record.customer_id.as_str();
            let id_locator = keys.consent_locator(&record.consent_id);
            let ref_locator = keys.ref_locator(&record.partner_id, &record.customer_ref);
            // Three slots, three independent commands: one round trip.
            let (id_owner, ref_owner, epoch) = tokio::try_join!(
                self.set_once(&id_locator, customer),
                self.set_once(&ref_locator, customer),
                self.take_epoch(),
            )?;
            if id_owner.as_deref().is_some_and(|owner| owner != customer) {
                self.publish_noop(epoch).await?;
                // The id is another customer's grant: refuse, as the embedded store does.
                return match self.read_consent(&record.consent_id).await? {
                    Some(existing) => Ok(GrantOutcome::AlreadyGranted(existing)),
                    None => Err(StoreError::Corrupt {
                        key: id_locator,
                        reason: "consent id claimed by another customer".to_owned(),
                    }),
                };
            }
            if ref_owner.as_deref().is_some_and(|owner| owner != customer) {
                self.publish_noop(epoch).await?;
                return Err(StoreError::Corrupt {
                    key: ref_locator,
                    reason: "customer ref already maps to another customer".to_owned(),
                });
            }
            let c = keys.customer(&record.customer_id);
            let revoked_at = match record.status {
                ConsentStatus::Active => String::new(),
                ConsentStatus::Revoked { revoked_at } => revoked_at.0.to_string(),
            };
            let mut invocation = script(&scripts::GRANT);
            invocation
                .key(&c.consents)
                .key(&c.revoked)
                .key(&c.meta)
                .key(&c.active)
                .key(&c.order)
                .arg(record.consent_id.as_str())
                .arg(active_field(&record.partner_id, &record.purpose))
                .arg(encode(&record)?)
                .arg(record.granted_at.0)
                .arg(record.expires_at.0)
                .arg(revoked_at)
                .arg(&self.inner.channel)
                .arg(epoch);
            let reply = Reply::new("grant", self.run(&mut invocation).await?)?;
            match reply.outcome()?.as_str() {
                "granted" => Ok(GrantOutcome::Granted(record)),
                "exists" => Ok(GrantOutcome::AlreadyGranted(assemble(
                    &c.consents,
                    &reply.text(1)?,
                    reply.opt_text(2)?.as_deref(),
                )?)),
                "active" => Ok(GrantOutcome::AlreadyGranted(assemble(
                    &c.consents,
                    &reply.text(1)?,
                    None,
                )?)),
                other => Err(unexpected("grant", other)),
            }
        })
        .await
    }

    async fn revoke(&self, id: &ConsentId, now: UnixTime) -> Result<RevokeOutcome, StoreError> {
        self.bounded(async {
            let locator = self.inner.keys.consent_locator(id);
            let (customer, epoch) =
                tokio::try_join!(self.customer_at(&locator), self.take_epoch())?;
            let Some(customer) = customer else {
                self.publish_noop(epoch).await?;
                return Ok(RevokeOutcome::NotFound);
            };
            let c = self.inner.keys.customer(&customer);
            let mut invocation = script(&scripts::REVOKE);
            invocation
                .key(&c.consents)
                .key(&c.revoked)
                .key(&c.meta)
                .key(&c.active)
                .arg(id.as_str())
                .arg(now.0)
                .arg(&self.inner.channel)
                .arg(epoch);
            let reply = Reply::new("revoke", self.run(&mut invocation).await?)?;
            match reply.outcome()?.as_str() {
                "missing" => Ok(RevokeOutcome::NotFound),
                "already" => {
                    let at = reply.text(2)?;
                    let record = assemble(&c.consents, &reply.text(1)?, Some(at.as_str()))?;
                    Ok(RevokeOutcome::AlreadyRevoked(record))
                }
                "revoked" => {
                    let at = now.0.to_string();
                    let record = assemble(&c.consents, &reply.text(1)?, Some(at.as_str()))?;
                    Ok(RevokeOutcome::Revoked(record))
                }
                other => Err(unexpected("revoke", other)),
            }
        })
        .await
    }

    async fn consent(&self, id: &ConsentId) -> Result<Option<ConsentRecord>, StoreError> {
        self.bounded(self.read_consent(id)).await
    }

    async fn consents_of_customer(
        &self,
        customer: &CustomerId,
    ) -> Result<Vec<ConsentRecord>, StoreError> {
        self.bounded(self.read_customer(customer)).await
    }

    async fn consents_by_ref(
        &self,
        partner: &PartnerId,
        customer_ref: &CustomerRef,
    ) -> Result<Vec<ConsentRecord>, StoreError> {
        self.bounded(async {
            let locator = self.inner.keys.ref_locator(partner, customer_ref);
            let Some(customer) = self.customer_at(&locator).await? else {
                return Ok(Vec::new());
            };
            let mut consents = self.read_customer(&customer).await?;
            consents.retain(|c| c.partner_id == *partner && c.customer_ref == *customer_ref);
            Ok(consents)
        })
        .await
    }
}

// === impl RevocationStore ===

impl RevocationStore for RedisStore {
    async fn revoke_token(&self, jti: &str, expires_at: UnixTime) -> Result<(), StoreError> {
        self.bounded(async {
            // Redis expires by its own clock: keep the id until the token is dead by the wall
            // clock, plus a margin for skew between instances.
            let ttl = (expires_at.0 - UnixTime::now().0).max(0) + REVOCATION_MARGIN_SECS;
            let epoch = self.take_epoch().await?;
            let mut invocation = script(&scripts::REVOKE_TOKEN);
            invocation
                .key(self.inner.keys.revoked_token(jti))
                .arg(ttl)
                .arg(&self.inner.channel)
                .arg(epoch)
                .arg(jti);
            self.run(&mut invocation).await.map(|_| ())
        })
        .await
    }

    async fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        self.bounded(async {
            ::redis::cmd("EXISTS")
                .arg(self.inner.keys.revoked_token(jti))
                .query_async(&mut self.con())
                .await
                .map_err(redis_error)
        })
        .await
    }
}

// === impl IdempotencyStore ===

impl IdempotencyStore for RedisStore {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &[u8; 32],
        now: UnixTime,
        ttl_secs: u64,
    ) -> Result<IdempotencyClaim, StoreError> {
        self.bounded(async {
            let ttl = i64::try_from(ttl_secs).unwrap_or(i64::MAX);
            let mut invocation = script(&scripts::CLAIM);
            invocation
                .key(self.inner.keys.idempotency(key))
                .arg(&fingerprint[..])
                .arg(now.0)
                .arg(ttl)
                .arg(now.0.saturating_add(ttl));
            let reply = Reply::new("claim", self.run(&mut invocation).await?)?;
            match reply.outcome()?.as_str() {
                "new" => Ok(IdempotencyClaim::New),
                "mismatch" => Ok(IdempotencyClaim::Mismatch),
                "progress" => Ok(IdempotencyClaim::InProgress),
                "replay" => {
                    let status = u16::try_from(reply.int(1)?)
                        .map_err(|_| unexpected("claim", "status out of range"))?;
                    let body = reply.opt_bytes(2).unwrap_or_default();
                    Ok(IdempotencyClaim::Replay(StoredResponse { status, body }))
                }
                other => Err(unexpected("claim", other)),
            }
        })
        .await
    }

    async fn complete(&self, key: &str, response: StoredResponse) -> Result<(), StoreError> {
        self.bounded(async {
            let mut invocation = script(&scripts::COMPLETE);
            invocation
                .key(self.inner.keys.idempotency(key))
                .arg(response.status)
                .arg(response.body);
            self.run(&mut invocation).await.map(|_| ())
        })
        .await
    }

    async fn abandon(&self, key: &str) -> Result<(), StoreError> {
        self.bounded(async {
            let mut invocation = script(&scripts::ABANDON);
            invocation.key(self.inner.keys.idempotency(key));
            self.run(&mut invocation).await.map(|_| ())
        })
        .await
    }
}

// === impl ReferralStore ===

/// Day counters outlive their day a little, for late readers and clock skew.
const DAY_COUNTER_TTL_SECS: i64 = 3 * 86_400;

impl ReferralStore for RedisStore {
    async fn issue_code(
        &self,
        record: CodeRecord,
        daily_cap: u32,
    ) -> Result<IssueOutcome, StoreError> {
        self.bounded(async {
            let keys = &self.inner.keys;
            let locator = keys.code_locator(&record.code);
            let here = location(&record.campaign_id, &record.partner_id);
            let previous = self.set_once(&locator, &here).await?;
            if previous.as_deref().is_some_and(|p| p != here) {
                return Err(duplicate_code(&record));
            }
            let r = keys.referral(&record.campaign_id, &record.partner_id);
            let mut invocation = script(&scripts::ISSUE_CODE);
            invocation
                .key(r.code(&record.code))
                .key(r.day(record.issued_at.day()))
                .key(r.stats())
                .arg(encode(&record)?)
                .arg(daily_cap)
                .arg(DAY_COUNTER_TTL_SECS);
            let reply = Reply::new("issue_code", self.run(&mut invocation).await?)?;
            match reply.outcome()?.as_str() {
                "issued" => Ok(IssueOutcome::Issued {
                    issued_today: u32::try_from(reply.int(1)?).unwrap_or(u32::MAX),
                }),
                "cap" => {
                    if previous.is_none() {
                        self.delete_if(&locator, &here).await;
                    }
                    Ok(IssueOutcome::CapReached)
                }
                "duplicate" => Err(duplicate_code(&record)),
                other => Err(unexpected("issue_code", other)),
            }
        })
        .await
    }

    async fn code(&self, code: &str) -> Result<Option<CodeRecord>, StoreError> {
        self.bounded(async {
            let Some((campaign, partner)) = self.code_location(code).await? else {
                return Ok(None);
            };
            let key = self.inner.keys.referral(&campaign, &partner).code(code);
            self.get(&key)
                .await?
                .map(|json| decode(&key, json.as_bytes()))
                .transpose()
        })
        .await
    }

    async fn code_conversions(&self, code: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        self.bounded(async {
            let Some((campaign, partner)) = self.code_location(code).await? else {
                return Ok(BTreeMap::new());
            };
            let key = self
                .inner
                .keys
                .referral(&campaign, &partner)
                .conversions(code);
            let counts: HashMap<String, u64> = ::redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut self.con())
                .await
                .map_err(redis_error)?;
            Ok(counts.into_iter().collect())
        })
        .await
    }

    async fn record_event(
        &self,
        event: ReferralEvent,
        cap_per_code: u32,
    ) -> Result<EventOutcome, StoreError> {
        self.bounded(async {
            let keys = &self.inner.keys;
            let Some((campaign, partner)) = self.code_location(&event.code).await? else {
                return Ok(EventOutcome::UnknownCode);
            };
            let here = location(&campaign, &partner);
            let guard = keys.event_guard(&event.event_id);
            let owner = self.set_once(&guard, &here).await?;
            if let Some(owner) = owner.as_deref().filter(|o| *o != here.as_str()) {
                // This event id belongs to a code elsewhere: answer with what was counted there.
                let Some((c, p)) = parse_location(owner) else {
                    return Err(StoreError::Corrupt {
                        key: guard,
                        reason: format!("not a location: {owner:?}"),
                    });
                };
                let first_key = keys.referral(&c, &p).event(&event.event_id);
                return match self.get(&first_key).await? {
                    Some(json) => Ok(EventOutcome::Replay(decode(&first_key, json.as_bytes())?)),
                    None => Err(StoreError::Unavailable(format!(
                        "event id {:?} is being recorded for another code; retry later",
                        event.event_id
                    ))),
                };
            }
            let r = keys.referral(&campaign, &partner);
            let reward = i64::try_from(event.reward_minor).unwrap_or(i64::MAX);
            let mut invocation = script(&scripts::RECORD_EVENT);
            invocation
                .key(r.event(&event.event_id))
                .key(r.code(&event.code))
                .key(r.conversions(&event.code))
                .key(r.conversions_total(&event.code))
                .key(r.stats())
                .arg(encode(&event)?)
                .arg(cap_per_code)
                .arg(&event.event_type)
                .arg(&event.currency)
                .arg(reward);
            let reply = Reply::new("record_event", self.run(&mut invocation).await?)?;
            let outcome = match reply.outcome()?.as_str() {
                "counted" => EventOutcome::Counted {
                    conversions: u32::try_from(reply.int(1)?).unwrap_or(u32::MAX),
                },
                "replay" => {
                    let key = r.event(&event.event_id);
                    EventOutcome::Replay(decode(&key, reply.text(1)?.as_bytes())?)
                }
                "cap" => EventOutcome::CapReached,
                "unknown" => EventOutcome::UnknownCode,
                other => return Err(unexpected("record_event", other)),
            };
            if matches!(
                outcome,
                EventOutcome::CapReached | EventOutcome::UnknownCode
            ) && owner.is_none()
            {
                // Nothing was stored: free the event id for a later retry.
                self.delete_if(&guard, &here).await;
            }
            Ok(outcome)
        })
        .await
    }

    async fn campaign_stats(
        &self,
        campaign: &CampaignId,
        partner: &PartnerId,
    ) -> Result<CampaignStats, StoreError> {
        self.bounded(async {
            let key = self.inner.keys.referral(campaign, partner).stats();
            let value: ::redis::Value = ::redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut self.con())
                .await
                .map_err(redis_error)?;
            let mut stats = CampaignStats::default();
            for (field, count) in pairs(value) {
                let field = String::from_utf8_lossy(&field);
                let count: u64 = std::str::from_utf8(&count)
                    .ok()
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| StoreError::Corrupt {
                        key: key.clone(),
                        reason: format!("{field} is not a count"),
                    })?;
                if field == "codes" {
                    stats.codes_issued = count;
                } else if let Some(event_type) = field.strip_prefix("conv:") {
                    stats.conversions.insert(event_type.to_owned(), count);
                } else if let Some(currency) = field.strip_prefix("reward:") {
                    stats.rewards_minor.insert(currency.to_owned(), count);
                }
            }
            Ok(stats)
        })
        .await
    }
}

// === helpers ===

fn script(script: &'static LazyLock<Script>) -> ::redis::ScriptInvocation<'static> {
    script.prepare_invoke()
}

/// `"<partner>|<purpose>"`: partner ids are slugs, so the first `|` splits it.
fn active_field(partner: &PartnerId, purpose: &str) -> String {
    format!("{partner}|{purpose}")
}

/// A record as granted, with the revocation stored beside it applied.
fn assemble(key: &str, json: &str, revoked_at: Option<&str>) -> Result<ConsentRecord, StoreError> {
    let mut record: ConsentRecord = decode(key, json.as_bytes())?;
    if let Some(at) = revoked_at {
        let revoked_at = at.parse().map(UnixTime).map_err(|_| StoreError::Corrupt {
            key: key.to_owned(),
            reason: format!("revoked_at {at:?} is not a time"),
        })?;
        record.status = ConsentStatus::Revoked { revoked_at };
    }
    Ok(record)
}

fn duplicate_code(record: &CodeRecord) -> StoreError {
    StoreError::Corrupt {
        key: format!("code:{}", record.code),
        reason: "code already issued with another record".to_owned(),
    }
}

fn unexpected(what: &str, outcome: &str) -> StoreError {
    StoreError::Corrupt {
        key: what.to_owned(),
        reason: format!("unexpected script outcome {outcome:?}"),
    }
}
