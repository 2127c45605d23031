//! The product catalogue as partners see it: `GET /v1/products` and `GET /v1/products/{id}`.
//!
//! - [`catalogue`]: the upstream document ([`Catalogue`], [`Product`]) and the cache in front
//!   of it ([`ProductCatalogue`]), fed by the integrator's [`FetchCatalogue`] closure.
//! - [`query`]: the query string ([`ProductQuery::parse`]) and the opaque cursor.
//! - [`page`]: visibility ([`PartnerProducts`]), pages, ETags and `If-None-Match`.
//!
//! # Caching
//!
//! The catalogue changes rarely, so one fetched copy answers every partner for
//! [`CacheSettings::fresh_for`] (default 60 s). For [`CacheSettings::serve_stale_for`] after
//! that (default 5 min) the stale copy is still answered at once while one background fetch
//! refreshes it; later, requests wait for a fetch. However many requests miss at once, one
//! fetch runs and they all share its outcome (a failure too, so an outage does not multiply
//! upstream calls). Staleness is therefore bounded by `fresh_for + serve_stale_for`.
//!
//! # Pages
//!
//! Products are ordered by `id` (byte order), and a page resumes strictly after the last id
//! of the previous page (keyset pagination): walking `next` links visits every product visible
//! under the filters exactly once, even if the catalogue is refreshed mid-walk (products added
//! behind the cursor are then not visited). Filters apply after visibility, so asking for a
//! type the partner does not see yields an empty page, never an error.
//!
//! The cursor is `base64url(version ‖ digest ‖ last id)`; see [`query::encode_cursor`] for why
//! the digest is not a secret MAC. A cursor that is garbled, forged or made for other filters
//! is a [`BadCursor`], reported as a violation at `/cursor`.
//!
//! # Conditional requests
//!
//! A page's strong ETag digests (catalogue version, the partner's visible types, filters,
//! limit, cursor): equal inputs give equal bytes. It is checked before the page is built, so a
//! 304 costs no serialisation. A product's ETag digests its JSON. Answer both 200 and 304 with
//! `ETag` and [`ProductCatalogue::cache_control`] (`private, max-age=60`).
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use gateway_referral::products::{
//!     BoxError, CacheSettings, PartnerProducts, ProductCatalogue, ProductQuery, ProductsAnswer,
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let catalogue = ProductCatalogue::new(
//!     || async {
//!         // The integrator calls `GET {products}/products` here.
//!         Ok::<_, BoxError>(Bytes::from_static(
//!             br#"{"products": [{"id": "etf-510300", "type": "etf", "risk_level": "R4",
//!                                "currency": "CNY"}], "version": "v1"}"#,
//!         ))
//!     },
//!     CacheSettings::default(),
//! );
//! let query = ProductQuery::parse(Some("type=etf&limit=10"))?;
//! let partner = PartnerProducts {
//!     partner: gateway_core::PartnerId::parse("demo-fund")?,
//!     product_types: Some(["fund".to_owned(), "etf".to_owned()].into()),
//! };
//! match catalogue.list(&partner, &query, None).await? {
//!     ProductsAnswer::Page(page) => assert_eq!(page.ids, ["etf-510300"]),
//!     ProductsAnswer::NotModified { .. } => unreachable!("no If-None-Match was sent"),
//! }
//! # Ok(())
//! # }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(run()).unwrap();
//! ```

pub mod catalogue;
pub mod page;
pub mod query;

pub use self::catalogue::{
    BoxError, CacheSettings, Catalogue, CatalogueError, FetchCatalogue, Product, ProductCatalogue,
};
pub use self::page::{
    PRODUCTS_PATH, Page, PartnerProducts, ProductAnswer, ProductsAnswer, etag_matches,
};
pub use self::query::{BadCursor, DEFAULT_LIMIT, Filters, InvalidQuery, MAX_LIMIT, ProductQuery};
