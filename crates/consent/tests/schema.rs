//! `schemas/consent-grant.schema.json` accepts what `GrantRequest` reads and refuses, with a
//! pointer, what the admin API must answer 400.

use serde_json::{Value, json};

use gateway_consent::GrantRequest;

const SCHEMA: &str = include_str!("../../../schemas/consent-grant.schema.json");

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    jsonschema::draft202012::new(&schema).unwrap()
}

fn example() -> Value {
    json!({
        "customer_id": "C000001",
        "partner_id": "demo-bank",
        "purpose": "wealth_advice",
        "fields": {"risk_level": "plain", "mobile": "masked", "home_address": "plain"},
        "expires_at": "2027-06-30T00:00:00Z",
        "second_authorisation": false
    })
}

/// The instance pointers of every violation, sorted.
fn violations(validator: &jsonschema::Validator, body: &Value) -> Vec<String> {
    let mut pointers: Vec<String> = validator
        .iter_errors(body)
        .map(|e| e.instance_path().as_str().to_owned())
        .collect();
    pointers.sort();
    pointers.dedup();
    pointers
}

#[test]
fn the_product_example_is_valid_and_reads_as_a_grant_request() {
    let v = validator();
    let mut body = example();
    assert_eq!(violations(&v, &body), Vec::<String>::new());
    let request: GrantRequest = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(request.fields.len(), 3);
    // second_authorisation is optional (default false); offsets are allowed.
    body.as_object_mut().unwrap().remove("second_authorisation");
    body["expires_at"] = json!("2027-06-30T08:00:00.5+08:00");
    assert_eq!(violations(&v, &body), Vec::<String>::new());
    let request: GrantRequest = serde_json::from_value(body).unwrap();
    assert!(!request.second_authorisation);
}

#[test]
fn each_schema_violation_is_located() {
    let v = validator();
    type Edit = fn(&mut Value);
    let cases: Vec<(Edit, &str)> = vec![
        (|b| b["customer_id"] = json!("C 1"), "/customer_id"),
        (|b| b["customer_id"] = json!(7), "/customer_id"),
        (|b| b["partner_id"] = json!("Demo-Bank"), "/partner_id"),
        (|b| b["purpose"] = json!(""), "/purpose"),
        (|b| b["fields"] = json!({}), "/fields"),
        (|b| b["fields"] = json!([]), "/fields"),
        (
            |b| b["fields"]["mobile"] = json!("partial"),
            "/fields/mobile",
        ),
        (|b| b["fields"]["Mobile"] = json!("plain"), "/fields"),
        (|b| b["expires_at"] = json!("2027-06-30"), "/expires_at"),
        (|b| b["expires_at"] = json!("tomorrow"), "/expires_at"),
        (
            |b| b["second_authorisation"] = json!("yes"),
            "/second_authorisation",
        ),
        (|b| b["extra"] = json!(1), ""),
        (
            |b| {
                b.as_object_mut().unwrap().remove("purpose");
            },
            "",
        ),
    ];
    for (edit, pointer) in cases {
        let mut body = example();
        edit(&mut body);
        assert_eq!(violations(&v, &body), vec![pointer.to_owned()], "{body}");
    }
}

#[test]
fn at_most_64_fields() {
    let v = validator();
    let mut body = example();
    body["fields"] = Value::Object((0..64).map(|i| (format!("f{i}"), json!("plain"))).collect());
    assert!(v.is_valid(&body));
    body["fields"]["f64"] = json!("plain");
    assert_eq!(violations(&v, &body), vec!["/fields".to_owned()]);
}

#[test]
fn every_violation_is_reported_at_once() {
    let v = validator();
    let body = json!({
        "customer_id": "",
        "partner_id": "demo bank",
        "purpose": "Wealth",
        "fields": {"mobile": "clear"},
        "expires_at": 20270630,
        "second_authorisation": 1,
        "note": "x"
    });
    assert_eq!(
        violations(&v, &body),
        [
            "",
            "/customer_id",
            "/expires_at",
            "/fields/mobile",
            "/partner_id",
            "/purpose",
            "/second_authorisation"
        ]
    );
}
