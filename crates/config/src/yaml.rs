//! YAML text → a JSON value for the schema check, plus where every node sits in the text.
//!
//! The YAML is parsed once into a tree whose nodes carry their line and column
//! ([`serde_saphyr::Spanned`]). From that tree come the `serde_json::Value` the JSON Schema
//! validator reads and an index from JSON pointer to position, so a schema violation or a
//! cross-check problem found at `/oauth/scopes/3` is reported at its line and column.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::report::LineCol;

/// A parsed YAML document: its JSON value and the position of every node.
#[derive(Debug)]
pub(crate) struct Document {
    /// The document as JSON (what the schema validates).
    pub(crate) value: serde_json::Value,
    /// JSON pointer → position of the node's value.
    values: HashMap<String, LineCol>,
    /// JSON pointer → position of the mapping key that holds the node.
    keys: HashMap<String, LineCol>,
}

/// A YAML syntax error (or a YAML feature the configuration does not accept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// Where, when the parser knows.
    pub(crate) at: Option<LineCol>,
    /// What, on one line.
    pub(crate) message: String,
}

/// Parser options shared by the document parse and the raw-struct parse.
pub(crate) fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    // One-line messages: the report adds file, line and column itself.
    options.with_snippet = false;
    // YAML 1.2 booleans only: `no` stays the string "no" (the "Norway problem").
    options.strict_booleans = true;
    options
}

/// Converts a serde-saphyr error into a one-line message and a position.
pub(crate) fn syntax_error(error: &serde_saphyr::Error) -> SyntaxError {
    let error = error.without_snippet();
    let at = error
        .location()
        .and_then(|loc| LineCol::new(loc.line(), loc.column()));
    let mut message = one_line(&error.to_string());
    // The report shows the position itself.
    if let Some(loc) = error.location() {
        let suffix = format!(" at line {}, column {}", loc.line(), loc.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
    }
    SyntaxError { at, message }
}

impl Document {
    /// Parses one YAML document.
    pub(crate) fn parse(text: &str) -> Result<Document, SyntaxError> {
        let root: Spanned<Node> =
            serde_saphyr::from_str_with_options(text, options()).map_err(|e| syntax_error(&e))?;
        let mut doc = Document {
            value: serde_json::Value::Null,
            values: HashMap::new(),
            keys: HashMap::new(),
        };
        let mut pointer = String::new();
        doc.value = doc.index(root, &mut pointer);
        Ok(doc)
    }

    /// The position to report for the node at `pointer`: a scalar's own position, the key of a
    /// mapping entry whose value is a collection, or the nearest ancestor that has one.
    pub(crate) fn position(&self, pointer: &str) -> Option<LineCol> {
        let mut pointer = pointer;
        loop {
            let is_collection = matches!(
                self.value.pointer(pointer),
                Some(serde_json::Value::Object(_) | serde_json::Value::Array(_))
            );
            let key = self.keys.get(pointer).copied();
            let value = self.values.get(pointer).copied();
            let found = if is_collection {
                key.or(value)
            } else {
                value.or(key)
            };
            if found.is_some() {
                return found;
            }
            match pointer.rfind('/') {
                Some(i) => pointer = &pointer[..i],
                None => return None,
            }
        }
    }

    /// The position of the mapping key that holds the node at `pointer`, falling back to
    /// [`Document::position`].
    pub(crate) fn key_position(&self, pointer: &str) -> Option<LineCol> {
        self.keys
            .get(pointer)
            .copied()
            .or_else(|| self.position(pointer))
    }

    fn index(&mut self, node: Spanned<Node>, pointer: &mut String) -> serde_json::Value {
        if let Some(at) = LineCol::new(node.referenced.line(), node.referenced.column()) {
            self.values.insert(pointer.clone(), at);
        }
        match node.value {
            Node::Null => serde_json::Value::Null,
            Node::Bool(b) => serde_json::Value::Bool(b),
            Node::Int(i) => serde_json::Value::from(i),
            Node::UInt(u) => serde_json::Value::from(u),
            // Non-finite floats have no JSON form; a string fails any numeric schema type.
            Node::Float(f) => serde_json::Number::from_f64(f)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| serde_json::Value::String(f.to_string())),
            Node::Str(s) => serde_json::Value::String(s),
            Node::Seq(items) => {
                let len = pointer.len();
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    pointer.push('/');
                    pointer.push_str(&i.to_string());
                    out.push(self.index(item, pointer));
                    pointer.truncate(len);
                }
                serde_json::Value::Array(out)
            }
            Node::Map(entries) => {
                let len = pointer.len();
                let mut out = serde_json::Map::with_capacity(entries.len());
                for (key, value) in entries {
                    pointer.push('/');
                    push_escaped(pointer, &key.value.0);
                    if let Some(at) = LineCol::new(key.referenced.line(), key.referenced.column()) {
                        self.keys.insert(pointer.clone(), at);
                    }
                    let value = self.index(value, pointer);
                    pointer.truncate(len);
                    out.insert(key.value.0, value);
                }
                serde_json::Value::Object(out)
            }
        }
    }
}

/// Appends a JSON pointer reference token (RFC 6901 escaping).
pub(crate) fn push_escaped(pointer: &mut String, token: &str) {
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// A JSON pointer from reference tokens.
pub(crate) fn pointer<I, S>(tokens: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    for token in tokens {
        out.push('/');
        push_escaped(&mut out, token.as_ref());
    }
    out
}

fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(line);
    }
    out
}

// === impl Node ===

/// An untyped YAML node whose children carry their positions.
#[derive(Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Key>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::UInt(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(i64::try_from(v)
            .map(Node::Int)
            .unwrap_or(Node::Float(v as f64)))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        Ok(u64::try_from(v)
            .map(Node::UInt)
            .unwrap_or(Node::Float(v as f64)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Str(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Key>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key: any scalar, as text (JSON object keys are strings).
#[derive(Debug)]
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar mapping key (lists and mappings cannot be keys)")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(Key(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Key, E> {
        Ok(Key(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
        Ok(Key("null".to_owned()))
    }

    fn visit_none<E: de::Error>(self) -> Result<Key, E> {
        Ok(Key("null".to_owned()))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        Key::deserialize(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        Key::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32, column: u32) -> Option<LineCol> {
        LineCol::new(u64::from(line), u64::from(column))
    }

    #[test]
    fn values_and_positions() {
        let doc = Document::parse(
            "# comment\na: 1\nb:\n  c: [x, \"y\"]\n  d:\n    - e: true\n      f: ~\n",
        )
        .unwrap();
        assert_eq!(
            doc.value,
            serde_json::json!({"a": 1, "b": {"c": ["x", "y"], "d": [{"e": true, "f": null}]}})
        );
        assert_eq!(doc.position("/a"), at(2, 4));
        assert_eq!(doc.position("/b"), at(3, 1));
        assert_eq!(doc.position("/b/c/1"), at(4, 10));
        assert_eq!(doc.position("/b/d/0/f"), at(7, 10));
        assert_eq!(doc.key_position("/b/d/0/f"), at(7, 7));
        // Unknown pointers fall back to the nearest known ancestor.
        assert_eq!(doc.position("/b/c/9"), at(4, 3));
    }

    #[test]
    fn pointer_tokens_are_escaped() {
        let doc = Document::parse("\"a/b~c\": 1\n").unwrap();
        assert_eq!(doc.value.pointer("/a~1b~0c"), Some(&serde_json::json!(1)));
        assert_eq!(pointer(["a/b~c", "0"]), "/a~1b~0c/0");
        assert_eq!(doc.position("/a~1b~0c"), at(1, 10));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = Document::parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.at.is_some(), "{err:?}");
        assert!(!err.message.contains('\n'));
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let err = Document::parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.at.map(|p| p.line), Some(2), "{err:?}");
    }

    #[test]
    fn yaml_1_1_booleans_stay_strings() {
        let doc = Document::parse("a: no\nb: false\n").unwrap();
        assert_eq!(doc.value, serde_json::json!({"a": "no", "b": false}));
    }
}
