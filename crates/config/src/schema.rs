//! The JSON Schemas of the three file kinds, embedded at build time, and the schema check.
//!
//! The schemas in `schemas/` are the documented interface of `partner-config/` (editors can use
//! them too). They check shape and types; what needs other files or domain knowledge (scopes,
//! routes, fingerprints, references between files) is left to the conversion and cross-checks,
//! which give more precise messages.

use std::sync::LazyLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use crate::report::{ConfigProblem, Location};
use crate::yaml::{self, Document};

/// `schemas/gateway.schema.json`: the schema of `gateway.yaml`.
pub const GATEWAY_SCHEMA: &str = include_str!("../../../schemas/gateway.schema.json");
/// `schemas/partner.schema.json`: the schema of `partners/<id>.yaml`.
pub const PARTNER_SCHEMA: &str = include_str!("../../../schemas/partner.schema.json");
/// `schemas/campaign.schema.json`: the schema of `campaigns/<id>.yaml`.
pub const CAMPAIGN_SCHEMA: &str = include_str!("../../../schemas/campaign.schema.json");

/// The kinds of configuration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Gateway,
    Partner,
    Campaign,
}

struct Compiled {
    schema: Value,
    validator: jsonschema::Validator,
}

fn compile(text: &str) -> Compiled {
    // The schemas are part of this crate; `schemas_compile` in the tests below proves that each
    // parses and compiles, so these cannot fail at run time.
    let schema: Value = serde_json::from_str(text).expect("embedded schema is valid JSON");
    let validator =
        jsonschema::draft202012::new(&schema).expect("embedded schema is a valid 2020-12 schema");
    Compiled { schema, validator }
}

static GATEWAY: LazyLock<Compiled> = LazyLock::new(|| compile(GATEWAY_SCHEMA));
static PARTNER: LazyLock<Compiled> = LazyLock::new(|| compile(PARTNER_SCHEMA));
static CAMPAIGN: LazyLock<Compiled> = LazyLock::new(|| compile(CAMPAIGN_SCHEMA));

impl FileKind {
    fn compiled(self) -> &'static Compiled {
        match self {
            FileKind::Gateway => &GATEWAY,
            FileKind::Partner => &PARTNER,
            FileKind::Campaign => &CAMPAIGN,
        }
    }
}

/// Validates a document against its schema; one problem per violation (and per unknown key).
pub(crate) fn check(kind: FileKind, file: &std::path::Path, doc: &Document) -> Vec<ConfigProblem> {
    let compiled = kind.compiled();
    let mut problems = Vec::new();
    for error in compiled.validator.iter_errors(&doc.value) {
        let pointer = error.instance_path().as_str().to_owned();
        // Problems inside the document say where; at the top level that goes without saying.
        let prefix = if pointer.is_empty() {
            String::new()
        } else {
            format!("{pointer}: ")
        };
        // The evaluation path goes through `$ref`s, so a field's own description is found.
        let schema_path = error.evaluation_path().as_str();
        let description = description_at(&compiled.schema, schema_path);
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed = allowed_keys(&compiled.schema, schema_path);
                for key in unexpected {
                    let mut key_pointer = pointer.clone();
                    key_pointer.push('/');
                    yaml::push_escaped(&mut key_pointer, key);
                    let mut problem =
                        ConfigProblem::file(file, format!("{prefix}unknown key {key:?}")).at(
                            Location {
                                line_col: doc.key_position(&key_pointer),
                                pointer: Some(key_pointer),
                            },
                        );
                    if !allowed.is_empty() {
                        problem =
                            problem.with_hint(format!("allowed keys are {}", allowed.join(", ")));
                    }
                    problems.push(problem);
                }
            }
            kind => {
                let message = match kind {
                    ValidationErrorKind::Required { property } => {
                        format!("{prefix}missing required key {}", short(property))
                    }
                    ValidationErrorKind::Type { kind } => format!(
                        "{prefix}expected {}, found {}",
                        type_names(kind),
                        describe(error.instance())
                    ),
                    ValidationErrorKind::Enum { options } => format!(
                        "{prefix}{} is not one of {}",
                        short(error.instance()),
                        list(options)
                    ),
                    _ => format!("{prefix}{}", truncate(&error.to_string(), 200)),
                };
                let line_col = match kind {
                    // A missing key is reported where its mapping starts.
                    ValidationErrorKind::Required { .. } => doc.key_position(&pointer),
                    _ => doc.position(&pointer),
                };
                let mut problem = ConfigProblem::file(file, message).at(Location {
                    line_col,
                    pointer: Some(pointer),
                });
                let hint = match kind {
                    ValidationErrorKind::Required { property } => property
                        .as_str()
                        .and_then(|key| property_description(&compiled.schema, schema_path, key))
                        .map(|d| format!("{}: {d}", property.as_str().unwrap_or_default())),
                    _ => description,
                };
                if let Some(hint) = hint {
                    problem = problem.with_hint(hint);
                }
                problems.push(problem);
            }
        }
    }
    problems
}

/// The schema node that holds the failing keyword: the path without its last token, resolving
/// `$ref`s on the way. A `$ref` site's own description wins over the target's (it is the more
/// specific one).
fn keyword_parent<'a>(schema: &'a Value, schema_path: &str) -> Option<&'a Value> {
    let tokens: Vec<String> = schema_path
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let (_, parents) = tokens.split_last()?;
    let mut node = schema;
    for token in parents {
        node = if token == "$ref" {
            let target = node.get("$ref")?.as_str()?.strip_prefix('#')?;
            schema.pointer(target)?
        } else {
            match node {
                Value::Object(map) => map.get(token.as_str())?,
                Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            }
        };
    }
    Some(node)
}

fn description_at(schema: &Value, schema_path: &str) -> Option<String> {
    // Prefer the description next to a `$ref`, which names the field, over the target's.
    if let Some(i) = schema_path.rfind("/$ref") {
        let site = keyword_parent(schema, &format!("{}/x", &schema_path[..i]));
        if let Some(d) = site
            .and_then(|n| n.get("description"))
            .and_then(Value::as_str)
        {
            return Some(d.to_owned());
        }
    }
    let node = keyword_parent(schema, schema_path)?;
    node.get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn property_description(schema: &Value, schema_path: &str, key: &str) -> Option<String> {
    let node = keyword_parent(schema, schema_path)?;
    let property = node.get("properties")?.get(key)?;
    let property = match property.get("description") {
        Some(_) => property,
        None => schema.pointer(property.get("$ref")?.as_str()?.strip_prefix('#')?)?,
    };
    property
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn allowed_keys(schema: &Value, schema_path: &str) -> Vec<String> {
    keyword_parent(schema, schema_path)
        .and_then(|node| node.get("properties"))
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}

fn type_names(kind: &TypeKind) -> String {
    match kind {
        TypeKind::Single(t) => article(&t.to_string()),
        TypeKind::Multiple(set) => {
            let names: Vec<String> = set.iter().map(|t| t.to_string()).collect();
            names.join(" or ")
        }
    }
}

fn article(name: &str) -> String {
    match name {
        "integer" => "an integer (a whole number)".to_owned(),
        "object" => "a mapping".to_owned(),
        "array" => "a list".to_owned(),
        "null" => "null".to_owned(),
        other => format!("a {other}"),
    }
}

/// How a found value is described in a type error.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null (an empty value)".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", truncate(&format!("{s:?}"), 80)),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

fn short(value: &Value) -> String {
    truncate(&value.to_string(), 80)
}

fn list(options: &Value) -> String {
    match options.as_array() {
        Some(items) => items
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        None => options.to_string(),
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_compile() {
        for kind in [FileKind::Gateway, FileKind::Partner, FileKind::Campaign] {
            let compiled = kind.compiled();
            assert_eq!(
                compiled.schema["$schema"],
                "https://json-schema.org/draft/2020-12/schema"
            );
        }
    }

    #[test]
    fn keyword_parent_follows_refs() {
        let schema: Value = serde_json::from_str(PARTNER_SCHEMA).unwrap();
        let node = keyword_parent(
            &schema,
            "/properties/rate_limits/properties/default/$ref/properties/burst/type",
        )
        .unwrap();
        assert_eq!(node["type"], "integer");
    }
}
