//! Middleware that admits a request only with a valid, certificate-bound access token carrying
//! the route's scope.
//!
//! [`RequireTokenLayer`] wraps a service in [`RequireToken`]. For every request whose route has
//! a scope (every `/v1/*` route) it:
//!
//! 1. refuses an `access_token` query parameter (RFC 6750 §2.3 is not offered: tokens in URLs
//!    end up in logs);
//! 2. takes the token from exactly one `Authorization: Bearer <token>` header: none →
//!    401 with a bare `WWW-Authenticate: Bearer`; two headers, another scheme, a malformed
//!    value or a token over 4 KiB → 401 `invalid-token`;
//! 3. verifies it with its [`VerifyToken`](crate::VerifyToken) against the connection's
//!    [`PeerIdentity`](gateway_core::PeerIdentity) and
//!    [`PartnerContext`](gateway_core::PartnerContext): 401 `invalid-token` or
//!    `token-certificate-mismatch` with `WWW-Authenticate: Bearer error="invalid_token"`,
//!    or 503 `store-unavailable` with `Retry-After` when revocation cannot be checked;
//! 4. checks the route's scope: 403 `insufficient-scope` with
//!    `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"` (RFC 6750 §3);
//! 5. inserts the verified [`TokenClaims`](gateway_core::TokenClaims) into the request
//!    extensions and calls the inner service.
//!
//! Routes without a scope (the OAuth endpoints, JWKS and metadata) pass through untouched.
//! Rejections are RFC 9457 problem documents built by
//! [`problem_response`](gateway_core::problem::problem_response) in the stack's body type; the
//! inner service is never called for them.
//!
//! # Ordering
//!
//! - **Outside** (before) this layer: the listener, which inserts `PeerIdentity` and
//!   `PartnerContext` (only for an active partner whose pin matches), and routing, which
//!   inserts [`RouteMatch`](gateway_core::RouteMatch). A request reaching this layer without
//!   them is a wiring bug and is answered 500, never admitted. The interaction-id layer
//!   should also sit outside, so rejections carry the `x-fapi-interaction-id`.
//! - **Inside** (after) this layer: rate limiting (limits are per partner and should not be
//!   spent by unauthenticated requests), consent and the handlers, which read `TokenClaims`.
//!
//! # Cost
//!
//! A token seen before costs a cache lookup and answers synchronously (no allocation for the
//! future). A new token, or one whose revocation state must be re-read, is verified in a boxed
//! future because it must await the revocation store before calling the inner service.
//!
//! # Example
//!
//! ```
//! use gateway_auth::{RequireTokenLayer, TokenError};
//! use gateway_core::{Fingerprint, PartnerId, TokenClaims};
//! use gateway_core::time::UnixTime;
//!
//! // In the gateway the verifier is a `TokenVerifier` (or `Verifiers` with external
//! // issuers); any closure with this shape also works.
//! let layer = RequireTokenLayer::new(
//!     |_token: &str, _peer: &Fingerprint, _partner: &PartnerId, _now: UnixTime| {
//!         std::future::ready(Err::<TokenClaims, _>(TokenError::Revoked))
//!     },
//! );
//! # let _ = layer;
//! ```

mod future;
mod layer;
mod service;

pub use future::ResponseFuture;
pub use layer::RequireTokenLayer;
pub use service::RequireToken;

/// The largest bearer token accepted in the `Authorization` header.
pub const MAX_BEARER_LEN: usize = crate::jwt::MAX_TOKEN_LEN;
