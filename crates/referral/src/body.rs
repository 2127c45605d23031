//! Request bodies: one JSON object, checked member by member, every violation reported.
//!
//! The JSON Schemas in `schemas/` describe the same rules for documentation and for the
//! edge's `jsonschema` check; the parsers here are the typed backstop, and a test keeps the two
//! in agreement.

use serde_json::{Map, Value};

use gateway_core::Violation;

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not well-formed JSON (400 `malformed-json`).
    #[error("request body is not valid JSON: {0}")]
    Malformed(String),
    /// Well-formed but breaks the schema (400 `validation-failed`); lists every violation.
    #[error("request body breaks its schema ({} violations)", .0.len())]
    Invalid(Vec<Violation>),
}

/// Collects violations while a body is read.
pub(crate) struct Reader {
    map: Map<String, Value>,
    violations: Vec<Violation>,
}

impl Reader {
    /// Parses `body` as a JSON object whose members are all in `known`.
    pub(crate) fn new(body: &[u8], known: &[&str]) -> Result<Reader, BodyError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| BodyError::Malformed(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(BodyError::Invalid(vec![violation(
                "",
                "must be a JSON object",
            )]));
        };
        let violations = map
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| violation(&pointer(k), "is not a known member"))
            .collect();
        Ok(Reader { map, violations })
    }

    /// A required string member of `min..=max` characters, checked by `rule` (which returns a
    /// detail on failure).
    pub(crate) fn required(
        &mut self,
        name: &str,
        min: usize,
        max: usize,
        rule: impl FnOnce(&str) -> Result<(), &'static str>,
    ) -> Option<String> {
        if !self.map.contains_key(name) {
            self.violations
                .push(violation(&pointer(name), "is required"));
            return None;
        }
        self.optional(name, min, max, rule)
    }

    /// An optional string member (absent is fine; `null` is not).
    pub(crate) fn optional(
        &mut self,
        name: &str,
        min: usize,
        max: usize,
        rule: impl FnOnce(&str) -> Result<(), &'static str>,
    ) -> Option<String> {
        let value = self.map.get(name)?;
        let Value::String(text) = value else {
            self.violations
                .push(violation(&pointer(name), "must be a string"));
            return None;
        };
        let chars = text.chars().count();
        if chars < min || chars > max {
            let detail = if min == max {
                format!("must be exactly {min} characters")
            } else if min == 0 {
                format!("must be at most {max} characters")
            } else {
                format!("must be {min} to {max} characters")
            };
            self.violations.push(violation(&pointer(name), &detail));
            return None;
        }
        if let Err(detail) = rule(text) {
            self.violations.push(violation(&pointer(name), detail));
            return None;
        }
        Some(text.clone())
    }

    /// Every violation found, sorted by pointer; `Ok` when none.
    pub(crate) fn finish(mut self) -> Result<(), BodyError> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            self.violations.sort_by(|a, b| a.pointer.cmp(&b.pointer));
            Err(BodyError::Invalid(self.violations))
        }
    }
}

/// A violation at `pointer`.
pub(crate) fn violation(pointer: &str, detail: &str) -> Violation {
    Violation {
        pointer: pointer.to_owned(),
        detail: detail.to_owned(),
    }
}

/// The RFC 6901 pointer to a top-level member.
pub(crate) fn pointer(name: &str) -> String {
    format!("/{}", name.replace('~', "~0").replace('/', "~1"))
}

/// Any string: no rule beyond its length.
pub(crate) fn any(_: &str) -> Result<(), &'static str> {
    Ok(())
}

/// (De)serialises a [`UnixTime`](gateway_core::time::UnixTime) as RFC 3339 UTC.
pub(crate) mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    use gateway_core::time::{UnixTime, format_rfc3339, parse_rfc3339};

    pub(crate) fn serialize<S: Serializer>(t: &UnixTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_rfc3339(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<UnixTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_rfc3339(&text).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 date-time"))
    }

    /// The optional form.
    pub(crate) mod option {
        use serde::Serializer;

        use gateway_core::time::{UnixTime, format_rfc3339};

        pub(crate) fn serialize<S: Serializer>(
            t: &Option<UnixTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&format_rfc3339(*t)),
                None => s.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_escape_tilde_and_slash() {
        assert_eq!(pointer("a/b~c"), "/a~1b~0c");
    }

    #[test]
    fn every_violation_is_listed_in_pointer_order() {
        let mut r = Reader::new(br#"{"z": 1, "b": 2, "a": "x"}"#, &["a", "b"]).unwrap();
        assert_eq!(r.required("a", 2, 5, any), None);
        assert_eq!(r.optional("b", 0, 5, any), None);
        assert_eq!(r.required("c", 0, 5, any), None);
        let Err(BodyError::Invalid(v)) = r.finish() else {
            panic!("expected violations")
        };
        let pointers: Vec<&str> = v.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(pointers, ["/a", "/b", "/c", "/z"]);
    }

    #[test]
    fn non_objects_and_bad_json_are_told_apart() {
        assert!(matches!(
            Reader::new(b"[1]", &[]),
            Err(BodyError::Invalid(v)) if v[0].pointer.is_empty()
        ));
        assert!(matches!(
            Reader::new(b"{", &[]),
            Err(BodyError::Malformed(_))
        ));
    }
}
