//! The `RateLimit-Policy`, `RateLimit` and `Retry-After` header fields, and the problem
//! documents of a refusal.
//!
//! # The draft we follow
//!
//! [`DRAFT`]: draft-ietf-httpapi-ratelimit-headers-11 (23 May 2026), the latest version. Both
//! fields are Structured Field Lists (RFC 9651) of one Item each, whose value is the policy's
//! name as a String:
//!
//! ```text
//! RateLimit-Policy: "customer_tags";q=10;w=1;pgw-burst=20
//! RateLimit: "customer_tags";r=19;t=1
//! ```
//!
//! | field | parameter | meaning here |
//! | --- | --- | --- |
//! | `RateLimit-Policy` | `q`, `w` | the sustained rate: `q` requests per `w = 1` second |
//! | | `pgw-burst` | our vendor parameter (§3.1 asks for a prefix): requests allowed at once |
//! | `RateLimit` | `r` | requests that may be sent now, back to back |
//! | | `t` | seconds until `r` is back at `pgw-burst` (rounded up); on a `429`, the seconds until the next request can succeed, equal to `Retry-After` |
//!
//! Each (partner, route) pair has its own quota, so the policy is named after the route
//! (`customer_tags`, `products`, ...). The draft asks that `Retry-After` not point before the
//! end of the effective window (§6): on a `429`, `t` and `Retry-After` are the same number.
//! `RateLimit` is left out when nothing was counted (Redis unreachable and the route fails open
//! or closed); `RateLimit-Policy` is always sent.
//!
//! A `429` carries the `rate-limited` problem (RFC 9457) with the extension members `policy`
//! (the policy's name) and `violated-policies` (the draft's §5.1 member, a list of names).

use std::fmt::Write as _;

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName, HeaderValue, Response};

use gateway_core::problem::problem_response;
use gateway_core::{InteractionId, Problem, ProblemType};

use crate::decision::{Decision, Tier, ceil_secs};

/// The version of draft-ietf-httpapi-ratelimit-headers these fields follow.
pub const DRAFT: &str = "draft-ietf-httpapi-ratelimit-headers-11";

/// `RateLimit`: the current service limit.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// `RateLimit-Policy`: the quota policy.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Our vendor parameter of `RateLimit-Policy` carrying the burst.
pub const BURST_PARAMETER: &str = "pgw-burst";

/// The problem extension member naming the exceeded policy.
pub const POLICY_MEMBER: &str = "policy";

/// The problem extension member of the draft's §5.1: the names of the exceeded policies.
pub const VIOLATED_POLICIES_MEMBER: &str = "violated-policies";

/// `"<policy>";q=<rate>;w=1;pgw-burst=<burst>`.
pub fn policy_value(decision: &Decision) -> HeaderValue {
    let mut value = String::with_capacity(48);
    // Writing to a String cannot fail.
    let _ = write!(
        value,
        "\"{}\";q={};w=1;{BURST_PARAMETER}={}",
        decision.policy, decision.limit.rate_per_sec, decision.limit.burst
    );
    header_value(value)
}

/// `"<policy>";r=<remaining>;t=<seconds>`, or `None` when nothing was counted.
pub fn ratelimit_value(decision: &Decision) -> Option<HeaderValue> {
    let remaining = decision.remaining?;
    let seconds = if decision.is_allowed() {
        ceil_secs(decision.reset_after.unwrap_or_default())
    } else {
        decision.retry_after_secs()
    };
    let mut value = String::with_capacity(40);
    let _ = write!(value, "\"{}\";r={remaining};t={seconds}", decision.policy);
    Some(header_value(value))
}

/// `Retry-After` in whole seconds, at least 1.
pub fn retry_after_value(decision: &Decision) -> HeaderValue {
    HeaderValue::from(decision.retry_after_secs())
}

/// Adds `RateLimit-Policy` and (when counted) `RateLimit`; for a refusal also `Retry-After`.
///
/// Replaces fields of the same names that an inner service may have set: the gateway's limit is
/// the one the partner must follow.
pub fn apply(decision: &Decision, headers: &mut HeaderMap) {
    headers.insert(RATELIMIT_POLICY, policy_value(decision));
    match ratelimit_value(decision) {
        Some(value) => headers.insert(RATELIMIT, value),
        None => headers.remove(RATELIMIT),
    };
    if !decision.is_allowed() {
        headers.insert(RETRY_AFTER, retry_after_value(decision));
    }
}

/// The problem of a refusal: `rate-limited` (429), or `store-unavailable` (503) when Redis is
/// unreachable and the route fails closed. Both name the policy.
pub fn problem(decision: &Decision) -> Problem {
    let (kind, detail) = match decision.tier {
        Tier::FailClosed => (
            ProblemType::StoreUnavailable,
            "Rate limits cannot be checked right now; retry when Retry-After has passed."
                .to_owned(),
        ),
        _ => (
            ProblemType::RateLimited,
            format!(
                "Rate limit of policy \"{}\" exceeded; retry when Retry-After has passed.",
                decision.policy
            ),
        ),
    };
    Problem::new(kind)
        .with_detail(detail)
        .with_extension(POLICY_MEMBER, decision.policy.into())
        .with_extension(
            VIOLATED_POLICIES_MEMBER,
            serde_json::json!([decision.policy]),
        )
}

/// The complete refusal: the problem response with every rate-limit header.
pub fn rejection<B: From<Bytes>>(
    decision: &Decision,
    interaction_id: Option<&InteractionId>,
) -> Response<B> {
    let mut response = problem_response::<B>(&problem(decision), interaction_id);
    apply(decision, response.headers_mut());
    response
}

fn header_value(value: String) -> HeaderValue {
    // Policy names are route names (`a-z` and `_`) and the rest are digits and ASCII
    // punctuation, so the value is always a valid header value.
    HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use gateway_core::Route;

    use super::*;
    use crate::{Limit, Outcome};

    fn decision(outcome: Outcome, tier: Tier) -> Decision {
        let limit = Limit::new(NonZeroU32::new(10).unwrap(), NonZeroU32::new(20).unwrap());
        Decision::uncounted(outcome, tier, Route::CustomerTags, limit)
    }

    #[test]
    fn an_admitted_request_shows_policy_remaining_and_reset() {
        let d = Decision {
            remaining: Some(19),
            reset_after: Some(Duration::from_millis(100)),
            ..decision(Outcome::Allow, Tier::Cluster)
        };
        let mut headers = HeaderMap::new();
        apply(&d, &mut headers);
        assert_eq!(
            headers[RATELIMIT_POLICY],
            "\"customer_tags\";q=10;w=1;pgw-burst=20"
        );
        assert_eq!(headers[RATELIMIT], "\"customer_tags\";r=19;t=1");
        assert!(!headers.contains_key(RETRY_AFTER));
    }

    #[test]
    fn a_refusal_shows_retry_after_equal_to_the_effective_window() {
        let d = Decision {
            remaining: Some(0),
            reset_after: Some(Duration::from_millis(2000)),
            retry_after: Some(Duration::from_millis(1100)),
            ..decision(Outcome::Deny, Tier::Local)
        };
        let mut headers = HeaderMap::new();
        apply(&d, &mut headers);
        assert_eq!(headers[RATELIMIT], "\"customer_tags\";r=0;t=2");
        assert_eq!(headers[RETRY_AFTER], "2");
    }

    #[test]
    fn uncounted_decisions_send_no_ratelimit_field() {
        let mut headers = HeaderMap::new();
        headers.insert(RATELIMIT, HeaderValue::from_static("\"upstream\";r=5"));
        apply(&decision(Outcome::Allow, Tier::FailOpen), &mut headers);
        assert!(headers.contains_key(RATELIMIT_POLICY));
        assert!(!headers.contains_key(RATELIMIT));
    }

    #[test]
    fn the_429_problem_names_the_policy() {
        let d = Decision {
            remaining: Some(0),
            reset_after: Some(Duration::from_secs(2)),
            retry_after: Some(Duration::from_millis(300)),
            ..decision(Outcome::Deny, Tier::Cluster)
        };
        let id = InteractionId::parse("abc-1").unwrap();
        let response = rejection::<Bytes>(&d, Some(&id));
        assert_eq!(response.status(), 429);
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            gateway_core::PROBLEM_JSON
        );
        assert_eq!(response.headers()[RETRY_AFTER], "1");
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["type"], ProblemType::RateLimited.type_uri());
        assert_eq!(body["status"], 429);
        assert_eq!(body["policy"], "customer_tags");
        assert_eq!(
            body["violated-policies"],
            serde_json::json!(["customer_tags"])
        );
        assert_eq!(body["instance"], "urn:fapi-interaction-id:abc-1");
    }

    #[test]
    fn failing_closed_answers_503_with_retry_after() {
        let d = Decision {
            retry_after: Some(Duration::from_millis(2500)),
            ..decision(Outcome::Deny, Tier::FailClosed)
        };
        let response = rejection::<Bytes>(&d, None);
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[RETRY_AFTER], "3");
        assert!(!response.headers().contains_key(RATELIMIT));
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["type"], ProblemType::StoreUnavailable.type_uri());
        assert_eq!(body["policy"], "customer_tags");
    }

    #[test]
    fn every_route_name_renders_as_a_structured_field_string() {
        for route in Route::ALL {
            let d = Decision::uncounted(
                Outcome::Allow,
                Tier::FailOpen,
                route,
                Limit::new(NonZeroU32::MAX, NonZeroU32::MAX),
            );
            let value = policy_value(&d);
            let text = value.to_str().unwrap();
            assert!(
                text.starts_with(&format!("\"{}\";q=4294967295;w=1;", route.name())),
                "{text}"
            );
            // sf-string characters: printable ASCII except '"' and '\' inside the quotes.
            assert!(
                route
                    .name()
                    .bytes()
                    .all(|c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\')
            );
        }
    }
}
