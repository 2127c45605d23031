//! The synthetic data: customers with CRM tags and the product catalogue.
//!
//! Everything is generated from fixed seeds with integer arithmetic only, so customer
//! `C000042` is the same document on every run and every machine. The generators are public
//! ([`generate_customer`], [`generate_products`]) for tests that want fresh values; the
//! accessors ([`customer`], [`products`], ...) hand out one shared copy, built at first use
//! together with the serialized JSON the HTTP service answers with ([`customer_document`],
//! [`catalogue_document`]).
//!
//! # Shapes
//!
//! A customer document, as `GET /crm/customers/{id}/tags` answers it (optional fields may be
//! absent):
//!
//! ```json
//! {"customer_id": "C000001",
//!  "tags": {"name": "王芳", "occupation": "教师", "risk_level": "C3",
//!           "investment_preference": "balanced", "lifecycle_stage": "mature",
//!           "id_number": "11010819850312402X", "mobile": "13812345678",
//!           "asset_tier": "affluent", "net_assets": 812345.67, "annual_income": 186000,
//!           "holdings": [{"product_id": "fund-001234", "product_type": "fund",
//!                         "market_value": 120000.5}],
//!           "churn_risk": 0.12, "birth_date": "1985-03-12",
//!           "home_address": "北京市海淀区知春路18号3栋2单元501室",
//!           "trade_password_hash": "9f86d081884c7d65..."}}
//! ```
//!
//! Tag keys are exactly the field names of the catalogue in `partner-config/gateway.yaml`
//! ([`TAG_FIELDS`]). Holdings respect suitability (适当性): a customer rated `Ck` holds only
//! products rated `Rk` or lower.

use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;
use gateway_core::CustomerId;
use serde::{Deserialize, Serialize};

mod customers;
mod products;
mod words;

/// How many customers the sandbox knows: `C000001` … `C002000`.
pub const CUSTOMER_COUNT: u32 = 2000;

/// The tag fields a customer document can carry, in document order. Equal to the keys under
/// `fields:` in `partner-config/gateway.yaml` (a test checks it).
pub const TAG_FIELDS: [&str; 15] = [
    "name",
    "occupation",
    "risk_level",
    "investment_preference",
    "lifecycle_stage",
    "id_number",
    "mobile",
    "asset_tier",
    "net_assets",
    "annual_income",
    "holdings",
    "churn_risk",
    "birth_date",
    "home_address",
    "trade_password_hash",
];

/// The date the synthetic NAVs are quoted for; fixed so the catalogue never changes.
pub const NAV_DATE: &str = "2026-11-26";

/// A word-valued field with a fixed set of values, serialised as its wire name.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The value as it appears on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// Parses the wire name.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&text).ok_or_else(|| {
                    serde::de::Error::custom(format_args!(
                        "unknown {} {text:?}",
                        stringify!($name)
                    ))
                })
            }
        }
    };
}

label_enum! {
    /// A customer's risk tolerance rating (C1 conservative … C5 aggressive).
    RiskLevel {
        /// Conservative.
        C1 => "C1",
        /// Cautious.
        C2 => "C2",
        /// Balanced.
        C3 => "C3",
        /// Growth-seeking.
        C4 => "C4",
        /// Aggressive.
        C5 => "C5",
    }
}

label_enum! {
    /// A product's risk rating (R1 lowest … R5 highest).
    ProductRisk {
        /// Low.
        R1 => "R1",
        /// Medium-low.
        R2 => "R2",
        /// Medium.
        R3 => "R3",
        /// Medium-high.
        R4 => "R4",
        /// High.
        R5 => "R5",
    }
}

label_enum! {
    /// What a customer wants from investing.
    InvestmentPreference {
        /// Steady income, capital preservation first.
        StableIncome => "stable_income",
        /// A balance of income and growth.
        Balanced => "balanced",
        /// Long-term capital growth.
        Growth => "growth",
        /// Maximum return, accepting large swings.
        Aggressive => "aggressive",
    }
}

label_enum! {
    /// Where a customer is in their relationship with the broker.
    LifecycleStage {
        /// Opened an account recently.
        New => "new",
        /// Adding assets and products.
        Growing => "growing",
        /// Established, stable.
        Mature => "mature",
        /// No activity for a long time.
        Dormant => "dormant",
        /// Has moved away; little or nothing left.
        Churned => "churned",
    }
}

label_enum! {
    /// The customer's segment by net assets.
    AssetTier {
        /// Below CNY 100k.
        Mass => "mass",
        /// CNY 100k to 500k.
        EmergingAffluent => "emerging_affluent",
        /// CNY 500k to 3m.
        Affluent => "affluent",
        /// CNY 3m to 10m.
        HighNetWorth => "high_net_worth",
        /// CNY 10m and more.
        UltraHighNetWorth => "ultra_high_net_worth",
    }
}

label_enum! {
    /// The kind of a product.
    ProductType {
        /// An open-end mutual fund (公募基金).
        Fund => "fund",
        /// An exchange-traded fund.
        Etf => "etf",
        /// A fixed-income-plus fund (固收+): mostly bonds, some equity.
        FixedIncomePlus => "fixed_income_plus",
    }
}

label_enum! {
    /// The currency a product is denominated in.
    Currency {
        /// Renminbi.
        Cny => "CNY",
        /// US dollar.
        Usd => "USD",
        /// Hong Kong dollar.
        Hkd => "HKD",
    }
}

impl RiskLevel {
    /// The highest product risk this customer may hold (suitability: `Ck` may buy up to `Rk`).
    pub const fn max_product_risk(self) -> ProductRisk {
        match self {
            RiskLevel::C1 => ProductRisk::R1,
            RiskLevel::C2 => ProductRisk::R2,
            RiskLevel::C3 => ProductRisk::R3,
            RiskLevel::C4 => ProductRisk::R4,
            RiskLevel::C5 => ProductRisk::R5,
        }
    }
}

/// One customer as the CRM tag service returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// The broker's internal id, `C000001` … .
    pub customer_id: CustomerId,
    /// The CRM tags.
    pub tags: CustomerTags,
}

/// A customer's CRM tags. Field names and order are those of the field catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerTags {
    /// Full name, 2–3 characters (public).
    pub name: String,
    /// Occupation (public); absent for some customers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occupation: Option<String>,
    /// Risk tolerance rating (public).
    pub risk_level: RiskLevel,
    /// Investment preference (public).
    pub investment_preference: InvestmentPreference,
    /// Lifecycle stage (public).
    pub lifecycle_stage: LifecycleStage,
    /// 18-character PRC resident ID number (sensitive).
    pub id_number: String,
    /// 11-digit mobile number (sensitive).
    pub mobile: String,
    /// Segment by net assets (sensitive).
    pub asset_tier: AssetTier,
    /// Net assets held with the broker, CNY, two decimals (sensitive).
    pub net_assets: f64,
    /// Declared annual income, CNY, whole thousands (sensitive); absent for some customers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annual_income: Option<u64>,
    /// Products held (sensitive); empty for customers who hold nothing.
    pub holdings: Vec<Holding>,
    /// Predicted probability of leaving, 0–1 with two decimals (sensitive).
    pub churn_risk: f64,
    /// Date of birth, `YYYY-MM-DD`; equals the date inside the ID number (sensitive).
    pub birth_date: String,
    /// Home address (secret); absent for some customers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_address: Option<String>,
    /// Hex SHA-256-like hash of the trade password (never released by the gateway).
    pub trade_password_hash: String,
}

/// One position in a customer's holdings summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holding {
    /// The product's `id` in the catalogue.
    pub product_id: String,
    /// The product's type.
    pub product_type: ProductType,
    /// Market value in the product's currency, two decimals.
    pub market_value: f64,
}

/// One product of the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Catalogue id: type prefix and code, e.g. `fund-000123`, `etf-510300`, `fip-004567`.
    pub id: String,
    /// 6-digit fund or exchange code.
    pub code: String,
    /// Product name, e.g. `华夏成长混合A`.
    pub name: String,
    /// Product type.
    #[serde(rename = "type")]
    pub product_type: ProductType,
    /// Risk rating.
    pub risk_level: ProductRisk,
    /// Denomination.
    pub currency: Currency,
    /// Fund management company, e.g. `华夏基金`.
    pub manager: String,
    /// Net asset value per unit, four decimals.
    pub nav: f64,
    /// Date the NAV is quoted for ([`NAV_DATE`]).
    pub nav_date: String,
    /// Launch date, `YYYY-MM-DD`.
    pub inception_date: String,
    /// Smallest purchase in the product's currency (for ETFs: one lot of 100 units at NAV).
    pub min_purchase: f64,
    /// Yearly management fee as a fraction, e.g. `0.012` for 1.2 %.
    pub management_fee_rate: f64,
    /// One-sentence investment objective.
    pub description: String,
}

/// Generates customer number `number` (1-based) afresh; `None` outside
/// `1..=`[`CUSTOMER_COUNT`]. Pure: equal inputs give equal customers.
pub fn generate_customer(number: u32) -> Option<Customer> {
    if !(1..=CUSTOMER_COUNT).contains(&number) {
        return None;
    }
    Some(customers::generate(number, products()))
}

/// Generates the product catalogue afresh, sorted by `id`. Pure.
pub fn generate_products() -> Vec<Product> {
    products::generate()
}

/// All customers, in id order (built once).
pub fn customers() -> &'static [Customer] {
    &customer_table().customers
}

/// The customer with this internal id, e.g. `C000001`.
pub fn customer(id: &str) -> Option<&'static Customer> {
    let index = customer_index(id)?;
    customer_table().customers.get(index)
}

/// The serialized tag document of a customer, exactly as the tag service answers it.
pub fn customer_document(id: &str) -> Option<Bytes> {
    let index = customer_index(id)?;
    customer_table().documents.get(index).cloned()
}

/// The internal id of customer `number`, e.g. `1` → `C000001`.
pub fn customer_id(number: u32) -> String {
    format!("C{number:06}")
}

/// All products, sorted by `id` (built once).
pub fn products() -> &'static [Product] {
    &catalogue().products
}

/// The product with this catalogue id.
pub fn product(id: &str) -> Option<&'static Product> {
    let catalogue = catalogue();
    let index = catalogue
        .products
        .binary_search_by(|p| p.id.as_str().cmp(id))
        .ok()?;
    catalogue.products.get(index)
}

/// The serialized document of one product, exactly as `GET /catalogue/products/{id}` answers.
pub fn product_document(id: &str) -> Option<Bytes> {
    let catalogue = catalogue();
    let index = catalogue
        .products
        .binary_search_by(|p| p.id.as_str().cmp(id))
        .ok()?;
    catalogue.documents.get(index).cloned()
}

/// The serialized catalogue, `{"products": [...], "version": "<hash>"}`, exactly as
/// `GET /catalogue/products` answers.
pub fn catalogue_document() -> Bytes {
    catalogue().document.clone()
}

/// The catalogue's version: 16 hex digits of a hash of the serialized product list. Also the
/// (quoted) `ETag` of `GET /catalogue/products`.
pub fn catalogue_version() -> &'static str {
    &catalogue().version
}

/// Builds every table and document now rather than at the first request (about 2 MB; tens
/// of milliseconds in a release build).
pub fn warm() {
    let _ = customer_table();
}

// === caches ===

struct CustomerTable {
    customers: Vec<Customer>,
    documents: Vec<Bytes>,
}

struct Catalogue {
    products: Vec<Product>,
    documents: Vec<Bytes>,
    document: Bytes,
    version: String,
}

fn customer_index(id: &str) -> Option<usize> {
    let digits = id.strip_prefix('C')?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: u32 = digits.parse().ok()?;
    (1..=CUSTOMER_COUNT)
        .contains(&number)
        .then(|| number as usize - 1)
}

fn customer_table() -> &'static CustomerTable {
    static TABLE: OnceLock<CustomerTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let products = products();
        let customers: Vec<Customer> = (1..=CUSTOMER_COUNT)
            .map(|n| customers::generate(n, products))
            .collect();
        let documents = customers.iter().map(to_bytes).collect();
        CustomerTable {
            customers,
            documents,
        }
    })
}

fn catalogue() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(|| {
        let products = products::generate();
        let documents = products.iter().map(to_bytes).collect();
        let list = to_bytes(&products);
        let version = format!("{:016x}", fnv1a(&list));
        // Assembled by hand around the serialized list: the version is hex, so it needs no
        // escaping, and the list is not parsed back.
        let mut document = Vec::with_capacity(list.len() + 48);
        document.extend_from_slice(b"{\"products\":");
        document.extend_from_slice(&list);
        document.extend_from_slice(b",\"version\":\"");
        document.extend_from_slice(version.as_bytes());
        document.extend_from_slice(b"\"}");
        let document = Bytes::from(document);
        Catalogue {
            products,
            documents,
            document,
            version,
        }
    })
}

fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Bytes {
    // Serializing these types cannot fail: no maps with non-string keys, no failing
    // `Serialize` impls, and f64 values are always finite (built from integers).
    Bytes::from(serde_json::to_vec(value).expect("plain data always serializes"))
}

/// FNV-1a, 64 bits: a stable, dependency-free hash for the catalogue version (not security).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// `YYYY-MM-DD` of a civil date.
fn date(year: u32, month: u32, day: u32) -> String {
    format!("{year:04}-{month:02}-{day:02}")
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        _ => 28,
    }
}

/// Whole yuan in cents.
const fn yuan(amount: u64) -> u64 {
    amount * 100
}

/// An amount in cents as a number with (at most) two decimals.
fn cents(amount: u64) -> f64 {
    // Exact for amounts below 2^53 cents; division is correctly rounded, so the result is the
    // same on every machine.
    amount as f64 / 100.0
}

#[cfg(test)]
mod tests;
