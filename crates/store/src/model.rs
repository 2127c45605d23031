//! Records the store keeps and the traits over them.
//!
//! Every trait method is one atomic operation on the backend.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

use gateway_core::time::UnixTime;
use gateway_core::{CampaignId, ConsentId, CustomerId, CustomerRef, PartnerId};

/// Why a store operation failed. Every variant is a dependency failure (the caller answers
/// 503 and changes nothing), except [`StoreError::Corrupt`], which is a bug or tampering.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or timed out.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded.
    #[error("stored record {key} is corrupt: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// How a consented field may be released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disclosure {
    /// As stored upstream.
    Plain,
    /// Masked by the field's rule.
    Masked,
}

/// Where a consent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ConsentStatus {
    /// In force (until `expires_at`).
    Active,
    /// Withdrawn by the customer.
    Revoked {
        /// When.
        revoked_at: UnixTime,
    },
}

/// One consent grant: a customer lets one partner see some fields for one purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    /// Its id.
    pub consent_id: ConsentId,
    /// The broker's internal customer id (never shown to the partner).
    pub customer_id: CustomerId,
    /// The partner.
    pub partner_id: PartnerId,
    /// The pairwise reference of (customer, partner).
    pub customer_ref: CustomerRef,
    /// Why the partner may see the data (one of the partner's purposes).
    pub purpose: String,
    /// Field name → how it may be released.
    pub fields: BTreeMap<String, Disclosure>,
    /// When it was granted.
    pub granted_at: UnixTime,
    /// When it stops applying.
    pub expires_at: UnixTime,
    /// Whether the customer gave a second authorisation (needed for `secret` fields).
    pub second_authorisation: bool,
    /// Active or revoked.
    pub status: ConsentStatus,
}

/// The outcome of recording a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantOutcome {
    /// Stored.
    Granted(ConsentRecord),
    /// An active consent for the same (customer, partner, purpose) exists; nothing stored.
    AlreadyGranted(ConsentRecord),
}

/// The outcome of a revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// Revoked now.
    Revoked(ConsentRecord),
    /// It was already revoked; nothing changed.
    AlreadyRevoked(ConsentRecord),
    /// No such consent.
    NotFound,
}

/// Consent grants and the pairwise references they issue.
pub trait ConsentStore: Send + Sync {
    /// Stores a grant, its ref → customer mapping (for its partner only) and the customer
    /// index, atomically; refuses a second active grant for (customer, partner, purpose).
    fn grant(
        &self,
        record: ConsentRecord,
    ) -> impl Future<Output = Result<GrantOutcome, StoreError>> + Send;

    /// Marks a consent revoked at `now`, atomically, and notifies every instance.
    fn revoke(
        &self,
        id: &ConsentId,
        now: UnixTime,
    ) -> impl Future<Output = Result<RevokeOutcome, StoreError>> + Send;

    /// A consent by id.
    fn consent(
        &self,
        id: &ConsentId,
    ) -> impl Future<Output = Result<Option<ConsentRecord>, StoreError>> + Send;

    /// Every consent (any status) of a customer, oldest first.
    fn consents_of_customer(
        &self,
        customer: &CustomerId,
    ) -> impl Future<Output = Result<Vec<ConsentRecord>, StoreError>> + Send;

    /// The consents (any status) reachable through `customer_ref` *for `partner`*. A ref issued
    /// to another partner yields nothing.
    fn consents_by_ref(
        &self,
        partner: &PartnerId,
        customer_ref: &CustomerRef,
    ) -> impl Future<Output = Result<Vec<ConsentRecord>, StoreError>> + Send;
}

/// Revoked access-token ids.
pub trait RevocationStore: Send + Sync {
    /// Records `jti` as revoked until `expires_at` (then it may be forgotten) and notifies
    /// every instance.
    fn revoke_token(
        &self,
        jti: &str,
        expires_at: UnixTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether `jti` is revoked.
    fn is_token_revoked(&self, jti: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// A stored response, replayed for a repeated idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// Body bytes (JSON).
    pub body: Vec<u8>,
}

/// The outcome of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First use: the caller performs the operation and then calls `complete`.
    New,
    /// Used before with the same request fingerprint: replay this response.
    Replay(StoredResponse),
    /// Used before with a different request fingerprint.
    Mismatch,
    /// Claimed by a concurrent request that has not completed yet.
    InProgress,
}

/// Idempotency keys, scoped by the caller (e.g. partner + route), kept for a TTL.
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for a request whose body hashes to `fingerprint`, atomically.
    fn claim(
        &self,
        key: &str,
        fingerprint: &[u8; 32],
        now: UnixTime,
        ttl_secs: u64,
    ) -> impl Future<Output = Result<IdempotencyClaim, StoreError>> + Send;

    /// Stores the response of a claimed key.
    fn complete(
        &self,
        key: &str,
        response: StoredResponse,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Releases a claim whose operation failed without effect, so a retry can proceed.
    fn abandon(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A referral code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    /// The code (Crockford base32 with a check character).
    pub code: String,
    /// The partner that issued it.
    pub partner_id: PartnerId,
    /// Its campaign.
    pub campaign_id: CampaignId,
    /// Optional channel label.
    pub channel: Option<String>,
    /// Optional note.
    pub note: Option<String>,
    /// When it was issued.
    pub issued_at: UnixTime,
}

/// The outcome of issuing a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueOutcome {
    /// Stored; the partner's count for that day is now `issued_today`.
    Issued {
        /// Codes the partner issued for the campaign that UTC day, this one included.
        issued_today: u32,
    },
    /// The daily cap is reached; nothing stored.
    CapReached,
}

/// A conversion reported by an internal service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferralEvent {
    /// The reporter's id for the event (idempotency key).
    pub event_id: String,
    /// The code.
    pub code: String,
    /// `account_opened`, `funded` or `first_trade`.
    pub event_type: String,
    /// When it happened.
    pub occurred_at: UnixTime,
    /// The customer (internal id).
    pub customer_id: CustomerId,
    /// Reward credited, minor units.
    pub reward_minor: u64,
    /// Reward currency.
    pub currency: String,
}

/// The outcome of recording an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    /// Counted now; the code has counted `conversions` events, this one included.
    Counted {
        /// Events counted for the code.
        conversions: u32,
    },
    /// Counted before (same `event_id`); the stored event is returned.
    Replay(ReferralEvent),
    /// The code's conversion cap is reached; nothing stored.
    CapReached,
    /// No such code.
    UnknownCode,
}

/// Per-campaign, per-partner totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignStats {
    /// Codes issued.
    pub codes_issued: u64,
    /// Events counted, by event type.
    pub conversions: BTreeMap<String, u64>,
    /// Rewards, by currency, minor units.
    pub rewards_minor: BTreeMap<String, u64>,
}

/// Referral codes, events and counters.
pub trait ReferralStore: Send + Sync {
    /// Stores a new code unless the partner's count for (campaign, UTC day of `issued_at`)
    /// has reached `daily_cap`; atomically increments that count and the campaign's
    /// `codes_issued`.
    fn issue_code(
        &self,
        record: CodeRecord,
        daily_cap: u32,
    ) -> impl Future<Output = Result<IssueOutcome, StoreError>> + Send;

    /// A code.
    fn code(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<Option<CodeRecord>, StoreError>> + Send;

    /// Conversions counted for a code, by event type.
    fn code_conversions(
        &self,
        code: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, u64>, StoreError>> + Send;

    /// Records an event once per `event_id`, atomically: unless the code's conversions reached
    /// `cap_per_code`, stores the event and increments the code's and campaign's counters.
    fn record_event(
        &self,
        event: ReferralEvent,
        cap_per_code: u32,
    ) -> impl Future<Output = Result<EventOutcome, StoreError>> + Send;

    /// Totals for one partner's codes in one campaign.
    fn campaign_stats(
        &self,
        campaign: &CampaignId,
        partner: &PartnerId,
    ) -> impl Future<Output = Result<CampaignStats, StoreError>> + Send;
}

/// A change every instance must learn about at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A consent was granted or revoked: drop cached answers for this ref.
    Consent {
        /// The partner.
        partner_id: PartnerId,
        /// The pairwise ref.
        customer_ref: CustomerRef,
        /// The consent.
        consent_id: ConsentId,
    },
    /// An access token was revoked.
    TokenRevoked {
        /// Its `jti`.
        jti: String,
    },
    /// Notifications may have been missed (reconnect, lag): drop every cache.
    Resync,
}
