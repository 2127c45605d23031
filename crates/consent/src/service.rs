//! [`ConsentService`]: grants, revocations, listings and the cached lookup behind the tags
//! endpoint, over one [`Store`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use serde::Serialize;

use gateway_core::consent::{
    self as projection, ConsentedFields, Projection, ProjectionError, ReleasePolicy,
};
use gateway_core::fields::FieldCatalogue;
use gateway_core::problem::ProblemType;
use gateway_core::time::{UnixTime, format_rfc3339};
use gateway_core::{ConsentId, CustomerId, CustomerRef, PartnerId};
use gateway_store::{
    ConsentRecord, ConsentStatus, ConsentStore, Disclosure, GrantOutcome, RevokeOutcome, Store,
    StoreError,
};

use crate::cache::{CacheSettings, ConsentCache};
use crate::grant::{GrantError, GrantRequest, new_consent_id, validate_grant};
use crate::policy::PartnerPolicy;
use crate::refs::RefKey;

/// Why consent state could not be established. Customer data is then not released.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// The store could not be reached and no cached answer within the staleness bound exists
    /// (`503 consent-unavailable`, with `Retry-After`).
    #[error("consent state unavailable: {0}")]
    Unavailable(#[source] StoreError),
}

/// Finds the consent that lets a partner read a customer's tags (the strategy of the tags
/// endpoint, implemented by [`ConsentService`]; closures implement it for layer tests).
pub trait LookupConsent: Send + Sync {
    /// The consent reachable through `customer_ref` for this partner that is active, not
    /// expired at `now`, and whose purpose is one of the partner's; `None` for an unknown ref,
    /// another partner's ref, a revoked or expired consent, another purpose, or a suspended
    /// partner (the handler answers all of them with the same 404). When several qualify, the
    /// most recently granted.
    fn active_consent(
        &self,
        partner: &PartnerPolicy,
        customer_ref: &CustomerRef,
        now: UnixTime,
    ) -> impl Future<Output = Result<Option<Arc<ConsentRecord>>, ConsentError>> + Send;
}

/// Consent grants, revocations and lookups for one gateway instance. Cheap to clone; clones
/// share the cache.
#[derive(Clone)]
pub struct ConsentService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    refs: RefKey,
    cache: ConsentCache,
}

/// Where a consent is in its life at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    /// In force.
    Active,
    /// Withdrawn by the customer (whether or not it has also expired).
    Revoked,
    /// Past its expiry.
    Expired,
}

/// How a consent is shown to the consent centre and to its partner: the record without the
/// internal customer id, times in RFC 3339, and its state at a given time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentView<'a> {
    /// The consent.
    pub consent_id: &'a ConsentId,
    /// The pairwise ref of (customer, partner).
    pub customer_ref: &'a CustomerRef,
    /// The partner.
    pub partner_id: &'a PartnerId,
    /// `active`, `revoked` or `expired`.
    pub status: ConsentState,
    /// The purpose.
    pub purpose: &'a str,
    /// Field → `plain` or `masked`.
    pub fields: &'a BTreeMap<String, Disclosure>,
    /// Whether a second authorisation was given.
    pub second_authorisation: bool,
    /// When it was granted.
    pub granted_at: String,
    /// When it expires.
    pub expires_at: String,
    /// When it was revoked, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// The fields of a stored consent, as the core projection reads them (no copy).
#[derive(Debug, Clone, Copy)]
pub struct GrantedFields<'a>(pub &'a BTreeMap<String, Disclosure>);

/// Projects an upstream tag document (`{"customer_id":…,"tags":{…}}`) under a consent record
/// and its partner's ceiling: see [`gateway_core::consent`] for the rules.
pub fn project_record(
    catalogue: &FieldCatalogue,
    record: &ConsentRecord,
    partner: &PartnerPolicy,
    requested: Option<&[&str]>,
    upstream_document: &[u8],
) -> Result<Projection, ProjectionError> {
    let fields = GrantedFields(&record.fields);
    let policy = ReleasePolicy {
        catalogue,
        consented: &fields,
        second_authorisation: record.second_authorisation,
        ceiling: &partner.ceiling,
    };
    projection::project_document(&policy, requested, upstream_document)
}

impl ConsentService {
    /// A service over `store`, deriving refs with `refs`. Subscribes to the store's changes
    /// now, so call it once per instance at startup.
    pub fn new(store: Store, refs: RefKey, settings: CacheSettings) -> ConsentService {
        let cache = ConsentCache::new(store.subscribe(), &settings);
        ConsentService {
            inner: Arc::new(Inner { store, refs, cache }),
        }
    }

    /// The store it works on.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The pairwise ref of `customer` for `partner`.
    pub fn customer_ref(&self, customer: &CustomerId, partner: &PartnerId) -> CustomerRef {
        self.inner.refs.customer_ref(customer, partner)
    }

    /// Validates a grant (every rule, see [`crate::grant`]) and records it under a new random id
    /// and the pair's ref. `partner` is the request's partner as configured, `None` when it is
    /// not configured.
    pub async fn grant(
        &self,
        request: &GrantRequest,
        catalogue: &FieldCatalogue,
        partner: Option<&PartnerPolicy>,
        now: UnixTime,
    ) -> Result<ConsentRecord, GrantError> {
        let valid = validate_grant(request, catalogue, partner, now)?;
        let customer_ref = self.customer_ref(&valid.customer_id, &valid.partner_id);
        let record = valid.into_record(new_consent_id()?, customer_ref, now);
        match self
            .inner
            .store
            .grant(record)
            .await
            .map_err(GrantError::Unavailable)?
        {
            GrantOutcome::Granted(record) => {
                // A cached "no consent" for this ref must not outlive the grant here.
                self.inner
                    .cache
                    .invalidate(&record.partner_id, &record.customer_ref);
                Ok(record)
            }
            GrantOutcome::AlreadyGranted(existing) => Err(GrantError::Exists {
                consent_id: existing.consent_id,
            }),
        }
    }

    /// Revokes a consent at once: on this instance before returning, on every other instance
    /// through the store's change notifications (within the staleness bound at worst).
    pub async fn revoke(
        &self,
        id: &ConsentId,
        now: UnixTime,
    ) -> Result<RevokeOutcome, ConsentError> {
        let outcome = self
            .inner
            .store
            .revoke(id, now)
            .await
            .map_err(ConsentError::Unavailable)?;
        if let RevokeOutcome::Revoked(record) | RevokeOutcome::AlreadyRevoked(record) = &outcome {
            self.inner
                .cache
                .invalidate(&record.partner_id, &record.customer_ref);
        }
        Ok(outcome)
    }

    /// Every consent of a customer (any status), oldest first, from the store.
    pub async fn consents_of_customer(
        &self,
        customer: &CustomerId,
    ) -> Result<Vec<ConsentRecord>, ConsentError> {
        self.inner
            .store
            .consents_of_customer(customer)
            .await
            .map_err(ConsentError::Unavailable)
    }

    /// A consent by id if it was granted to `partner` (`GET /v1/consents/{id}`); another
    /// partner's consent is `None`, like an unknown id. Read from the store.
    pub async fn partner_consent(
        &self,
        partner: &PartnerId,
        id: &ConsentId,
    ) -> Result<Option<ConsentRecord>, ConsentError> {
        let record = self
            .inner
            .store
            .consent(id)
            .await
            .map_err(ConsentError::Unavailable)?;
        Ok(record.filter(|r| r.partner_id == *partner))
    }

    /// See [`LookupConsent::active_consent`]; cached as described in [`crate::cache`].
    pub async fn active_consent(
        &self,
        partner: &PartnerPolicy,
        customer_ref: &CustomerRef,
        now: UnixTime,
    ) -> Result<Option<Arc<ConsentRecord>>, ConsentError> {
        // The same store work on every path: a suspended partner is decided after the lookup.
        let records = self
            .inner
            .cache
            .lookup(&self.inner.store, &partner.id, customer_ref)
            .await
            .map_err(ConsentError::Unavailable)?;
        if !partner.active {
            return Ok(None);
        }
        Ok(records
            .iter()
            .filter(|r| {
                r.partner_id == partner.id
                    && r.status == ConsentStatus::Active
                    && r.expires_at > now
                    && partner.purposes.contains(&r.purpose)
            })
            .max_by_key(|r| r.granted_at)
            .cloned())
    }

    /// How many (partner, ref) answers this instance has cached (for metrics and tests).
    pub fn cached_answers(&self) -> usize {
        self.inner.cache.len()
    }
}

impl LookupConsent for ConsentService {
    fn active_consent(
        &self,
        partner: &PartnerPolicy,
        customer_ref: &CustomerRef,
        now: UnixTime,
    ) -> impl Future<Output = Result<Option<Arc<ConsentRecord>>, ConsentError>> + Send {
        ConsentService::active_consent(self, partner, customer_ref, now)
    }
}

impl<F, Fut> LookupConsent for F
where
    F: Fn(&PartnerPolicy, &CustomerRef, UnixTime) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Option<Arc<ConsentRecord>>, ConsentError>> + Send,
{
    fn active_consent(
        &self,
        partner: &PartnerPolicy,
        customer_ref: &CustomerRef,
        now: UnixTime,
    ) -> impl Future<Output = Result<Option<Arc<ConsentRecord>>, ConsentError>> + Send {
        self(partner, customer_ref, now)
    }
}

impl std::fmt::Debug for ConsentService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentService")
            .field("store", &self.inner.store.backend_name())
            .field("cached_answers", &self.inner.cache.len())
            .finish_non_exhaustive()
    }
}

// === impl ConsentError ===

impl ConsentError {
    /// The problem this error is answered with: `consent-unavailable` (503).
    pub fn problem_type(&self) -> ProblemType {
        match self {
            ConsentError::Unavailable(_) => ProblemType::ConsentUnavailable,
        }
    }
}

// === impl ConsentState ===

impl ConsentState {
    /// The state of `record` at `now`: revoked wins over expired.
    pub fn of(record: &ConsentRecord, now: UnixTime) -> ConsentState {
        match record.status {
            ConsentStatus::Revoked { .. } => ConsentState::Revoked,
            ConsentStatus::Active if record.expires_at <= now => ConsentState::Expired,
            ConsentStatus::Active => ConsentState::Active,
        }
    }

    /// `active`, `revoked` or `expired`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConsentState::Active => "active",
            ConsentState::Revoked => "revoked",
            ConsentState::Expired => "expired",
        }
    }
}

// === impl ConsentView ===

impl<'a> ConsentView<'a> {
    /// The view of `record` at `now`.
    pub fn new(record: &'a ConsentRecord, now: UnixTime) -> ConsentView<'a> {
        ConsentView {
            consent_id: &record.consent_id,
            customer_ref: &record.customer_ref,
            partner_id: &record.partner_id,
            status: ConsentState::of(record, now),
            purpose: &record.purpose,
            fields: &record.fields,
            second_authorisation: record.second_authorisation,
            granted_at: format_rfc3339(record.granted_at),
            expires_at: format_rfc3339(record.expires_at),
            revoked_at: match record.status {
                ConsentStatus::Revoked { revoked_at } => Some(format_rfc3339(revoked_at)),
                ConsentStatus::Active => None,
            },
        }
    }
}

// === impl GrantedFields ===

impl ConsentedFields for GrantedFields<'_> {
    fn disclosure(&self, field: &str) -> Option<projection::Disclosure> {
        self.0.get(field).map(|d| match d {
            Disclosure::Plain => projection::Disclosure::Plain,
            Disclosure::Masked => projection::Disclosure::Masked,
        })
    }

    fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}
