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
