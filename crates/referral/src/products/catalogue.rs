//! The catalogue document and its cache.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::page::{self, PartnerProducts, ProductAnswer, ProductsAnswer};
use super::query::ProductQuery;

/// A boxed error from the caller's fetch function (keeps its concrete type for the rescue
/// layer's `cause_ref`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Longest product id accepted from upstream (so every id fits in a cursor).
pub const MAX_PRODUCT_ID_LEN: usize = 128;

/// Fetches the upstream catalogue document, `{"products": [...], "version": "..."}`.
///
/// Implemented for every `Fn() -> impl Future<Output = Result<Bytes, BoxError>>`, so the
/// integrator passes a closure that calls `GET {products}/products` on its upstream client.
pub trait FetchCatalogue: Send + Sync + 'static {
    /// One fetch: the body of a 200 answer, or why there is none.
    fn fetch(&self) -> impl Future<Output = Result<Bytes, BoxError>> + Send;
}

impl<F, Fut> FetchCatalogue for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, BoxError>> + Send,
{
    fn fetch(&self) -> impl Future<Output = Result<Bytes, BoxError>> + Send {
        self()
    }
}

/// How long a fetched catalogue is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// Served without asking upstream for this long after a fetch. Also the `max-age` of
    /// `Cache-Control`. Default 60 s.
    pub fresh_for: Duration,
    /// After `fresh_for`, still served for this long while one background fetch refreshes it
    /// (stale-while-revalidate); after that, requests wait for a fetch. Default 5 min.
    pub serve_stale_for: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            fresh_for: Duration::from_secs(60),
            serve_stale_for: Duration::from_secs(300),
        }
    }
}

/// Why no catalogue could be served (answer 502, or 504 when the fetch error says timeout).
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// This request's fetch failed; the source is the caller's own error.
    #[error("fetching the product catalogue failed")]
    Fetch(#[source] BoxError),
    /// A concurrent request's fetch, which this one waited for, just failed.
    #[error("the product catalogue is unavailable: {reason}")]
    Unavailable {
        /// That fetch's error, as text.
        reason: String,
    },
    /// Upstream answered with a document this crate cannot read.
    #[error("the product catalogue document is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
}

/// One parsed catalogue: products sorted by id, and the upstream's version.
#[derive(Debug)]
pub struct Catalogue {
    version: String,
    products: Vec<Product>,
}

/// One product: the fields the gateway filters on, and the upstream JSON passed through as is.
#[derive(Debug)]
pub struct Product {
    id: String,
    product_type: String,
    risk_level: String,
    currency: String,
    raw: Box<RawValue>,
    etag: String,
}

/// The product catalogue, cached: `GET /v1/products` and `GET /v1/products/{id}`.
///
/// Cheap to clone; clones share the cache. Concurrent requests that find no usable catalogue
/// cause one fetch, which they all wait for.
pub struct ProductCatalogue<F> {
    inner: Arc<Inner<F>>,
}

struct Inner<F> {
    fetcher: F,
    settings: CacheSettings,
    state: Mutex<State>,
    /// Held by whoever fetches (a request, or the background refresh, which owns its guard
    /// until its fetch is stored): at most one fetch runs at a time.
    gate: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct State {
    current: Option<(Arc<Catalogue>, Instant)>,
    /// Fetches finished, successful or not: a waiter compares it to see if the fetch it
    /// waited for has happened.
    attempts: u64,
    /// The error of the last fetch, if it failed.
    last_error: Option<String>,
}

impl<F: FetchCatalogue> ProductCatalogue<F> {
    /// A cache in front of `fetcher`; nothing is fetched until the first request.
    pub fn new(fetcher: F, settings: CacheSettings) -> Self {
        ProductCatalogue {
            inner: Arc::new(Inner {
                fetcher,
                settings,
                state: Mutex::new(State::default()),
                gate: Arc::new(tokio::sync::Mutex::new(())),
            }),
        }
    }

    /// `GET /v1/products`: the page of `query` that `visibility` allows, or
    /// [`ProductsAnswer::NotModified`] when `if_none_match` (the raw header value) matches its
    /// ETag (checked before the page is built).
    pub async fn list(
        &self,
        visibility: &PartnerProducts,
        query: &ProductQuery,
        if_none_match: Option<&str>,
    ) -> Result<ProductsAnswer, CatalogueError> {
        let catalogue = self.current().await?;
        Ok(page::list(&catalogue, visibility, query, if_none_match))
    }

    /// `GET /v1/products/{id}`: the product, or `None` when it is unknown or invisible to the
    /// partner (answer 404 `product-not-found` alike).
    pub async fn product(
        &self,
        visibility: &PartnerProducts,
        id: &str,
        if_none_match: Option<&str>,
    ) -> Result<Option<ProductAnswer>, CatalogueError> {
        let catalogue = self.current().await?;
        Ok(page::product(&catalogue, visibility, id, if_none_match))
    }

    /// The `Cache-Control` value for product answers (200 and 304): `private` because
    /// visibility differs per partner, `max-age` the cache's freshness.
    pub fn cache_control(&self) -> String {
        format!(
            "private, max-age={}",
            self.inner.settings.fresh_for.as_secs()
        )
    }

    /// Forgets the cached catalogue (e.g. after the upstream URL changed on reload).
    pub fn invalidate(&self) {
        self.inner.lock().current = None;
    }

    /// The catalogue to answer from: cached while fresh; stale (with one background refresh)
    /// within `serve_stale_for`; otherwise after one fetch shared with concurrent callers.
    pub async fn current(&self) -> Result<Arc<Catalogue>, CatalogueError> {
        let settings = self.inner.settings;
        let (cached, attempts_seen) = {
            let state = self.inner.lock();
            (state.current.clone(), state.attempts)
        };
        if let Some((catalogue, fetched_at)) = cached {
            let age = fetched_at.elapsed();
            if age < settings.fresh_for {
                return Ok(catalogue);
            }
            if age < settings.fresh_for + settings.serve_stale_for {
                self.refresh_in_background();
                return Ok(catalogue);
            }
        }
        let _gate = self.inner.gate.lock().await;
        {
            let state = self.inner.lock();
            if state.attempts != attempts_seen {
                // A fetch finished while we waited for the gate: share its outcome.
                if let Some(reason) = &state.last_error {
                    return Err(CatalogueError::Unavailable {
                        reason: reason.clone(),
                    });
                }
                if let Some((catalogue, _)) = &state.current {
                    return Ok(catalogue.clone());
                }
            }
        }
        self.inner.fetch_and_store().await
    }

    /// Starts one background fetch unless a fetch is running already.
    fn refresh_in_background(&self) {
        let Ok(gate) = self.inner.gate.clone().try_lock_owned() else {
            return;
        };
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let _gate = gate;
            if let Err(e) = inner.fetch_and_store().await {
                tracing::warn!(error = %e, "Background refresh of the product catalogue failed; serving the stale copy.");
            }
        });
    }
}

impl<F> Clone for ProductCatalogue<F> {
    fn clone(&self) -> Self {
        ProductCatalogue {
            inner: self.inner.clone(),
        }
    }
}

impl<F> std::fmt::Debug for ProductCatalogue<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("ProductCatalogue")
            .field("settings", &self.inner.settings)
            .field(
                "version",
                &state.current.as_ref().map(|(c, _)| c.version.clone()),
            )
            .field("attempts", &state.attempts)
            .finish()
    }
}

// === impl Inner ===

impl<F> Inner<F> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is replaced whole under the lock, so a panic elsewhere cannot leave it
        // half-written: a poisoned lock is safe to use.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<F: FetchCatalogue> Inner<F> {
    /// Fetches and parses once, and records the outcome. Call with the gate held.
    async fn fetch_and_store(&self) -> Result<Arc<Catalogue>, CatalogueError> {
        let result = match self.fetcher.fetch().await {
            Ok(body) => Catalogue::parse(&body).map(Arc::new),
            Err(e) => Err(CatalogueError::Fetch(e)),
        };
        let mut state = self.lock();
        state.attempts += 1;
        match &result {
            Ok(catalogue) => {
                state.current = Some((catalogue.clone(), Instant::now()));
                state.last_error = None;
            }
            Err(e) => state.last_error = Some(error_chain(e)),
        }
        result
    }
}

// === impl Catalogue ===

impl Catalogue {
    /// Parses the upstream document `{"products": [...], "version": "..."}`. Each product must
    /// carry string `id` (unique, at most [`MAX_PRODUCT_ID_LEN`] bytes, no control
    /// characters), `type`, `risk_level` and `currency`; other members pass through untouched.
    /// Without a `version`, the SHA-256 of the document stands in.
    pub fn parse(body: &[u8]) -> Result<Catalogue, CatalogueError> {
        #[derive(Deserialize)]
        struct Document<'a> {
            #[serde(borrow)]
            products: Vec<&'a RawValue>,
            #[serde(default)]
            version: Option<String>,
        }
        #[derive(Deserialize)]
        struct Keys {
            id: String,
            #[serde(rename = "type")]
            product_type: String,
            risk_level: String,
            currency: String,
        }
        let malformed = |reason: String| CatalogueError::Malformed { reason };
        let document: Document<'_> =
            serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
        let mut products = Vec::with_capacity(document.products.len());
        for (n, raw) in document.products.into_iter().enumerate() {
            let keys: Keys = serde_json::from_str(raw.get())
                .map_err(|e| malformed(format!("product {n}: {e}")))?;
            if keys.id.is_empty()
                || keys.id.len() > MAX_PRODUCT_ID_LEN
                || keys.id.chars().any(char::is_control)
            {
                return Err(malformed(format!("product {n}: unusable id {:?}", keys.id)));
            }
            products.push(Product {
                etag: product_etag(raw.get().as_bytes()),
                id: keys.id,
                product_type: keys.product_type,
                risk_level: keys.risk_level,
                currency: keys.currency,
                raw: raw.to_owned(),
            });
        }
        products.sort_by(|a, b| a.id.cmp(&b.id));
        let mut seen = BTreeSet::new();
        if let Some(dup) = products.iter().find(|p| !seen.insert(p.id.as_str())) {
            return Err(malformed(format!("duplicate product id {:?}", dup.id)));
        }
        let version = match document.version {
            Some(v) => v,
            None => URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, body)),
        };
        Ok(Catalogue { version, products })
    }

    /// The upstream's version of the catalogue.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every product, sorted by id (byte order).
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// A product by id.
    pub fn get(&self, id: &str) -> Option<&Product> {
        self.products
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
            .and_then(|i| self.products.get(i))
    }
}

// === impl Product ===

impl Product {
    /// Catalogue id, e.g. `fund-000123`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `fund`, `etf` or `fixed_income_plus`.
    pub fn product_type(&self) -> &str {
        &self.product_type
    }

    /// `R1` … `R5`.
    pub fn risk_level(&self) -> &str {
        &self.risk_level
    }

    /// ISO 4217 code.
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// The upstream JSON of the product, unchanged.
    pub fn json(&self) -> &str {
        self.raw.get()
    }

    /// The strong ETag of `GET /v1/products/{id}`, quoted.
    pub fn etag(&self) -> &str {
        &self.etag
    }
}

// === helpers ===

fn product_etag(raw: &[u8]) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(b"pgw-product\0");
    context.update(raw);
    page::quote(&context.finish().as_ref()[..18])
}

/// An error and its sources, as one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::products::query::Filters;

    fn document(version: &str, ids: &[&str]) -> Bytes {
        let products: Vec<String> = ids
            .iter()
            .map(|id| {
                format!(r#"{{"id":"{id}","type":"fund","risk_level":"R2","currency":"CNY","name":"基金"}}"#)
            })
            .collect();
        Bytes::from(format!(
            r#"{{"products":[{}],"version":"{version}"}}"#,
            products.join(",")
        ))
    }

    /// A fetcher that counts its calls and answers what `answer` holds.
    fn counting(
        answer: Arc<Mutex<Result<Bytes, String>>>,
        calls: Arc<AtomicUsize>,
    ) -> impl FetchCatalogue {
        move || {
            let answer = answer.clone();
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                // Give concurrent callers time to pile up behind this fetch.
                tokio::time::sleep(Duration::from_millis(50)).await;
                answer.lock().unwrap().clone().map_err(BoxError::from)
            }
        }
    }

    #[test]
    fn documents_parse_sorted_and_pass_products_through() {
        let c = Catalogue::parse(&document("v1", &["b", "a", "c"])).unwrap();
        let ids: Vec<&str> = c.products().iter().map(Product::id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(c.version(), "v1");
        assert!(c.get("b").unwrap().json().contains("\"name\":\"基金\""));
        assert!(c.get("d").is_none());
    }

    #[test]
    fn malformed_documents_are_refused() {
        for bad in [
            &b"{"[..],
            br#"{"products": {}}"#,
            br#"{"products": [{"id": "a"}]}"#,
            br#"{"products": [{"id": 1, "type": "fund", "risk_level": "R1", "currency": "CNY"}]}"#,
        ] {
            assert!(
                matches!(Catalogue::parse(bad), Err(CatalogueError::Malformed { .. })),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            Catalogue::parse(&document("v", &["a", "a"])),
            Err(CatalogueError::Malformed { reason }) if reason.contains("duplicate")
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_cause_one_fetch() {
        let answer = Arc::new(Mutex::new(Ok(document("v1", &["a"]))));
        let calls = Arc::new(AtomicUsize::new(0));
        let cache =
            ProductCatalogue::new(counting(answer, calls.clone()), CacheSettings::default());
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.current().await.map(|c| c.version().to_owned()) })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), "v1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_then_stale_while_revalidating_then_refetched() {
        let answer = Arc::new(Mutex::new(Ok(document("v1", &["a"]))));
        let calls = Arc::new(AtomicUsize::new(0));
        let settings = CacheSettings {
            fresh_for: Duration::from_secs(60),
            serve_stale_for: Duration::from_secs(300),
        };
        let cache = ProductCatalogue::new(counting(answer.clone(), calls.clone()), settings);
        assert_eq!(cache.current().await.unwrap().version(), "v1");

        *answer.lock().unwrap() = Ok(document("v2", &["a", "b"]));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(cache.current().await.unwrap().version(), "v1");
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        // Stale: answered at once from the old copy while one refresh runs.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(cache.current().await.unwrap().version(), "v1");
        assert_eq!(cache.current().await.unwrap().version(), "v1");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.current().await.unwrap().version(), "v2");

        // Too old to serve: a failing upstream is an error, not a stale answer.
        *answer.lock().unwrap() = Err("upstream down".to_owned());
        tokio::time::advance(Duration::from_secs(361)).await;
        assert!(matches!(
            cache.current().await,
            Err(CatalogueError::Fetch(e)) if e.to_string() == "upstream down"
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_share_a_failed_fetch_instead_of_repeating_it() {
        let answer = Arc::new(Mutex::new(Err("connection refused".to_owned())));
        let calls = Arc::new(AtomicUsize::new(0));
        let cache =
            ProductCatalogue::new(counting(answer, calls.clone()), CacheSettings::default());
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.current().await.map(drop) })
            })
            .collect();
        let mut fetch_errors = 0;
        for task in tasks {
            match task.await.unwrap() {
                Err(CatalogueError::Fetch(_)) => fetch_errors += 1,
                Err(CatalogueError::Unavailable { reason }) => {
                    assert!(reason.contains("connection refused"), "{reason}")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(fetch_errors, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn invisible_products_are_not_found() {
        let body = Bytes::from_static(
            br#"{"products":[{"id":"etf-1","type":"etf","risk_level":"R4","currency":"CNY"},
                             {"id":"fip-1","type":"fixed_income_plus","risk_level":"R2","currency":"CNY"}],
                 "version":"v"}"#,
        );
        let cache = ProductCatalogue::new(
            move || {
                let body = body.clone();
                async move { Ok::<_, BoxError>(body) }
            },
            CacheSettings::default(),
        );
        let insurer = PartnerProducts {
            partner: gateway_core::PartnerId::parse("demo-insurer").unwrap(),
            product_types: Some(["fixed_income_plus".to_owned()].into()),
        };
        assert!(
            cache
                .product(&insurer, "etf-1", None)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            cache
                .product(&insurer, "nope", None)
                .await
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            cache.product(&insurer, "fip-1", None).await.unwrap(),
            Some(ProductAnswer::Found { .. })
        ));
        let q = ProductQuery::first_page(Filters::default());
        let ProductsAnswer::Page(page) = cache.list(&insurer, &q, None).await.unwrap() else {
            panic!("expected a page");
        };
        assert_eq!(page.ids, ["fip-1"]);
        assert_eq!(cache.cache_control(), "private, max-age=60");
    }
}
