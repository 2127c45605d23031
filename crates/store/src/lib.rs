//! Shared state of the partner gateway.
//!
//! This crate owns everything the gateway must remember across requests, restarts and
//! instances: consent grants and the pairwise customer references they issue, revoked token
//! ids, idempotency keys, referral codes and their counters. It does not decide anything: the
//! rules (which fields to release, whether a campaign is active, caps) are applied by the
//! concern crates, which call these traits with the values the rules need.
//!
//! Two backends implement every trait:
//! - [`embedded`]: a redb file on local disk, for one node. A write returns only after it is
//!   durable (redb `Durability::Immediate`), so a 2xx answered on it survives `kill -9`.
//! - [`redis`]: Redis standalone or Cluster, for several gateway instances. Keys carry hash
//!   tags so every multi-key update runs in one slot, atomically (a Lua script); the key layout
//!   is tabled in the module docs.
//!
//! [`Store`] wraps either backend behind one type chosen by [`StoreConfig`]. Change
//! notifications (consent grants and revocations, token revocations) reach every instance
//! through [`Store::subscribe`]: an in-process broadcast for the embedded backend, Redis
//! pub/sub for the Redis backend.
//!
//! # Layout
//!
//! - [`model`]: the records, outcomes, [`StoreError`] and the four traits
//!   ([`ConsentStore`], [`RevocationStore`], [`IdempotencyStore`], [`ReferralStore`]).
//! - [`embedded`]: the redb backend, [`EmbeddedStore`].
//! - [`redis`]: the Redis backend, [`RedisStore`], its [`RedisOptions`] and key layout.
//! - this file: [`Store`] and [`StoreConfig`].
//!
//! # Change notifications
//!
//! A consumer that caches answers (consents, token checks) subscribes once and drops:
//! - the entries of a [`Change::Consent`]'s `(partner_id, customer_ref)` or a
//!   [`Change::TokenRevoked`]'s `jti`;
//! - **everything** on [`Change::Resync`], and also when its receiver reports
//!   `RecvError::Lagged` (it missed changes it cannot name); [`recv_change`] does that mapping.
//!
//! The Redis backend sends `Resync` after every (re)subscription and whenever its epoch check
//! finds a change whose message never arrived, so a lost message never leaves a stale cache.
//!
//! # Example
//!
//! ```no_run
//! use gateway_store::{ConsentStore, Store, StoreConfig};
//!
//! # async fn run() -> Result<(), gateway_store::StoreError> {
//! let store = Store::open(StoreConfig::Embedded { path: "state/gateway.redb".into() }).await?;
//! let mut changes = store.subscribe();
//! store.ping().await?; // readiness
//! let customer = gateway_core::CustomerId::parse("C000001").expect("valid id");
//! let consents = store.consents_of_customer(&customer).await?;
//! # let _ = (consents, changes.try_recv());
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod embedded;
pub mod model;
pub mod redis;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::broadcast;

use gateway_core::time::UnixTime;
use gateway_core::{CampaignId, ConsentId, CustomerId, CustomerRef, PartnerId};

pub use crate::embedded::EmbeddedStore;
pub use crate::model::*;
pub use crate::redis::{RedisOptions, RedisStore};

/// Default [`StoreConfig::Redis`] `timeout`: the bound on one store operation. 20 ms suits hot
/// reads but not writes that fsync on an AOF-enabled Redis, so one generous value serves all.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// Which backend to open. Mirrors `gateway_config::StoreSettings` without depending on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A redb file on local disk: one node.
    Embedded {
        /// The database file (created if missing; its directory must exist).
        path: PathBuf,
    },
    /// Redis: several gateway instances share state.
    Redis {
        /// `redis://` URL (standalone: the first is used) or seed nodes (cluster).
        urls: Vec<String>,
        /// Whether the URLs are Redis Cluster nodes.
        cluster: bool,
        /// Bound on one store operation, all its round trips included
        /// ([`DEFAULT_REDIS_TIMEOUT`] is a good value).
        timeout: Duration,
        /// Prepended to every key and to the change channel; must not contain `{` or `}`.
        key_prefix: String,
    },
}

/// The gateway's state store: one of the two backends, chosen by configuration.
///
/// Implements every store trait by delegation. Cheap to clone; clones share connections,
/// the database and the change broadcast.
#[derive(Debug, Clone)]
pub enum Store {
    /// The redb backend.
    Embedded(EmbeddedStore),
    /// The Redis backend.
    Redis(RedisStore),
}

impl Store {
    /// Opens the configured backend.
    ///
    /// The embedded file is opened (and repaired after a crash) on the blocking pool. Redis
    /// connections are made lazily: `open` fails only on a malformed URL or prefix, and waits at
    /// most `timeout` for the change subscription; use [`Store::ping`] for readiness.
    pub async fn open(config: StoreConfig) -> Result<Store, StoreError> {
        match config {
            StoreConfig::Embedded { path } => {
                let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(path))
                    .await
                    .map_err(|e| StoreError::Unavailable(format!("opening the store: {e}")))??;
                Ok(Store::Embedded(store))
            }
            StoreConfig::Redis {
                urls,
                cluster,
                timeout,
                key_prefix,
            } => {
                let options = RedisOptions {
                    cluster,
                    timeout,
                    key_prefix,
                    ..RedisOptions::new(urls)
                };
                Ok(Store::Redis(RedisStore::connect(options).await?))
            }
        }
    }

    /// Receives every change made through any instance sharing this state (see the crate docs
    /// for what to do with each [`Change`], and with `RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        match self {
            Store::Embedded(s) => s.subscribe(),
            Store::Redis(s) => s.subscribe(),
        }
    }

    /// Whether the backend answers now (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.ping().await,
            Store::Redis(s) => s.ping().await,
        }
    }

    /// `"embedded"` or `"redis"`, for logs, metrics and the admin API.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Embedded(_) => "embedded",
            Store::Redis(_) => "redis",
        }
    }

    /// The change epoch: a counter bumped by every change, shared by every instance. Comparing
    /// it with [`Store::delivered_epoch`] tells how many changes are not yet delivered here.
    pub async fn current_epoch(&self) -> Result<u64, StoreError> {
        match self {
            Store::Embedded(s) => s.current_epoch().await,
            Store::Redis(s) => s.current_epoch().await,
        }
    }

    /// The highest epoch whose change this instance has delivered to its subscribers
    /// (embedded: the same as [`Store::current_epoch`], as delivery is in-process).
    pub async fn delivered_epoch(&self) -> Result<u64, StoreError> {
        match self {
            Store::Embedded(s) => s.current_epoch().await,
            Store::Redis(s) => Ok(s.delivered_epoch()),
        }
    }

    /// Whether changes from other instances currently reach [`Store::subscribe`] (embedded:
    /// always; Redis: while the pub/sub subscription is up).
    pub fn is_subscribed(&self) -> bool {
        match self {
            Store::Embedded(_) => true,
            Store::Redis(s) => s.is_subscribed(),
        }
    }
}

/// Receives the next change from a [`Store::subscribe`] receiver, turning a lag (this receiver
/// fell so far behind that changes were dropped) into [`Change::Resync`]. `None` once every
/// handle of the store is gone.
pub async fn recv_change(changes: &mut broadcast::Receiver<Change>) -> Option<Change> {
    match changes.recv().await {
        Ok(change) => Some(change),
        Err(broadcast::error::RecvError::Lagged(missed)) => {
            tracing::debug!(missed, "Change receiver lagged; caches must resync.");
            Some(Change::Resync)
        }
        Err(broadcast::error::RecvError::Closed) => None,
    }
}

// === impl the traits by delegation ===

impl ConsentStore for Store {
    async fn grant(&self, record: ConsentRecord) -> Result<GrantOutcome, StoreError> {
        match self {
            Store::Embedded(s) => s.grant(record).await,
            Store::Redis(s) => s.grant(record).await,
        }
    }

    async fn revoke(&self, id: &ConsentId, now: UnixTime) -> Result<RevokeOutcome, StoreError> {
        match self {
            Store::Embedded(s) => s.revoke(id, now).await,
            Store::Redis(s) => s.revoke(id, now).await,
        }
    }

    async fn consent(&self, id: &ConsentId) -> Result<Option<ConsentRecord>, StoreError> {
        match self {
            Store::Embedded(s) => s.consent(id).await,
            Store::Redis(s) => s.consent(id).await,
        }
    }

    async fn consents_of_customer(
        &self,
        customer: &CustomerId,
    ) -> Result<Vec<ConsentRecord>, StoreError> {
        match self {
            Store::Embedded(s) => s.consents_of_customer(customer).await,
            Store::Redis(s) => s.consents_of_customer(customer).await,
        }
    }

    async fn consents_by_ref(
        &self,
        partner: &PartnerId,
        customer_ref: &CustomerRef,
    ) -> Result<Vec<ConsentRecord>, StoreError> {
        match self {
            Store::Embedded(s) => s.consents_by_ref(partner, customer_ref).await,
            Store::Redis(s) => s.consents_by_ref(partner, customer_ref).await,
        }
    }
}

impl RevocationStore for Store {
    async fn revoke_token(&self, jti: &str, expires_at: UnixTime) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.revoke_token(jti, expires_at).await,
            Store::Redis(s) => s.revoke_token(jti, expires_at).await,
        }
    }

    async fn is_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        match self {
            Store::Embedded(s) => s.is_token_revoked(jti).await,
            Store::Redis(s) => s.is_token_revoked(jti).await,
        }
    }
}

impl IdempotencyStore for Store {
    async fn claim(
        &self,
        key: &str,
        fingerprint: &[u8; 32],
        now: UnixTime,
        ttl_secs: u64,
    ) -> Result<IdempotencyClaim, StoreError> {
        match self {
            Store::Embedded(s) => s.claim(key, fingerprint, now, ttl_secs).await,
            Store::Redis(s) => s.claim(key, fingerprint, now, ttl_secs).await,
        }
    }

    async fn complete(&self, key: &str, response: StoredResponse) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.complete(key, response).await,
            Store::Redis(s) => s.complete(key, response).await,
        }
    }

    async fn abandon(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.abandon(key).await,
            Store::Redis(s) => s.abandon(key).await,
        }
    }
}

impl ReferralStore for Store {
    async fn issue_code(
        &self,
        record: CodeRecord,
        daily_cap: u32,
    ) -> Result<IssueOutcome, StoreError> {
        match self {
            Store::Embedded(s) => s.issue_code(record, daily_cap).await,
            Store::Redis(s) => s.issue_code(record, daily_cap).await,
        }
    }

    async fn code(&self, code: &str) -> Result<Option<CodeRecord>, StoreError> {
        match self {
            Store::Embedded(s) => s.code(code).await,
            Store::Redis(s) => s.code(code).await,
        }
    }

    async fn code_conversions(&self, code: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        match self {
            Store::Embedded(s) => s.code_conversions(code).await,
            Store::Redis(s) => s.code_conversions(code).await,
        }
    }

    async fn record_event(
        &self,
        event: ReferralEvent,
        cap_per_code: u32,
    ) -> Result<EventOutcome, StoreError> {
        match self {
            Store::Embedded(s) => s.record_event(event, cap_per_code).await,
            Store::Redis(s) => s.record_event(event, cap_per_code).await,
        }
    }

    async fn campaign_stats(
        &self,
        campaign: &CampaignId,
        partner: &PartnerId,
    ) -> Result<CampaignStats, StoreError> {
        match self {
            Store::Embedded(s) => s.campaign_stats(campaign, partner).await,
            Store::Redis(s) => s.campaign_stats(campaign, partner).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lagging_receiver_gets_resync_instead_of_missed_changes() {
        let (sender, mut changes) = broadcast::channel(2);
        for n in 0..3 {
            sender
                .send(Change::TokenRevoked {
                    jti: format!("j{n}"),
                })
                .unwrap();
        }
        assert_eq!(recv_change(&mut changes).await, Some(Change::Resync));
        assert_eq!(
            recv_change(&mut changes).await,
            Some(Change::TokenRevoked {
                jti: "j1".to_owned()
            })
        );
        drop(sender);
        assert_eq!(
            recv_change(&mut changes).await,
            Some(Change::TokenRevoked {
                jti: "j2".to_owned()
            })
        );
        assert_eq!(recv_change(&mut changes).await, None);
    }
}
