//! The product catalogue and the referral programme (客户推荐计划) of the partner gateway.
//!
//! This crate owns the business logic behind six routes: it parses their input, applies the
//! campaign and visibility rules, talks to the state store through the `gateway-store` traits
//! and returns typed results and ready response bodies. It does **not** speak HTTP, read
//! configuration files or know about tokens: the integrator (`gateway-http`) extracts the
//! partner from the token, the query string, the `Idempotency-Key` and `If-None-Match`
//! headers and the body, converts the configuration into [`Campaigns`] and [`PartnerProducts`],
//! calls one function below and turns the result into a response.
//!
//! Referral codes themselves (format, check symbol, parsing) are pure and live in
//! [`gateway_core::referral`].
//!
//! # Layout
//!
//! - [`campaign`]: [`CampaignRules`] (a mirror of `gateway_config::Campaign`), [`Campaigns`],
//!   [`EventType`], [`Reward`].
//! - [`codes`]: [`issue`] and [`code_status`], idempotency ([`IdempotencyKey`]).
//! - [`events`]: [`record_event`], conversion intake.
//! - [`stats`]: campaign totals, [`campaign_stats`].
//! - [`products`]: the catalogue cache, query parsing, pages, cursors, ETags.
//! - `body`: request body checks shared by [`IssueRequest`] and [`EventRequest`] ([`BodyError`]).
//!
//! # Routes
//!
//! | route | call | success | expected failures |
//! | --- | --- | --- | --- |
//! | `GET /v1/products` | [`ProductQuery::parse`], then [`ProductCatalogue::list`] | 200 [`Page::body`] + `ETag`, `Cache-Control`; or 304 | [`InvalidQuery`] → 400 `invalid-query` with `errors` |
//! | `GET /v1/products/{id}` | [`ProductCatalogue::product`] | 200 body + `ETag`, `Cache-Control`; or 304 | `None` → 404 `product-not-found` |
//! | `POST /v1/referral-codes` | [`IdempotencyKey::parse`], [`IssueRequest::from_json`], [`issue`] | 201 [`Issued::body`] | [`IssueError::problem`] |
//! | `GET /v1/referral-codes/{code}` | [`code_status`] | 200 [`CodeStatus::body`] | `None` → 404 `referral-code-not-found` |
//! | `GET /v1/campaigns/{id}/stats` | [`campaign_stats`] | 200 [`CampaignStatsView::body`] | `None` → 404 `campaign-not-found` |
//! | `POST /admin/v1/referral-events` | [`EventRequest::from_json`], [`record_event`] | [`Recorded::status`] (201 or 200) + [`Recorded::body`] | [`EventError::problem`] (422 with `reason`) |
//!
//! Bodies: [`BodyError::Malformed`] → 400 `malformed-json`, [`BodyError::Invalid`] → 400
//! `validation-failed` with every violation. A missing or invalid `Idempotency-Key` → 400
//! `idempotency-key-required`. Store failures ([`gateway_store::StoreError`]) and catalogue
//! fetch failures ([`CatalogueError`]) are not problems this crate names: they travel to the
//! rescue layer (503 for the store, 502/504 for the upstream).
//!
//! # Time and randomness
//!
//! Every function takes `now` from the caller's clock, so tests move time instead of waiting.
//! Codes draw 80 bits from aws-lc-rs's `SystemRandom`. The catalogue cache measures age with
//! `tokio::time::Instant`, which `tokio::time::pause` controls in tests.
#![warn(missing_docs)]

mod body;
pub mod campaign;
pub mod codes;
pub mod events;
pub mod products;
pub mod stats;

pub use crate::body::BodyError;
pub use crate::campaign::{CampaignRules, CampaignState, Campaigns, EventType, Reward};
pub use crate::codes::{
    CodeState, CodeStatus, IDEMPOTENCY_TTL_SECS, IdempotencyKey, InvalidIdempotencyKey, IssueError,
    IssueOptions, IssueRequest, Issued, IssuedCode, code_status, issue, issue_with,
};
pub use crate::events::{
    Conversion, EventError, EventRequest, FUTURE_TOLERANCE_SECS, Recorded, RejectReason,
    record_event,
};
pub use crate::products::InvalidQuery;
pub use crate::products::{
    CacheSettings, CatalogueError, FetchCatalogue, Page, PartnerProducts, ProductAnswer,
    ProductCatalogue, ProductQuery, ProductsAnswer,
};
pub use crate::stats::{CampaignStatsView, campaign_stats};

impl CodeStatus {
    /// The response body.
    pub fn body(&self) -> Vec<u8> {
        to_body(self)
    }
}

/// Serialises a response body. Every body type here is a plain struct with string keys, which
/// cannot fail to serialise.
pub(crate) fn to_body<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
