//! The field catalogue: every customer tag field the upstream can return, with its
//! sensitivity tier and, for sensitive fields, how it is masked.
//!
//! The tiers follow the seed's 隐私分级 (公开 / 敏感 / 绝密) plus a `never` tier for
//! authentication secrets that no consent can release (JR/T 0171-2020 C3).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How sensitive a field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Released as-is when consented.
    Public,
    /// Masked unless the consent grants it `plain`.
    Sensitive,
    /// Released only under a consent recorded with a second authorisation.
    Secret,
    /// Never released, whatever the consent says.
    Never,
}

/// How a sensitive field is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskRule {
    /// Mobile number: first 3 and last 4 digits, `138****5678`.
    Mobile,
    /// Personal name: first character, the rest `*`, `张*`.
    Name,
    /// ID number: first 3 and last 4 characters kept.
    IdNumber,
    /// Amounts become a range bucket such as `500k-1m`; applied to every number inside
    /// arrays and objects too (holdings summaries).
    AmountBucket,
    /// Dates (`YYYY-MM-DD...`) keep only the year.
    Year,
    /// Scores in `[0, 1]` become `low`, `medium` or `high`.
    ScoreBand,
    /// The value is replaced by `"***"`.
    Redact,
}

/// One field of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// Its tier.
    pub tier: Tier,
    /// Its masking rule; present exactly when the tier is `sensitive`.
    pub mask: Option<MaskRule>,
}

/// Every tag field the upstream can return, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldCatalogue {
    fields: BTreeMap<String, FieldSpec>,
}

impl FieldCatalogue {
    /// Builds a catalogue. Callers (the config loader) have checked that sensitive fields have
    /// a mask rule.
    pub fn new(fields: BTreeMap<String, FieldSpec>) -> Self {
        FieldCatalogue { fields }
    }

    /// The spec of a field.
    pub fn get(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.get(name)
    }

    /// Whether the catalogue knows the field.
    pub fn contains(&self, name: &str) -> bool {
        self.fields.contains_key(name)
    }

    /// All fields, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &FieldSpec)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Whether a field name is well formed: `[a-z][a-z0-9_]*`, at most 64 characters.
pub fn is_field_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}
