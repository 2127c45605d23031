//! JSON request bodies: nesting depth checked before parsing, and the crate-independent
//! mapping of body errors to problems.

use gateway_core::{Problem, ProblemType};

/// Refuses JSON nested deeper than `max` (arrays and objects) without parsing it, so a
/// hostile `[[[[…` costs a linear scan and no recursion.
pub fn check_depth(bytes: &[u8], max: usize) -> Result<(), Problem> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(Problem::new(ProblemType::MalformedJson)
                        .with_detail(format!("JSON nests deeper than {max} levels")));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Validates `value` against a JSON Schema; every violation with its JSON pointer
/// (additional properties are reported at their own pointer).
pub fn schema_violations(
    validator: &jsonschema::Validator,
    value: &serde_json::Value,
) -> Vec<gateway_core::Violation> {
    let mut violations = Vec::new();
    for error in validator.iter_errors(value) {
        let pointer = error.instance_path().as_str().to_owned();
        if let jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } =
            error.kind()
        {
            for key in unexpected {
                violations.push(gateway_core::Violation {
                    pointer: format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1")),
                    detail: "unknown member".into(),
                });
            }
            continue;
        }
        violations.push(gateway_core::Violation {
            pointer,
            detail: error.to_string(),
        });
    }
    violations
}

/// Parses a JSON body and validates it against a schema: 400 `malformed-json` or 400
/// `validation-failed` listing every violation.
pub fn parse_valid(
    bytes: &[u8],
    validator: &jsonschema::Validator,
) -> Result<serde_json::Value, Problem> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Problem::new(ProblemType::MalformedJson).with_detail(e.to_string()))?;
    let violations = schema_violations(validator, &value);
    if violations.is_empty() {
        Ok(value)
    } else {
        Err(Problem::new(ProblemType::ValidationFailed)
            .with_detail(format!("{} violation(s)", violations.len()))
            .with_errors(violations))
    }
}

/// The compiled schema of `POST /admin/v1/consents` bodies (`schemas/consent-grant.schema.json`).
pub fn consent_grant_schema() -> &'static jsonschema::Validator {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../schemas/consent-grant.schema.json"))
                // The schema is a committed file, checked by tests/tests/spec.rs.
                .unwrap_or(serde_json::Value::Bool(false));
        jsonschema::validator_for(&schema).unwrap_or_else(|_| {
            jsonschema::validator_for(&serde_json::Value::Bool(false))
                .expect("`false` is a valid schema")
        })
    })
}

/// The problem for a referral-crate body error.
pub fn body_problem(err: gateway_referral::BodyError) -> Problem {
    match err {
        gateway_referral::BodyError::Malformed(detail) => {
            Problem::new(ProblemType::MalformedJson).with_detail(detail)
        }
        gateway_referral::BodyError::Invalid(violations) => {
            Problem::new(ProblemType::ValidationFailed)
                .with_detail(format!("{} violation(s)", violations.len()))
                .with_errors(violations)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_only_structure_outside_strings() {
        assert!(check_depth(br#"{"a":[1,{"b":"[[[[[[["}]}"#, 3).is_ok());
        assert!(check_depth(br#"{"a":[[[1]]]}"#, 3).is_err());
        assert!(check_depth(&b"[".repeat(100_000), 32).is_err());
        assert!(check_depth(br#"{"a":"\"[[[["}"#, 1).is_ok());
    }
}
