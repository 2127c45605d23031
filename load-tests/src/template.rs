//! Per-request values: `{n}` (the request's sequence number in this load generator) and
//! `{run}` (an id of this load generator run) in header values and bodies, e.g. a fresh
//! `Idempotency-Key: lt-{run}-{n}` per request.

/// A string with `{n}` / `{run}` placeholders, split once so expanding is cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Seq,
    Run,
}

impl Template {
    /// Splits `text` at its placeholders; other braces are kept as they are.
    pub fn parse(text: &str) -> Template {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("{n}") {
                push_literal(&mut parts, &mut literal);
                parts.push(Part::Seq);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("{run}") {
                push_literal(&mut parts, &mut literal);
                parts.push(Part::Run);
                rest = after;
            } else {
                let mut chars = rest.chars();
                if let Some(c) = chars.next() {
                    literal.push(c);
                }
                rest = chars.as_str();
            }
        }
        push_literal(&mut parts, &mut literal);
        Template { parts }
    }

    /// Whether the template has no placeholder (the value can be built once).
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// The value for request `n` of run `run`.
    pub fn expand(&self, run: &str, n: u64) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Seq => out.push_str(&n.to_string()),
                Part::Run => out.push_str(run),
            }
        }
        out
    }
}

fn push_literal(parts: &mut Vec<Part>, literal: &mut String) {
    if !literal.is_empty() {
        parts.push(Part::Text(std::mem::take(literal)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_expanded_per_request() {
        let t = Template::parse("lt-{run}-{n}");
        assert!(!t.is_static());
        assert_eq!(t.expand("r1", 0), "lt-r1-0");
        assert_eq!(t.expand("r1", 42), "lt-r1-42");
    }

    #[test]
    fn json_braces_are_not_placeholders() {
        let body = r#"{"campaign_id":"spring-{n}","x":{}}"#;
        let t = Template::parse(body);
        assert_eq!(t.expand("r", 7), r#"{"campaign_id":"spring-7","x":{}}"#);
        let plain = Template::parse(r#"{"a":"{nn}","b":"{ru}"}"#);
        assert!(plain.is_static());
        assert_eq!(plain.expand("r", 1), r#"{"a":"{nn}","b":"{ru}"}"#);
    }

    #[test]
    fn empty_and_multibyte_text_survive() {
        assert_eq!(Template::parse("").expand("r", 1), "");
        assert_eq!(Template::parse("推荐{n}码").expand("r", 3), "推荐3码");
    }
}
