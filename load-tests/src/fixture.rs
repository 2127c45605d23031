//! The fixed response every reference server sends, and the stand-in bearer token.

use std::fmt::Write as _;

/// Length of [`fixed_body`], bytes.
pub const FIXED_BODY_LEN: usize = 1024;

/// A 1 KiB JSON document shaped like a customer's tags (what `upstream` and `bare-server`
/// answer to every request): fifteen fields, padded with a `note` to exactly
/// [`FIXED_BODY_LEN`] bytes.
pub fn fixed_body() -> Vec<u8> {
    let mut doc = String::from(
        r#"{"customer_id":"C000001","tags":{"name":"Load Test","occupation":"engineer","risk_level":"C3","investment_preference":"balanced","lifecycle_stage":"accumulation","id_number":"110101199001011234","mobile":"13812345678","asset_tier":"T3","net_assets":523000.5,"annual_income":318000,"holdings":[{"product_id":"fund-006580","market_value":12275.48},{"product_id":"etf-511260","market_value":3329.94}],"churn_risk":0.16,"birth_date":"1990-01-01","home_address":"1 Example Road","trade_password_hash":"7d8bb378bf0bbc904ce08cd2e74ba297fcabfecc1a9a7402e6d65c7548cbe21a"},"note":""#,
    );
    // The skeleton is far below 1 KiB; pad the note, then close the document.
    let closing = "\"}";
    while doc.len() + closing.len() < FIXED_BODY_LEN {
        let _ = write!(doc, "{}", (b'a' + (doc.len() % 26) as u8) as char);
    }
    doc.push_str(closing);
    doc.into_bytes()
}

/// A syntactically plausible bearer token of `len` bytes for the servers that do not check
/// signatures, so every server receives a request of the same size as the gateway does.
pub fn dummy_bearer(len: usize) -> String {
    let mut token = String::from("eyJhbGciOiJub25lIn0.");
    while token.len() < len {
        token.push((b'A' + (token.len() % 26) as u8) as char);
    }
    token.truncate(len.max(1));
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_body_is_one_kib_of_valid_json() {
        let body = fixed_body();
        assert_eq!(body.len(), FIXED_BODY_LEN);
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["tags"].as_object().unwrap().len(), 15);
    }

    #[test]
    fn dummy_bearer_has_the_asked_length() {
        assert_eq!(dummy_bearer(690).len(), 690);
        assert_eq!(dummy_bearer(5).len(), 5);
        assert!(dummy_bearer(100).starts_with("eyJ"));
    }
}
