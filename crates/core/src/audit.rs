//! The audit record and the outcome extensions from which the audit layer builds it.
//!
//! One [`AuditRecord`] is written for every partner request and every admin change
//! (PRODUCT.md §7). This module only defines the data; the `gateway-audit` crate chains,
//! stores, signs, verifies, forwards and indexes it.
//!
//! # How a record is assembled
//!
//! The audit layer sits outside the token, rate-limit and consent layers, so it never sees
//! facts those layers put into the *request* extensions (the request has moved inward).
//! Facts travel back out in the *response* extensions instead:
//!
//! | who | puts into the response | becomes |
//! | --- | --- | --- |
//! | a layer that refuses by itself (token, scope, rate limit, rescue) | [`AuditRefusal`] | `decision: deny`, `reason` = the problem slug |
//! | the token layer, on success | a clone of [`TokenClaims`](crate::TokenClaims) | `client_id`, `scope` |
//! | the customer-data handler / consent filter | [`AuditOutcome`] | decision, reason, customer, consent, fields |
//!
//! Nothing is parsed from bodies. The raw internal [`CustomerId`] may ride in an
//! [`AuditOutcome`] (memory only); the audit layer replaces it by a keyed hash
//! ([`CustomerHash`]) before anything is written, so the raw id never reaches disk.
//!
//! # Serialised form
//!
//! Records are JSON objects with the member names of [`AuditRecord`]'s fields; absent optional
//! members and empty lists are omitted. Readers ignore unknown members, so fields can be added
//! without breaking old verifiers. The envelope around a record (sequence number and chain
//! hash) is described in the `gateway-audit` crate.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::context::Fingerprint;
use crate::ids::{ClientId, ConsentId, CustomerId, CustomerRef, PartnerId};
use crate::problem::ProblemType;
use crate::time::{UnixTime, parse_rfc3339};

/// The record of one partner request or one admin change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When the request arrived (or the admin change was made), UTC, millisecond precision.
    pub time: AuditTime,
    /// The gateway instance that served it (`gateway.yaml` `instance_id`).
    pub instance: String,
    /// A partner request or an admin change.
    pub kind: RecordKind,
    /// The partner, when known (from the token, or from the certificate pin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<PartnerId>,
    /// SHA-256 of the client certificate, lower-case hex.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_fingerprint"
    )]
    pub cert_fingerprint: Option<Fingerprint>,
    /// The OAuth client id of the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
    /// The HTTP method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The route's stable name ([`Route::name`](crate::Route::name)), or the admin endpoint's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The HTTP status of the response.
    pub status: u16,
    /// The pairwise customer reference the partner used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_ref: Option<CustomerRef>,
    /// Keyed hash of the broker's internal customer id; never the raw id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_hash: Option<CustomerHash>,
    /// The consent under which data was released (or looked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_id: Option<ConsentId>,
    /// The token's scopes, space-separated as in OAuth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Allowed or denied.
    pub decision: Decision,
    /// Why: a problem slug for refusals (`rate-limited`, `invalid-token`, ...), or the
    /// handler's own word (`consented`, `no_consent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Customer fields released to the partner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<String>,
    /// Requested customer fields that were withheld, with the reason for each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<WithheldField>,
    /// Time from request arrival to response, in microseconds (before the audit append).
    pub latency_us: u64,
    /// W3C trace id (32 lower-case hex digits), when the request carried a trace context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The FAPI interaction id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interaction_id: Option<String>,
    /// What an admin change did; only for [`RecordKind::AdminChange`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminAction>,
}

/// Whether a record is about a partner request or an admin change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A request on the partner listener.
    PartnerRequest,
    /// A change made through the admin API (consent grant or revocation, reload, ...).
    AdminChange,
}

/// The gateway's decision on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The request was served.
    Allow,
    /// The request was refused.
    Deny,
}

/// A field that was requested but not released, and why (`no_consent`, `partner_ceiling`,
/// `second_authorisation_required`, ...). Serialised as `{"field": .., "reason": ..}`, the
/// shape of the `withheld` list in the tags response.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WithheldField {
    /// The field name.
    pub field: String,
    /// Why it was withheld.
    pub reason: String,
}

/// What an admin change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminAction {
    /// Who made it (the admin credential's name, or `sighup`/`file-watch` for reloads).
    pub actor: String,
    /// What was done: `consent_grant`, `consent_revoke`, `reload`, `referral_event`, ...
    pub action: String,
    /// What it was done to (a consent id, an event id, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Further details (e.g. the granted fields); never a raw customer id.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// A keyed hash (HMAC-SHA256) of the broker's internal customer id.
///
/// Lets compliance find every record about one customer without the trail holding the raw id.
/// Serialised as 64 lower-case hex digits. Computed by `gateway-audit`, which owns the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomerHash(pub [u8; 32]);

/// A point in time with millisecond precision, serialised as RFC 3339 UTC with exactly three
/// fraction digits, e.g. `2026-11-27T18:00:00.123Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AuditTime(i64);

/// Set in the response extensions by the handler (or consent filter) that decided about
/// customer data. Every field is optional: set what you know.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuditOutcome {
    /// The decision, if the handler made one; otherwise the status decides.
    pub decision: Option<Decision>,
    /// Why (`consented`, `no_consent`, ...).
    pub reason: Option<String>,
    /// The pairwise reference the partner used.
    pub customer_ref: Option<CustomerRef>,
    /// The broker's internal customer id. Kept in memory only: the audit layer writes its
    /// keyed hash, never this value.
    pub customer: Option<CustomerId>,
    /// The consent consulted.
    pub consent_id: Option<ConsentId>,
    /// Fields released.
    pub released: Vec<String>,
    /// Fields withheld, with reasons.
    pub withheld: Vec<WithheldField>,
}

/// Set in the response extensions by a layer that refuses a request by itself (token,
/// scope, rate limit) and by the rescue layer. The record says `decision: deny` and
/// `reason: <problem slug>`; `detail` is for the record only and may name internal causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRefusal {
    /// The problem answered.
    pub problem: ProblemType,
    /// Internal detail for the record (never shown to the partner).
    pub detail: Option<String>,
}

/// Why a [`CustomerHash`] or [`AuditTime`] could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditParseError {
    /// Not 64 hexadecimal digits.
    #[error("customer hash must be 64 hexadecimal digits")]
    CustomerHash,
    /// Not an RFC 3339 time.
    #[error("time {0:?} is not RFC 3339")]
    Time(String),
}

// === impl AuditRecord ===

impl AuditRecord {
    /// A record with the given kind, time and instance, status 0, decision `allow`, and
    /// nothing else set.
    pub fn new(kind: RecordKind, time: AuditTime, instance: impl Into<String>) -> Self {
        AuditRecord {
            time,
            instance: instance.into(),
            kind,
            partner: None,
            cert_fingerprint: None,
            client_id: None,
            method: None,
            route: None,
            status: 0,
            customer_ref: None,
            customer_hash: None,
            consent_id: None,
            scope: None,
            decision: Decision::Allow,
            reason: None,
            released: Vec::new(),
            withheld: Vec::new(),
            latency_us: 0,
            trace_id: None,
            interaction_id: None,
            admin: None,
        }
    }

    /// The record of an admin change.
    pub fn admin_change(time: AuditTime, instance: impl Into<String>, action: AdminAction) -> Self {
        let mut record = AuditRecord::new(RecordKind::AdminChange, time, instance);
        record.admin = Some(action);
        record
    }

    /// Whether this record shows customer fields being disclosed to a partner: a partner
    /// request about a customer that was allowed.
    pub fn is_disclosure(&self) -> bool {
        self.kind == RecordKind::PartnerRequest
            && self.decision == Decision::Allow
            && (self.customer_hash.is_some() || self.customer_ref.is_some())
    }
}

// === impl Decision ===

impl Decision {
    /// `allow` or `deny`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }

    /// Parses `allow` or `deny`.
    pub fn parse(text: &str) -> Option<Decision> {
        match text {
            "allow" => Some(Decision::Allow),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl RecordKind ===

impl RecordKind {
    /// `partner_request` or `admin_change`.
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordKind::PartnerRequest => "partner_request",
            RecordKind::AdminChange => "admin_change",
        }
    }
}

// === impl WithheldField ===

impl WithheldField {
    /// A withheld field.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        WithheldField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

// === impl CustomerHash ===

impl CustomerHash {
    /// Parses 64 hexadecimal digits.
    pub fn parse(text: &str) -> Result<CustomerHash, AuditParseError> {
        if text.len() != 64 {
            return Err(AuditParseError::CustomerHash);
        }
        let bytes = crate::hex::decode(text).ok_or(AuditParseError::CustomerHash)?;
        let mut out = [0u8; 32];
        out.copy_from_slice(&bytes);
        Ok(CustomerHash(out))
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }
}

impl fmt::Display for CustomerHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CustomerHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerHash({})", self.to_hex())
    }
}

impl Serialize for CustomerHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        hex_into(&self.0, &mut buf);
        // hex_into writes only ASCII hex digits.
        s.serialize_str(std::str::from_utf8(&buf).unwrap_or_default())
    }
}

impl<'de> Deserialize<'de> for CustomerHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as Deserialize>::deserialize(d)?;
        CustomerHash::parse(&s).map_err(serde::de::Error::custom)
    }
}

// === impl AuditTime ===

impl AuditTime {
    /// The current wall-clock time.
    pub fn now() -> AuditTime {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        AuditTime(millis)
    }

    /// From milliseconds since the Unix epoch.
    pub const fn from_millis(millis: i64) -> AuditTime {
        AuditTime(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The whole second this time falls in.
    pub const fn to_unix(self) -> UnixTime {
        UnixTime(self.0.div_euclid(1000))
    }

    /// RFC 3339 UTC with three fraction digits.
    pub fn to_rfc3339(self) -> String {
        let mut out = String::with_capacity(28);
        crate::time::write_rfc3339_seconds(&mut out, self.to_unix());
        out.push('.');
        crate::time::push_digits(&mut out, self.0.rem_euclid(1000), 3);
        out.push('Z');
        out
    }

    /// Parses RFC 3339 with any offset and up to nanosecond fractions (truncated to ms).
    pub fn parse(text: &str) -> Result<AuditTime, AuditParseError> {
        let bad = || AuditParseError::Time(text.chars().take(40).collect());
        let secs = parse_rfc3339(text).ok_or_else(bad)?;
        let mut millis = 0i64;
        if let Some(frac) = text.get(19..).and_then(|rest| rest.strip_prefix('.')) {
            let digits: Vec<u8> = frac
                .bytes()
                .take_while(u8::is_ascii_digit)
                .take(3)
                .collect();
            for i in 0..3 {
                millis = millis * 10 + digits.get(i).map_or(0, |d| i64::from(d - b'0'));
            }
        }
        Ok(AuditTime(secs.0 * 1000 + millis))
    }
}

impl fmt::Display for AuditTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for AuditTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for AuditTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as Deserialize>::deserialize(d)?;
        AuditTime::parse(&s).map_err(serde::de::Error::custom)
    }
}

// === impl AuditOutcome ===

impl AuditOutcome {
    /// An outcome with a decision and reason.
    pub fn new(decision: Decision, reason: impl Into<String>) -> Self {
        AuditOutcome {
            decision: Some(decision),
            reason: Some(reason.into()),
            ..AuditOutcome::default()
        }
    }
}

impl fmt::Debug for AuditOutcome {
    // The internal customer id is never printed: outcomes may end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditOutcome")
            .field("decision", &self.decision)
            .field("reason", &self.reason)
            .field("customer_ref", &self.customer_ref)
            .field("customer", &self.customer.as_ref().map(|_| "<redacted>"))
            .field("consent_id", &self.consent_id)
            .field("released", &self.released)
            .field("withheld", &self.withheld)
            .finish()
    }
}

// === impl AuditRefusal ===

impl AuditRefusal {
    /// A refusal with the problem answered.
    pub fn new(problem: ProblemType) -> Self {
        AuditRefusal {
            problem,
            detail: None,
        }
    }

    /// Adds internal detail for the record.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

// === helpers ===

fn hex_into(bytes: &[u8; 32], out: &mut [u8; 64]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 0x0f) as usize];
    }
}

mod opt_fingerprint {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::context::Fingerprint;

    pub(super) fn serialize<S: Serializer>(
        v: &Option<Fingerprint>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(fp) => s.serialize_str(&fp.to_hex()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Fingerprint>, D::Error> {
        let text = Option::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(t) => Fingerprint::parse(&t)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("fingerprint must be 64 hex digits")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_record() -> AuditRecord {
        let mut r = AuditRecord::new(
            RecordKind::PartnerRequest,
            AuditTime::from_millis(1_814_313_600_123),
            "gw-1",
        );
        r.partner = Some(PartnerId::parse("demo-bank").unwrap());
        r.cert_fingerprint = Some(Fingerprint([0xab; 32]));
        r.client_id = Some(ClientId::parse("demo-bank").unwrap());
        r.method = Some("GET".into());
        r.route = Some("customer_tags".into());
        r.status = 200;
        r.customer_ref = Some(CustomerRef::parse(&"A".repeat(43)).unwrap());
        r.customer_hash = Some(CustomerHash([7; 32]));
        r.consent_id = Some(ConsentId::parse("c-1").unwrap());
        r.scope = Some("tags:read".into());
        r.reason = Some("consented".into());
        r.released = vec!["risk_level".into(), "mobile".into()];
        r.withheld = vec![WithheldField::new(
            "home_address",
            "second_authorisation_required",
        )];
        r.latency_us = 1234;
        r.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        r.interaction_id = Some("c770aef3-6784-41f7-8e0e-ff5f97bddb3a".into());
        r
    }

    #[test]
    fn records_round_trip_through_json() {
        let r = full_record();
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.contains(r#""time":"2027-06-30T00:00:00.123Z""#),
            "{json}"
        );
        assert!(json.contains(&format!(r#""cert_fingerprint":"{}""#, "ab".repeat(32))));
        assert!(json.contains(r#""decision":"allow""#));
        assert!(json.contains(
            r#""withheld":[{"field":"home_address","reason":"second_authorisation_required"}]"#
        ));
        assert_eq!(serde_json::from_str::<AuditRecord>(&json).unwrap(), r);
    }

    #[test]
    fn absent_members_are_omitted_and_unknown_members_ignored() {
        let r = AuditRecord::new(RecordKind::AdminChange, AuditTime::from_millis(0), "gw");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"time":"1970-01-01T00:00:00.000Z","instance":"gw","kind":"admin_change","status":0,"decision":"allow","latency_us":0}"#
        );
        let newer = json.replace(r#""gw","#, r#""gw","added_later":[1,2],"#);
        assert_eq!(serde_json::from_str::<AuditRecord>(&newer).unwrap(), r);
    }

    #[test]
    fn audit_times_parse_fractions_and_offsets() {
        let t = AuditTime::parse("2027-06-30T08:00:00.5+08:00").unwrap();
        assert_eq!(t, AuditTime::from_millis(1_814_313_600_500));
        assert_eq!(
            AuditTime::parse("2027-06-30T00:00:00Z")
                .unwrap()
                .as_millis()
                % 1000,
            0
        );
        assert_eq!(
            AuditTime::parse("2027-06-30T00:00:00.123456789Z")
                .unwrap()
                .as_millis()
                % 1000,
            123
        );
        assert!(matches!(
            AuditTime::parse("yesterday"),
            Err(AuditParseError::Time(_))
        ));
        assert_eq!(
            AuditTime::from_millis(-1).to_rfc3339(),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn customer_hashes_are_64_hex_digits() {
        let h = CustomerHash([0x1f; 32]);
        assert_eq!(CustomerHash::parse(&h.to_hex()), Ok(h));
        assert_eq!(
            CustomerHash::parse("abc"),
            Err(AuditParseError::CustomerHash)
        );
        assert_eq!(
            CustomerHash::parse(&"zz".repeat(32)),
            Err(AuditParseError::CustomerHash)
        );
    }

    #[test]
    fn outcome_debug_never_prints_the_internal_customer_id() {
        let outcome = AuditOutcome {
            customer: Some(CustomerId::parse("C000001").unwrap()),
            ..AuditOutcome::new(Decision::Allow, "consented")
        };
        let text = format!("{outcome:?}");
        assert!(!text.contains("C000001"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn disclosures_are_allowed_partner_requests_about_a_customer() {
        let mut r = full_record();
        assert!(r.is_disclosure());
        r.decision = Decision::Deny;
        assert!(!r.is_disclosure());
        let admin = AuditRecord::admin_change(
            AuditTime::from_millis(0),
            "gw",
            AdminAction {
                actor: "ops".into(),
                action: "reload".into(),
                target: None,
                details: serde_json::Value::Null,
            },
        );
        assert!(!admin.is_disclosure());
    }

    proptest::proptest! {
        #[test]
        fn audit_time_round_trips(millis in -10_000_000_000_000i64..100_000_000_000_000) {
            let t = AuditTime::from_millis(millis);
            let text = t.to_rfc3339();
            proptest::prop_assume!(text.len() == 24);
            proptest::prop_assert_eq!(AuditTime::parse(&text), Ok(t));
        }
    }
}
