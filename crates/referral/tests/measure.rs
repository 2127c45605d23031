//! Rough costs, printed; ignored by default. Run in release:
//!
//! ```text
//! cargo test --release -p gateway-referral --test measure -- --ignored --nocapture
//! ```

mod common;

use std::time::{Duration, Instant};

use gateway_core::PartnerId;
use gateway_referral::products::{
    BoxError, CacheSettings, Catalogue, PartnerProducts, ProductCatalogue, ProductQuery,
    ProductsAnswer,
};
use gateway_referral::{EventType, issue, record_event};
use gateway_sandbox::data;

use common::*;

fn per_op(total: Duration, n: u32) -> String {
    format!("{:.1} µs", total.as_secs_f64() * 1e6 / f64::from(n))
}

#[tokio::test]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn measure_catalogue_pages() {
    let document = data::catalogue_document();
    let n = 200;
    let start = Instant::now();
    for _ in 0..n {
        Catalogue::parse(&document).unwrap();
    }
    println!(
        "parse the sandbox catalogue ({} products, {} bytes): {}",
        data::products().len(),
        document.len(),
        per_op(start.elapsed(), n)
    );

    let catalogue = ProductCatalogue::new(
        move || {
            let document = document.clone();
            async move { Ok::<_, BoxError>(document) }
        },
        CacheSettings::default(),
    );
    let bank = PartnerProducts {
        partner: PartnerId::parse("demo-bank").unwrap(),
        product_types: None,
    };
    for raw in ["limit=20", "limit=100", "type=etf&risk_level=R4&limit=20"] {
        let query = ProductQuery::parse(Some(raw)).unwrap();
        let ProductsAnswer::Page(page) = catalogue.list(&bank, &query, None).await.unwrap() else {
            panic!("expected a page");
        };
        let n = 5_000;
        let start = Instant::now();
        for _ in 0..n {
            let q = ProductQuery::parse(Some(raw)).unwrap();
            std::hint::black_box(catalogue.list(&bank, &q, None).await.unwrap());
        }
        let page_cost = per_op(start.elapsed(), n);
        let start = Instant::now();
        for _ in 0..n {
            let q = ProductQuery::parse(Some(raw)).unwrap();
            std::hint::black_box(catalogue.list(&bank, &q, Some(&page.etag)).await.unwrap());
        }
        println!(
            "GET /v1/products?{raw}: page of {} ({} bytes) {page_cost}, 304 {}",
            page.ids.len(),
            page.body.len(),
            per_op(start.elapsed(), n)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release with --ignored --nocapture"]
async fn measure_issue_and_record() {
    for backend in [Backend::embedded().await, Backend::redis().await] {
        let store = backend.store().await;
        let campaigns = campaigns(spring(100_000, 100));
        let n = 200;
        let mut codes = Vec::with_capacity(n as usize);
        let start = Instant::now();
        for i in 0..n {
            let issued = issue(
                &store,
                &bank(),
                &request(SPRING),
                &key(&format!("k{i}")),
                &campaigns,
                now(),
            )
            .await
            .unwrap();
            codes.push(issued.code.code);
        }
        let issue_cost = per_op(start.elapsed(), n);
        let start = Instant::now();
        for i in 0..n {
            issue(
                &store,
                &bank(),
                &request(SPRING),
                &key(&format!("k{i}")),
                &campaigns,
                now(),
            )
            .await
            .unwrap();
        }
        let replay_cost = per_op(start.elapsed(), n);
        let start = Instant::now();
        for (i, code) in codes.iter().enumerate() {
            let e = event(&format!("e{i}"), code, EventType::AccountOpened, now());
            record_event(&store, &e, &campaigns, now()).await.unwrap();
        }
        println!(
            "{}: issue {issue_cost}, replay {replay_cost}, record_event {} (sequential, one client)",
            backend.name(),
            per_op(start.elapsed(), n)
        );
    }
}
