//! The product catalogue generator: open-end funds from every manager's themes (A and C share
//! classes), well-known ETFs, cross-border funds in USD/HKD and fixed-income-plus funds.

use std::collections::BTreeSet;

use super::words::{
    ETFS, FIXED_INCOME_PLUS_THEMES, FOREIGN_CURRENCY_FUNDS, FUND_THEMES, FundKind, MANAGERS,
};
use super::{
    Currency, NAV_DATE, Product, ProductRisk, ProductType, cents, date, days_in_month, yuan,
};
use crate::prng::SplitMix64;

/// Seed of the catalogue stream ("CATALOGU").
const SEED: u64 = 0x4341_5441_4C4F_4755;

/// Themes each manager runs, of [`FUND_THEMES`].
const THEMES_PER_MANAGER: usize = 6;

/// Fixed-income-plus funds each manager runs, of [`FIXED_INCOME_PLUS_THEMES`].
const FIXED_INCOME_PLUS_PER_MANAGER: usize = 2;

/// Generates the catalogue, sorted by `id`.
pub(super) fn generate() -> Vec<Product> {
    let mut r = SplitMix64::new(SEED);
    let mut codes = Codes::default();
    for (code, ..) in ETFS {
        codes.taken.insert((*code).to_owned());
    }
    let mut products = Vec::new();

    for (m, (brand, manager)) in MANAGERS.iter().enumerate() {
        for k in 0..THEMES_PER_MANAGER {
            // Stepping by 4 from a per-manager offset gives 6 distinct themes per manager.
            let (suffix, kind, description) = FUND_THEMES[(m * 5 + k * 4) % FUND_THEMES.len()];
            let code_a = codes.pair(&mut r);
            let inception = inception(&mut r);
            let nav_e4 = nav_e4(&mut r, kind);
            let fee_bp = fee_bp(&mut r, kind);
            let min_purchase = open_fund_min_purchase(&mut r, kind);
            let risk_level = fund_risk(&mut r, kind);
            // Money funds name their classes A/B, the others A/C.
            let classes = if kind == FundKind::Money {
                ["A", "B"]
            } else {
                ["A", "C"]
            };
            for (offset, class) in classes.iter().enumerate() {
                let code = format!("{:06}", code_a + offset as u32);
                products.push(Product {
                    id: format!("fund-{code}"),
                    code,
                    name: format!("{brand}{suffix}{class}"),
                    product_type: ProductType::Fund,
                    risk_level,
                    currency: Currency::Cny,
                    manager: (*manager).to_owned(),
                    nav: nav(nav_e4),
                    nav_date: NAV_DATE.to_owned(),
                    inception_date: inception.clone(),
                    min_purchase: cents(min_purchase),
                    management_fee_rate: fee(fee_bp),
                    description: description.to_owned(),
                });
            }
        }
        for k in 0..FIXED_INCOME_PLUS_PER_MANAGER {
            let (suffix, hybrid) =
                FIXED_INCOME_PLUS_THEMES[(m * 3 + k * 4) % FIXED_INCOME_PLUS_THEMES.len()];
            let code = format!("{:06}", codes.single(&mut r));
            let risk = if hybrid && r.chance(60) {
                ProductRisk::R3
            } else {
                ProductRisk::R2
            };
            products.push(Product {
                id: format!("fip-{code}"),
                code,
                name: format!("{brand}{suffix}A"),
                product_type: ProductType::FixedIncomePlus,
                risk_level: risk,
                currency: Currency::Cny,
                manager: (*manager).to_owned(),
                nav: nav(r.range(9_800, 13_500)),
                nav_date: NAV_DATE.to_owned(),
                inception_date: inception(&mut r),
                min_purchase: cents(*r.weighted(&[(yuan(1), 4), (yuan(10), 4), (yuan(100), 2)])),
                management_fee_rate: fee(*r.pick(&[40, 50, 60, 80])),
                description:
                    "以债券等固定收益资产为主（不低于80%），适度参与股票、可转债投资以增强收益，\
                              力争在控制回撤的基础上实现资产的稳健增值。"
                        .to_owned(),
            });
        }
    }

    for (code, name, brand, index, risk, fee_bp) in ETFS {
        let nav_e4 = r.range(5_000, 60_000);
        products.push(Product {
            id: format!("etf-{code}"),
            code: (*code).to_owned(),
            name: (*name).to_owned(),
            product_type: ProductType::Etf,
            risk_level: product_risk(*risk),
            currency: Currency::Cny,
            manager: manager_of(brand),
            nav: nav(nav_e4),
            nav_date: NAV_DATE.to_owned(),
            inception_date: inception(&mut r),
            // One lot of 100 units at NAV: 100 × nav_e4 / 10 000 CNY = nav_e4 cents.
            min_purchase: cents(nav_e4),
            management_fee_rate: fee(*fee_bp),
            description: format!("紧密跟踪{index}指数，追求跟踪偏离度和跟踪误差的最小化。"),
        });
    }

    for (name, brand, currency, risk) in FOREIGN_CURRENCY_FUNDS {
        let code = format!("{:06}", codes.single(&mut r));
        let currency = Currency::parse(currency).unwrap_or(Currency::Usd);
        products.push(Product {
            id: format!("fund-{code}"),
            code,
            name: (*name).to_owned(),
            product_type: ProductType::Fund,
            risk_level: product_risk(*risk),
            currency,
            manager: manager_of(brand),
            nav: nav(r.range(8_000, 30_000)),
            nav_date: NAV_DATE.to_owned(),
            inception_date: inception(&mut r),
            min_purchase: cents(*r.pick(&[yuan(10), yuan(100), yuan(1_000)])),
            management_fee_rate: fee(*r.pick(&[80, 100, 120])),
            description: "通过合格境内机构投资者（QDII）额度投资境外市场，以外币份额申购赎回，\
                          分享全球资产配置机会。"
                .to_owned(),
        });
    }

    products.sort_by(|a, b| a.id.cmp(&b.id));
    products
}

/// Unique 6-digit fund codes in the open-end range `000001..=019999`, away from the ETF codes.
#[derive(Default)]
struct Codes {
    taken: BTreeSet<String>,
}

impl Codes {
    /// A free code `c` whose neighbour `c + 1` is free too (A and C classes sit side by side).
    fn pair(&mut self, r: &mut SplitMix64) -> u32 {
        loop {
            let code = r.range(1, 19_998) as u32;
            let (a, c) = (format!("{code:06}"), format!("{:06}", code + 1));
            if !self.taken.contains(&a) && !self.taken.contains(&c) {
                self.taken.insert(a);
                self.taken.insert(c);
                return code;
            }
        }
    }

    fn single(&mut self, r: &mut SplitMix64) -> u32 {
        loop {
            let code = r.range(1, 19_999) as u32;
            if self.taken.insert(format!("{code:06}")) {
                return code;
            }
        }
    }
}

fn manager_of(brand: &str) -> String {
    MANAGERS
        .iter()
        .find(|(b, _)| *b == brand)
        .map_or_else(|| format!("{brand}基金"), |(_, full)| (*full).to_owned())
}

fn product_risk(level: u8) -> ProductRisk {
    match level {
        0 | 1 => ProductRisk::R1,
        2 => ProductRisk::R2,
        3 => ProductRisk::R3,
        4 => ProductRisk::R4,
        _ => ProductRisk::R5,
    }
}

fn fund_risk(r: &mut SplitMix64, kind: FundKind) -> ProductRisk {
    match kind {
        FundKind::Money => ProductRisk::R1,
        FundKind::Bond => ProductRisk::R2,
        FundKind::Mixed if r.chance(60) => ProductRisk::R3,
        FundKind::Mixed | FundKind::Equity | FundKind::IndexEnhanced => ProductRisk::R4,
        FundKind::Sector if r.chance(50) => ProductRisk::R4,
        FundKind::Sector => ProductRisk::R5,
    }
}

/// NAV in units of 0.0001.
fn nav_e4(r: &mut SplitMix64, kind: FundKind) -> u64 {
    match kind {
        FundKind::Money => 10_000,
        FundKind::Bond => r.range(10_000, 14_000),
        _ => r.skewed(6_000, 45_000),
    }
}

fn nav(nav_e4: u64) -> f64 {
    nav_e4 as f64 / 10_000.0
}

fn fee_bp(r: &mut SplitMix64, kind: FundKind) -> u32 {
    match kind {
        FundKind::Money => *r.pick(&[15, 20, 25, 27, 33]),
        FundKind::Bond => *r.pick(&[20, 30]),
        FundKind::IndexEnhanced => *r.pick(&[80, 100]),
        FundKind::Mixed | FundKind::Equity | FundKind::Sector => {
            *r.weighted(&[(120, 7), (100, 2), (150, 1)])
        }
    }
}

fn fee(basis_points: u32) -> f64 {
    f64::from(basis_points) / 10_000.0
}

/// Minimum purchase in cents.
fn open_fund_min_purchase(r: &mut SplitMix64, kind: FundKind) -> u64 {
    if kind == FundKind::Money {
        return 1;
    }
    *r.weighted(&[
        (yuan(1), 40),
        (yuan(10), 40),
        (yuan(100), 15),
        (yuan(1_000), 5),
    ])
}

fn inception(r: &mut SplitMix64) -> String {
    let year = r.range(2003, 2025) as u32;
    let month = r.range(1, 12) as u32;
    let day = r.range(1, u64::from(days_in_month(year, month))) as u32;
    date(year, month, day)
}
