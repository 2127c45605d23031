//! Strict query-string parsing: every parameter must be known, appear once, and be
//! well-formed; every violation is reported with its pointer (`/limit`, `/cursor`, …).

use std::collections::BTreeMap;

use gateway_core::{Problem, ProblemType, Violation};

/// The parameters of a query string, each known name at most once.
#[derive(Debug, Default)]
pub struct Query {
    values: BTreeMap<String, String>,
    violations: Vec<Violation>,
}

impl Query {
    /// Parses `query` accepting only `allowed` names. Values are percent-decoded (`+` is a
    /// space); a repeated or unknown name, or bad UTF-8, is a violation.
    pub fn parse(query: Option<&str>, allowed: &[&str]) -> Query {
        let mut out = Query::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(name), Some(value)) = (decode(name), decode(value)) else {
                out.violation("", "query string is not valid percent-encoded UTF-8".into());
                continue;
            };
            if !allowed.contains(&name.as_str()) {
                let shown: String = name.chars().take(40).collect();
                out.violation(
                    &format!("/{shown}"),
                    format!("unknown parameter; allowed: {}", allowed.join(", ")),
                );
            } else if let std::collections::btree_map::Entry::Vacant(slot) =
                out.values.entry(name.clone())
            {
                slot.insert(value);
            } else {
                out.violation(&format!("/{name}"), "given more than once".into());
            }
        }
        out
    }

    /// The raw value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Parses a parameter with `parse`; a failure is recorded with `expected`.
    pub fn parse_with<T>(
        &mut self,
        name: &str,
        expected: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let value = self.values.get(name)?.clone();
        let parsed = parse(&value);
        if parsed.is_none() {
            self.violation(&format!("/{name}"), format!("expected {expected}"));
        }
        parsed
    }

    /// An integer parameter within `range`, or `default` when absent.
    pub fn integer(
        &mut self,
        name: &str,
        range: std::ops::RangeInclusive<usize>,
        default: usize,
    ) -> usize {
        let expected = format!("an integer from {} to {}", range.start(), range.end());
        self.parse_with(name, &expected, |v| {
            v.parse::<usize>().ok().filter(|n| range.contains(n))
        })
        .unwrap_or(default)
    }

    /// Records a violation.
    pub fn violation(&mut self, pointer: &str, detail: String) {
        self.violations.push(Violation {
            pointer: pointer.to_owned(),
            detail,
        });
    }

    /// `Ok` when nothing was wrong, else the 400 `invalid-query` problem listing everything.
    pub fn finish(self) -> Result<(), Problem> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(Problem::new(ProblemType::InvalidQuery)
                .with_detail(format!(
                    "{} problem(s) in the query string",
                    self.violations.len()
                ))
                .with_errors(self.violations))
        }
    }
}

fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_parameters_and_reports_everything_else() {
        let mut q = Query::parse(
            Some("limit=5&partner=demo-bank&x=1&limit=6&cursor=%zz"),
            &["limit", "partner", "cursor"],
        );
        assert_eq!(q.integer("limit", 1..=100, 20), 5);
        assert_eq!(q.get("partner"), Some("demo-bank"));
        let problem = q.finish().unwrap_err();
        let pointers: Vec<_> = problem.errors.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(pointers, ["/x", "/limit", ""]);
    }

    #[test]
    fn out_of_range_integers_are_violations() {
        let mut q = Query::parse(Some("limit=0"), &["limit"]);
        assert_eq!(q.integer("limit", 1..=100, 20), 20);
        assert_eq!(q.finish().unwrap_err().errors[0].pointer, "/limit");
    }

    #[test]
    fn decodes_percent_and_plus() {
        let q = Query::parse(Some("a=x%20y+z"), &["a"]);
        assert_eq!(q.get("a"), Some("x y z"));
    }
}
