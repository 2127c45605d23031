//! Customer consent for the partner gateway: who may see which of a customer's tag fields.
//!
//! This crate owns:
//!
//! - **pairwise refs** ([`refs`]): `customer_ref = base64url(HMAC-SHA256(secret, customer_id
//!   || 0x00 || partner_id))`, so a partner never sees the internal customer id and one
//!   partner's ref means nothing to another;
//! - **grants** ([`grant`]): the rules of `POST /admin/v1/consents`, every broken one reported
//!   with a JSON pointer, then storage through [`gateway_store::ConsentStore`];
//!   revocation and the customer's list;
//! - **the lookup behind the tags endpoint** ([`LookupConsent`], implemented by
//!   [`ConsentService`]): the active consent for (partner, ref), cached per instance and
//!   failing closed ([`cache`] states the rules exactly);
//! - [`project_record`]: the core projection ([`gateway_core::consent`]) applied to a stored
//!   record and a partner's ceiling.
//!
//! It does not own the field catalogue or the masks (`gateway_core::fields`,
//! `gateway_core::consent`), the records and their storage (`gateway-store`), partner
//! configuration (the integrator fills a [`PartnerPolicy`] from `gateway-config`), or HTTP
//! (handlers in `gateway-http` call this crate and map its errors with `problem_type()`).
//!
//! # Fail closed
//!
//! A lookup answers from the cache only when the answer's knowledge of the store is younger
//! than the staleness bound (default 2 s); otherwise it re-checks with the store, and if the
//! store cannot be reached it fails with [`ConsentError::Unavailable`] (503), never with a
//! stale answer. A revocation therefore takes effect on the revoking instance before
//! [`ConsentService::revoke`] returns, on other instances as soon as the store's change
//! notification arrives (milliseconds, pub/sub), and everywhere within the staleness bound
//! whatever fails. Details in [`cache`].
//!
//! # Example
//!
//! ```no_run
//! use std::collections::BTreeSet;
//! use gateway_consent::{CacheSettings, ConsentService, GrantRequest, PartnerPolicy, RefKey};
//! use gateway_core::{FieldCatalogue, PartnerId, time::UnixTime};
//! use gateway_store::{Store, StoreConfig};
//!
//! # async fn run(catalogue: FieldCatalogue) -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open(StoreConfig::Embedded { path: "data/state.redb".into() }).await?;
//! let refs = RefKey::from_file("data/keys/customer-ref.secret")?;
//! let consents = ConsentService::new(store, refs, CacheSettings::default());
//! let bank = PartnerPolicy {
//!     id: PartnerId::parse("demo-bank")?,
//!     ceiling: ["risk_level", "mobile"].map(String::from).into(),
//!     purposes: BTreeSet::from(["wealth_advice".to_owned()]),
//!     active: true,
//! };
//! let request: GrantRequest = serde_json::from_str(
//!     r#"{"customer_id": "C000001", "partner_id": "demo-bank", "purpose": "wealth_advice",
//!         "fields": {"risk_level": "plain", "mobile": "masked"},
//!         "expires_at": "2027-06-30T00:00:00Z"}"#,
//! )?;
//! let now = UnixTime::now();
//! let record = consents.grant(&request, &catalogue, Some(&bank), now).await?;
//! let found = consents.active_consent(&bank, &record.customer_ref, now).await?;
//! assert_eq!(found.map(|c| c.consent_id.clone()), Some(record.consent_id.clone()));
//! consents.revoke(&record.consent_id, now).await?;
//! assert!(consents.active_consent(&bank, &record.customer_ref, now).await?.is_none());
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub mod cache;
pub mod grant;
pub mod policy;
pub mod refs;
mod service;

pub use crate::cache::CacheSettings;
pub use crate::grant::{
    GrantError, GrantRequest, GrantRule, GrantViolation, MAX_GRANT_FIELDS, ValidGrant,
    validate_grant,
};
pub use crate::policy::PartnerPolicy;
pub use crate::refs::{MIN_REF_SECRET_BYTES, RefKey, RefKeyError};
pub use crate::service::{
    ConsentError, ConsentService, ConsentState, ConsentView, GrantedFields, LookupConsent,
    project_record,
};
pub use gateway_store::{ConsentRecord, RevokeOutcome};
