use std::collections::{BTreeSet, HashMap};

use super::*;

/// The keys under `fields:` in the sample `gateway.yaml`, by a line scan: an entry is a line
/// indented by exactly two spaces, `  <name>:`, until the next unindented line.
fn catalogue_fields() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../partner-config/gateway.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut fields = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("fields:") {
            inside = true;
            continue;
        }
        if !inside || line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            break;
        }
        if let Some(entry) = line.strip_prefix("  ")
            && !entry.starts_with(' ')
        {
            let name = entry.split(':').next().unwrap().trim();
            fields.push(name.to_owned());
        }
    }
    fields
}

/// An independent MOD 11-2 check (GB 11643-1999), not the generator's.
fn valid_id_check(id: &str) -> bool {
    let b = id.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    // Weights are 2^(17 - i) mod 11.
    let mut sum = 0u32;
    for (i, digit) in b[..17].iter().enumerate() {
        let weight = (1u32 << (17 - i)) % 11;
        sum += u32::from(digit - b'0') * weight;
    }
    let value = (12 - sum % 11) % 11;
    let expected = if value == 10 {
        b'X'
    } else {
        b'0' + value as u8
    };
    b[17] == expected
}

fn decimals(value: f64) -> usize {
    let text = value.to_string();
    text.split_once('.').map_or(0, |(_, frac)| frac.len())
}

#[test]
fn field_names_equal_the_catalogue_in_gateway_yaml() {
    let catalogue = catalogue_fields();
    assert_eq!(
        catalogue, TAG_FIELDS,
        "TAG_FIELDS must list gateway.yaml's fields in order"
    );

    let mut seen = BTreeSet::new();
    for id in 1..=CUSTOMER_COUNT {
        let document: serde_json::Value =
            serde_json::from_slice(&customer_document(&customer_id(id)).unwrap()).unwrap();
        let tags = document["tags"].as_object().unwrap();
        for key in tags.keys() {
            assert!(TAG_FIELDS.contains(&key.as_str()), "unknown tag {key}");
            seen.insert(key.clone());
        }
    }
    let expected: BTreeSet<String> = catalogue.into_iter().collect();
    assert_eq!(
        seen, expected,
        "every catalogue field appears in some customer"
    );
}

#[test]
fn generating_twice_gives_equal_data() {
    for n in [1, 2, 500, 1999, CUSTOMER_COUNT] {
        assert_eq!(generate_customer(n), generate_customer(n));
        assert_eq!(generate_customer(n).as_ref(), customer(&customer_id(n)));
    }
    assert_eq!(generate_products(), generate_products());
    assert_eq!(generate_products(), products());
}

#[test]
fn documents_are_pinned_across_runs_and_machines() {
    // A fingerprint of every served byte. If this changes, every customer and product the
    // partner developers know has changed: do it only on purpose, and say so in the commit.
    let mut all = Vec::new();
    for n in 1..=CUSTOMER_COUNT {
        all.extend_from_slice(&customer_document(&customer_id(n)).unwrap());
    }
    all.extend_from_slice(&catalogue_document());
    assert_eq!(
        (format!("{:016x}", fnv1a(&all)), catalogue_version()),
        (PINNED_FINGERPRINT.to_owned(), PINNED_CATALOGUE_VERSION)
    );
}

const PINNED_FINGERPRINT: &str = "7844a61181679ffc";
const PINNED_CATALOGUE_VERSION: &str = "0393712be6425759";

#[test]
fn documents_deserialize_back_to_the_records() {
    for n in [1, 42, 1234] {
        let id = customer_id(n);
        let parsed: Customer = serde_json::from_slice(&customer_document(&id).unwrap()).unwrap();
        assert_eq!(Some(&parsed), customer(&id));
    }
    let parsed: serde_json::Value = serde_json::from_slice(&catalogue_document()).unwrap();
    let list: Vec<Product> = serde_json::from_value(parsed["products"].clone()).unwrap();
    assert_eq!(list, products());
    assert_eq!(parsed["version"], catalogue_version());
    for p in products().iter().take(5) {
        let one: Product = serde_json::from_slice(&product_document(&p.id).unwrap()).unwrap();
        assert_eq!(&one, p);
    }
}

#[test]
fn there_are_enough_customers_and_products() {
    assert!(customers().len() >= 1000);
    assert_eq!(customers().len(), CUSTOMER_COUNT as usize);
    assert_eq!(customers()[0].customer_id.as_str(), "C000001");
    assert_eq!(customers()[1999].customer_id.as_str(), "C002000");
    assert!(products().len() >= 250, "{}", products().len());
}

#[test]
fn lookups_accept_only_known_ids() {
    assert!(customer("C000001").is_some());
    assert!(customer("C002000").is_some());
    for bad in [
        "", "C000000", "C002001", "C1", "c000001", "C0000001", "C00000a", "X000001",
    ] {
        assert!(customer(bad).is_none(), "{bad}");
        assert!(customer_document(bad).is_none(), "{bad}");
    }
    let first = &products()[0];
    assert_eq!(product(&first.id), Some(first));
    assert!(product("fund-999999").is_none());
    assert!(product_document("").is_none());
}

#[test]
fn id_numbers_have_valid_check_characters_and_match_birth_dates() {
    let mut ids = BTreeSet::new();
    for c in customers() {
        let t = &c.tags;
        assert!(
            valid_id_check(&t.id_number),
            "{}: {}",
            c.customer_id,
            t.id_number
        );
        let birth = t.birth_date.replace('-', "");
        assert_eq!(&t.id_number[6..14], birth, "{}", c.customer_id);
        assert!(ids.insert(t.id_number.clone()), "duplicate {}", t.id_number);
        // A real region code: one of the word list's.
        assert!(
            words::REGIONS.iter().any(|r| r.code == &t.id_number[..6]),
            "{}",
            t.id_number
        );
    }
    // The check itself, on the standard's worked example.
    assert!(valid_id_check("11010519491231002X"));
    assert!(!valid_id_check("110105194912310021"));
}

#[test]
fn birth_dates_are_real_dates_of_adults() {
    for c in customers() {
        let d = &c.tags.birth_date;
        assert_eq!(d.len(), 10, "{d}");
        let (y, m, day): (u32, u32, u32) = (
            d[..4].parse().unwrap(),
            d[5..7].parse().unwrap(),
            d[8..].parse().unwrap(),
        );
        assert!((1940..=2007).contains(&y), "{d}");
        assert!(
            (1..=12).contains(&m) && day >= 1 && day <= days_in_month(y, m),
            "{d}"
        );
    }
}

#[test]
fn mobiles_are_eleven_digits_with_real_prefixes() {
    for c in customers() {
        let m = &c.tags.mobile;
        assert_eq!(m.len(), 11, "{m}");
        assert!(m.bytes().all(|b| b.is_ascii_digit()), "{m}");
        assert!(
            matches!(&m[..2], "13" | "14" | "15" | "16" | "17" | "18" | "19"),
            "{m}"
        );
        assert_ne!(&m[..3], "154", "{m}");
    }
}

#[test]
fn names_are_two_or_three_chinese_characters() {
    for c in customers() {
        let n = &c.tags.name;
        let count = n.chars().count();
        assert!((2..=3).contains(&count), "{n}");
        assert!(
            n.chars().all(|ch| ('\u{4e00}'..='\u{9fff}').contains(&ch)),
            "{n}"
        );
    }
}

#[test]
fn holdings_refer_to_catalogue_products_within_suitability() {
    let by_id: HashMap<&str, &Product> = products().iter().map(|p| (p.id.as_str(), p)).collect();
    let mut held = 0;
    for c in customers() {
        let t = &c.tags;
        let mut ids = BTreeSet::new();
        let mut families = BTreeSet::new();
        let mut total = 0.0;
        for h in &t.holdings {
            let p = by_id
                .get(h.product_id.as_str())
                .unwrap_or_else(|| panic!("{}: unknown product {}", c.customer_id, h.product_id));
            assert_eq!(h.product_type, p.product_type);
            assert!(
                p.risk_level <= t.risk_level.max_product_risk(),
                "{}",
                c.customer_id
            );
            assert!(h.market_value > 0.0 && decimals(h.market_value) <= 2);
            assert!(
                ids.insert(&h.product_id),
                "{} holds {} twice",
                c.customer_id,
                h.product_id
            );
            let family = p.name.trim_end_matches(['A', 'B', 'C']);
            assert!(
                families.insert(family),
                "{} holds two classes of {family}",
                c.customer_id
            );
            total += h.market_value;
            held += 1;
        }
        assert!(total <= t.net_assets + 1.0, "{}", c.customer_id);
        if t.lifecycle_stage == LifecycleStage::Churned {
            assert!(t.holdings.is_empty());
        }
    }
    assert!(
        held > 2 * CUSTOMER_COUNT,
        "most customers hold several products: {held}"
    );
}

#[test]
fn about_ten_percent_lack_optional_fields() {
    let gaps = customers()
        .iter()
        .filter(|c| {
            c.tags.annual_income.is_none()
                || c.tags.home_address.is_none()
                || c.tags.occupation.is_none()
        })
        .count();
    let share = gaps * 100 / customers().len();
    assert!((6..=14).contains(&share), "{share} %");
}

#[test]
fn values_are_in_their_ranges_and_distributions_are_plausible() {
    let mut risks = BTreeSet::new();
    let mut stages = BTreeSet::new();
    let mut tiers = BTreeSet::new();
    let mut preferences = BTreeSet::new();
    for c in customers() {
        let t = &c.tags;
        risks.insert(t.risk_level);
        stages.insert(t.lifecycle_stage);
        tiers.insert(t.asset_tier);
        preferences.insert(t.investment_preference);
        assert!((0.0..=1.0).contains(&t.churn_risk) && decimals(t.churn_risk) <= 2);
        assert!(t.net_assets >= 0.0 && decimals(t.net_assets) <= 2);
        let yuan = t.net_assets as u64;
        let tier = match yuan {
            ..100_000 => AssetTier::Mass,
            100_000..500_000 => AssetTier::EmergingAffluent,
            500_000..3_000_000 => AssetTier::Affluent,
            3_000_000..10_000_000 => AssetTier::HighNetWorth,
            _ => AssetTier::UltraHighNetWorth,
        };
        assert_eq!(t.asset_tier, tier, "{}", c.customer_id);
        if let Some(income) = t.annual_income {
            assert!(income % 1000 == 0 && income <= 5_000_000);
        }
        assert_eq!(t.trade_password_hash.len(), 64);
        assert!(t.trade_password_hash.bytes().all(|b| b.is_ascii_hexdigit()));
        if let Some(address) = &t.home_address {
            assert!(
                address.contains('区') && address.contains('号'),
                "{address}"
            );
        }
    }
    assert_eq!(risks.len(), RiskLevel::ALL.len());
    assert_eq!(stages.len(), LifecycleStage::ALL.len());
    assert_eq!(tiers.len(), AssetTier::ALL.len());
    assert_eq!(preferences.len(), InvestmentPreference::ALL.len());

    let mut assets: Vec<f64> = customers().iter().map(|c| c.tags.net_assets).collect();
    assets.sort_by(f64::total_cmp);
    let median = assets[assets.len() / 2];
    assert!(
        (30_000.0..=400_000.0).contains(&median),
        "median net assets {median}"
    );
}

#[test]
fn products_are_sorted_unique_and_well_formed() {
    let list = products();
    assert!(
        list.windows(2).all(|w| w[0].id < w[1].id),
        "sorted by id, no duplicates"
    );
    let codes: BTreeSet<&str> = list.iter().map(|p| p.code.as_str()).collect();
    assert_eq!(codes.len(), list.len(), "codes are unique");
    let names: BTreeSet<&str> = list.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), list.len(), "names are unique");
    for p in list {
        assert_eq!(p.code.len(), 6, "{}", p.code);
        assert!(p.code.bytes().all(|b| b.is_ascii_digit()));
        let prefix = match p.product_type {
            ProductType::Fund => "fund-",
            ProductType::Etf => "etf-",
            ProductType::FixedIncomePlus => "fip-",
        };
        assert_eq!(p.id, format!("{prefix}{}", p.code));
        assert!(p.nav > 0.0 && decimals(p.nav) <= 4, "{}", p.nav);
        assert!(p.min_purchase > 0.0 && decimals(p.min_purchase) <= 2);
        assert!((0.0..0.02).contains(&p.management_fee_rate));
        assert_eq!(p.nav_date, NAV_DATE);
        assert!(p.inception_date.as_str() < NAV_DATE);
        assert!(p.manager.ends_with("基金"), "{}", p.manager);
        assert!(!p.description.is_empty());
    }
    let count = |t: ProductType| list.iter().filter(|p| p.product_type == t).count();
    assert!(count(ProductType::Fund) >= 200);
    assert!(count(ProductType::Etf) >= 40);
    assert!(count(ProductType::FixedIncomePlus) >= 40);
    let cny = list.iter().filter(|p| p.currency == Currency::Cny).count();
    assert!(cny * 100 / list.len() >= 90, "mostly CNY");
    for currency in [Currency::Usd, Currency::Hkd] {
        assert!(list.iter().any(|p| p.currency == currency));
    }
    for risk in ProductRisk::ALL {
        assert!(list.iter().any(|p| p.risk_level == *risk), "{risk}");
    }
    assert_eq!(
        product("etf-510300").map(|p| p.name.as_str()),
        Some("沪深300ETF")
    );
    assert!(
        list.iter()
            .any(|p| p.name == "华夏成长混合A" && p.manager == "华夏基金")
    );
}

#[test]
fn customer_documents_are_about_a_kibibyte() {
    let sizes: Vec<usize> = (1..=CUSTOMER_COUNT)
        .map(|n| customer_document(&customer_id(n)).unwrap().len())
        .collect();
    let mean = sizes.iter().sum::<usize>() / sizes.len();
    assert!((500..=2048).contains(&mean), "mean document size {mean}");
}
