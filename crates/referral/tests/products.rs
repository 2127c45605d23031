//! The product catalogue over the sandbox's real catalogue document: page walks under every
//! filter combination and visibility, ETags, conditional requests, cursors, refreshes.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use gateway_core::PartnerId;
use gateway_referral::products::{
    BoxError, CacheSettings, FetchCatalogue, InvalidQuery, PRODUCTS_PATH, PartnerProducts,
    ProductAnswer, ProductCatalogue, ProductQuery, ProductsAnswer,
};
use gateway_sandbox::data;

fn sandbox_catalogue() -> ProductCatalogue<impl FetchCatalogue> {
    ProductCatalogue::new(
        || async { Ok::<_, BoxError>(data::catalogue_document()) },
        CacheSettings::default(),
    )
}

/// A catalogue whose document the test swaps.
fn swappable(document: Arc<Mutex<Bytes>>) -> ProductCatalogue<impl FetchCatalogue> {
    ProductCatalogue::new(
        move || {
            let document = document.lock().unwrap().clone();
            async move { Ok::<_, BoxError>(document) }
        },
        CacheSettings::default(),
    )
}

fn sees(partner: &str, types: Option<&[&str]>) -> PartnerProducts {
    PartnerProducts {
        partner: PartnerId::parse(partner).unwrap(),
        product_types: types.map(|t| t.iter().map(|s| (*s).to_owned()).collect()),
    }
}

/// The sample partners' visibility (partner-config/partners/*.yaml) and an unrestricted one.
fn visibilities() -> Vec<PartnerProducts> {
    vec![
        sees("demo-bank", Some(&["fund", "etf", "fixed_income_plus"])),
        sees("demo-fund", Some(&["fund", "etf"])),
        sees("demo-insurer", Some(&["fixed_income_plus"])),
        sees("any-partner", None),
    ]
}

fn query(raw: &str) -> ProductQuery {
    ProductQuery::parse(Some(raw)).unwrap_or_else(|e| panic!("{raw}: {e:?}"))
}

fn page_of(answer: ProductsAnswer) -> gateway_referral::Page {
    match answer {
        ProductsAnswer::Page(page) => page,
        ProductsAnswer::NotModified { .. } => panic!("expected a page"),
    }
}

/// Follows `next` links from `raw` to the end; returns every id seen, in order, and the pages.
async fn walk(
    catalogue: &ProductCatalogue<impl FetchCatalogue>,
    visibility: &PartnerProducts,
    raw: &str,
) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut q = query(raw);
    loop {
        let page = page_of(catalogue.list(visibility, &q, None).await.unwrap());
        pages += 1;
        let body: serde_json::Value = serde_json::from_slice(&page.body).unwrap();
        let listed: Vec<&str> = body["products"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        assert_eq!(listed, page.ids, "{raw}");
        assert_eq!(body["next"].as_str(), page.next.as_deref());
        assert!(page.ids.len() <= q.limit);
        ids.extend(page.ids);
        match page.next {
            Some(next) => {
                let rest = next
                    .strip_prefix(&format!("{PRODUCTS_PATH}?"))
                    .expect("next links point at the listing");
                q = query(rest);
            }
            None => return (ids, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_every_page_yields_every_visible_product_exactly_once() {
    let catalogue = sandbox_catalogue();
    let products = data::products();
    let types = [None, Some("fund"), Some("etf"), Some("fixed_income_plus")];
    let risks = [
        None,
        Some("R1"),
        Some("R2"),
        Some("R3"),
        Some("R4"),
        Some("R5"),
    ];
    let currencies = [None, Some("CNY"), Some("USD"), Some("HKD")];
    let mut walks = 0;
    for visibility in visibilities() {
        for t in types {
            for r in risks {
                for c in currencies {
                    let expected: Vec<String> = products
                        .iter()
                        .filter(|p| {
                            visibility
                                .product_types
                                .as_ref()
                                .is_none_or(|v| v.contains(p.product_type.as_str()))
                                && t.is_none_or(|t| t == p.product_type.as_str())
                                && r.is_none_or(|r| r == p.risk_level.as_str())
                                && c.is_none_or(|c| c == p.currency.as_str())
                        })
                        .map(|p| p.id.clone())
                        .collect();
                    let mut filters = Vec::new();
                    if let Some(t) = t {
                        filters.push(format!("type={t}"));
                    }
                    if let Some(r) = r {
                        filters.push(format!("risk_level={r}"));
                    }
                    if let Some(c) = c {
                        filters.push(format!("currency={c}"));
                    }
                    for limit in [7, 100] {
                        let mut raw = filters.clone();
                        raw.push(format!("limit={limit}"));
                        let raw = raw.join("&");
                        let (ids, pages) = walk(&catalogue, &visibility, &raw).await;
                        assert_eq!(ids, expected, "{} {raw}", visibility.partner);
                        assert_eq!(pages, expected.len().div_ceil(limit).max(1), "{raw}");
                        walks += 1;
                    }
                }
            }
        }
    }
    assert_eq!(walks, 4 * 4 * 6 * 4 * 2);

    // One product per page, for the widest view.
    let all = sees("demo-bank", None);
    let (ids, pages) = walk(&catalogue, &all, "limit=1").await;
    assert_eq!(ids.len(), products.len());
    assert_eq!(pages, products.len());
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());
}

#[tokio::test]
async fn products_pass_through_unchanged_and_invisible_ones_are_not_found() {
    let catalogue = sandbox_catalogue();
    let insurer = sees("demo-insurer", Some(&["fixed_income_plus"]));
    let fip = data::products()
        .iter()
        .find(|p| p.id.starts_with("fip-"))
        .unwrap();
    let etf = data::products()
        .iter()
        .find(|p| p.id.starts_with("etf-"))
        .unwrap();
    let Some(ProductAnswer::Found { body, etag }) =
        catalogue.product(&insurer, &fip.id, None).await.unwrap()
    else {
        panic!("the insurer sees fixed-income-plus funds");
    };
    assert_eq!(body, data::product_document(&fip.id).unwrap().to_vec());
    assert_eq!(
        catalogue
            .product(&insurer, &fip.id, Some(&etag))
            .await
            .unwrap(),
        Some(ProductAnswer::NotModified { etag: etag.clone() })
    );
    for id in [etf.id.as_str(), "fund-999999", "", "../etc"] {
        assert_eq!(
            catalogue.product(&insurer, id, None).await.unwrap(),
            None,
            "{id}"
        );
    }
}

#[tokio::test]
async fn etags_follow_visibility_query_and_version() {
    let first = Bytes::from_static(
        br#"{"products":[{"id":"etf-1","type":"etf","risk_level":"R4","currency":"CNY"},
                         {"id":"fund-1","type":"fund","risk_level":"R3","currency":"CNY"}],
             "version":"v1"}"#,
    );
    let document = Arc::new(Mutex::new(first));
    let catalogue = swappable(document.clone());
    let bank = sees("demo-bank", None);
    let fund = sees("demo-fund", Some(&["fund"]));
    let q = query("limit=20");

    let page = page_of(catalogue.list(&bank, &q, None).await.unwrap());
    let again = page_of(catalogue.list(&bank, &q, None).await.unwrap());
    assert_eq!(page, again);
    assert!(page.etag.starts_with('"') && page.etag.ends_with('"'));
    for header in [
        page.etag.clone(),
        format!("W/{}", page.etag),
        format!("\"x\", {}", page.etag),
    ] {
        assert_eq!(
            catalogue.list(&bank, &q, Some(&header)).await.unwrap(),
            ProductsAnswer::NotModified {
                etag: page.etag.clone()
            }
        );
    }
    assert!(matches!(
        catalogue.list(&bank, &q, Some("\"stale\"")).await.unwrap(),
        ProductsAnswer::Page(_)
    ));

    let others = [
        page_of(catalogue.list(&fund, &q, None).await.unwrap()).etag,
        page_of(
            catalogue
                .list(&bank, &query("limit=1"), None)
                .await
                .unwrap(),
        )
        .etag,
        page_of(
            catalogue
                .list(&bank, &query("type=etf"), None)
                .await
                .unwrap(),
        )
        .etag,
    ];
    let distinct: BTreeSet<&String> = others.iter().chain([&page.etag]).collect();
    assert_eq!(distinct.len(), 4);

    // A new catalogue version changes the tag, so the old one no longer matches.
    *document.lock().unwrap() = Bytes::from_static(
        br#"{"products":[{"id":"etf-1","type":"etf","risk_level":"R4","currency":"CNY"}],
             "version":"v2"}"#,
    );
    catalogue.invalidate();
    let newer = page_of(catalogue.list(&bank, &q, Some(&page.etag)).await.unwrap());
    assert_ne!(newer.etag, page.etag);
    assert_eq!(newer.ids, ["etf-1"]);
}

#[tokio::test]
async fn a_walk_survives_a_catalogue_refresh_without_repeats() {
    let doc = |ids: &[&str], version: &str| {
        let products: Vec<String> = ids
            .iter()
            .map(|id| {
                format!(r#"{{"id":"{id}","type":"fund","risk_level":"R2","currency":"CNY"}}"#)
            })
            .collect();
        Bytes::from(format!(
            r#"{{"products":[{}],"version":"{version}"}}"#,
            products.join(",")
        ))
    };
    let document = Arc::new(Mutex::new(doc(&["b", "d", "f"], "v1")));
    let catalogue = swappable(document.clone());
    let bank = sees("demo-bank", None);
    let first = page_of(
        catalogue
            .list(&bank, &query("limit=2"), None)
            .await
            .unwrap(),
    );
    assert_eq!(first.ids, ["b", "d"]);

    *document.lock().unwrap() = doc(&["a", "b", "c", "d", "e", "f", "g"], "v2");
    catalogue.invalidate();
    let rest = first.next.unwrap();
    let q = query(rest.strip_prefix("/v1/products?").unwrap());
    let second = page_of(catalogue.list(&bank, &q, None).await.unwrap());
    // Resumes after "d": "a" and "c" were added behind the cursor and are not visited.
    assert_eq!(second.ids, ["e", "f"]);
    let q = query(second.next.unwrap().strip_prefix("/v1/products?").unwrap());
    let third = page_of(catalogue.list(&bank, &q, None).await.unwrap());
    assert_eq!(third.ids, ["g"]);
    assert_eq!(third.next, None);
}

#[tokio::test]
async fn cursors_from_other_filters_or_garbled_are_refused() {
    let catalogue = sandbox_catalogue();
    let bank = sees("demo-bank", None);
    let page = page_of(
        catalogue
            .list(&bank, &query("type=fund&limit=5"), None)
            .await
            .unwrap(),
    );
    let next = page.next.unwrap();
    let cursor = next.split("cursor=").nth(1).unwrap().to_owned();

    let refused = |raw: String| {
        let InvalidQuery { violations } = ProductQuery::parse(Some(&raw)).unwrap_err();
        violations
            .into_iter()
            .map(|v| v.pointer)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        refused(format!("type=etf&limit=5&cursor={cursor}")),
        ["/cursor"]
    );
    assert_eq!(refused(format!("limit=5&cursor={cursor}")), ["/cursor"]);
    let mut garbled = cursor.clone().into_bytes();
    garbled[3] = if garbled[3] == b'A' { b'B' } else { b'A' };
    let garbled = String::from_utf8(garbled).unwrap();
    assert_eq!(refused(format!("type=fund&cursor={garbled}")), ["/cursor"]);
    assert_eq!(refused(format!("type=fund&cursor={cursor}x")), ["/cursor"]);
    assert_eq!(refused("type=fund&cursor=".to_owned()), ["/cursor"]);
    // The limit may change between pages; the filters may not.
    assert!(ProductQuery::parse(Some(&format!("type=fund&limit=50&cursor={cursor}"))).is_ok());
    for limit in ["0", "101", "-1", "ten", ""] {
        assert_eq!(refused(format!("limit={limit}")), ["/limit"]);
    }
    assert_eq!(refused("limit=5&limit=6".to_owned()), ["/limit"]);
    assert_eq!(refused("sort=id".to_owned()), ["/sort"]);
}
