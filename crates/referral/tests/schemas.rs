//! The JSON Schemas in `schemas/` and the crate's parsers agree on what they accept.

use serde_json::{Value, json};

use gateway_referral::products::{Filters, ProductQuery, query::encode_cursor};
use gateway_referral::{EventRequest, IssueRequest};

fn validator(name: &str) -> jsonschema::Validator {
    let path = format!("{}/../../schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn agree(validator: &jsonschema::Validator, cases: &[Value], parses: impl Fn(&[u8]) -> bool) {
    for case in cases {
        let body = serde_json::to_vec(case).unwrap();
        assert_eq!(
            validator.is_valid(case),
            parses(&body),
            "schema and parser disagree on {case}"
        );
    }
}

#[test]
fn the_referral_code_request_schema_matches_its_parser() {
    let long = |n: usize| "x".repeat(n);
    let cases = [
        json!({"campaign_id": "spring-referral-2027"}),
        json!({"campaign_id": "s", "channel": "", "note": ""}),
        json!({"campaign_id": "s", "channel": long(64), "note": long(256)}),
        json!({"campaign_id": "s", "channel": long(65)}),
        json!({"campaign_id": "s", "note": long(257)}),
        json!({"campaign_id": "s", "note": "推".repeat(256)}),
        json!({"campaign_id": "s", "channel": null}),
        json!({"campaign_id": "s", "channel": 1}),
        json!({"campaign_id": "s", "extra": true}),
        json!({"campaign_id": "Spring"}),
        json!({"campaign_id": "-spring"}),
        json!({"campaign_id": "spring-"}),
        json!({"campaign_id": long(64)}),
        json!({"campaign_id": long(65)}),
        json!({"campaign_id": ""}),
        json!({}),
        json!([]),
        json!("spring"),
    ];
    agree(
        &validator("referral-code-request.schema.json"),
        &cases,
        |body| IssueRequest::from_json(body).is_ok(),
    );
}

#[test]
fn the_referral_event_schema_matches_its_parser() {
    let base = json!({"event_id": "e-1", "code": "7K3M-Q9TD-X2PA-HV5R-J",
                      "event_type": "account_opened", "occurred_at": "2026-12-01T10:00:00Z",
                      "customer_id": "C000002"});
    let with = |key: &str, value: Value| {
        let mut v = base.clone();
        v[key] = value;
        v
    };
    let without = |key: &str| {
        let mut v = base.clone();
        v.as_object_mut().unwrap().remove(key);
        v
    };
    let cases = [
        base.clone(),
        with("event_id", json!("e".repeat(128))),
        with("event_id", json!("e".repeat(129))),
        with("event_id", json!("")),
        with("event_id", json!("has space")),
        with("event_id", json!("ünïcode")),
        with("code", json!("anything-the-customer-typed")),
        with("code", json!("")),
        with("code", json!("c".repeat(65))),
        with("event_type", json!("funded")),
        with("event_type", json!("first_trade")),
        with("event_type", json!("Funded")),
        with("event_type", json!("signed_up")),
        with("occurred_at", json!("2026-12-01T10:00:00.123+08:00")),
        with("occurred_at", json!("2026-12-01 10:00:00z")),
        with("occurred_at", json!("2026-12-01")),
        with("occurred_at", json!("yesterday")),
        with("occurred_at", json!(1_764_583_200)),
        with("customer_id", json!("C 2")),
        with("customer_id", json!("c".repeat(65))),
        with("extra", json!(1)),
        without("event_id"),
        without("code"),
        without("event_type"),
        without("occurred_at"),
        without("customer_id"),
        json!(null),
    ];
    agree(&validator("referral-event.schema.json"), &cases, |body| {
        EventRequest::from_json(body).is_ok()
    });
}

#[test]
fn the_products_query_schema_matches_its_parser() {
    let validator = validator("products-query.schema.json");
    let fund_cursor = encode_cursor(
        &Filters {
            product_type: Some("fund".to_owned()),
            ..Filters::default()
        },
        "fund-000123",
    );
    let any_cursor = encode_cursor(&Filters::default(), "etf-510300");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![
            ("type", "fund"),
            ("risk_level", "R3"),
            ("currency", "CNY"),
            ("limit", "100"),
        ],
        vec![("type", "fund"), ("cursor", &fund_cursor)],
        vec![("cursor", &any_cursor), ("limit", "1")],
        vec![("type", "bond")],
        vec![("risk_level", "R6")],
        vec![("currency", "cny")],
        vec![("currency", "CNYY")],
        vec![("limit", "0")],
        vec![("limit", "007")],
        vec![("limit", "99")],
        vec![("limit", "101")],
        vec![("limit", "1e2")],
        vec![("cursor", "")],
        vec![("cursor", "not base64!")],
        vec![("sort", "id")],
    ];
    for case in cases {
        let object: serde_json::Map<String, Value> = case
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        let raw: Vec<String> = case.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let raw = raw.join("&");
        assert_eq!(
            validator.is_valid(&Value::Object(object)),
            ProductQuery::parse(Some(&raw)).is_ok(),
            "schema and parser disagree on {raw:?}"
        );
    }
}
