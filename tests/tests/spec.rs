//! The OpenAPI spec stays true to the routes the gateway serves.

use gateway_core::Route;

fn spec() -> serde_json::Value {
    let text =
        std::fs::read_to_string(gateway_tests::repo_root().join("schemas/openapi.yaml")).unwrap();
    serde_saphyr::from_str(&text).expect("schemas/openapi.yaml is valid YAML")
}

#[test]
fn every_route_is_in_the_openapi_spec_with_its_method_and_scope() {
    let spec = spec();
    assert_eq!(spec["openapi"], "3.1.0");
    for route in Route::ALL {
        let method = route.method().as_str().to_ascii_lowercase();
        let operation = &spec["paths"][route.template()][&method];
        assert!(
            operation.is_object(),
            "{} {} missing from the spec",
            method,
            route.template()
        );
        if let Some(scope) = route.scope() {
            let security = operation["security"].to_string();
            assert!(
                security.contains(scope.as_str()),
                "{}: scope {} not declared",
                route.template(),
                scope
            );
        }
    }
    // Every route has its own path template, and the spec documents no other path.
    let documented = spec["paths"].as_object().unwrap().len();
    assert_eq!(documented, Route::ALL.len());
}

#[test]
fn every_json_schema_in_schemas_compiles() {
    let dir = gateway_tests::repo_root().join("schemas");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let value: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            jsonschema::validator_for(&value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            count += 1;
        }
    }
    assert!(count >= 5, "{count} schemas");
}
