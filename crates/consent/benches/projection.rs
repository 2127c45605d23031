//! Costs of the consent path: projection of a ~1 KiB, 15-field tag document (streaming, as
//! shipped, against a `serde_json::Value` parse + retain + write baseline), the pairwise ref
//! HMAC, and a cached consent lookup.
//!
//! `cargo bench -p gateway-consent --bench projection`

use std::collections::{BTreeMap, BTreeSet};
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value};

use gateway_consent::{CacheSettings, ConsentService, GrantRequest, PartnerPolicy, RefKey};
use gateway_core::consent::{Disclosure, ReleasePolicy, mask, project_document};
use gateway_core::time::UnixTime;
use gateway_core::{CustomerId, FieldCatalogue, FieldSpec, MaskRule, PartnerId, Tier};
use gateway_store::{Store, StoreConfig};

const DOCUMENT: &str = r#"{"customer_id":"C000001","tags":{"name":"张伟","occupation":"教师","risk_level":"C3","investment_preference":"balanced","lifecycle_stage":"mature","id_number":"110101198503021234","mobile":"13812345678","asset_tier":"high_net_worth","net_assets":734521.5,"annual_income":240000,"holdings":[{"product_id":"fund-000123","product_type":"fund","market_value":12000.0},{"product_id":"etf-510300","product_type":"etf","market_value":250000.0},{"product_id":"fip-004567","product_type":"fixed_income_plus","market_value":88000.0}],"churn_risk":0.73,"birth_date":"1985-03-02","home_address":"北京市朝阳区建国路1号院3号楼1201室","trade_password_hash":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}}"#;

fn catalogue() -> FieldCatalogue {
    use MaskRule::*;
    use Tier::*;
    let spec = |tier, mask| FieldSpec { tier, mask };
    FieldCatalogue::new(
        [
            ("name", spec(Public, None)),
            ("occupation", spec(Public, None)),
            ("risk_level", spec(Public, None)),
            ("investment_preference", spec(Public, None)),
            ("lifecycle_stage", spec(Public, None)),
            ("id_number", spec(Sensitive, Some(IdNumber))),
            ("mobile", spec(Sensitive, Some(Mobile))),
            ("asset_tier", spec(Sensitive, Some(Redact))),
            ("net_assets", spec(Sensitive, Some(AmountBucket))),
            ("annual_income", spec(Sensitive, Some(AmountBucket))),
            ("holdings", spec(Sensitive, Some(AmountBucket))),
            ("churn_risk", spec(Sensitive, Some(ScoreBand))),
            ("birth_date", spec(Sensitive, Some(Year))),
            ("home_address", spec(Secret, None)),
            ("trade_password_hash", spec(Never, None)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    )
}

/// The straightforward way: parse everything into a `Value`, keep and mask, write back.
fn project_with_value(
    catalogue: &FieldCatalogue,
    consented: &BTreeMap<String, Disclosure>,
    ceiling: &BTreeSet<String>,
    document: &[u8],
) -> Vec<u8> {
    let mut doc: Value = serde_json::from_slice(document).unwrap();
    let Some(Value::Object(tags)) = doc.get_mut("tags").map(Value::take) else {
        return Vec::new();
    };
    let mut out = Map::new();
    for (k, v) in tags {
        let (Some(spec), Some(d)) = (catalogue.get(&k), consented.get(&k)) else {
            continue;
        };
        if spec.tier == Tier::Never || spec.tier == Tier::Secret || !ceiling.contains(&k) {
            continue;
        }
        let v = match (spec.tier, d) {
            (Tier::Sensitive, Disclosure::Masked) => mask(spec.mask.unwrap(), &v),
            _ => v,
        };
        out.insert(k, v);
    }
    serde_json::to_vec(&out).unwrap()
}

fn bench(c: &mut Criterion) {
    let catalogue = catalogue();
    let ceiling: BTreeSet<String> = catalogue
        .iter()
        .filter(|(_, s)| s.tier != Tier::Never)
        .map(|(k, _)| k.to_owned())
        .collect();
    // Everything granted: public plain, sensitive half plain, half masked.
    let consented: BTreeMap<String, Disclosure> = catalogue
        .iter()
        .enumerate()
        .map(|(i, (k, _))| {
            let d = if i % 2 == 0 {
                Disclosure::Masked
            } else {
                Disclosure::Plain
            };
            (k.to_owned(), d)
        })
        .collect();
    let policy = ReleasePolicy {
        catalogue: &catalogue,
        consented: &consented,
        second_authorisation: false,
        ceiling: &ceiling,
    };
    let doc = DOCUMENT.as_bytes();
    eprintln!("document: {} bytes", doc.len());

    let mut group = c.benchmark_group("projection");
    group.bench_function("streaming (shipped)", |b| {
        b.iter(|| project_document(black_box(&policy), None, black_box(doc)).unwrap())
    });
    group.bench_function("value parse + retain + write", |b| {
        b.iter(|| project_with_value(&catalogue, &consented, &ceiling, black_box(doc)))
    });
    let all_masked: BTreeMap<String, Disclosure> = catalogue
        .iter()
        .map(|(k, _)| (k.to_owned(), Disclosure::Masked))
        .collect();
    let masked_policy = ReleasePolicy {
        consented: &all_masked,
        ..policy
    };
    group.bench_function("streaming, every sensitive field masked", |b| {
        b.iter(|| project_document(black_box(&masked_policy), None, black_box(doc)).unwrap())
    });
    let all_plain: BTreeMap<String, Disclosure> = catalogue
        .iter()
        .map(|(k, _)| (k.to_owned(), Disclosure::Plain))
        .collect();
    let plain_policy = ReleasePolicy {
        consented: &all_plain,
        ..policy
    };
    group.bench_function("streaming, everything plain", |b| {
        b.iter(|| project_document(black_box(&plain_policy), None, black_box(doc)).unwrap())
    });
    group.bench_function("value, everything plain", |b| {
        b.iter(|| project_with_value(&catalogue, &all_plain, &ceiling, black_box(doc)))
    });
    let one = ["risk_level"];
    group.bench_function("streaming, ?fields=risk_level", |b| {
        b.iter(|| project_document(black_box(&policy), Some(&one), black_box(doc)).unwrap())
    });
    group.finish();

    let key = RefKey::new(&[7u8; 32]).unwrap();
    let customer = CustomerId::parse("C000001").unwrap();
    let partner = PartnerId::parse("demo-bank").unwrap();
    c.bench_function("pairwise ref HMAC-SHA256", |b| {
        b.iter(|| key.customer_ref(black_box(&customer), black_box(&partner)))
    });

    // A cache hit on the embedded store (block_on on a current-thread runtime included).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (service, bank, customer_ref) = runtime.block_on(async {
        let store = Store::open(StoreConfig::Embedded {
            path: dir.path().join("state.redb"),
        })
        .await
        .unwrap();
        let settings = CacheSettings {
            ttl: Duration::from_secs(3600),
            staleness_bound: Duration::from_secs(3600),
            ..CacheSettings::default()
        };
        let service = ConsentService::new(store, key.clone(), settings);
        let bank = PartnerPolicy {
            id: partner.clone(),
            ceiling: ceiling.clone(),
            purposes: ["wealth_advice".to_owned()].into(),
            active: true,
        };
        let request: GrantRequest = serde_json::from_value(serde_json::json!({
            "customer_id": "C000001", "partner_id": "demo-bank", "purpose": "wealth_advice",
            "fields": {"risk_level": "plain", "mobile": "masked"},
            "expires_at": "2099-01-01T00:00:00Z"
        }))
        .unwrap();
        let record = service
            .grant(&request, &catalogue, Some(&bank), UnixTime(1_800_000_000))
            .await
            .unwrap();
        (service, bank, record.customer_ref)
    });
    let now = UnixTime(1_800_000_000);
    c.bench_function("active_consent, cache hit", |b| {
        b.iter(|| {
            runtime
                .block_on(service.active_consent(&bank, black_box(&customer_ref), now))
                .unwrap()
                .unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
