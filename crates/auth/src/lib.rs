//! OAuth 2.0 for partners: the gateway's authorization server and the token check in front of
//! every `/v1/*` route.
//!
//! # What this crate owns
//!
//! - **Keys** ([`keys`]): PKCS#8 PEM signing keys (ES256, EdDSA) with `kid`s and rotation
//!   states, the JWKS document, and dev key generation.
//! - **Issuing** ([`Issuer`]): `POST /oauth2/token` (`client_credentials`, RFC 8705
//!   `tls_client_auth`), certificate-bound JWT access tokens, RFC 8414 metadata.
//! - **Revocation** ([`revoke_request`], [`TokenVerifier::revoke_request`]): RFC 7009.
//! - **Verification** ([`TokenVerifier`], [`VerifyToken`]): signature, claims, certificate
//!   binding, partner, revocation; with a bounded hot-path cache.
//! - **External issuers** ([`external`]): JWTs checked against a remote JWKS, opaque tokens
//!   checked by RFC 7662 introspection through the `oauth2` crate.
//! - **The layer** ([`RequireTokenLayer`]): the request-path check, answering RFC 9457
//!   problems.
//!
//! # What it does not own
//!
//! HTTP routing and bodies (the `http` crate calls [`Issuer::token_request`] and friends with
//! the bytes it read), the configuration files (the integrator fills [`IssuerSettings`],
//! [`SigningKeyFile`], [`ClientRegistration`] and [`ExternalIssuerSettings`] from them), and
//! where revocations are stored (any [`gateway_store::RevocationStore`]).
//!
//! # Layout
//!
//! - `keys.rs`, `jwt.rs`: key material and the compact JWS form.
//! - `issue.rs`, `revoke.rs`, `form.rs`, `oauth_error.rs`: the OAuth endpoints.
//! - `verify.rs`: [`TokenVerifier`] and its cache; `external.rs`: other issuers.
//! - `require/`: the tower layer.
#![warn(missing_docs)]

pub mod external;
mod form;
mod issue;
mod jwt;
pub mod keys;
mod oauth_error;
pub mod require;
mod revoke;
mod verify;

pub use external::{ExternalCheck, ExternalIssuer, ExternalIssuerSettings, HttpClient, Verifiers};
pub use form::{FORM_URLENCODED, MAX_FORM_LEN};
pub use issue::{ClientRegistration, Issuer, IssuerSettings, TokenResponse};
pub use jwt::MAX_TOKEN_LEN;
pub use keys::{KeyError, KeySet, KeyStatus, SigningAlgorithm, SigningKeyFile, generate_dev_key};
pub use oauth_error::OAuthError;
pub use require::{RequireToken, RequireTokenLayer};
pub use revoke::{IgnoredBecause, Revocation, revoke_request};
pub use verify::{
    DEFAULT_CACHE_CAPACITY, TokenError, TokenVerifier, TokenVerifierBuilder, VerifyToken,
};
