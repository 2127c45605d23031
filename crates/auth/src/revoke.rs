//! `POST /oauth2/revoke` (RFC 7009).
//!
//! The client authenticates exactly as at the token endpoint (`tls_client_auth`). It may revoke
//! only its own tokens. Every other case answers 200 and changes nothing, as RFC 7009 §2.2
//! says: "invalid tokens do not cause an error response since the client cannot handle such an
//! error in a reasonable way". That covers a token of another partner (the partner learns
//! nothing about it, and it is **not** revoked), an unknown, garbage or foreign-issuer token,
//! and an already expired one. `token_type_hint` is ignored (§2.1 allows it): only access
//! tokens exist here.

use gateway_core::PeerIdentity;
use gateway_core::time::UnixTime;
use gateway_store::RevocationStore;

use crate::form::Form;
use crate::issue::{ClientRegistration, Issuer, authenticate};
use crate::oauth_error::{OAuthError, json_response};
use crate::verify::{TokenError, decode_own, leeway};

/// What a revocation request did. Both variants answer 200 with an empty body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The token's `jti` is now revoked everywhere.
    Revoked {
        /// The `jti`.
        jti: String,
    },
    /// Nothing was revoked; the reason is for the log and the audit record, never the partner.
    Ignored(IgnoredBecause),
}

/// Why a revocation request changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IgnoredBecause {
    /// The token does not verify as one of ours (garbage, unknown key, forged, other issuer).
    NotOurToken(TokenError),
    /// The token belongs to another partner.
    OtherPartner,
    /// The token has already expired.
    Expired,
}

impl Revocation {
    /// The 200 response with an empty body.
    pub fn into_response<B: From<bytes::Bytes>>(&self) -> http::Response<B> {
        let mut response = json_response(http::StatusCode::OK, Vec::new());
        response.headers_mut().remove(http::header::CONTENT_TYPE);
        response
    }
}

/// Handles `POST /oauth2/revoke`: authenticates the client like the token endpoint, and
/// revokes `token` in `store` if it is a valid, unexpired token of the same partner.
///
/// Prefer [`crate::TokenVerifier::revoke_request`], which also makes the revocation
/// effective in that verifier before the store's notification arrives.
pub async fn revoke_request<R: RevocationStore>(
    issuer: &Issuer,
    form: &[u8],
    content_type: Option<&str>,
    _peer: &PeerIdentity,
    registration: Option<&ClientRegistration>,
    store: &R,
    now: UnixTime,
) -> Result<Revocation, OAuthError> {
    let form = Form::parse(form, content_type)?;
    let registration = authenticate(&form, registration)?;
    let Some(token) = form.get("token") else {
        return Err(OAuthError::InvalidRequest("token is required"));
    };
    // The certificate binding is not checked: a partner may revoke its tokens bound to a
    // certificate it has since rotated away from.
    let claims = match decode_own(token, issuer, None) {
        Ok(claims) => claims,
        Err(error) => return Ok(Revocation::Ignored(IgnoredBecause::NotOurToken(error))),
    };
    if claims.partner != registration.partner {
        tracing::warn!(
            partner = %registration.partner,
            owner = %claims.partner,
            "Revocation of another partner's token ignored."
        );
        return Ok(Revocation::Ignored(IgnoredBecause::OtherPartner));
    }
    if now.0 > claims.expires_at.0.saturating_add(leeway(issuer)) {
        return Ok(Revocation::Ignored(IgnoredBecause::Expired));
    }
    let expires_at = UnixTime(claims.expires_at.0.saturating_add(leeway(issuer)));
    if let Err(error) = store.revoke_token(&claims.jti, expires_at).await {
        tracing::warn!(%error, partner = %registration.partner, "Token revocation failed.");
        return Err(OAuthError::TemporarilyUnavailable);
    }
    tracing::info!(partner = %registration.partner, jti = %claims.jti, "Token revoked.");
    Ok(Revocation::Revoked {
        jti: claims.jti.to_string(),
    })
}
