//! Recording a grant: the body of `POST /admin/v1/consents`, its rules, and their errors.
//!
//! The admin handler validates the body against `schemas/consent-grant.schema.json` first
//! (syntax, types, `fields` size and key shape: `400 validation-failed`), then calls
//! [`ConsentService::grant`](crate::ConsentService::grant), which checks the rules the schema
//! cannot know and collects **every** broken one, each located by a JSON pointer:
//!
//! | pointer | rule | problem |
//! | --- | --- | --- |
//! | `/customer_id` | not a valid customer id | `consent-rejected` |
//! | `/partner_id` | unknown partner `<id>` | `unknown-partner` |
//! | `/partner_id` | partner `<id>` is suspended | `consent-rejected` |
//! | `/purpose` | not a purpose of `<partner>` | `consent-rejected` |
//! | `/fields` | at least one field / at most 64 fields | `consent-rejected` |
//! | `/fields/<name>` | unknown field | `consent-rejected` |
//! | `/fields/<name>` | never shared | `consent-rejected` |
//! | `/fields/<name>` | excluded by the partner's ceiling | `consent-rejected` |
//! | `/fields/<name>` | a secret field has no masked form | `consent-rejected` |
//! | `/expires_at` | not an RFC 3339 date-time / in the past | `consent-rejected` |
//!
//! One field breaks at most one rule, the first in the order above (an unknown field is
//! neither never-shared nor outside a ceiling). With an unknown partner, the partner's ceiling
//! and purposes cannot be checked and are not reported. The problem is `unknown-partner` when
//! the partner is unknown, else `consent-rejected` (both 422), and lists every violation.
//!
//! A `secret` field granted `plain` without a second authorisation is accepted: the customer
//! may add the second authorisation later with a new grant; until then reads report it
//! withheld with `second_authorisation_required`.
//!
//! When the rules pass, the store refuses a second active, unexpired grant for the same
//! (customer, partner, purpose): [`GrantError::Exists`] (`409 consent-exists`) names it.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use gateway_core::fields::{FieldCatalogue, Tier};
use gateway_core::problem::{Problem, ProblemType, Violation};
use gateway_core::time::{UnixTime, parse_rfc3339};
use gateway_core::{ConsentId, CustomerId, CustomerRef, PartnerId};
use gateway_store::{ConsentRecord, ConsentStatus, Disclosure, StoreError};

use crate::policy::PartnerPolicy;

/// The most fields one grant may name (the schema says the same).
pub const MAX_GRANT_FIELDS: usize = 64;

/// The body of `POST /admin/v1/consents` (PRODUCT.md §10). Ids and the expiry are kept as
/// text so that every broken rule is reported, not only the first that fails to parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    /// The broker's internal customer id, e.g. `C000001`.
    pub customer_id: String,
    /// The partner, e.g. `demo-bank`.
    pub partner_id: String,
    /// Why the partner may see the data; one of the partner's purposes.
    pub purpose: String,
    /// Field name → `plain` or `masked`.
    pub fields: BTreeMap<String, Disclosure>,
    /// When the consent stops applying, RFC 3339.
    pub expires_at: String,
    /// Whether the customer gave a second authorisation (needed for `secret` fields).
    #[serde(default)]
    pub second_authorisation: bool,
}

/// A grant that passed every rule, ready to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidGrant {
    /// The customer.
    pub customer_id: CustomerId,
    /// The partner.
    pub partner_id: PartnerId,
    /// The purpose.
    pub purpose: String,
    /// The granted fields.
    pub fields: BTreeMap<String, Disclosure>,
    /// The expiry.
    pub expires_at: UnixTime,
    /// Whether a second authorisation was given.
    pub second_authorisation: bool,
}

/// One broken rule and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantViolation {
    /// RFC 6901 pointer into the request body, e.g. `/fields/holdings`.
    pub pointer: String,
    /// The rule.
    pub rule: GrantRule,
}

/// A rule of a grant (see the module docs for the table).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantRule {
    /// `/customer_id` is not a customer id.
    #[error("not a valid customer id")]
    InvalidCustomerId,
    /// `/partner_id` names no configured partner.
    #[error("unknown partner {partner}")]
    UnknownPartner {
        /// The id as sent (truncated to 64 characters).
        partner: String,
    },
    /// The partner is suspended.
    #[error("partner {partner} is suspended")]
    PartnerSuspended {
        /// The partner.
        partner: PartnerId,
    },
    /// The purpose is not one of the partner's.
    #[error("not a purpose of {partner}")]
    PurposeNotAllowed {
        /// The partner.
        partner: PartnerId,
    },
    /// No field is granted.
    #[error("at least one field is required")]
    NoFields,
    /// More than [`MAX_GRANT_FIELDS`] fields.
    #[error("at most {MAX_GRANT_FIELDS} fields, got {count}")]
    TooManyFields {
        /// How many were sent.
        count: usize,
    },
    /// The field catalogue does not know the field.
    #[error("unknown field")]
    UnknownField,
    /// The field's tier is `never`.
    #[error("never shared")]
    NeverShared,
    /// The partner's ceiling excludes the field.
    #[error("excluded by the partner's ceiling")]
    PartnerCeiling,
    /// A `secret` field granted `masked`: secret fields have no mask.
    #[error(
        "a secret field has no masked form; grant it plain (with a second authorisation) or leave it out"
    )]
    SecretMasked,
    /// `/expires_at` is not RFC 3339.
    #[error("not an RFC 3339 date-time")]
    InvalidExpiry,
    /// `/expires_at` is not after now.
    #[error("in the past")]
    ExpiryInPast,
}

/// Why a grant was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The grant breaks rules: every violation, in body order (`422`).
    #[error("consent grant rejected: {}", list(.0))]
    Rejected(Vec<GrantViolation>),
    /// An active, unexpired consent for the same customer, partner and purpose exists (`409`).
    #[error("an active consent {consent_id} exists for this customer, partner and purpose")]
    Exists {
        /// The existing consent.
        consent_id: ConsentId,
    },
    /// The store could not be reached; nothing was recorded (`503`, safe to retry).
    #[error("consent store unavailable: {0}")]
    Unavailable(#[source] StoreError),
    /// The system random generator failed (no consent id could be made).
    #[error("no system randomness for a consent id")]
    NoRandomness,
}

/// Checks every rule of a grant against the catalogue and the partner (`None`: the request's
/// partner is not configured). Pure: the store's "one active grant" rule is checked by
/// [`ConsentService::grant`](crate::ConsentService::grant).
pub fn validate_grant(
    request: &GrantRequest,
    catalogue: &FieldCatalogue,
    partner: Option<&PartnerPolicy>,
    now: UnixTime,
) -> Result<ValidGrant, GrantError> {
    let mut violations = Vec::new();
    let mut violate = |pointer: String, rule: GrantRule| {
        violations.push(GrantViolation { pointer, rule });
    };

    let customer_id = CustomerId::parse(&request.customer_id);
    if customer_id.is_err() {
        violate("/customer_id".to_owned(), GrantRule::InvalidCustomerId);
    }

    // A policy for another partner than the body names is treated as "not configured".
    let partner = partner.filter(|p| p.id.as_str() == request.partner_id);
    match partner {
        None => violate(
            "/partner_id".to_owned(),
            GrantRule::UnknownPartner {
                partner: request.partner_id.chars().take(64).collect(),
            },
        ),
        Some(p) if !p.active => violate(
            "/partner_id".to_owned(),
            GrantRule::PartnerSuspended {
                partner: p.id.clone(),
            },
        ),
        Some(_) => {}
    }
    if let Some(p) = partner
        && !p.purposes.contains(&request.purpose)
    {
        violate(
            "/purpose".to_owned(),
            GrantRule::PurposeNotAllowed {
                partner: p.id.clone(),
            },
        );
    }

    if request.fields.is_empty() {
        violate("/fields".to_owned(), GrantRule::NoFields);
    } else if request.fields.len() > MAX_GRANT_FIELDS {
        violate(
            "/fields".to_owned(),
            GrantRule::TooManyFields {
                count: request.fields.len(),
            },
        );
    }
    for (name, disclosure) in &request.fields {
        let rule = match catalogue.get(name) {
            None => Some(GrantRule::UnknownField),
            Some(spec) if spec.tier == Tier::Never => Some(GrantRule::NeverShared),
            Some(_) if partner.is_some_and(|p| !p.ceiling.contains(name)) => {
                Some(GrantRule::PartnerCeiling)
            }
            Some(spec) if spec.tier == Tier::Secret && *disclosure == Disclosure::Masked => {
                Some(GrantRule::SecretMasked)
            }
            Some(_) => None,
        };
        if let Some(rule) = rule {
            violate(format!("/fields/{}", escape_pointer(name)), rule);
        }
    }

    let expires_at = parse_rfc3339(&request.expires_at);
    match expires_at {
        None => violate("/expires_at".to_owned(), GrantRule::InvalidExpiry),
        Some(t) if t <= now => violate("/expires_at".to_owned(), GrantRule::ExpiryInPast),
        Some(_) => {}
    }

    match (customer_id, partner, expires_at) {
        (Ok(customer_id), Some(partner), Some(expires_at)) if violations.is_empty() => {
            Ok(ValidGrant {
                customer_id,
                partner_id: partner.id.clone(),
                purpose: request.purpose.clone(),
                fields: request.fields.clone(),
                expires_at,
                second_authorisation: request.second_authorisation,
            })
        }
        _ => Err(GrantError::Rejected(violations)),
    }
}

// === impl ValidGrant ===

impl ValidGrant {
    /// The record to store: active from `now`, under a new id and the pair's ref.
    pub fn into_record(
        self,
        consent_id: ConsentId,
        customer_ref: CustomerRef,
        now: UnixTime,
    ) -> ConsentRecord {
        ConsentRecord {
            consent_id,
            customer_id: self.customer_id,
            partner_id: self.partner_id,
            customer_ref,
            purpose: self.purpose,
            fields: self.fields,
            granted_at: now,
            expires_at: self.expires_at,
            second_authorisation: self.second_authorisation,
            status: ConsentStatus::Active,
        }
    }
}

// === impl GrantViolation ===

impl fmt::Display for GrantViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pointer, self.rule)
    }
}

impl From<&GrantViolation> for Violation {
    fn from(v: &GrantViolation) -> Violation {
        Violation {
            pointer: v.pointer.clone(),
            detail: v.rule.to_string(),
        }
    }
}

// === impl GrantError ===

impl GrantError {
    /// The problem this error is answered with.
    pub fn problem_type(&self) -> ProblemType {
        match self {
            GrantError::Rejected(violations)
                if violations
                    .iter()
                    .any(|v| matches!(v.rule, GrantRule::UnknownPartner { .. })) =>
            {
                ProblemType::UnknownPartner
            }
            GrantError::Rejected(_) => ProblemType::ConsentRejected,
            GrantError::Exists { .. } => ProblemType::ConsentExists,
            GrantError::Unavailable(_) => ProblemType::ConsentUnavailable,
            GrantError::NoRandomness => ProblemType::Internal,
        }
    }

    /// The problem document: every violation in `errors`, the existing `consent_id` for
    /// [`GrantError::Exists`]. Store and randomness failures carry no detail (it goes to logs).
    pub fn problem(&self) -> Problem {
        let problem = Problem::new(self.problem_type());
        match self {
            GrantError::Rejected(violations) => problem
                .with_detail(format!(
                    "{} rule{} broken",
                    violations.len(),
                    if violations.len() == 1 { "" } else { "s" }
                ))
                .with_errors(violations.iter().map(Violation::from).collect()),
            GrantError::Exists { consent_id } => problem
                .with_detail(format!("consent {consent_id} is active; revoke it first"))
                .with_extension("consent_id", consent_id.as_str().into()),
            GrantError::Unavailable(_) | GrantError::NoRandomness => problem,
        }
    }
}

// === helpers ===

fn list(violations: &[GrantViolation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// RFC 6901 escaping of one reference token.
fn escape_pointer(token: &str) -> Cow<'_, str> {
    if token.contains(['~', '/']) {
        Cow::Owned(token.replace('~', "~0").replace('/', "~1"))
    } else {
        Cow::Borrowed(token)
    }
}

/// A new consent id: `cns_` and 26 lower-case base32 characters of 128 random bits.
pub(crate) fn new_consent_id() -> Result<ConsentId, GrantError> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| GrantError::NoRandomness)?;
    let mut id = String::with_capacity(30);
    id.push_str("cns_");
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            id.push(char::from(ALPHABET[((acc >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        id.push(char::from(ALPHABET[((acc << (5 - bits)) & 31) as usize]));
    }
    // `cns_` + base32 letters and digits is always a valid consent id.
    Ok(ConsentId::parse(&id).expect("cns_ + base32 is a valid consent id"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use gateway_core::fields::{FieldSpec, MaskRule};

    use super::*;

    const NOW: UnixTime = UnixTime(1_800_000_000); // 2027-01-15

    fn catalogue() -> FieldCatalogue {
        let spec = |tier, mask| FieldSpec { tier, mask };
        FieldCatalogue::new(
            [
                ("name", spec(Tier::Public, None)),
                ("risk_level", spec(Tier::Public, None)),
                ("mobile", spec(Tier::Sensitive, Some(MaskRule::Mobile))),
                (
                    "holdings",
                    spec(Tier::Sensitive, Some(MaskRule::AmountBucket)),
                ),
                ("home_address", spec(Tier::Secret, None)),
                ("trade_password_hash", spec(Tier::Never, None)),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        )
    }

    /// demo-insurer: every field but holdings (and the never one).
    fn insurer() -> PartnerPolicy {
        PartnerPolicy {
            id: PartnerId::parse("demo-insurer").unwrap(),
            ceiling: ["name", "risk_level", "mobile", "home_address"]
                .map(String::from)
                .into(),
            purposes: BTreeSet::from(["insurance_quote".to_owned()]),
            active: true,
        }
    }

    fn request() -> GrantRequest {
        serde_json::from_value(serde_json::json!({
            "customer_id": "C000001",
            "partner_id": "demo-insurer",
            "purpose": "insurance_quote",
            "fields": {"risk_level": "plain", "mobile": "masked", "home_address": "plain"},
            "expires_at": "2027-06-30T00:00:00Z",
            "second_authorisation": false
        }))
        .unwrap()
    }

    fn violations(result: Result<ValidGrant, GrantError>) -> Vec<(String, GrantRule)> {
        match result {
            Err(GrantError::Rejected(v)) => v.into_iter().map(|v| (v.pointer, v.rule)).collect(),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    fn v(pointer: &str, rule: GrantRule) -> (String, GrantRule) {
        (pointer.to_owned(), rule)
    }

    fn insurer_id() -> PartnerId {
        PartnerId::parse("demo-insurer").unwrap()
    }

    #[test]
    fn a_valid_grant_passes() {
        let valid = validate_grant(&request(), &catalogue(), Some(&insurer()), NOW).unwrap();
        assert_eq!(valid.customer_id.as_str(), "C000001");
        assert_eq!(valid.partner_id, insurer_id());
        assert_eq!(valid.expires_at, UnixTime(1_814_313_600));
        assert_eq!(valid.fields.len(), 3);
        assert!(!valid.second_authorisation);
    }

    #[test]
    fn each_rule_alone_is_reported_at_its_pointer() {
        let cat = catalogue();
        let ins = insurer();
        type Edit = fn(&mut GrantRequest, &mut PartnerPolicy);
        let cases: Vec<(Edit, Vec<(String, GrantRule)>)> = vec![
            (
                |r, _| r.customer_id = "C 1".into(),
                vec![v("/customer_id", GrantRule::InvalidCustomerId)],
            ),
            (
                |_, p| p.active = false,
                vec![v(
                    "/partner_id",
                    GrantRule::PartnerSuspended {
                        partner: PartnerId::parse("demo-insurer").unwrap(),
                    },
                )],
            ),
            (
                |r, _| r.purpose = "wealth_advice".into(),
                vec![v(
                    "/purpose",
                    GrantRule::PurposeNotAllowed {
                        partner: PartnerId::parse("demo-insurer").unwrap(),
                    },
                )],
            ),
            (
                |r, _| r.fields.clear(),
                vec![v("/fields", GrantRule::NoFields)],
            ),
            (
                |r, _| {
                    r.fields.insert("foo".into(), Disclosure::Plain);
                },
                vec![v("/fields/foo", GrantRule::UnknownField)],
            ),
            (
                |r, _| {
                    r.fields
                        .insert("trade_password_hash".into(), Disclosure::Plain);
                },
                vec![v("/fields/trade_password_hash", GrantRule::NeverShared)],
            ),
            (
                |r, _| {
                    r.fields.insert("holdings".into(), Disclosure::Masked);
                },
                vec![v("/fields/holdings", GrantRule::PartnerCeiling)],
            ),
            (
                |r, _| {
                    r.fields.insert("home_address".into(), Disclosure::Masked);
                },
                vec![v("/fields/home_address", GrantRule::SecretMasked)],
            ),
            (
                |r, _| {
                    r.fields.insert("a/b~c".into(), Disclosure::Plain);
                },
                vec![v("/fields/a~1b~0c", GrantRule::UnknownField)],
            ),
            (
                |r, _| r.expires_at = "2027-06-30".into(),
                vec![v("/expires_at", GrantRule::InvalidExpiry)],
            ),
            (
                |r, _| r.expires_at = "2020-01-01T00:00:00Z".into(),
                vec![v("/expires_at", GrantRule::ExpiryInPast)],
            ),
            (
                // Expiring exactly now is already in the past.
                |r, _| r.expires_at = "2027-01-15T08:00:00Z".into(),
                vec![v("/expires_at", GrantRule::ExpiryInPast)],
            ),
        ];
        assert_eq!(
            crate::grant::parse_rfc3339("2027-01-15T08:00:00Z"),
            Some(NOW)
        );
        for (i, (edit, expected)) in cases.into_iter().enumerate() {
            let mut r = request();
            let mut p = ins.clone();
            edit(&mut r, &mut p);
            assert_eq!(
                violations(validate_grant(&r, &cat, Some(&p), NOW)),
                expected,
                "case {i}"
            );
        }
    }

    #[test]
    fn an_unknown_partner_is_reported_and_its_rules_skipped() {
        let mut r = request();
        r.partner_id = "demo-x".into();
        r.fields.insert("holdings".into(), Disclosure::Plain); // no ceiling known: not checked
        let result = validate_grant(&r, &catalogue(), None, NOW);
        let err = result.unwrap_err();
        assert_eq!(err.problem_type(), ProblemType::UnknownPartner);
        assert_eq!(
            violations(Err(err)),
            vec![v(
                "/partner_id",
                GrantRule::UnknownPartner {
                    partner: "demo-x".into()
                }
            )]
        );
        // A policy for another partner counts as not configured.
        assert_eq!(
            violations(validate_grant(&r, &catalogue(), Some(&insurer()), NOW)),
            vec![v(
                "/partner_id",
                GrantRule::UnknownPartner {
                    partner: "demo-x".into()
                }
            )]
        );
    }

    #[test]
    fn every_broken_rule_is_reported_at_once_for_an_unknown_partner() {
        let mut r = request();
        r.customer_id = "C/1".into();
        r.partner_id = "Demo Bank".into();
        r.expires_at = "soon".into();
        for (name, d) in [
            ("foo", Disclosure::Plain),
            ("trade_password_hash", Disclosure::Masked),
            ("home_address", Disclosure::Masked),
        ] {
            r.fields.insert(name.into(), d);
        }
        let err = validate_grant(&r, &catalogue(), None, NOW).unwrap_err();
        assert_eq!(err.problem_type(), ProblemType::UnknownPartner);
        assert_eq!(
            violations(Err(err)),
            vec![
                v("/customer_id", GrantRule::InvalidCustomerId),
                v(
                    "/partner_id",
                    GrantRule::UnknownPartner {
                        partner: "Demo Bank".into()
                    }
                ),
                v("/fields/foo", GrantRule::UnknownField),
                v("/fields/home_address", GrantRule::SecretMasked),
                v("/fields/trade_password_hash", GrantRule::NeverShared),
                v("/expires_at", GrantRule::InvalidExpiry),
            ]
        );
    }

    #[test]
    fn more_than_64_fields_are_refused() {
        let spec = FieldSpec {
            tier: Tier::Public,
            mask: None,
        };
        let names: Vec<String> = (0..65).map(|i| format!("f{i}")).collect();
        let cat = FieldCatalogue::new(names.iter().map(|n| (n.clone(), spec)).collect());
        let mut p = insurer();
        p.ceiling = names.iter().cloned().collect();
        let mut r = request();
        r.fields = names
            .iter()
            .map(|n| (n.clone(), Disclosure::Plain))
            .collect();
        assert_eq!(
            violations(validate_grant(&r, &cat, Some(&p), NOW)),
            vec![v("/fields", GrantRule::TooManyFields { count: 65 })]
        );
        r.fields.remove("f64");
        assert!(validate_grant(&r, &cat, Some(&p), NOW).is_ok());
    }

    #[test]
    fn every_broken_rule_is_reported_at_once() {
        let mut r = request();
        r.customer_id = String::new();
        r.purpose = "wealth_advice".into();
        r.expires_at = "2020-01-01T00:00:00Z".into();
        for (name, d) in [
            ("foo", Disclosure::Plain),
            ("trade_password_hash", Disclosure::Plain),
            ("holdings", Disclosure::Masked),
            ("home_address", Disclosure::Masked),
        ] {
            r.fields.insert(name.into(), d);
        }
        let mut p = insurer();
        p.active = false;
        let err = validate_grant(&r, &catalogue(), Some(&p), NOW).unwrap_err();
        assert_eq!(err.problem_type(), ProblemType::ConsentRejected);
        let problem = err.problem();
        assert_eq!(problem.kind, ProblemType::ConsentRejected);
        assert_eq!(
            problem
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.pointer, e.detail))
                .collect::<Vec<_>>(),
            [
                "/customer_id: not a valid customer id",
                "/partner_id: partner demo-insurer is suspended",
                "/purpose: not a purpose of demo-insurer",
                "/fields/foo: unknown field",
                "/fields/holdings: excluded by the partner's ceiling",
                "/fields/home_address: a secret field has no masked form; grant it plain \
                 (with a second authorisation) or leave it out",
                "/fields/trade_password_hash: never shared",
                "/expires_at: in the past",
            ]
        );
        assert_eq!(problem.detail.as_deref(), Some("8 rules broken"));
    }

    #[test]
    fn errors_map_to_their_problems() {
        let exists = GrantError::Exists {
            consent_id: ConsentId::parse("cns_abc").unwrap(),
        };
        assert_eq!(exists.problem_type(), ProblemType::ConsentExists);
        assert_eq!(
            exists.problem().extensions,
            vec![("consent_id", serde_json::json!("cns_abc"))]
        );
        let down = GrantError::Unavailable(StoreError::Unavailable("redis down".into()));
        assert_eq!(down.problem_type(), ProblemType::ConsentUnavailable);
        assert_eq!(down.problem().detail, None);
        assert_eq!(
            GrantError::NoRandomness.problem_type(),
            ProblemType::Internal
        );
    }

    #[test]
    fn consent_ids_are_random_base32() {
        let a = new_consent_id().unwrap();
        let b = new_consent_id().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 30);
        assert!(a.as_str().starts_with("cns_"));
        assert!(
            a.as_str()[4..]
                .bytes()
                .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c))
        );
    }

    #[test]
    fn unknown_body_members_are_refused() {
        let err = serde_json::from_str::<GrantRequest>(
            r#"{"customer_id":"C1","partner_id":"p","purpose":"x","fields":{},
                "expires_at":"2027-06-30T00:00:00Z","extra":1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");
    }
}
