//! Pages, visibility, ETags and conditional requests.

use std::collections::BTreeSet;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use gateway_core::PartnerId;

use super::catalogue::{Catalogue, Product};
use super::query::ProductQuery;

/// The path of the listing, the base of `next` links.
pub const PRODUCTS_PATH: &str = "/v1/products";

/// Which products a partner sees (mirrors `gateway_config::Partner::product_types`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerProducts {
    /// The partner.
    pub partner: PartnerId,
    /// Product `type`s it sees; `None`: every type.
    pub product_types: Option<BTreeSet<String>>,
}

/// The answer to `GET /v1/products`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductsAnswer {
    /// 200 with a page.
    Page(Page),
    /// 304: the partner's `If-None-Match` matches; send `ETag` and `Cache-Control` again.
    NotModified {
        /// The quoted ETag.
        etag: String,
    },
}

/// One page of products.
///
/// The body:
///
/// ```json
/// {"products": [{"id": "etf-159915", "type": "etf", ...}, {"id": "etf-510300", ...}],
///  "next": "/v1/products?type=etf&limit=2&cursor=AcVn..."}
/// ```
///
/// Products are the upstream's JSON, unchanged, sorted by `id`. `next` is `null` on the last
/// page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The JSON body.
    pub body: Vec<u8>,
    /// The quoted strong ETag, a digest of (catalogue version, visibility, query).
    pub etag: String,
    /// The link to the next page (also in the body), for a `Link: <…>; rel="next"` header.
    pub next: Option<String>,
    /// The ids on this page, in order.
    pub ids: Vec<String>,
}

/// The answer to `GET /v1/products/{id}` for a visible product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductAnswer {
    /// 200 with the product's upstream JSON.
    Found {
        /// The JSON body.
        body: Vec<u8>,
        /// The quoted strong ETag, a digest of the product's JSON.
        etag: String,
    },
    /// 304: the partner's `If-None-Match` matches.
    NotModified {
        /// The quoted ETag.
        etag: String,
    },
}

impl PartnerProducts {
    /// Whether the partner sees `product`.
    pub fn sees(&self, product: &Product) -> bool {
        self.product_types
            .as_ref()
            .is_none_or(|types| types.contains(product.product_type()))
    }

    /// An unambiguous spelling of what the partner sees, for ETags.
    fn canonical(&self) -> String {
        match &self.product_types {
            None => "*".to_owned(),
            Some(types) => types.iter().cloned().collect::<Vec<_>>().join(","),
        }
    }
}

/// Whether an `If-None-Match` value matches `etag` (RFC 9110 §13.1.2: `*`, or a list of
/// entity tags compared weakly, so `W/"x"` matches `"x"`).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    if_none_match.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// The page of `query` that `visibility` allows, or `NotModified`.
pub(crate) fn list(
    catalogue: &Catalogue,
    visibility: &PartnerProducts,
    query: &ProductQuery,
    if_none_match: Option<&str>,
) -> ProductsAnswer {
    let etag = page_etag(catalogue.version(), visibility, query);
    if if_none_match.is_some_and(|v| etag_matches(v, &etag)) {
        return ProductsAnswer::NotModified { etag };
    }
    let products = catalogue.products();
    // Keyset pagination: resume after the cursor's id, so products added or removed between
    // pages never shift the ones still to come.
    let start = match &query.after {
        Some(after) => products.partition_point(|p| p.id() <= after.as_str()),
        None => 0,
    };
    let mut page: Vec<&Product> = Vec::with_capacity(query.limit);
    let mut more = false;
    for product in products[start..]
        .iter()
        .filter(|p| visibility.sees(p) && query.filters.matches(p))
    {
        if page.len() == query.limit {
            more = true;
            break;
        }
        page.push(product);
    }
    let next = match page.last() {
        Some(last) if more => Some(link(&query.next_after(last.id()))),
        _ => None,
    };

    let mut body = Vec::with_capacity(64 + page.iter().map(|p| p.json().len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"products\":[");
    for (i, product) in page.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(product.json().as_bytes());
    }
    body.extend_from_slice(b"],\"next\":");
    match &next {
        Some(next) => push_json_string(&mut body, next),
        None => body.extend_from_slice(b"null"),
    }
    body.push(b'}');

    ProductsAnswer::Page(Page {
        body,
        etag,
        next,
        ids: page.iter().map(|p| p.id().to_owned()).collect(),
    })
}

/// One product if visible.
pub(crate) fn product(
    catalogue: &Catalogue,
    visibility: &PartnerProducts,
    id: &str,
    if_none_match: Option<&str>,
) -> Option<ProductAnswer> {
    let product = catalogue.get(id).filter(|p| visibility.sees(p))?;
    let etag = product.etag().to_owned();
    if if_none_match.is_some_and(|v| etag_matches(v, &etag)) {
        return Some(ProductAnswer::NotModified { etag });
    }
    Some(ProductAnswer::Found {
        body: product.json().as_bytes().to_vec(),
        etag,
    })
}

/// A quoted entity tag from digest bytes.
pub(crate) fn quote(digest: &[u8]) -> String {
    format!("\"{}\"", URL_SAFE_NO_PAD.encode(digest))
}

// === helpers ===

fn link(query: &ProductQuery) -> String {
    format!("{PRODUCTS_PATH}?{}", query.to_query_string())
}

fn page_etag(version: &str, visibility: &PartnerProducts, query: &ProductQuery) -> String {
    let mut context = digest::Context::new(&digest::SHA256);
    for part in [
        "pgw-products",
        version,
        &visibility.canonical(),
        &query.filters.canonical(),
        &query.limit.to_string(),
        query.after.as_deref().unwrap_or(""),
    ] {
        context.update(part.as_bytes());
        context.update(b"\0");
    }
    quote(&context.finish().as_ref()[..18])
}

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    // Serialising a string cannot fail.
    out.extend_from_slice(&serde_json::to_vec(text).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let etag = "\"abc\"";
        for header in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*", " \"abc\" "] {
            assert!(etag_matches(header, etag), "{header}");
        }
        for header in ["\"abd\"", "abc", "\"x\"", ""] {
            assert!(!etag_matches(header, etag), "{header}");
        }
    }
}
