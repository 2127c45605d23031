//! The customer generator: one independent random stream per customer number, so customer
//! `n` does not depend on how many customers there are.

use gateway_core::CustomerId;

use super::words::{GIVEN_FEMALE, GIVEN_MALE, OCCUPATIONS, REGIONS, Region, SURNAMES};
use super::{
    AssetTier, Customer, CustomerTags, Holding, InvestmentPreference, LifecycleStage, Product,
    RiskLevel, cents, date, days_in_month, yuan,
};
use crate::data::Currency;
use crate::prng::SplitMix64;

/// Seed domain of the customer streams ("CRM_TAGS").
const DOMAIN: u64 = 0x4352_4D5F_5441_4753;

/// Ages are counted against this year: a customer of age `a` was born in `REFERENCE_YEAR - a`,
/// so everyone is an adult in 2026.
const REFERENCE_YEAR: u32 = 2025;

/// Age bands (inclusive) and their weights.
const AGE_BANDS: &[((u32, u32), u32)] = &[
    ((18, 24), 8),
    ((25, 34), 25),
    ((35, 44), 27),
    ((45, 54), 20),
    ((55, 64), 13),
    ((65, 80), 7),
];

const RISK_LEVELS: &[(RiskLevel, u32)] = &[
    (RiskLevel::C1, 8),
    (RiskLevel::C2, 22),
    (RiskLevel::C3, 35),
    (RiskLevel::C4, 25),
    (RiskLevel::C5, 10),
];

const LIFECYCLE: &[(LifecycleStage, u32)] = &[
    (LifecycleStage::New, 12),
    (LifecycleStage::Growing, 25),
    (LifecycleStage::Mature, 38),
    (LifecycleStage::Dormant, 15),
    (LifecycleStage::Churned, 10),
];

/// Net assets brackets in CNY (`lo..hi`) with weights; amounts cluster at the bottom of each.
const NET_ASSETS: &[((u64, u64), u32)] = &[
    ((1_000, 50_000), 25),
    ((50_000, 100_000), 17),
    ((100_000, 500_000), 30),
    ((500_000, 3_000_000), 19),
    ((3_000_000, 10_000_000), 6),
    ((10_000_000, 50_000_000), 3),
];

/// Annual income brackets of working customers in thousands of CNY, with weights.
const INCOME: &[((u64, u64), u32)] = &[
    ((20, 80), 35),
    ((80, 200), 35),
    ((200, 500), 18),
    ((500, 1_000), 8),
    ((1_000, 5_000), 4),
];

/// Mobile number prefixes in use by China Mobile, China Unicom and China Telecom.
const MOBILE_PREFIXES: &[&str] = &[
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "147", "150", "151",
    "152", "153", "155", "156", "157", "158", "159", "166", "173", "175", "176", "177", "178",
    "180", "181", "182", "183", "184", "185", "186", "187", "188", "189", "191", "198", "199",
];

const RETIRED: &str = "退休人员";
const STUDENT: &str = "学生";

/// Which optional fields a customer lacks, for the ~10 % with gaps.
const GAPS: &[((bool, bool, bool), u32)] = &[
    // (no annual_income, no home_address, no occupation)
    ((true, false, false), 40),
    ((false, true, false), 30),
    ((false, false, true), 10),
    ((true, true, false), 15),
    ((true, true, true), 5),
];

/// Generates customer `number` (1-based). Draw order is part of the data: change it and every
/// document changes.
pub(super) fn generate(number: u32, products: &[Product]) -> Customer {
    let mut r = SplitMix64::for_item(DOMAIN, u64::from(number));
    let male = r.chance(50);
    let name = name(&mut r, male);

    let (lo, hi) = *r.weighted(AGE_BANDS);
    let age = r.range(u64::from(lo), u64::from(hi)) as u32;
    let year = REFERENCE_YEAR - age;
    let month = r.range(1, 12) as u32;
    let day = r.range(1, u64::from(days_in_month(year, month))) as u32;
    let birth_date = date(year, month, day);

    let birthplace = r.pick(REGIONS);
    let sequence = r.below(500) * 2 + u64::from(male); // odd for men, even for women
    let id_number = id_number(birthplace.code, year, month, day, sequence);
    let mobile = format!("{}{:08}", r.pick(MOBILE_PREFIXES), r.below(100_000_000));

    let risk_level = *r.weighted(RISK_LEVELS);
    let investment_preference = preference(&mut r, risk_level);
    let lifecycle_stage = *r.weighted(LIFECYCLE);

    let net_cents = net_assets_cents(&mut r, lifecycle_stage, age);
    let asset_tier = tier(net_cents);
    let occupation = occupation(&mut r, age);
    let annual_income = income(&mut r, occupation, asset_tier);
    let holdings = holdings(&mut r, products, risk_level, lifecycle_stage, net_cents);
    let churn_risk = churn_risk(&mut r, lifecycle_stage);

    let home = if r.chance(75) {
        birthplace
    } else {
        r.pick(REGIONS)
    };
    let home_address = address(&mut r, home);
    let trade_password_hash = format!(
        "{:016x}{:016x}{:016x}{:016x}",
        r.next_u64(),
        r.next_u64(),
        r.next_u64(),
        r.next_u64()
    );

    let (no_income, no_address, no_occupation) = if r.chance(10) {
        *r.weighted(GAPS)
    } else {
        (false, false, false)
    };

    let customer_id = super::customer_id(number);
    Customer {
        // "C" and six digits always pass the customer id syntax check.
        customer_id: CustomerId::parse(&customer_id).expect("C + 6 digits is a valid id"),
        tags: CustomerTags {
            name,
            occupation: (!no_occupation).then(|| occupation.to_owned()),
            risk_level,
            investment_preference,
            lifecycle_stage,
            id_number,
            mobile,
            asset_tier,
            net_assets: cents(net_cents),
            annual_income: (!no_income).then_some(annual_income),
            holdings,
            churn_risk,
            birth_date,
            home_address: (!no_address).then_some(home_address),
            trade_password_hash,
        },
    }
}

/// The ISO 7064 MOD 11-2 check character of the first 17 digits of an ID number
/// (GB 11643-1999).
pub(super) fn id_check_character(first17: &[u8; 17]) -> char {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    char::from(CHECK[(sum % 11) as usize])
}

fn id_number(region: &str, year: u32, month: u32, day: u32, sequence: u64) -> String {
    let first17 = format!("{region}{year:04}{month:02}{day:02}{sequence:03}");
    let mut digits = [0u8; 17];
    // The region code is 6 digits and the rest is formatted to 11 digits above.
    digits.copy_from_slice(&first17.as_bytes()[..17]);
    let check = id_check_character(&digits);
    format!("{first17}{check}")
}

fn name(r: &mut SplitMix64, male: bool) -> String {
    let surname = *r.weighted(SURNAMES);
    let given = if male { GIVEN_MALE } else { GIVEN_FEMALE };
    let mut name = String::from(surname);
    let first = r.pick(given);
    name.push_str(first);
    // Compound surnames take one given character, so every name has 2–3 characters.
    if surname.chars().count() == 1 && r.chance(70) {
        let mut second = r.pick(given);
        while second == first {
            second = r.pick(given);
        }
        name.push_str(second);
    }
    name
}

fn preference(r: &mut SplitMix64, risk: RiskLevel) -> InvestmentPreference {
    use InvestmentPreference::{Aggressive, Balanced, Growth, StableIncome};
    let table: &[(InvestmentPreference, u32)] = match risk {
        RiskLevel::C1 => &[(StableIncome, 80), (Balanced, 20)],
        RiskLevel::C2 => &[(StableIncome, 50), (Balanced, 45), (Growth, 5)],
        RiskLevel::C3 => &[(StableIncome, 15), (Balanced, 50), (Growth, 35)],
        RiskLevel::C4 => &[(Balanced, 25), (Growth, 55), (Aggressive, 20)],
        RiskLevel::C5 => &[(Growth, 40), (Aggressive, 60)],
    };
    *r.weighted(table)
}

fn net_assets_cents(r: &mut SplitMix64, stage: LifecycleStage, age: u32) -> u64 {
    if stage == LifecycleStage::Churned {
        return r.skewed(0, yuan(5_000));
    }
    // Young customers rarely bring more than CNY 500k.
    let brackets = if age < 25 {
        &NET_ASSETS[..3]
    } else {
        NET_ASSETS
    };
    let (lo, hi) = *r.weighted(brackets);
    r.skewed(yuan(lo), yuan(hi))
}

fn tier(net_cents: u64) -> AssetTier {
    match net_cents / 100 {
        ..100_000 => AssetTier::Mass,
        100_000..500_000 => AssetTier::EmergingAffluent,
        500_000..3_000_000 => AssetTier::Affluent,
        3_000_000..10_000_000 => AssetTier::HighNetWorth,
        _ => AssetTier::UltraHighNetWorth,
    }
}

fn occupation(r: &mut SplitMix64, age: u32) -> &'static str {
    if age >= 60 && r.chance(65) {
        RETIRED
    } else if age <= 22 && r.chance(60) {
        STUDENT
    } else {
        let occupation: &&'static str = r.weighted(OCCUPATIONS);
        occupation
    }
}

/// Whole thousands of CNY. Wealthier customers tend to earn more: their bracket is drawn from
/// the upper part of the table.
fn income(r: &mut SplitMix64, occupation: &str, tier: AssetTier) -> u64 {
    let lowest_bracket = match tier {
        AssetTier::Mass | AssetTier::EmergingAffluent => 0,
        AssetTier::Affluent => 1,
        AssetTier::HighNetWorth => 2,
        AssetTier::UltraHighNetWorth => 3,
    };
    let thousands = match occupation {
        STUDENT => r.skewed(0, 30),
        RETIRED => r.skewed(30, 150),
        _ => {
            let (lo, hi) = *r.weighted(&INCOME[lowest_bracket..]);
            r.skewed(lo, hi)
        }
    };
    thousands * 1000
}

fn holdings(
    r: &mut SplitMix64,
    products: &[Product],
    risk: RiskLevel,
    stage: LifecycleStage,
    net_cents: u64,
) -> Vec<Holding> {
    let count = match stage {
        LifecycleStage::New => r.range(0, 2),
        LifecycleStage::Growing => r.range(1, 4),
        LifecycleStage::Mature => r.range(2, 8),
        LifecycleStage::Dormant => r.range(0, 3),
        LifecycleStage::Churned => 0,
    } as usize;
    // Suitability: only products at or below the customer's rating; the account is in CNY.
    let eligible: Vec<&Product> = products
        .iter()
        .filter(|p| p.risk_level <= risk.max_product_risk() && p.currency == Currency::Cny)
        .collect();
    if count == 0 || eligible.is_empty() || net_cents < yuan(1_000) {
        return Vec::new();
    }
    // Distinct funds: never two share classes (A/C) of the same fund. Bounded tries, since
    // the eligible list of a C1 customer is short.
    let mut chosen: Vec<&Product> = Vec::with_capacity(count);
    for _ in 0..count * 8 {
        if chosen.len() == count {
            break;
        }
        let candidate = *r.pick(&eligible);
        if !chosen
            .iter()
            .any(|p| fund_family(p) == fund_family(candidate))
        {
            chosen.push(candidate);
        }
    }
    let invested = net_cents / 100 * r.range(30, 95);
    let weights: Vec<u64> = chosen.iter().map(|_| r.range(1, 1000)).collect();
    let total: u64 = weights.iter().sum();
    let mut holdings: Vec<(u64, &Product)> = chosen
        .iter()
        .zip(&weights)
        .map(|(p, w)| ((invested * w / total).max(100), *p))
        .collect();
    // Largest position first, as statements list them.
    holdings.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
    holdings
        .into_iter()
        .map(|(value, p)| Holding {
            product_id: p.id.clone(),
            product_type: p.product_type,
            market_value: cents(value),
        })
        .collect()
}

/// A fund's name without its share class letter.
fn fund_family(product: &Product) -> &str {
    product.name.trim_end_matches(['A', 'B', 'C'])
}

fn churn_risk(r: &mut SplitMix64, stage: LifecycleStage) -> f64 {
    let (lo, hi) = match stage {
        LifecycleStage::New => (10, 45),
        LifecycleStage::Growing => (5, 30),
        LifecycleStage::Mature => (2, 25),
        LifecycleStage::Dormant => (50, 90),
        LifecycleStage::Churned => (85, 99),
    };
    cents(r.range(lo, hi))
}

fn address(r: &mut SplitMix64, region: &Region) -> String {
    let street = r.pick(&region.streets);
    let number = r.range(1, 399);
    let mut address = format!(
        "{}{}{}{street}{number}号",
        region.province, region.city, region.district
    );
    if r.chance(85) {
        let building = r.range(1, 20);
        let unit = r.range(1, 4);
        let floor = r.range(1, 32);
        let room = r.range(1, 4);
        address.push_str(&format!("{building}栋{unit}单元{floor}{room:02}室"));
    }
    address
}
