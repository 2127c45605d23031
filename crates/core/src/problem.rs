//! The problem catalogue: every way the gateway can refuse a request, as an RFC 9457 problem
//! with a stable `type` URI, a status and a title.
//!
//! Crates map their typed errors onto a [`ProblemType`] with one pure `match`; the edge renders
//! a [`Problem`] as `application/problem+json`. `detail` only says what the caller can act on.

use http::StatusCode;
use serde::Serialize;

/// The base of every problem `type` URI.
pub const PROBLEM_BASE: &str = "https://partner-gateway.dev/problems/";

macro_rules! catalogue {
    ($( $(#[$doc:meta])* $variant:ident => ($slug:literal, $status:literal, $title:literal), )*) => {
        /// One cause of a refusal. Its `type` URI, status and title never change.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ProblemType {
            $( $(#[$doc])* $variant, )*
        }

        impl ProblemType {
            /// Every problem type.
            pub const ALL: &'static [ProblemType] = &[$(ProblemType::$variant,)*];

            /// The last path segment of the `type` URI.
            pub const fn slug(self) -> &'static str {
                match self { $(ProblemType::$variant => $slug,)* }
            }

            /// The HTTP status.
            pub fn status(self) -> StatusCode {
                let code: u16 = match self { $(ProblemType::$variant => $status,)* };
                // The literals above are all valid status codes (checked by a test).
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }

            /// The short, human-readable summary.
            pub const fn title(self) -> &'static str {
                match self { $(ProblemType::$variant => $title,)* }
            }
        }
    };
}

catalogue! {
    // --- connection and client identity
    /// The client certificate is trusted but pinned to no partner.
    UnknownClientCertificate => ("unknown-client-certificate", 403, "Client certificate is not registered to a partner"),
    /// The partner is suspended in its configuration file.
    PartnerSuspended => ("partner-suspended", 403, "Partner is suspended"),
    // --- request shape
    /// The path breaks the path rules (percent-escapes, dot segments, ...).
    InvalidPath => ("invalid-path", 400, "Path is not acceptable"),
    /// No route has this path.
    NotFound => ("not-found", 404, "No such resource"),
    /// The route exists but not for this method.
    MethodNotAllowed => ("method-not-allowed", 405, "Method not allowed"),
    /// A header is malformed, duplicated or not allowed.
    InvalidHeader => ("invalid-header", 400, "Request header is not acceptable"),
    /// A query parameter is malformed or unknown.
    InvalidQuery => ("invalid-query", 400, "Query string is not acceptable"),
    /// The body exceeds the configured size limit.
    PayloadTooLarge => ("payload-too-large", 413, "Request body is too large"),
    /// The body's media type is not the one the route takes.
    UnsupportedMediaType => ("unsupported-media-type", 415, "Unsupported media type"),
    /// The body is not well-formed JSON (or nests too deep).
    MalformedJson => ("malformed-json", 400, "Request body is not valid JSON"),
    /// The body or query breaks the route's JSON Schema; `errors` lists every violation.
    ValidationFailed => ("validation-failed", 400, "Request does not match its schema"),
    /// The request body arrived too slowly (below the minimum body rate).
    RequestTimeout => ("request-timeout", 408, "Request body arrived too slowly"),
    /// Header section too large or too many headers.
    HeadersTooLarge => ("request-header-fields-too-large", 431, "Request header fields too large"),
    // --- tokens and scopes
    /// No access token, or a token that fails verification.
    InvalidToken => ("invalid-token", 401, "Access token is missing or invalid"),
    /// The token is valid but bound to another client certificate.
    TokenCertificateMismatch => ("token-certificate-mismatch", 401, "Access token is bound to a different client certificate"),
    /// The token lacks the route's scope.
    InsufficientScope => ("insufficient-scope", 403, "Access token lacks the required scope"),
    // --- limits and overload
    /// A rate limit of the partner was exceeded.
    RateLimited => ("rate-limited", 429, "Rate limit exceeded"),
    /// The gateway sheds load to protect itself.
    Overloaded => ("overloaded", 503, "Gateway is overloaded"),
    // --- customer data and consent
    /// Unknown customer ref, ref of another partner, or no active consent: indistinguishable.
    CustomerNotFound => ("customer-not-found", 404, "No customer data available for this reference"),
    /// Unknown consent, or a consent of another partner.
    ConsentNotFound => ("consent-not-found", 404, "No such consent"),
    /// Consent state cannot be established; no customer data is released.
    ConsentUnavailable => ("consent-unavailable", 503, "Consent state is unavailable"),
    /// The audit record cannot be made durable; no customer data is released.
    AuditUnavailable => ("audit-unavailable", 503, "Audit trail is unavailable"),
    /// A consent grant breaks a rule (ceiling, never-shared field, unknown field, past expiry).
    ConsentRejected => ("consent-rejected", 422, "Consent grant is not acceptable"),
    /// An active consent for the same customer, partner and purpose exists.
    ConsentExists => ("consent-exists", 409, "An active consent already exists"),
    /// The consent was already revoked.
    ConsentAlreadyRevoked => ("consent-already-revoked", 409, "Consent is already revoked"),
    /// An admin request names a partner that is not configured.
    UnknownPartner => ("unknown-partner", 422, "Partner is not configured"),
    // --- products and referrals
    /// Unknown product, or one invisible to this partner.
    ProductNotFound => ("product-not-found", 404, "No such product"),
    /// Unknown, malformed or foreign referral code.
    ReferralCodeNotFound => ("referral-code-not-found", 404, "No such referral code"),
    /// Unknown campaign, or one the partner does not take part in.
    CampaignNotFound => ("campaign-not-found", 404, "No such campaign"),
    /// The campaign is not running now.
    CampaignInactive => ("campaign-inactive", 422, "Campaign is not active"),
    /// The partner's daily code issuance cap for the campaign is reached.
    IssuanceCapReached => ("issuance-cap-reached", 429, "Daily referral code cap reached"),
    /// `Idempotency-Key` header missing or malformed.
    IdempotencyKeyRequired => ("idempotency-key-required", 400, "Idempotency-Key header is required"),
    /// The idempotency key was used before with a different body.
    IdempotencyKeyReused => ("idempotency-key-reused", 422, "Idempotency key was used with a different request"),
    /// A request with the same idempotency key is still being processed.
    IdempotencyKeyInProgress => ("idempotency-key-in-progress", 409, "A request with this idempotency key is still in progress"),
    /// A referral event cannot be accepted; `reason` says why.
    ReferralEventRejected => ("referral-event-rejected", 422, "Referral event is not acceptable"),
    // --- admin
    /// Missing or wrong admin credential.
    AdminUnauthorized => ("admin-unauthorized", 401, "Admin credential is missing or invalid"),
    /// A reload found errors; the running configuration is kept.
    ReloadRejected => ("reload-rejected", 422, "Configuration reload rejected"),
    // --- dependencies and bugs
    /// The upstream service could not be reached or answered badly.
    UpstreamUnavailable => ("upstream-unavailable", 502, "Upstream service unavailable"),
    /// The upstream service did not answer in time.
    UpstreamTimeout => ("upstream-timeout", 504, "Upstream service timed out"),
    /// The state store could not be reached.
    StoreUnavailable => ("store-unavailable", 503, "State store unavailable"),
    /// A bug in the gateway.
    Internal => ("internal-error", 500, "Internal error"),
}

impl ProblemType {
    /// The full `type` URI.
    pub fn type_uri(self) -> String {
        format!("{PROBLEM_BASE}{}", self.slug())
    }
}

/// One violation of a schema or rule, located by a JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// RFC 6901 pointer into the request document (`""` for the whole document).
    pub pointer: String,
    /// What is wrong there.
    pub detail: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The cause.
    pub kind: ProblemType,
    /// What the caller can act on; never internal error chains.
    pub detail: Option<String>,
    /// Every violation, for [`ProblemType::ValidationFailed`] and rule checks.
    pub errors: Vec<Violation>,
    /// Extension members (e.g. `policy` for rate limits, `reason` for rejected events).
    pub extensions: Vec<(&'static str, serde_json::Value)>,
}

impl Problem {
    /// A problem of `kind` without detail.
    pub fn new(kind: ProblemType) -> Self {
        Problem {
            kind,
            detail: None,
            errors: Vec::new(),
            extensions: Vec::new(),
        }
    }

    /// Adds a detail line.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds violations.
    pub fn with_errors(mut self, errors: Vec<Violation>) -> Self {
        self.errors = errors;
        self
    }

    /// Adds an extension member.
    pub fn with_extension(mut self, key: &'static str, value: serde_json::Value) -> Self {
        self.extensions.push((key, value));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// Renders the problem document; `instance` is usually the interaction id URN.
    pub fn to_json(&self, instance: Option<&str>) -> Vec<u8> {
        let mut map = serde_json::Map::new();
        map.insert("type".into(), self.kind.type_uri().into());
        map.insert("title".into(), self.kind.title().into());
        map.insert("status".into(), self.kind.status().as_u16().into());
        if let Some(detail) = &self.detail {
            map.insert("detail".into(), detail.clone().into());
        }
        if let Some(instance) = instance {
            map.insert("instance".into(), instance.into());
        }
        if !self.errors.is_empty() {
            // Serialising plain structs of strings cannot fail.
            map.insert(
                "errors".into(),
                serde_json::to_value(&self.errors).unwrap_or_default(),
            );
        }
        for (key, value) in &self.extensions {
            map.insert((*key).into(), value.clone());
        }
        serde_json::to_vec(&serde_json::Value::Object(map)).unwrap_or_default()
    }
}

impl From<ProblemType> for Problem {
    fn from(kind: ProblemType) -> Self {
        Problem::new(kind)
    }
}

/// Builds the `application/problem+json` response for a problem.
///
/// Generic over the body so every layer can answer with the stack's own body type.
/// `interaction_id` becomes the `instance` member (`urn:fapi-interaction-id:<id>`) and the
/// `x-fapi-interaction-id` header.
pub fn problem_response<B: From<bytes::Bytes>>(
    problem: &Problem,
    interaction_id: Option<&crate::context::InteractionId>,
) -> http::Response<B> {
    let instance = interaction_id.map(|id| format!("urn:fapi-interaction-id:{id}"));
    let body = problem.to_json(instance.as_deref());
    let mut response = http::Response::new(B::from(bytes::Bytes::from(body)));
    *response.status_mut() = problem.status();
    // Every refusal tells the audit layer why, whichever layer made it.
    response
        .extensions_mut()
        .insert(crate::audit::AuditRefusal::new(problem.kind));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(crate::PROBLEM_JSON),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    if let Some(id) = interaction_id {
        // Interaction ids are restricted to header-safe characters when parsed or minted.
        if let Ok(value) = http::HeaderValue::from_str(id.as_str()) {
            headers.insert(crate::X_FAPI_INTERACTION_ID, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_problem_type_has_a_unique_slug_and_an_error_status() {
        let mut slugs = HashSet::new();
        for kind in ProblemType::ALL {
            assert!(slugs.insert(kind.slug()), "duplicate slug {}", kind.slug());
            let status = kind.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{kind:?}"
            );
            assert!(!kind.title().is_empty());
            assert!(crate::ids::is_slug(kind.slug()), "{}", kind.slug());
        }
    }

    #[test]
    fn every_problem_type_is_in_the_openapi_spec() {
        let spec = include_str!("../../../schemas/openapi.yaml");
        for kind in ProblemType::ALL {
            assert!(
                spec.contains(&kind.type_uri()),
                "{} missing from schemas/openapi.yaml",
                kind.slug()
            );
        }
    }

    #[test]
    fn renders_rfc9457_members() {
        let p = Problem::new(ProblemType::ValidationFailed)
            .with_detail("2 violations")
            .with_errors(vec![Violation {
                pointer: "/campaign_id".into(),
                detail: "required".into(),
            }]);
        let v: serde_json::Value = serde_json::from_slice(&p.to_json(Some("urn:uuid:1"))).unwrap();
        assert_eq!(
            v["type"],
            "https://partner-gateway.dev/problems/validation-failed"
        );
        assert_eq!(v["status"], 400);
        assert_eq!(v["instance"], "urn:uuid:1");
        assert_eq!(v["errors"][0]["pointer"], "/campaign_id");
    }
}
