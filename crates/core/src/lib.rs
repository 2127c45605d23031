//! Pure types and decisions shared by every crate of the partner gateway.
//!
//! This crate owns the vocabulary of the product: identifiers ([`ids`]), OAuth scopes
//! ([`scope`]), the partner routes and path normalisation ([`route`]), the RFC 9457 problem
//! catalogue ([`problem`]) and the request extensions through which concern crates share facts
//! ([`context`]).
//!
//! It does no I/O and does not depend on tokio: everything here is a pure function over plain
//! types, which keeps it cheap to unit- and property-test. Crates that own a concern (TLS,
//! tokens, consent, limits, audit) depend on this crate and never on each other.
#![warn(missing_docs)]

pub mod audit;
pub mod consent;
pub mod context;
pub mod fields;
pub mod hex;
pub mod ids;
pub mod partner;
pub mod problem;
pub mod referral;
pub mod route;
pub mod scope;
pub mod time;

pub use context::{
    Fingerprint, InteractionId, PartnerContext, PeerIdentity, TokenClaims, TraceContext,
};
pub use fields::{FieldCatalogue, FieldSpec, MaskRule, Tier};
pub use ids::{CampaignId, ClientId, ConsentId, CustomerId, CustomerRef, IdError, PartnerId};
pub use problem::{Problem, ProblemType, Violation};
pub use route::{PathError, Route, RouteMatch};
pub use scope::{Scope, ScopeSet};

/// The header that carries the FAPI interaction id on every request and response.
pub const X_FAPI_INTERACTION_ID: &str = "x-fapi-interaction-id";

/// The media type of RFC 9457 problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";
