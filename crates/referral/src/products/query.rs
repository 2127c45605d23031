//! `GET /v1/products` query parameters and the page cursor.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use gateway_core::Violation;

use super::catalogue::Product;
use crate::body::{pointer, violation};

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 20;

/// Largest `limit`.
pub const MAX_LIMIT: usize = 100;

/// Values of the `type` filter.
pub const PRODUCT_TYPES: [&str; 3] = ["fund", "etf", "fixed_income_plus"];

/// Values of the `risk_level` filter.
pub const RISK_LEVELS: [&str; 5] = ["R1", "R2", "R3", "R4", "R5"];

/// Longest query string read; a longer one is refused as a whole.
pub const MAX_QUERY_LEN: usize = 2048;

/// Longest cursor accepted.
pub const MAX_CURSOR_LEN: usize = 256;

/// The parameters `GET /v1/products` takes.
const PARAMETERS: [&str; 5] = ["type", "risk_level", "currency", "limit", "cursor"];

/// Version tag: the first byte of every cursor.
const CURSOR_VERSION: u8 = 1;

/// Bytes of the cursor's digest.
const CURSOR_DIGEST_LEN: usize = 8;

/// The filters of a product listing; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filters {
    /// `type`: one of [`PRODUCT_TYPES`].
    pub product_type: Option<String>,
    /// `risk_level`: one of [`RISK_LEVELS`].
    pub risk_level: Option<String>,
    /// `currency`: three upper-case letters (ISO 4217).
    pub currency: Option<String>,
}

/// A parsed, valid `GET /v1/products` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductQuery {
    /// What to list.
    pub filters: Filters,
    /// Page size, `1..=100`.
    pub limit: usize,
    /// The cursor as given (already verified against the filters).
    pub cursor: Option<String>,
    /// The last id of the previous page, from the cursor: this page starts after it.
    pub after: Option<String>,
}

/// A query string that breaks the rules: every violation, located by a pointer named after
/// the parameter (`/limit`, `/cursor`, `/foo` for an unknown `foo`). Answer 400
/// `invalid-query` with these as `errors`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query string breaks its rules ({} violations)", .violations.len())]
pub struct InvalidQuery {
    /// Every violation, sorted by pointer.
    pub violations: Vec<Violation>,
}

/// Why a cursor is refused. Cursors are opaque: any of these means "not a cursor we gave out
/// for this query", and the partner should start again from the first page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadCursor {
    /// Longer than [`MAX_CURSOR_LEN`].
    #[error("cursor is too long")]
    TooLong,
    /// Not unpadded URL-safe base64.
    #[error("cursor is not URL-safe base64")]
    NotBase64,
    /// Too short to hold a version, a digest and an id, or the id is not UTF-8.
    #[error("cursor is truncated")]
    Truncated,
    /// A version this gateway does not write.
    #[error("cursor has an unknown version")]
    UnknownVersion,
    /// The digest does not match: garbled, forged, or made for other filters.
    #[error("cursor does not belong to this query")]
    NotForThisQuery,
}

impl ProductQuery {
    /// The first page of `filters` with the default limit.
    pub fn first_page(filters: Filters) -> ProductQuery {
        ProductQuery {
            filters,
            limit: DEFAULT_LIMIT,
            cursor: None,
            after: None,
        }
    }

    /// Parses the raw query string (without `?`). Unknown, repeated or empty-named parameters
    /// and bad values are all reported at once. Values may be percent-encoded; `+` is a space.
    pub fn parse(raw: Option<&str>) -> Result<ProductQuery, InvalidQuery> {
        let raw = raw.unwrap_or("");
        if raw.len() > MAX_QUERY_LEN {
            return Err(InvalidQuery {
                violations: vec![violation("", "query string is too long")],
            });
        }
        let mut violations = Vec::new();
        let mut values: [Option<String>; 5] = Default::default();
        let mut repeated = [false; 5];
        let mut broken = [false; 5];
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(name) = percent_decode(name) else {
                violations.push(violation(
                    &pointer(&clip(name)),
                    "is not percent-encoded correctly",
                ));
                continue;
            };
            let Some(slot) = PARAMETERS.iter().position(|p| *p == name) else {
                violations.push(violation(
                    &pointer(&clip(&name)),
                    "is not a known parameter",
                ));
                continue;
            };
            if values[slot].is_some() {
                repeated[slot] = true;
                continue;
            }
            match percent_decode(value) {
                Some(value) => values[slot] = Some(value),
                None => {
                    violations.push(violation(
                        &pointer(&name),
                        "is not percent-encoded correctly",
                    ));
                    // Mark the parameter as given, so a repeat is still caught, and broken, so
                    // its value is not judged a second time below.
                    values[slot] = Some(String::new());
                    broken[slot] = true;
                }
            }
        }
        for (slot, name) in PARAMETERS.iter().enumerate() {
            if repeated[slot] {
                violations.push(violation(&pointer(name), "may be given only once"));
            }
            if broken[slot] {
                values[slot] = None;
            }
        }
        let [product_type, risk_level, currency, limit, cursor] = values;

        let product_type = product_type.and_then(|v| {
            one_of(
                &v,
                &PRODUCT_TYPES,
                "/type",
                "must be fund, etf or fixed_income_plus",
                &mut violations,
            )
        });
        let risk_level = risk_level.and_then(|v| {
            one_of(
                &v,
                &RISK_LEVELS,
                "/risk_level",
                "must be R1, R2, R3, R4 or R5",
                &mut violations,
            )
        });
        let currency = currency.and_then(|v| {
            if v.len() == 3 && v.bytes().all(|b| b.is_ascii_uppercase()) {
                Some(v)
            } else {
                violations.push(violation(
                    "/currency",
                    "must be an ISO 4217 code of three upper-case letters, e.g. CNY",
                ));
                None
            }
        });
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(v) => match parse_limit(&v) {
                Some(limit) => limit,
                None => {
                    violations.push(violation("/limit", "must be an integer from 1 to 100"));
                    DEFAULT_LIMIT
                }
            },
        };
        let filters = Filters {
            product_type,
            risk_level,
            currency,
        };
        let after = match &cursor {
            None => None,
            Some(text) => match decode_cursor(text, &filters) {
                Ok(id) => Some(id),
                Err(e) => {
                    violations.push(violation(
                        "/cursor",
                        &format!("{e}; start again without a cursor"),
                    ));
                    None
                }
            },
        };
        if !violations.is_empty() {
            violations.sort_by(|a, b| a.pointer.cmp(&b.pointer));
            return Err(InvalidQuery { violations });
        }
        Ok(ProductQuery {
            filters,
            limit,
            cursor,
            after,
        })
    }

    /// The query string that denotes this query, parameters in a fixed order
    /// (`type`, `risk_level`, `currency`, `limit`, `cursor`); every value is URL-safe as is.
    pub fn to_query_string(&self) -> String {
        let mut parts = self.filters.parts();
        parts.push(format!("limit={}", self.limit));
        if let Some(cursor) = &self.cursor {
            parts.push(format!("cursor={cursor}"));
        }
        parts.join("&")
    }

    /// The query of the page after the one ending at `last_id`.
    pub(crate) fn next_after(&self, last_id: &str) -> ProductQuery {
        ProductQuery {
            filters: self.filters.clone(),
            limit: self.limit,
            cursor: Some(encode_cursor(&self.filters, last_id)),
            after: Some(last_id.to_owned()),
        }
    }
}

impl Filters {
    /// Whether `product` passes every filter.
    pub fn matches(&self, product: &Product) -> bool {
        self.product_type
            .as_deref()
            .is_none_or(|t| t == product.product_type())
            && self
                .risk_level
                .as_deref()
                .is_none_or(|r| r == product.risk_level())
            && self
                .currency
                .as_deref()
                .is_none_or(|c| c == product.currency())
    }

    fn parts(&self) -> Vec<String> {
        let mut parts = Vec::new();
        if let Some(t) = &self.product_type {
            parts.push(format!("type={t}"));
        }
        if let Some(r) = &self.risk_level {
            parts.push(format!("risk_level={r}"));
        }
        if let Some(c) = &self.currency {
            parts.push(format!("currency={c}"));
        }
        parts
    }

    /// An unambiguous spelling, for digests and ETags.
    pub(crate) fn canonical(&self) -> String {
        format!(
            "type={}&risk_level={}&currency={}",
            self.product_type.as_deref().unwrap_or("*"),
            self.risk_level.as_deref().unwrap_or("*"),
            self.currency.as_deref().unwrap_or("*"),
        )
    }
}

/// The opaque cursor of the page after `last_id`, for `filters`:
/// unpadded URL-safe base64 of `version ‖ digest ‖ last_id`, where the digest is the first 8
/// bytes of SHA-256 over the version, the filters and the id.
///
/// The digest is not a secret MAC: a cursor only says where to resume, and visibility is
/// checked on every page, so a forged cursor can reveal nothing. It makes a garbled cursor, or
/// one made for other filters, a [`BadCursor`] instead of a silently wrong page.
pub fn encode_cursor(filters: &Filters, last_id: &str) -> String {
    let mut bytes = Vec::with_capacity(1 + CURSOR_DIGEST_LEN + last_id.len());
    bytes.push(CURSOR_VERSION);
    bytes.extend_from_slice(&cursor_digest(filters, last_id));
    bytes.extend_from_slice(last_id.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The last id a cursor made by [`encode_cursor`] for `filters` carries.
pub fn decode_cursor(text: &str, filters: &Filters) -> Result<String, BadCursor> {
    if text.len() > MAX_CURSOR_LEN {
        return Err(BadCursor::TooLong);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| BadCursor::NotBase64)?;
    let (&version, rest) = bytes.split_first().ok_or(BadCursor::Truncated)?;
    if version != CURSOR_VERSION {
        return Err(BadCursor::UnknownVersion);
    }
    if rest.len() <= CURSOR_DIGEST_LEN {
        return Err(BadCursor::Truncated);
    }
    let (digest, id) = rest.split_at(CURSOR_DIGEST_LEN);
    let id = std::str::from_utf8(id).map_err(|_| BadCursor::Truncated)?;
    if digest != cursor_digest(filters, id) {
        return Err(BadCursor::NotForThisQuery);
    }
    Ok(id.to_owned())
}

// === helpers ===

fn cursor_digest(filters: &Filters, id: &str) -> [u8; CURSOR_DIGEST_LEN] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(b"pgw-products-cursor\0");
    context.update(&[CURSOR_VERSION]);
    context.update(filters.canonical().as_bytes());
    context.update(b"\0");
    context.update(id.as_bytes());
    let mut out = [0u8; CURSOR_DIGEST_LEN];
    out.copy_from_slice(&context.finish().as_ref()[..CURSOR_DIGEST_LEN]);
    out
}

fn one_of(
    value: &str,
    allowed: &[&str],
    at: &str,
    detail: &str,
    violations: &mut Vec<Violation>,
) -> Option<String> {
    if allowed.contains(&value) {
        Some(value.to_owned())
    } else {
        violations.push(violation(at, detail));
        None
    }
}

fn parse_limit(text: &str) -> Option<usize> {
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: usize = text.parse().ok()?;
    (1..=MAX_LIMIT).contains(&n).then_some(n)
}

/// Decodes `%XX` escapes and `+`; `None` on a broken escape or non-UTF-8 result.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A parameter name short enough to quote in a pointer.
fn clip(name: &str) -> String {
    name.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pointers(raw: &str) -> Vec<String> {
        ProductQuery::parse(Some(raw))
            .unwrap_err()
            .violations
            .into_iter()
            .map(|v| v.pointer)
            .collect()
    }

    #[test]
    fn an_empty_query_is_the_first_page_of_everything() {
        for raw in [None, Some(""), Some("&&")] {
            assert_eq!(
                ProductQuery::parse(raw).unwrap(),
                ProductQuery::first_page(Filters::default())
            );
        }
    }

    #[test]
    fn filters_and_limit_parse() {
        let q = ProductQuery::parse(Some("type=etf&risk_level=R3&currency=CNY&limit=100")).unwrap();
        assert_eq!(q.filters.product_type.as_deref(), Some("etf"));
        assert_eq!(q.filters.risk_level.as_deref(), Some("R3"));
        assert_eq!(q.filters.currency.as_deref(), Some("CNY"));
        assert_eq!(q.limit, 100);
        assert_eq!(
            q.to_query_string(),
            "type=etf&risk_level=R3&currency=CNY&limit=100"
        );
        let q = ProductQuery::parse(Some("t%79pe=fixed%5Fincome%5Fplus&limit=001")).unwrap();
        assert_eq!(q.filters.product_type.as_deref(), Some("fixed_income_plus"));
        assert_eq!(q.limit, 1);
    }

    #[test]
    fn bad_limits_are_refused() {
        for limit in [
            "0",
            "101",
            "-1",
            "+5",
            "1.0",
            "",
            "abc",
            "1000",
            "99999999999999999999",
        ] {
            assert_eq!(pointers(&format!("limit={limit}")), ["/limit"], "{limit:?}");
        }
        assert_eq!(pointers("limit"), ["/limit"]);
    }

    #[test]
    fn every_violation_is_reported_once_with_its_location() {
        assert_eq!(
            pointers("type=bond&type=etf&risk_level=r3&currency=cny&limit=0&cursor=%%&foo=1&a/b=2"),
            [
                "/a~1b",
                "/currency",
                "/cursor",
                "/foo",
                "/limit",
                "/risk_level",
                "/type",
                "/type"
            ]
        );
        assert_eq!(pointers("limit=5&limit=5"), ["/limit"]);
        assert_eq!(pointers("%ZZ=1"), ["/%ZZ"]);
    }

    #[test]
    fn cursors_round_trip_for_their_own_filters_only() {
        let fund = Filters {
            product_type: Some("fund".into()),
            ..Filters::default()
        };
        let cursor = encode_cursor(&fund, "fund-000123");
        assert_eq!(decode_cursor(&cursor, &fund), Ok("fund-000123".to_owned()));
        assert_eq!(
            decode_cursor(&cursor, &Filters::default()),
            Err(BadCursor::NotForThisQuery)
        );
        let q = ProductQuery::parse(Some(&format!("type=fund&cursor={cursor}"))).unwrap();
        assert_eq!(q.after.as_deref(), Some("fund-000123"));
        assert_eq!(pointers(&format!("type=etf&cursor={cursor}")), ["/cursor"]);
    }

    #[test]
    fn garbled_cursors_are_typed_errors() {
        let filters = Filters::default();
        let good = encode_cursor(&filters, "etf-510300");
        assert_eq!(decode_cursor("", &filters), Err(BadCursor::Truncated));
        assert_eq!(decode_cursor("!!!", &filters), Err(BadCursor::NotBase64));
        assert_eq!(
            decode_cursor(&format!("{good}="), &filters),
            Err(BadCursor::NotBase64)
        );
        assert_eq!(decode_cursor("AQ", &filters), Err(BadCursor::Truncated));
        assert_eq!(
            decode_cursor(&"A".repeat(MAX_CURSOR_LEN + 1), &filters),
            Err(BadCursor::TooLong)
        );
        let mut other_version = URL_SAFE_NO_PAD.decode(&good).unwrap();
        other_version[0] = 2;
        assert_eq!(
            decode_cursor(&URL_SAFE_NO_PAD.encode(other_version), &filters),
            Err(BadCursor::UnknownVersion)
        );
        // A forged id with the old digest.
        let mut forged = URL_SAFE_NO_PAD.decode(&good).unwrap();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(
            decode_cursor(&URL_SAFE_NO_PAD.encode(forged), &filters),
            Err(BadCursor::NotForThisQuery)
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(raw in "\\PC{0,200}") {
            let _ = ProductQuery::parse(Some(&raw));
        }

        #[test]
        fn garbling_a_cursor_is_detected(id in "[a-z]{3,5}-[0-9]{6}", at in 0usize..40, with in "[A-Za-z0-9_-]") {
            let filters = Filters::default();
            let cursor = encode_cursor(&filters, &id);
            let at = at % cursor.len();
            let mut garbled: Vec<char> = cursor.chars().collect();
            let replacement = with.chars().next().unwrap();
            prop_assume!(garbled[at] != replacement);
            garbled[at] = replacement;
            let garbled: String = garbled.into_iter().collect();
            // The last character may carry spare bits base64 ignores; otherwise it must fail.
            if let Ok(decoded) = decode_cursor(&garbled, &filters) {
                prop_assert_eq!(decoded, id);
            }
        }
    }
}
