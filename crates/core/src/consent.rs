//! Per-field consent decisions: which of a customer's tag fields a partner may see, and in which
//! form. Pure functions over the parsed upstream JSON; no I/O.
//!
//! # The release rule
//!
//! A tag field is released to a partner only when all of these hold (PRODUCT.md §4):
//!
//! 1. the upstream tag service returned it;
//! 2. the field catalogue knows it — an upstream field the catalogue does not name is **never**
//!    released (fail closed: a new CRM field stays private until ops classify it);
//! 3. its tier is not `never`;
//! 4. the partner's ceiling (`field_ceiling` in its config file) includes it;
//! 5. the customer's consent names it;
//! 6. its tier allows it under that consent:
//!    - `public`: released as stored, whether the consent says `plain` or `masked` (a public
//!      field has nothing to mask);
//!    - `sensitive`: masked by the field's [`MaskRule`] unless the consent says `plain`;
//!    - `secret`: only when the consent was recorded with a second authorisation; then as
//!      stored if the consent says `plain`. A secret field has no mask, so a consent saying
//!      `masked` yields `"***"` (grants refuse that combination; this is the fallback for a
//!      record that holds it anyway);
//! 7. the partner asked for it: with `?fields=a,b` only those, otherwise every consented field.
//!
//! # Why a field was withheld
//!
//! Every requested field that is not released is listed once with one [`WithheldReason`]. When
//! several rules are broken, the first in this order names it (the most permanent cause first,
//! so the reason tells the partner what would have to change):
//!
//! | order | reason | cause |
//! | --- | --- | --- |
//! | 1 | `never_shared` | the field's tier is `never` |
//! | 2 | `partner_ceiling` | the partner's ceiling excludes it |
//! | 3 | `no_consent` | the consent does not name it |
//! | 4 | `second_authorisation_required` | `secret` field, consent without second authorisation |
//! | 5 | `not_available` | allowed, but the upstream document has no such field |
//!
//! Without an explicit request the "requested" fields are the consented ones, so the list says
//! why a consented field did not come back. A requested field the catalogue does not know is a
//! caller error ([`ProjectionError::UnknownFields`], answered `400 invalid-query`).
//!
//! # Masks
//!
//! | rule | input | output |
//! | --- | --- | --- |
//! | `mobile` | string of ≥ 8 characters | first 3 and last 4 kept, the rest `*`: `138****5678` |
//! | `id_number` | string of ≥ 8 characters | first 3 and last 4 kept, the rest `*` |
//! | `name` | string | first character, every other character `*` (by Unicode scalar): `张*` |
//! | `amount_bucket` | number, or a string holding one | a bucket label (below) |
//! | `amount_bucket` | array or object | every number inside (and every string holding one) becomes its bucket; other values and all keys kept |
//! | `year` | `YYYY-MM-DD…` | `YYYY` |
//! | `score_band` | number in `[0, 1]` | `low` (< 0.33), `medium` (< 0.66) or `high` |
//! | `redact` | anything | `"***"` |
//!
//! A value a mask cannot apply to (a number for `mobile`, a string that is no date for `year`,
//! a score outside `[0, 1]`, `null`, …) becomes `"***"`: a sensitive value is never released
//! raw by accident. Every mask is idempotent (masking a masked value changes nothing), so an
//! already-masked upstream value passes unchanged.
//!
//! Amount buckets are half-open intervals in the amount's own unit (CNY for the sandbox):
//!
//! | label | range |
//! | --- | --- |
//! | `<10k` | below 10 000 (negative amounts included) |
//! | `10k-50k` | 10 000 ≤ x < 50 000 |
//! | `50k-100k` | 50 000 ≤ x < 100 000 |
//! | `100k-500k` | 100 000 ≤ x < 500 000 |
//! | `500k-1m` | 500 000 ≤ x < 1 000 000 |
//! | `1m-5m` | 1 000 000 ≤ x < 5 000 000 |
//! | `5m-10m` | 5 000 000 ≤ x < 10 000 000 |
//! | `>=10m` | 10 000 000 and above |
//!
//! # Cost
//!
//! [`project`] streams over the upstream bytes once: a plain field is copied as the raw JSON
//! text it came in (`RawValue`), a masked string or number is masked straight from its raw
//! text, a masked array or object (holdings) is parsed into a small `Value` first, and every
//! other value is skipped without being built (`IgnoredAny`). Nothing that is dropped is ever
//! copied. Duplicate keys in the upstream document are released once (the first).
//!
//! # Example
//!
//! ```
//! use std::collections::{BTreeMap, BTreeSet};
//! use gateway_core::consent::{project, Disclosure, ReleasePolicy, WithheldReason};
//! use gateway_core::{FieldCatalogue, FieldSpec, MaskRule, Tier};
//!
//! let catalogue = FieldCatalogue::new(BTreeMap::from([
//!     ("risk_level".to_owned(), FieldSpec { tier: Tier::Public, mask: None }),
//!     ("mobile".to_owned(), FieldSpec { tier: Tier::Sensitive, mask: Some(MaskRule::Mobile) }),
//!     ("home_address".to_owned(), FieldSpec { tier: Tier::Secret, mask: None }),
//! ]));
//! let consented = BTreeMap::from([
//!     ("risk_level".to_owned(), Disclosure::Plain),
//!     ("mobile".to_owned(), Disclosure::Masked),
//!     ("home_address".to_owned(), Disclosure::Plain),
//! ]);
//! let ceiling: BTreeSet<String> = catalogue.iter().map(|(name, _)| name.to_owned()).collect();
//! let policy = ReleasePolicy {
//!     catalogue: &catalogue,
//!     consented: &consented,
//!     second_authorisation: false,
//!     ceiling: &ceiling,
//! };
//! let upstream = br#"{"risk_level":"C3","mobile":"13812345678","home_address":"...","x":1}"#;
//! let projection = project(&policy, None, upstream).unwrap();
//! assert_eq!(projection.tags, r#"{"risk_level":"C3","mobile":"138****5678"}"#);
//! assert_eq!(projection.withheld[0].field, "home_address");
//! assert_eq!(projection.withheld[0].reason, WithheldReason::SecondAuthorisationRequired);
//! ```

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::audit::WithheldField;
use crate::fields::{FieldCatalogue, FieldSpec, MaskRule, Tier};
use crate::ids::{ConsentId, CustomerRef};
use crate::time::{UnixTime, format_rfc3339};

/// What a masked value that cannot be masked becomes, and what `redact` always yields.
pub const REDACTED: &str = "***";

/// The amount buckets, as `(exclusive upper bound, label)`, in ascending order; amounts at or
/// above the last bound are [`TOP_AMOUNT_BUCKET`].
pub const AMOUNT_BUCKETS: [(f64, &str); 7] = [
    (10_000.0, "<10k"),
    (50_000.0, "10k-50k"),
    (100_000.0, "50k-100k"),
    (500_000.0, "100k-500k"),
    (1_000_000.0, "500k-1m"),
    (5_000_000.0, "1m-5m"),
    (10_000_000.0, "5m-10m"),
];

/// The label of amounts of 10 million and above.
pub const TOP_AMOUNT_BUCKET: &str = ">=10m";

/// How a consented field may be released: the customer's choice per field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disclosure {
    /// As stored upstream.
    Plain,
    /// Masked by the field's rule.
    Masked,
}

/// The fields a consent names, each with its [`Disclosure`].
///
/// Implemented for `BTreeMap<String, Disclosure>`; crates with their own record type implement
/// it over a borrowed view, so a projection never copies the consent.
pub trait ConsentedFields {
    /// How the field may be released, or `None` when the consent does not name it.
    fn disclosure(&self, field: &str) -> Option<Disclosure>;

    /// Every field the consent names, in a stable order.
    fn fields(&self) -> impl Iterator<Item = &str>;
}

/// Everything that decides whether one field is released: the catalogue, the consent, and the
/// partner's ceiling.
pub struct ReleasePolicy<'a, C: ?Sized> {
    /// The field catalogue (`gateway.yaml` `fields:`).
    pub catalogue: &'a FieldCatalogue,
    /// The fields the consent names.
    pub consented: &'a C,
    /// Whether the consent was recorded with a second authorisation (needed for `secret`).
    pub second_authorisation: bool,
    /// The fields the partner may ever receive (its `field_ceiling`).
    pub ceiling: &'a BTreeSet<String>,
}

/// The decision about one catalogue field under a [`ReleasePolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldDecision {
    /// Released, in this form, if the upstream has it.
    Release(Release),
    /// Not released, for this reason.
    Withhold(WithheldReason),
}

/// The form in which a field is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The upstream value, unchanged.
    Plain,
    /// The upstream value masked by this rule.
    Mask(MaskRule),
}

/// Why a requested field was not released. Serialised as its snake_case name, the word used in
/// the tags response's `withheld` list and in the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithheldReason {
    /// The field's tier is `never`: no consent can release it.
    NeverShared,
    /// The partner's ceiling excludes the field.
    PartnerCeiling,
    /// The consent does not name the field.
    NoConsent,
    /// A `secret` field under a consent recorded without a second authorisation.
    SecondAuthorisationRequired,
    /// Allowed, but the upstream document has no such field.
    NotAvailable,
}

/// A requested field that was not released, and why. Serialised as `{"field":…,"reason":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Withheld {
    /// The field name.
    pub field: String,
    /// Why it was not released.
    pub reason: WithheldReason,
}

/// The result of a projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    /// The released fields as one serialised JSON object, in upstream order, ready to embed
    /// verbatim in a response (`"tags": <this>`).
    pub tags: String,
    /// The names of the released fields, in the order of `tags`.
    pub released: Vec<String>,
    /// Every requested field that was not released, in request order, with its reason.
    pub withheld: Vec<Withheld>,
}

/// Why a projection could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectionError {
    /// The request names fields the catalogue does not know (a caller error: `400
    /// invalid-query`). Every unknown name is listed, in request order.
    #[error("unknown fields requested: {}", .0.join(", "))]
    UnknownFields(Vec<String>),
    /// The upstream document is not the expected JSON (the upstream's fault: `502`).
    #[error("upstream tags document is malformed: {0}")]
    MalformedUpstream(String),
}

/// Decides and releases the fields of an upstream tags object (`{"name": …, "mobile": …}`).
///
/// `requested` is the partner's `?fields=` list (`None`: every consented field). See the
/// module docs for the rule, the reasons and their precedence.
pub fn project<C: ConsentedFields + ?Sized>(
    policy: &ReleasePolicy<'_, C>,
    requested: Option<&[&str]>,
    upstream_tags: &[u8],
) -> Result<Projection, ProjectionError> {
    run(policy, requested, upstream_tags, Shape::Tags)
}

/// Like [`project`], for the whole document of the upstream tag service,
/// `{"customer_id": …, "tags": {…}}`: only the `tags` member is read, every other member
/// (the internal customer id among them) is skipped unread.
pub fn project_document<C: ConsentedFields + ?Sized>(
    policy: &ReleasePolicy<'_, C>,
    requested: Option<&[&str]>,
    upstream_document: &[u8],
) -> Result<Projection, ProjectionError> {
    run(policy, requested, upstream_document, Shape::Document)
}

/// Masks one value by a rule (see the module docs for the table). Idempotent.
pub fn mask(rule: MaskRule, value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(mask_str(rule, s).into_owned()),
        Value::Number(n) => n
            .as_f64()
            .map_or_else(redacted, |x| Value::String(mask_number(rule, x).to_owned())),
        Value::Array(_) | Value::Object(_) if rule == MaskRule::AmountBucket => {
            bucket_inside(value)
        }
        Value::Array(_) | Value::Object(_) | Value::Bool(_) | Value::Null => redacted(),
    }
}

/// The bucket label of an amount.
pub fn amount_bucket(amount: f64) -> &'static str {
    AMOUNT_BUCKETS
        .iter()
        .find(|(upper, _)| amount < *upper)
        .map_or(TOP_AMOUNT_BUCKET, |(_, label)| label)
}

// === impl ConsentedFields ===

impl ConsentedFields for BTreeMap<String, Disclosure> {
    fn disclosure(&self, field: &str) -> Option<Disclosure> {
        self.get(field).copied()
    }

    fn fields(&self) -> impl Iterator<Item = &str> {
        self.keys().map(String::as_str)
    }
}

// === impl ReleasePolicy ===

impl<C: ConsentedFields + ?Sized> ReleasePolicy<'_, C> {
    /// The decision about a field, or `None` when the catalogue does not know it (such a field
    /// is never released).
    pub fn decide(&self, field: &str) -> Option<FieldDecision> {
        let spec = self.catalogue.get(field)?;
        Some(self.decide_spec(field, spec))
    }

    fn decide_spec(&self, field: &str, spec: &FieldSpec) -> FieldDecision {
        use FieldDecision::{Release as R, Withhold as W};
        // The checks run in the documented precedence order: never, ceiling, consent, tier.
        if spec.tier == Tier::Never {
            return W(WithheldReason::NeverShared);
        }
        if !self.ceiling.contains(field) {
            return W(WithheldReason::PartnerCeiling);
        }
        let Some(disclosure) = self.consented.disclosure(field) else {
            return W(WithheldReason::NoConsent);
        };
        match (spec.tier, disclosure) {
            (Tier::Public, _) => R(Release::Plain),
            (Tier::Sensitive, Disclosure::Plain) => R(Release::Plain),
            // A sensitive field without a rule is a catalogue mistake: redact rather than leak.
            (Tier::Sensitive, Disclosure::Masked) => {
                R(Release::Mask(spec.mask.unwrap_or(MaskRule::Redact)))
            }
            (Tier::Secret, _) if !self.second_authorisation => {
                W(WithheldReason::SecondAuthorisationRequired)
            }
            (Tier::Secret, Disclosure::Plain) => R(Release::Plain),
            // Secret fields have no mask; the customer did not agree to the plain value.
            (Tier::Secret, Disclosure::Masked) => R(Release::Mask(MaskRule::Redact)),
            (Tier::Never, _) => W(WithheldReason::NeverShared),
        }
    }
}

impl<C: ?Sized> Clone for ReleasePolicy<'_, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C: ?Sized> Copy for ReleasePolicy<'_, C> {}

impl<C: ?Sized> fmt::Debug for ReleasePolicy<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReleasePolicy")
            .field("catalogue_fields", &self.catalogue.len())
            .field("second_authorisation", &self.second_authorisation)
            .field("ceiling", &self.ceiling)
            .finish_non_exhaustive()
    }
}

// === impl WithheldReason ===

impl WithheldReason {
    /// Every reason, in precedence order.
    pub const ALL: [WithheldReason; 5] = [
        WithheldReason::NeverShared,
        WithheldReason::PartnerCeiling,
        WithheldReason::NoConsent,
        WithheldReason::SecondAuthorisationRequired,
        WithheldReason::NotAvailable,
    ];

    /// The wire word: `never_shared`, `partner_ceiling`, `no_consent`,
    /// `second_authorisation_required` or `not_available`.
    pub const fn as_str(self) -> &'static str {
        match self {
            WithheldReason::NeverShared => "never_shared",
            WithheldReason::PartnerCeiling => "partner_ceiling",
            WithheldReason::NoConsent => "no_consent",
            WithheldReason::SecondAuthorisationRequired => "second_authorisation_required",
            WithheldReason::NotAvailable => "not_available",
        }
    }
}

impl fmt::Display for WithheldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Withheld ===

impl From<&Withheld> for WithheldField {
    fn from(w: &Withheld) -> WithheldField {
        WithheldField::new(w.field.clone(), w.reason.as_str())
    }
}

// === impl Projection ===

impl Projection {
    /// The withheld fields in the audit record's shape.
    pub fn audit_withheld(&self) -> Vec<WithheldField> {
        self.withheld.iter().map(WithheldField::from).collect()
    }

    /// The body of `GET /v1/customers/{customer_ref}/tags` (PRODUCT.md §10):
    /// `{"customer_ref":…,"consent_id":…,"expires_at":…,"tags":{…},"withheld":[{"field":…,"reason":…}]}`,
    /// with `expires_at` the consent's expiry in RFC 3339.
    pub fn response_body(
        &self,
        customer_ref: &CustomerRef,
        consent_id: &ConsentId,
        expires_at: UnixTime,
    ) -> Vec<u8> {
        let mut out = String::with_capacity(self.tags.len() + 160 + 48 * self.withheld.len());
        out.push_str("{\"customer_ref\":");
        write_json_str(&mut out, customer_ref.as_str());
        out.push_str(",\"consent_id\":");
        write_json_str(&mut out, consent_id.as_str());
        out.push_str(",\"expires_at\":");
        write_json_str(&mut out, &format_rfc3339(expires_at));
        out.push_str(",\"tags\":");
        out.push_str(&self.tags);
        out.push_str(",\"withheld\":[");
        for (i, w) in self.withheld.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"field\":");
            write_json_str(&mut out, &w.field);
            out.push_str(",\"reason\":\"");
            out.push_str(w.reason.as_str());
            out.push_str("\"}");
        }
        out.push_str("]}");
        out.into_bytes()
    }
}

// === projection internals ===

/// What the upstream bytes hold.
#[derive(Clone, Copy)]
enum Shape {
    /// The tags object itself.
    Tags,
    /// `{"tags": {…}, …}`.
    Document,
}

/// The fields the partner asked for, deduplicated, in request order; `None`: everything.
struct Wanted<'r> {
    names: Option<Vec<&'r str>>,
}

impl Wanted<'_> {
    fn contains(&self, field: &str) -> bool {
        self.names
            .as_ref()
            .is_none_or(|names| names.contains(&field))
    }
}

/// Where released fields go while the upstream is streamed.
struct Output {
    tags: String,
    released: Vec<String>,
    /// Whether to check each key against the released ones. Off on the first pass: duplicate
    /// keys are rare, so they are detected once at the end and only then is the document
    /// projected again with the check on.
    dedupe: bool,
}

fn run<C: ConsentedFields + ?Sized>(
    policy: &ReleasePolicy<'_, C>,
    requested: Option<&[&str]>,
    upstream: &[u8],
    shape: Shape,
) -> Result<Projection, ProjectionError> {
    let wanted = match requested {
        None => Wanted { names: None },
        Some(list) => {
            let mut names: Vec<&str> = Vec::with_capacity(list.len());
            let mut unknown: Vec<String> = Vec::new();
            for &name in list {
                if !policy.catalogue.contains(name) {
                    if !unknown.iter().any(|u| u == name) {
                        unknown.push(name.to_owned());
                    }
                } else if !names.contains(&name) {
                    names.push(name);
                }
            }
            if !unknown.is_empty() {
                return Err(ProjectionError::UnknownFields(unknown));
            }
            Wanted { names: Some(names) }
        }
    };

    let mut output = stream(policy, &wanted, upstream, shape, false)?;
    let mut sorted: Vec<&str> = output.released.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[0] == w[1]) {
        output = stream(policy, &wanted, upstream, shape, true)?;
        sorted = output.released.iter().map(String::as_str).collect();
        sorted.sort_unstable();
    }
    let withheld = withheld(policy, &wanted, &sorted);
    Ok(Projection {
        tags: output.tags,
        released: output.released,
        withheld,
    })
}

/// One pass over the upstream bytes.
fn stream<C: ConsentedFields + ?Sized>(
    policy: &ReleasePolicy<'_, C>,
    wanted: &Wanted<'_>,
    upstream: &[u8],
    shape: Shape,
    dedupe: bool,
) -> Result<Output, ProjectionError> {
    let mut output = Output {
        tags: String::with_capacity(upstream.len().min(64 * 1024) + 2),
        released: Vec::new(),
        dedupe,
    };
    let mut de = serde_json::Deserializer::from_slice(upstream);
    let visitor = TagsVisitor {
        policy,
        wanted,
        out: &mut output,
    };
    let parsed = match shape {
        Shape::Tags => de.deserialize_map(visitor),
        Shape::Document => de.deserialize_map(DocumentVisitor { tags: visitor }),
    };
    parsed
        .and_then(|()| de.end())
        .map_err(|e| ProjectionError::MalformedUpstream(e.to_string()))?;
    Ok(output)
}

fn withheld<C: ConsentedFields + ?Sized>(
    policy: &ReleasePolicy<'_, C>,
    wanted: &Wanted<'_>,
    released_sorted: &[&str],
) -> Vec<Withheld> {
    let reason = |field: &str| -> Option<WithheldReason> {
        if released_sorted.binary_search(&field).is_ok() {
            return None;
        }
        Some(match policy.decide(field) {
            Some(FieldDecision::Withhold(reason)) => reason,
            // Allowed but absent upstream; or a consented field the catalogue no longer knows.
            Some(FieldDecision::Release(_)) | None => WithheldReason::NotAvailable,
        })
    };
    let make = |field: &str| {
        reason(field).map(|reason| Withheld {
            field: field.to_owned(),
            reason,
        })
    };
    match &wanted.names {
        Some(names) => names.iter().filter_map(|f| make(f)).collect(),
        None => policy.consented.fields().filter_map(make).collect(),
    }
}

/// Visits the members of the tags object, writing released ones to the output.
struct TagsVisitor<'v, 'p, 'r, C: ?Sized> {
    policy: &'v ReleasePolicy<'p, C>,
    wanted: &'v Wanted<'r>,
    out: &'v mut Output,
}

impl<C: ConsentedFields + ?Sized> TagsVisitor<'_, '_, '_, C> {
    fn release_of(&self, field: &str) -> Option<Release> {
        if !self.wanted.contains(field) {
            return None;
        }
        match self.policy.decide(field)? {
            FieldDecision::Release(release)
                if !(self.out.dedupe && self.out.released.iter().any(|r| r == field)) =>
            {
                Some(release)
            }
            // Withheld, or a duplicate key: released once only.
            _ => None,
        }
    }

    fn write_key(&mut self, field: &str) {
        if !self.out.released.is_empty() {
            self.out.tags.push(',');
        }
        write_json_str(&mut self.out.tags, field);
        self.out.tags.push(':');
        self.out.released.push(field.to_owned());
    }
}

impl<'de, C: ConsentedFields + ?Sized> Visitor<'de> for TagsVisitor<'_, '_, '_, C> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of tag fields")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.out.tags.push('{');
        while let Some(Key(field)) = map.next_key::<Key<'de>>()? {
            match self.release_of(&field) {
                // Dropped values are skipped without being built.
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(Release::Plain) => {
                    // The raw text is borrowed from the input and copied once, to the output.
                    let raw: &'de RawValue = map.next_value()?;
                    self.write_key(&field);
                    self.out.tags.push_str(raw.get());
                }
                Some(Release::Mask(rule)) => {
                    let raw: &'de RawValue = map.next_value()?;
                    self.write_key(&field);
                    write_masked(&mut self.out.tags, rule, raw.get()).map_err(de::Error::custom)?;
                }
            }
        }
        self.out.tags.push('}');
        Ok(())
    }
}

impl<'de, C: ConsentedFields + ?Sized> DeserializeSeed<'de> for TagsVisitor<'_, '_, '_, C> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

/// Visits `{"tags": {…}, …}`, handing the `tags` member to a [`TagsVisitor`].
struct DocumentVisitor<'v, 'p, 'r, C: ?Sized> {
    tags: TagsVisitor<'v, 'p, 'r, C>,
}

impl<'de, C: ConsentedFields + ?Sized> Visitor<'de> for DocumentVisitor<'_, '_, '_, C> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object with a `tags` object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut tags = Some(self.tags);
        while let Some(Key(member)) = map.next_key::<Key<'de>>()? {
            if member == "tags" {
                let Some(visitor) = tags.take() else {
                    return Err(de::Error::duplicate_field("tags"));
                };
                map.next_value_seed(visitor)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        match tags {
            None => Ok(()),
            Some(_) => Err(de::Error::missing_field("tags")),
        }
    }
}

/// An object key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Writes `s` as a JSON string (quotes, backslashes and control characters escaped), copying
/// the runs between escapes whole.
fn write_json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        if b != b'"' && b != b'\\' && b >= 0x20 {
            continue;
        }
        // `i` points at an ASCII byte, so both slice ends are character boundaries.
        out.push_str(&s[run..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            _ => {
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

// === masks ===

fn redacted() -> Value {
    Value::String(REDACTED.to_owned())
}

/// The mask of a string value.
fn mask_str(rule: MaskRule, s: &str) -> Cow<'_, str> {
    match rule {
        MaskRule::Mobile | MaskRule::IdNumber => Cow::Owned(keep_ends(s, 3, 4)),
        MaskRule::Name => Cow::Owned(mask_name(s)),
        MaskRule::AmountBucket if is_bucket_label(s) => Cow::Borrowed(s),
        MaskRule::AmountBucket => Cow::Borrowed(numeric_string(s).map_or(REDACTED, amount_bucket)),
        MaskRule::Year => Cow::Borrowed(year_of(s).unwrap_or(REDACTED)),
        MaskRule::ScoreBand if matches!(s, "low" | "medium" | "high") => Cow::Borrowed(s),
        MaskRule::ScoreBand | MaskRule::Redact => Cow::Borrowed(REDACTED),
    }
}

/// The mask of a number value.
fn mask_number(rule: MaskRule, x: f64) -> &'static str {
    match rule {
        MaskRule::AmountBucket => amount_bucket(x),
        MaskRule::ScoreBand => score_band(x).unwrap_or(REDACTED),
        _ => REDACTED,
    }
}

/// Writes the mask of the raw JSON text of one value. Strings without escapes and numbers,
/// the common case, are masked from the text without building a `Value`.
fn write_masked(out: &mut String, rule: MaskRule, raw: &str) -> Result<(), serde_json::Error> {
    let b = raw.as_bytes();
    match b.first() {
        // A JSON string without a backslash holds its characters literally between the quotes.
        Some(b'"') if b.len() >= 2 && !b.contains(&b'\\') => {
            write_json_str(out, &mask_str(rule, &raw[1..raw.len() - 1]));
            return Ok(());
        }
        Some(b'-' | b'0'..=b'9') => {
            if let Ok(x) = raw.parse::<f64>() {
                write_json_str(out, mask_number(rule, x));
                return Ok(());
            }
        }
        // Holdings and other structures: amounts bucketed straight from the text.
        Some(b'[' | b'{') if rule == MaskRule::AmountBucket => {
            let start = out.len();
            if write_bucketed(out, raw) {
                return Ok(());
            }
            out.truncate(start);
        }
        _ => {}
    }
    let value: Value = serde_json::from_str(raw)?;
    out.push_str(&serde_json::to_string(&mask(rule, &value))?);
    Ok(())
}

/// Writes `raw` (one well-formed JSON array or object, as `RawValue` guarantees) with every
/// number, and every string holding a number, replaced by its amount bucket; keys, other
/// strings, booleans and nulls are copied. Returns `false`, having written garbage the caller
/// discards, for anything it does not handle in place (a value string with escapes), so the
/// caller falls back to the `Value` path. Same result as [`bucket_inside`], without building
/// a tree.
fn write_bucketed(out: &mut String, raw: &str) -> bool {
    let b = raw.as_bytes();
    // Whether each open container is an object, and whether the next string is a key.
    let mut in_object: Vec<bool> = Vec::with_capacity(8);
    let mut expect_key = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\n' | b'\r' | b'\t' => i += 1,
            b'{' => {
                out.push('{');
                in_object.push(true);
                expect_key = true;
                i += 1;
            }
            b'[' => {
                out.push('[');
                in_object.push(false);
                expect_key = false;
                i += 1;
            }
            c @ (b'}' | b']') => {
                out.push(char::from(c));
                in_object.pop();
                expect_key = false;
                i += 1;
            }
            b',' => {
                out.push(',');
                expect_key = in_object.last() == Some(&true);
                i += 1;
            }
            b':' => {
                out.push(':');
                expect_key = false;
                i += 1;
            }
            b'"' => {
                let mut j = i + 1;
                let mut escaped = false;
                while j < b.len() && b[j] != b'"' {
                    if b[j] == b'\\' {
                        escaped = true;
                        j += 1;
                    }
                    j += 1;
                }
                if j >= b.len() {
                    return false;
                }
                // `i` and `j` index ASCII quotes, so the slices fall on character boundaries.
                let whole = &raw[i..=j];
                if expect_key {
                    out.push_str(whole);
                } else if escaped {
                    return false;
                } else {
                    match numeric_string(&raw[i + 1..j]) {
                        Some(x) => write_json_str(out, amount_bucket(x)),
                        None => out.push_str(whole),
                    }
                }
                i = j + 1;
            }
            b'-' | b'0'..=b'9' => {
                let mut j = i;
                while j < b.len() && matches!(b[j], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    j += 1;
                }
                match raw[i..j].parse::<f64>() {
                    Ok(x) if x.is_finite() => write_json_str(out, amount_bucket(x)),
                    _ => write_json_str(out, REDACTED),
                }
                i = j;
            }
            b't' if raw[i..].starts_with("true") => {
                out.push_str("true");
                i += 4;
            }
            b'f' if raw[i..].starts_with("false") => {
                out.push_str("false");
                i += 5;
            }
            b'n' if raw[i..].starts_with("null") => {
                out.push_str("null");
                i += 4;
            }
            _ => return false,
        }
    }
    in_object.is_empty()
}

/// Keeps the first `head` and last `tail` characters and stars the rest; a string too short to
/// hide at least one character becomes [`REDACTED`].
fn keep_ends(s: &str, head: usize, tail: usize) -> String {
    let count = s.chars().count();
    if count < head + tail + 1 {
        return REDACTED.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        out.push(if i < head || i >= count - tail {
            c
        } else {
            '*'
        });
    }
    out
}

/// The first character, every other one `*`; a one-character name becomes `*`.
fn mask_name(s: &str) -> String {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    let rest = chars.count();
    if rest == 0 {
        return "*".to_owned();
    }
    let mut out = String::with_capacity(first.len_utf8() + rest);
    out.push(first);
    out.extend(std::iter::repeat_n('*', rest));
    out
}

/// `YYYY` of `YYYY-MM-DD…`, or of a bare `YYYY` (an already-masked date).
fn year_of(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    if b.len() == 4 && digits(0..4) {
        return Some(s);
    }
    if b.len() >= 10
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
    {
        return Some(&s[..4]);
    }
    None
}

fn score_band(score: f64) -> Option<&'static str> {
    if !(0.0..=1.0).contains(&score) {
        return None;
    }
    Some(if score < 0.33 {
        "low"
    } else if score < 0.66 {
        "medium"
    } else {
        "high"
    })
}

fn is_bucket_label(s: &str) -> bool {
    s == TOP_AMOUNT_BUCKET || AMOUNT_BUCKETS.iter().any(|(_, label)| *label == s)
}

/// An amount written as a string (`"12000.50"`), if the string holds a finite number.
fn numeric_string(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

/// Inside a structure (holdings), every amount becomes its bucket; identifiers and other
/// non-numeric values stay, so the structure remains useful.
fn bucket_inside(value: &Value) -> Value {
    match value {
        Value::Number(n) => n
            .as_f64()
            .map_or_else(redacted, |x| Value::String(amount_bucket(x).to_owned())),
        Value::String(s) => match numeric_string(s) {
            Some(x) => Value::String(amount_bucket(x).to_owned()),
            None => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(bucket_inside).collect()),
        Value::Object(members) => Value::Object(
            members
                .iter()
                .map(|(k, v)| (k.clone(), bucket_inside(v)))
                .collect(),
        ),
        Value::Bool(_) | Value::Null => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::*;

    // === fixtures ===

    fn spec(tier: Tier, mask: Option<MaskRule>) -> FieldSpec {
        FieldSpec { tier, mask }
    }

    /// The sample catalogue of `partner-config/gateway.yaml`.
    fn sample_catalogue() -> FieldCatalogue {
        use MaskRule::*;
        use Tier::*;
        FieldCatalogue::new(
            [
                ("name", spec(Public, None)),
                ("occupation", spec(Public, None)),
                ("risk_level", spec(Public, None)),
                ("investment_preference", spec(Public, None)),
                ("lifecycle_stage", spec(Public, None)),
                ("id_number", spec(Sensitive, Some(IdNumber))),
                ("mobile", spec(Sensitive, Some(Mobile))),
                ("asset_tier", spec(Sensitive, Some(Redact))),
                ("net_assets", spec(Sensitive, Some(AmountBucket))),
                ("annual_income", spec(Sensitive, Some(AmountBucket))),
                ("holdings", spec(Sensitive, Some(AmountBucket))),
                ("churn_risk", spec(Sensitive, Some(ScoreBand))),
                ("birth_date", spec(Sensitive, Some(Year))),
                ("home_address", spec(Secret, None)),
                ("trade_password_hash", spec(Never, None)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        )
    }

    /// demo-bank's ceiling: every field but `never` ones.
    fn bank_ceiling(catalogue: &FieldCatalogue) -> BTreeSet<String> {
        catalogue
            .iter()
            .filter(|(_, s)| s.tier != Tier::Never)
            .map(|(k, _)| k.to_owned())
            .collect()
    }

    fn consent(fields: &[(&str, Disclosure)]) -> BTreeMap<String, Disclosure> {
        fields.iter().map(|(k, d)| ((*k).to_owned(), *d)).collect()
    }

    /// A document as the sandbox's tag service sends it (member order kept).
    fn sandbox_document() -> Vec<u8> {
        r#"{"customer_id": "C000001", "tags": {
            "name": "张伟",
            "occupation": "教师",
            "risk_level": "C3",
            "investment_preference": "balanced",
            "lifecycle_stage": "mature",
            "id_number": "110101198503021234",
            "mobile": "13812345678",
            "asset_tier": "high_net_worth",
            "net_assets": 734521.5,
            "annual_income": 240000,
            "holdings": [
                {"product_id": "fund-000123", "product_type": "fund", "market_value": 12000.0},
                {"product_id": "etf-510300", "product_type": "etf", "market_value": 2500000.0}
            ],
            "churn_risk": 0.73,
            "birth_date": "1985-03-02",
            "home_address": "北京市朝阳区建国路1号",
            "trade_password_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "crm_internal_score": 17
        }}"#
        .as_bytes()
        .to_vec()
    }

    fn withheld(pairs: &[(&str, WithheldReason)]) -> Vec<Withheld> {
        pairs
            .iter()
            .map(|(f, r)| Withheld {
                field: (*f).to_owned(),
                reason: *r,
            })
            .collect()
    }

    fn tags_value(p: &Projection) -> Value {
        serde_json::from_str(&p.tags).unwrap()
    }

    // === examples ===

    #[test]
    fn the_product_example_masks_mobile_and_withholds_the_secret_address() {
        let catalogue = sample_catalogue();
        let ceiling = bank_ceiling(&catalogue);
        let consented = consent(&[
            ("risk_level", Disclosure::Plain),
            ("mobile", Disclosure::Masked),
            ("home_address", Disclosure::Plain),
        ]);
        let policy = ReleasePolicy {
            catalogue: &catalogue,
            consented: &consented,
            second_authorisation: false,
            ceiling: &ceiling,
        };
        let p = project_document(&policy, None, &sandbox_document()).unwrap();
        assert_eq!(p.tags, r#"{"risk_level":"C3","mobile":"138****5678"}"#);
        assert_eq!(p.released, ["risk_level", "mobile"]);
        assert_eq!(
            p.withheld,
            withheld(&[("home_address", WithheldReason::SecondAuthorisationRequired)])
        );
        assert!(!p.tags.contains("C000001"));
    }

    #[test]
    fn every_sample_field_is_masked_by_its_rule() {
        let catalogue = sample_catalogue();
        let ceiling = bank_ceiling(&catalogue);
        let consented: BTreeMap<String, Disclosure> = catalogue
            .iter()
            .map(|(k, _)| (k.to_owned(), Disclosure::Masked))
            .collect();
        let policy = ReleasePolicy {
            catalogue: &catalogue,
            consented: &consented,
            second_authorisation: true,
            ceiling: &ceiling,
        };
        let p = project_document(&policy, None, &sandbox_document()).unwrap();
        assert_eq!(
            tags_value(&p),
            json!({
                "name": "张伟",
                "occupation": "教师",
                "risk_level": "C3",
                "investment_preference": "balanced",
                "lifecycle_stage": "mature",
                "id_number": "110***********1234",
                "mobile": "138****5678",
                "asset_tier": "***",
                "net_assets": "500k-1m",
                "annual_income": "100k-500k",
                "holdings": [
                    {"product_id": "fund-000123", "product_type": "fund", "market_value": "10k-50k"},
                    {"product_id": "etf-510300", "product_type": "etf", "market_value": "1m-5m"}
                ],
                "churn_risk": "high",
                "birth_date": "1985",
                "home_address": "***"
            })
        );
        assert_eq!(
            p.withheld,
            withheld(&[("trade_password_hash", WithheldReason::NeverShared)])
        );
    }

    #[test]
    fn plain_grants_release_values_byte_for_byte() {
        let catalogue = sample_catalogue();
        let ceiling = bank_ceiling(&catalogue);
        let consented = consent(&[
            ("net_assets", Disclosure::Plain),
            ("holdings", Disclosure::Plain),
            ("home_address", Disclosure::Plain),
        ]);
        let policy = ReleasePolicy {
            catalogue: &catalogue,
            consented: &consented,
            second_authorisation: true,
            ceiling: &ceiling,
        };
        let upstream =
            br#"{"net_assets": 734521.50, "holdings": [ ], "home_address": "a\"b\u00e9"}"#;
        let p = project(&policy, None, upstream).unwrap();
        assert_eq!(
            p.tags,
            r#"{"net_assets":734521.50,"holdings":[ ],"home_address":"a\"b\u00e9"}"#
        );
    }

    #[test]
    fn masks_follow_the_table() {
        use MaskRule::*;
        let cases: &[(MaskRule, Value, Value)] = &[
            (Mobile, json!("13812345678"), json!("138****5678")),
            (Mobile, json!("+8613812345678"), json!("+86*******5678")),
            (Mobile, json!("1234567"), json!("***")),
            (Mobile, json!(13812345678u64), json!("***")),
            (Name, json!("张伟"), json!("张*")),
            (Name, json!("欧阳娜娜"), json!("欧***")),
            (Name, json!("张"), json!("*")),
            (Name, json!(""), json!("")),
            (Name, json!(["张伟"]), json!("***")),
            (
                IdNumber,
                json!("110101198503021234"),
                json!("110***********1234"),
            ),
            (
                IdNumber,
                json!("11010119850302123X"),
                json!("110***********123X"),
            ),
            (IdNumber, json!(null), json!("***")),
            (AmountBucket, json!(734521.5), json!("500k-1m")),
            (AmountBucket, json!("734521.50"), json!("500k-1m")),
            (AmountBucket, json!("500k-1m"), json!("500k-1m")),
            (AmountBucket, json!("lots"), json!("***")),
            (AmountBucket, json!(true), json!("***")),
            (
                AmountBucket,
                json!({"cny": 5, "usd": "20000", "note": "x", "ok": true}),
                json!({"cny": "<10k", "usd": "10k-50k", "note": "x", "ok": true}),
            ),
            (Year, json!("1985-03-02"), json!("1985")),
            (Year, json!("1985-03-02T10:00:00Z"), json!("1985")),
            (Year, json!("1985"), json!("1985")),
            (Year, json!("85-03-02"), json!("***")),
            (Year, json!(1985), json!("***")),
            (ScoreBand, json!(0.0), json!("low")),
            (ScoreBand, json!(0.3299), json!("low")),
            (ScoreBand, json!(0.33), json!("medium")),
            (ScoreBand, json!(0.6599), json!("medium")),
            (ScoreBand, json!(0.66), json!("high")),
            (ScoreBand, json!(1), json!("high")),
            (ScoreBand, json!(1.01), json!("***")),
            (ScoreBand, json!(-0.1), json!("***")),
            (ScoreBand, json!("medium"), json!("medium")),
            (ScoreBand, json!("0.5"), json!("***")),
            (Redact, json!({"a": 1}), json!("***")),
        ];
        for (rule, input, expected) in cases {
            assert_eq!(&mask(*rule, input), expected, "{rule:?} of {input}");
        }
    }

    #[test]
    fn amount_buckets_are_half_open() {
        let cases = [
            (-5.0, "<10k"),
            (0.0, "<10k"),
            (9_999.99, "<10k"),
            (10_000.0, "10k-50k"),
            (49_999.99, "10k-50k"),
            (50_000.0, "50k-100k"),
            (100_000.0, "100k-500k"),
            (500_000.0, "500k-1m"),
            (1_000_000.0, "1m-5m"),
            (5_000_000.0, "5m-10m"),
            (9_999_999.99, "5m-10m"),
            (10_000_000.0, ">=10m"),
            (1e300, ">=10m"),
        ];
        for (amount, label) in cases {
            assert_eq!(amount_bucket(amount), label, "{amount}");
        }
    }

    #[test]
    fn reasons_follow_the_documented_precedence() {
        let catalogue = sample_catalogue();
        // A ceiling without holdings and without trade_password_hash (demo-insurer's).
        let ceiling: BTreeSet<String> = bank_ceiling(&catalogue)
            .into_iter()
            .filter(|f| f != "holdings")
            .collect();
        let consented = consent(&[
            ("trade_password_hash", Disclosure::Plain), // never, outside ceiling, consented
            ("holdings", Disclosure::Plain),            // outside ceiling, consented
            ("mobile", Disclosure::Plain),              // fine but absent upstream
        ]);
        let policy = ReleasePolicy {
            catalogue: &catalogue,
            consented: &consented,
            second_authorisation: false,
            ceiling: &ceiling,
        };
        let requested = [
            "trade_password_hash",
            "holdings",
            "home_address", // secret, not consented: no_consent beats second authorisation
            "name",         // public, not consented
            "mobile",
            "name", // duplicates are listed once
        ];
        let p = project(&policy, Some(&requested), br#"{"holdings":[],"name":"x"}"#).unwrap();
        assert_eq!(p.tags, "{}");
        assert!(p.released.is_empty());
        assert_eq!(
            p.withheld,
            withheld(&[
                ("trade_password_hash", WithheldReason::NeverShared),
                ("holdings", WithheldReason::PartnerCeiling),
                ("home_address", WithheldReason::NoConsent),
                ("name", WithheldReason::NoConsent),
                ("mobile", WithheldReason::NotAvailable),
            ])
        );
    }

    #[test]
    fn a_request_limits_what_is_released() {
        let catalogue = sample_catalogue();
        let ceiling = bank_ceiling(&catalogue);
        let consented = consent(&[
            ("name", Disclosure::Plain),
            ("risk_level", Disclosure::Plain),
        ]);
        let policy = ReleasePolicy {
            catalogue: &catalogue,
            consented: &consented,
            second_authorisation: false,
            ceiling: &ceiling,
        };
        let p = project_document(&policy, Some(&["risk_level"]), &sandbox_document()).unwrap();
        assert_eq!(p.tags, r#"{"risk_level":"C3"}"#);
        assert!(p.withheld.is_empty());
        let p = project_document(&policy, Some(&[]), &sandbox_document()).unwrap();
        assert_eq!(p.tags, "{}");
    }

    #[test]
    fn unknown_requested_fields_are_a_caller_error_listing_each_once() {
        let catalogue = sample_catalogue();
        let ceiling = bank_ceiling(&catalogue);
        let consented = consent(&[("name", Disclosure::Plain)]);
        let policy = ReleasePolicy {
            catalogue: &catalogue,
            consented: &consented,
            second_authorisation: false,
            ceiling: &ceiling,
        };
        assert_eq!(
            project(&policy, Some(&["foo", "name", "bar", "foo"]), b"{}"),
            Err(ProjectionError::UnknownFields(vec![
                "foo".to_owned(),
                "bar".to_owned()
            ]))
        );
    }

    #[test]
    fn upstream_fields_outside_the_catalogue_are_never_released() {
        let catalogue = sample_catalogue();
        let ceiling: BTreeSet<String> = ["crm_internal_score".to_owned()].into();
        let consented = consent(&[("crm_internal_score", Disclosure::Plain)]);
        let policy = ReleasePolicy {
            catalogue: &catalogue,
            consented: &consented,
            second_authorisation: true,
            ceiling: &ceiling,
        };
        let p = project_document(&policy, None, &sandbox_document()).unwrap();
        assert_eq!(p.tags, "{}");
        assert_eq!(
            p.withheld,
            withheld(&[("crm_internal_score", WithheldReason::NotAvailable)])
        );
    }

    #[test]
    fn duplicate_and_escaped_keys_are_released_once_and_masked() {
        let catalogue = sample_catalogue();
        let ceiling = bank_ceiling(&catalogue);
        let consented = consent(&[("mobile", Disclosure::Masked)]);
        let policy = ReleasePolicy {
            catalogue: &catalogue,
            consented: &consented,
            second_authorisation: false,
            ceiling: &ceiling,
        };
        let upstream = br#"{"mo\u0062ile":"1381234\u0035678","mobile":"13900000000"}"#;
        let p = project(&policy, None, upstream).unwrap();
        assert_eq!(p.tags, r#"{"mobile":"138****5678"}"#);
        assert_eq!(p.released, ["mobile"]);
    }

    #[test]
    fn malformed_upstream_documents_are_errors() {
        let catalogue = sample_catalogue();
        let ceiling = bank_ceiling(&catalogue);
        let consented = consent(&[("name", Disclosure::Plain)]);
        let policy = ReleasePolicy {
            catalogue: &catalogue,
            consented: &consented,
            second_authorisation: false,
            ceiling: &ceiling,
        };
        for bad in [
            &b"[]"[..],
            b"null",
            b"",
            b"{\"name\":\"x\"} trailing",
            b"{\"name\":",
            b"\xff",
        ] {
            assert!(
                matches!(
                    project(&policy, None, bad),
                    Err(ProjectionError::MalformedUpstream(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &br#"{"customer_id":"C1"}"#[..],
            br#"{"tags":{},"tags":{}}"#,
            br#"{"tags":[]}"#,
        ] {
            assert!(matches!(
                project_document(&policy, None, bad),
                Err(ProjectionError::MalformedUpstream(_))
            ));
        }
    }

    #[test]
    fn deeply_nested_values_never_panic() {
        let catalogue = sample_catalogue();
        let ceiling = bank_ceiling(&catalogue);
        let consented = consent(&[
            ("name", Disclosure::Plain),
            ("holdings", Disclosure::Masked),
        ]);
        let policy = ReleasePolicy {
            catalogue: &catalogue,
            consented: &consented,
            second_authorisation: false,
            ceiling: &ceiling,
        };
        let deep = |field: &str| {
            format!(
                r#"{{"{field}":{}1{}}}"#,
                "[".repeat(100_000),
                "]".repeat(100_000)
            )
        };
        // A plain value is copied as raw text (valid JSON, however deep); a masked structure
        // is bucketed in place, without recursion; a dropped one is skipped.
        assert!(project(&policy, None, deep("name").as_bytes()).is_ok());
        assert!(project(&policy, None, deep("holdings").as_bytes()).is_ok());
        assert!(project(&policy, None, deep("mobile").as_bytes()).is_ok());
    }

    #[test]
    fn the_response_body_has_the_wire_shape() {
        let p = Projection {
            tags: r#"{"risk_level":"C3"}"#.to_owned(),
            released: vec!["risk_level".to_owned()],
            withheld: withheld(&[("home_address", WithheldReason::SecondAuthorisationRequired)]),
        };
        let r = CustomerRef::parse(&"A".repeat(43)).unwrap();
        let c = ConsentId::parse("cns_x").unwrap();
        let body: Value =
            serde_json::from_slice(&p.response_body(&r, &c, UnixTime(1_814_313_600))).unwrap();
        assert_eq!(
            body,
            json!({
                "customer_ref": "A".repeat(43),
                "consent_id": "cns_x",
                "expires_at": "2027-06-30T00:00:00Z",
                "tags": {"risk_level": "C3"},
                "withheld": [{"field": "home_address", "reason": "second_authorisation_required"}]
            })
        );
        assert_eq!(
            p.audit_withheld(),
            vec![WithheldField::new(
                "home_address",
                "second_authorisation_required"
            )]
        );
    }

    #[test]
    fn reasons_serialise_as_their_wire_words() {
        for reason in WithheldReason::ALL {
            assert_eq!(
                serde_json::to_value(reason).unwrap(),
                Value::String(reason.as_str().to_owned())
            );
        }
    }

    // === properties ===

    const POOL: [&str; 8] = ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"];
    const EXTRA: [&str; 3] = ["x0", "x1", "customer_id"];

    proptest! {
        #[test]
        fn bucketing_in_place_equals_bucketing_a_tree(value in any_value()) {
            prop_assume!(value.is_array() || value.is_object());
            let raw = serde_json::to_string(&value).unwrap();
            let mut out = String::new();
            if write_bucketed(&mut out, &raw) {
                let streamed: Value = serde_json::from_str(&out).unwrap();
                prop_assert_eq!(streamed, bucket_inside(&value));
            }
        }
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            (0.0f64..=1.0).prop_map(Value::from),
            "\\PC{0,14}".prop_map(Value::String),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}".prop_map(Value::String),
            "1[0-9]{10}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn any_rule() -> impl Strategy<Value = MaskRule> {
        prop_oneof![
            Just(MaskRule::Mobile),
            Just(MaskRule::Name),
            Just(MaskRule::IdNumber),
            Just(MaskRule::AmountBucket),
            Just(MaskRule::Year),
            Just(MaskRule::ScoreBand),
            Just(MaskRule::Redact),
        ]
    }

    fn any_spec() -> impl Strategy<Value = Option<FieldSpec>> {
        prop::option::weighted(
            0.85,
            prop_oneof![
                Just(spec(Tier::Public, None)),
                (any_rule(), prop::bool::weighted(0.9))
                    .prop_map(|(rule, has)| spec(Tier::Sensitive, has.then_some(rule))),
                Just(spec(Tier::Secret, None)),
                Just(spec(Tier::Never, None)),
            ],
        )
    }

    fn any_disclosure() -> impl Strategy<Value = Option<Disclosure>> {
        prop::option::weighted(
            0.7,
            prop_oneof![Just(Disclosure::Plain), Just(Disclosure::Masked)],
        )
    }

    #[derive(Debug)]
    struct Case {
        catalogue: FieldCatalogue,
        consented: BTreeMap<String, Disclosure>,
        ceiling: BTreeSet<String>,
        second_authorisation: bool,
        requested: Option<Vec<String>>,
        upstream: Map<String, Value>,
    }

    fn any_case() -> impl Strategy<Value = Case> {
        (
            prop::collection::vec(any_spec(), POOL.len()),
            prop::collection::vec(any_disclosure(), POOL.len() + 1),
            prop::collection::vec(prop::bool::weighted(0.75), POOL.len() + 1),
            any::<bool>(),
            prop::option::weighted(0.5, prop::collection::vec(0..POOL.len(), 0..10)),
            prop::collection::vec(
                (
                    0..POOL.len() + EXTRA.len(),
                    any_value(),
                    prop::bool::weighted(0.8),
                ),
                0..12,
            ),
        )
            .prop_map(
                |(specs, disclosures, in_ceiling, second, requested, upstream)| {
                    // Consents and ceilings may name a field the catalogue lacks (x0).
                    let names: Vec<&str> = POOL.iter().copied().chain(["x0"]).collect();
                    let catalogue = FieldCatalogue::new(
                        POOL.iter()
                            .zip(&specs)
                            .filter_map(|(n, s)| s.map(|s| ((*n).to_owned(), s)))
                            .collect(),
                    );
                    let consented = names
                        .iter()
                        .zip(&disclosures)
                        .filter_map(|(n, d)| d.map(|d| ((*n).to_owned(), d)))
                        .collect();
                    let ceiling = names
                        .iter()
                        .zip(&in_ceiling)
                        .filter(|(_, c)| **c)
                        .map(|(n, _)| (*n).to_owned())
                        .collect();
                    let requested = requested.map(|idx| {
                        idx.into_iter()
                            .map(|i| POOL[i].to_owned())
                            .filter(|n| catalogue.contains(n))
                            .collect()
                    });
                    let upstream = upstream
                        .into_iter()
                        .filter(|(_, _, keep)| *keep)
                        .map(|(i, v, _)| {
                            let name = POOL.iter().chain(&EXTRA).nth(i).copied().unwrap_or("x1");
                            (name.to_owned(), v)
                        })
                        .collect();
                    Case {
                        catalogue,
                        consented,
                        ceiling,
                        second_authorisation: second,
                        requested,
                        upstream,
                    }
                },
            )
    }

    /// The reason the spec gives for a requested field that is not released, stated directly.
    fn expected_reason(case: &Case, field: &str) -> WithheldReason {
        let Some(spec) = case.catalogue.get(field) else {
            return WithheldReason::NotAvailable;
        };
        if spec.tier == Tier::Never {
            WithheldReason::NeverShared
        } else if !case.ceiling.contains(field) {
            WithheldReason::PartnerCeiling
        } else if !case.consented.contains_key(field) {
            WithheldReason::NoConsent
        } else if spec.tier == Tier::Secret && !case.second_authorisation {
            WithheldReason::SecondAuthorisationRequired
        } else {
            WithheldReason::NotAvailable
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            // Regressions belong in the table of examples above, not in a side file.
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn released_fields_stay_within_consent_ceiling_and_tiers(case in any_case()) {
            let policy = ReleasePolicy {
                catalogue: &case.catalogue,
                consented: &case.consented,
                second_authorisation: case.second_authorisation,
                ceiling: &case.ceiling,
            };
            let requested: Option<Vec<&str>> =
                case.requested.as_ref().map(|r| r.iter().map(String::as_str).collect());
            let upstream = serde_json::to_vec(&case.upstream).unwrap();
            // Compare with the document as serde_json reads it back (floats may not round-trip).
            let input_doc: Map<String, Value> = serde_json::from_slice(&upstream).unwrap();
            let p = project(&policy, requested.as_deref(), &upstream).unwrap();
            let out: Map<String, Value> = serde_json::from_str(&p.tags).unwrap();

            let released: BTreeSet<&str> = p.released.iter().map(String::as_str).collect();
            prop_assert_eq!(released.len(), p.released.len(), "released twice");
            prop_assert_eq!(
                out.keys().map(String::as_str).collect::<BTreeSet<_>>(),
                released.clone()
            );
            for (field, value) in &out {
                let spec = case.catalogue.get(field);
                prop_assert!(spec.is_some(), "{} is not in the catalogue", field);
                let spec = spec.unwrap();
                prop_assert!(spec.tier != Tier::Never, "never field {} released", field);
                prop_assert!(case.ceiling.contains(field), "{} outside the ceiling", field);
                let granted = case.consented.get(field).copied();
                prop_assert!(granted.is_some(), "{} not consented", field);
                if let Some(r) = &case.requested {
                    prop_assert!(r.contains(field), "{} not requested", field);
                }
                let input = &input_doc[field];
                let expected = match (spec.tier, granted.unwrap()) {
                    (Tier::Secret, d) => {
                        prop_assert!(case.second_authorisation, "secret {} released", field);
                        if d == Disclosure::Plain { input.clone() } else { json!(REDACTED) }
                    }
                    (Tier::Sensitive, Disclosure::Masked) => {
                        mask(spec.mask.unwrap_or(MaskRule::Redact), input)
                    }
                    _ => input.clone(),
                };
                prop_assert_eq!(value, &expected, "value of {}", field);
            }

            // Every requested field that is not released is listed once, with the right reason.
            let wanted: Vec<String> = match &case.requested {
                Some(r) => {
                    let mut seen = Vec::new();
                    for f in r { if !seen.contains(f) { seen.push(f.clone()); } }
                    seen
                }
                None => case.consented.keys().cloned().collect(),
            };
            let expected_withheld: Vec<Withheld> = wanted
                .iter()
                .filter(|f| !released.contains(f.as_str()))
                .map(|f| Withheld { field: f.clone(), reason: expected_reason(&case, f) })
                .collect();
            prop_assert_eq!(&p.withheld, &expected_withheld);
            // Nothing allowed and present upstream is missing from the output.
            for w in &p.withheld {
                if w.reason == WithheldReason::NotAvailable && case.catalogue.contains(&w.field) {
                    prop_assert!(!case.upstream.contains_key(&w.field));
                }
            }
        }

        #[test]
        fn written_json_strings_read_back(text in "(\\PC|[\\x00-\\x1f\"\\\\])*") {
            let mut out = String::new();
            write_json_str(&mut out, &text);
            prop_assert_eq!(serde_json::from_str::<String>(&out).unwrap(), text);
        }

        #[test]
        fn masking_is_idempotent(rule in any_rule(), value in any_value()) {
            let once = mask(rule, &value);
            prop_assert_eq!(mask(rule, &once), once);
        }

        #[test]
        fn projection_never_panics_on_arbitrary_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..200),
            text in "\\PC{0,200}",
        ) {
            let catalogue = sample_catalogue();
            let ceiling = bank_ceiling(&catalogue);
            let consented: BTreeMap<String, Disclosure> = catalogue
                .iter()
                .map(|(k, _)| (k.to_owned(), Disclosure::Masked))
                .collect();
            let policy = ReleasePolicy {
                catalogue: &catalogue,
                consented: &consented,
                second_authorisation: true,
                ceiling: &ceiling,
            };
            let _ = project(&policy, None, &bytes);
            let _ = project(&policy, None, text.as_bytes());
            let _ = project_document(&policy, None, text.as_bytes());
        }

        #[test]
        fn projection_never_panics_on_arbitrary_json(tags in any_value(), doc in any_value()) {
            let catalogue = sample_catalogue();
            let ceiling = bank_ceiling(&catalogue);
            let consented: BTreeMap<String, Disclosure> = catalogue
                .iter()
                .map(|(k, _)| (k.to_owned(), Disclosure::Masked))
                .collect();
            let policy = ReleasePolicy {
                catalogue: &catalogue,
                consented: &consented,
                second_authorisation: true,
                ceiling: &ceiling,
            };
            let bytes = serde_json::to_vec(&tags).unwrap();
            let result = project(&policy, None, &bytes);
            prop_assert_eq!(result.is_ok(), tags.is_object());
            let wrapped = serde_json::to_vec(&json!({"customer_id": doc, "tags": tags})).unwrap();
            let _ = project_document(&policy, None, &wrapped);
        }
    }
}
