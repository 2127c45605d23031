//! `POST /oauth2/token` and `POST /oauth2/revoke`: the happy paths and every refusal.

use gateway_auth::{
    ClientRegistration, FORM_URLENCODED, IgnoredBecause, OAuthError, Revocation, TokenError,
};
use gateway_core::time::UnixTime;
use gateway_core::{Scope, ScopeSet};

use crate::common::*;

const CT: Option<&str> = Some(FORM_URLENCODED);

fn request(
    f: &Fixture,
    form: &str,
    reg: Option<&ClientRegistration>,
) -> Result<gateway_auth::TokenResponse, OAuthError> {
    f.issuer
        .token_request(form.as_bytes(), CT, &peer(1), reg, NOW)
}

#[tokio::test]
async fn client_credentials_grant_issues_a_certificate_bound_jwt() {
    let f = Fixture::new();
    let reg = registration("demo-bank");
    let form = "grant_type=client_credentials&client_id=demo-bank&scope=tags%3Aread+products:read";
    let response = request(&f, form, Some(&reg)).unwrap();
    assert_eq!(response.expires_in, LIFETIME);
    assert_eq!(response.scope, reg.scopes);

    let header = header_of(&response.access_token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["kid"], "k1");
    let claims = claims_of(&response.access_token);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["sub"], "demo-bank");
    assert_eq!(claims["client_id"], "demo-bank");
    assert_eq!(claims["scope"], "tags:read products:read");
    assert_eq!(claims["iat"], NOW.0);
    assert_eq!(claims["nbf"], NOW.0);
    assert_eq!(claims["exp"], NOW.0 + LIFETIME as i64);
    assert_eq!(claims["jti"], response.jti.as_str());
    // base64url(SHA-256 fingerprint) of certificate 1: 32 bytes of 0x01.
    assert_eq!(
        claims["cnf"]["x5t#S256"],
        "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"
    );

    let wire: serde_json::Value = serde_json::from_slice(&response.to_json()).unwrap();
    assert_eq!(wire["token_type"], "Bearer");
    assert_eq!(wire["expires_in"], LIFETIME);
    assert_eq!(wire["scope"], "tags:read products:read");
    let http: http::Response<bytes::Bytes> = response.into_response();
    assert_eq!(http.headers()["cache-control"], "no-store");

    let verified = f
        .verifier
        .verify(&response.access_token, &cert(1), &partner("demo-bank"), NOW)
        .await;
    assert_eq!(verified.unwrap().jti.as_ref(), response.jti);
}

#[test]
fn an_empty_scope_grants_every_allowed_scope_and_tokens_are_unique() {
    let f = Fixture::new();
    let reg = registration("demo-bank");
    let a = request(
        &f,
        "grant_type=client_credentials&client_id=demo-bank",
        Some(&reg),
    )
    .unwrap();
    let b = request(
        &f,
        "grant_type=client_credentials&client_id=demo-bank&scope=",
        Some(&reg),
    )
    .unwrap();
    assert_eq!(a.scope, reg.scopes);
    assert_eq!(b.scope, reg.scopes);
    assert_ne!(a.jti, b.jti);
    let only: ScopeSet = [Scope::ProductsRead].into_iter().collect();
    let c = request(
        &f,
        "grant_type=client_credentials&client_id=demo-bank&scope=products:read",
        Some(&reg),
    )
    .unwrap();
    assert_eq!(c.scope, only);
}

#[test]
fn token_endpoint_refusals_are_exact() {
    let f = Fixture::new();
    let reg = registration("demo-bank");
    let cases: &[(&str, OAuthError)] = &[
        (
            "grant_type=client_credentials&client_id=demo-fund",
            OAuthError::InvalidClient("client_id does not belong to the client certificate"),
        ),
        (
            "grant_type=client_credentials",
            OAuthError::InvalidRequest("client_id is required"),
        ),
        (
            "grant_type=password&client_id=demo-bank",
            OAuthError::UnsupportedGrantType,
        ),
        (
            "grant_type=authorization_code&client_id=demo-bank",
            OAuthError::UnsupportedGrantType,
        ),
        (
            "client_id=demo-bank",
            OAuthError::InvalidRequest("grant_type is required"),
        ),
        (
            "grant_type=client_credentials&client_id=demo-bank&scope=referrals:write",
            OAuthError::InvalidScope("a requested scope is not allowed for this client"),
        ),
        (
            "grant_type=client_credentials&client_id=demo-bank&scope=tags:read admin",
            OAuthError::InvalidScope("a requested scope is unknown"),
        ),
        (
            "grant_type=client_credentials&client_id=demo-bank&client_id=demo-bank",
            OAuthError::InvalidRequest("a parameter is repeated"),
        ),
        (
            "grant_type=client_credentials&grant_type=password&client_id=demo-bank",
            OAuthError::InvalidRequest("a parameter is repeated"),
        ),
        (
            "grant_type=client_credentials&client_id=demo-bank&client_secret=s3cret",
            OAuthError::InvalidRequest(
                "clients authenticate with their TLS certificate (tls_client_auth) only",
            ),
        ),
    ];
    for (form, expected) in cases {
        assert_eq!(
            request(&f, form, Some(&reg)).unwrap_err(),
            *expected,
            "{form}"
        );
    }
    let form = b"grant_type=client_credentials&client_id=demo-bank";
    for ct in [None, Some("application/json"), Some("text/plain")] {
        assert_eq!(
            f.issuer
                .token_request(form, ct, &peer(1), Some(&reg), NOW)
                .unwrap_err(),
            OAuthError::InvalidRequest("content type must be application/x-www-form-urlencoded"),
            "{ct:?}"
        );
    }
    // A certificate mapping to no partner, and a suspended partner.
    assert_eq!(
        request(
            &f,
            "grant_type=client_credentials&client_id=demo-bank",
            None
        )
        .unwrap_err(),
        OAuthError::InvalidClient("the client certificate is not registered to a client")
    );
    let suspended = ClientRegistration {
        active: false,
        ..reg.clone()
    };
    assert_eq!(
        request(
            &f,
            "grant_type=client_credentials&client_id=demo-bank",
            Some(&suspended)
        )
        .unwrap_err(),
        OAuthError::InvalidClient("the client is suspended")
    );
    let none = ClientRegistration {
        scopes: ScopeSet::EMPTY,
        ..reg
    };
    assert_eq!(
        request(
            &f,
            "grant_type=client_credentials&client_id=demo-bank",
            Some(&none)
        )
        .unwrap_err(),
        OAuthError::InvalidScope("no scope is allowed for this client")
    );
    // Status codes: 401 for client authentication, 400 otherwise.
    assert_eq!(OAuthError::InvalidClient("x").status(), 401);
    assert_eq!(OAuthError::UnsupportedGrantType.status(), 400);
}

#[test]
fn metadata_and_jwks_describe_the_server() {
    let f = Fixture::new();
    let metadata = f.issuer.metadata("https://api.test:8443/");
    assert_eq!(metadata["issuer"], ISSUER);
    assert_eq!(
        metadata["token_endpoint"],
        "https://api.test:8443/oauth2/token"
    );
    assert_eq!(
        metadata["revocation_endpoint"],
        "https://api.test:8443/oauth2/revoke"
    );
    assert_eq!(metadata["jwks_uri"], "https://api.test:8443/jwks.json");
    assert_eq!(
        metadata["grant_types_supported"],
        serde_json::json!(["client_credentials"])
    );
    assert_eq!(
        metadata["token_endpoint_auth_methods_supported"],
        serde_json::json!(["tls_client_auth"])
    );
    assert_eq!(
        metadata["revocation_endpoint_auth_methods_supported"],
        serde_json::json!(["tls_client_auth"])
    );
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(metadata["scopes_supported"].as_array().unwrap().len(), 4);
    let jwks: serde_json::Value = serde_json::from_slice(f.issuer.jwks()).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], "k1");
    assert!(jwks["keys"][0].get("d").is_none());
}

fn revoke(
    f: &Fixture,
    form: &str,
    reg: Option<&ClientRegistration>,
) -> Result<Revocation, OAuthError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(
        f.verifier
            .revoke_request(form.as_bytes(), CT, &peer(1), reg, NOW),
    )
}

#[test]
fn a_partner_revokes_its_own_token() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    let outcome = revoke(
        &f,
        &format!("token={token}&client_id=demo-bank&token_type_hint=access_token"),
        Some(&registration("demo-bank")),
    )
    .unwrap();
    let jti = claims_of(&token)["jti"].as_str().unwrap().to_owned();
    assert_eq!(outcome, Revocation::Revoked { jti: jti.clone() });
    assert!(f.store.revoked().contains_key(&jti));
    let response: http::Response<bytes::Bytes> = outcome.into_response();
    assert_eq!(response.status(), 200);
    assert!(response.body().is_empty());
}

#[test]
fn revoking_another_partners_token_answers_200_and_revokes_nothing() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    let outcome = revoke(
        &f,
        &format!("token={token}&client_id=demo-fund"),
        Some(&registration("demo-fund")),
    )
    .unwrap();
    assert_eq!(outcome, Revocation::Ignored(IgnoredBecause::OtherPartner));
    assert!(f.store.revoked().is_empty());
}

#[test]
fn revoking_garbage_or_expired_tokens_answers_200_and_revokes_nothing() {
    let f = Fixture::new();
    let reg = registration("demo-bank");
    let outcome = revoke(&f, "token=not-a-token&client_id=demo-bank", Some(&reg)).unwrap();
    assert_eq!(
        outcome,
        Revocation::Ignored(IgnoredBecause::NotOurToken(TokenError::Malformed {
            reason: "not a compact JWS"
        }))
    );
    let old = f.token("demo-bank", 1, UnixTime(NOW.0 - 1000));
    let outcome = revoke(&f, &format!("token={old}&client_id=demo-bank"), Some(&reg)).unwrap();
    assert_eq!(outcome, Revocation::Ignored(IgnoredBecause::Expired));
    assert!(f.store.revoked().is_empty());
}

#[test]
fn revocation_refusals_are_exact_and_change_nothing() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    let reg = registration("demo-bank");
    assert_eq!(
        revoke(&f, "client_id=demo-bank", Some(&reg)).unwrap_err(),
        OAuthError::InvalidRequest("token is required")
    );
    assert_eq!(
        revoke(
            &f,
            &format!("token={token}&client_id=demo-fund"),
            Some(&reg)
        )
        .unwrap_err(),
        OAuthError::InvalidClient("client_id does not belong to the client certificate")
    );
    assert_eq!(
        revoke(
            &f,
            &format!("token={token}&token={token}&client_id=demo-bank"),
            Some(&reg)
        )
        .unwrap_err(),
        OAuthError::InvalidRequest("a parameter is repeated")
    );
    f.store.set_down(true);
    assert_eq!(
        revoke(
            &f,
            &format!("token={token}&client_id=demo-bank"),
            Some(&reg)
        )
        .unwrap_err(),
        OAuthError::TemporarilyUnavailable
    );
    f.store.set_down(false);
    assert!(f.store.revoked().is_empty());
    // And the token still works.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let verified =
        runtime.block_on(
            f.verifier
                .verify(&token, &cert(1), &partner("demo-bank"), NOW),
        );
    assert!(verified.is_ok());
}

/// A partner's client built on the `oauth2` crate (as in the README) speaks our wire format:
/// `client_id` in the body (`tls_client_auth`, the certificate being the credential), the
/// token response, and RFC 6749 error bodies.
#[tokio::test]
async fn an_oauth2_crate_client_obtains_a_token_and_reads_our_errors() {
    use oauth2::basic::{BasicClient, BasicErrorResponseType};
    use oauth2::{AuthType, RequestTokenError, TokenResponse as _, TokenUrl};

    let f = Fixture::new();
    let reg = registration("demo-bank");
    // Stands in for the HTTP layer: the request the client sends goes to `token_request`.
    let endpoint = |request: oauth2::HttpRequest| {
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let answer = f.issuer.token_request(
            request.body(),
            content_type.as_deref(),
            &peer(1),
            Some(&reg),
            NOW,
        );
        let response: http::Response<bytes::Bytes> = match answer {
            Ok(token) => token.into_response(),
            Err(error) => error.into_response(),
        };
        let (parts, body) = response.into_parts();
        std::future::ready(Ok::<_, gateway_auth::external::HttpError>(
            http::Response::from_parts(parts, body.to_vec()),
        ))
    };
    let client = BasicClient::new(oauth2::ClientId::new("demo-bank".into()))
        .set_token_uri(TokenUrl::new("https://gateway.test/oauth2/token".into()).unwrap())
        .set_auth_type(AuthType::RequestBody);

    let token = client
        .exchange_client_credentials()
        .add_scope(oauth2::Scope::new("tags:read".into()))
        .request_async(&endpoint)
        .await
        .unwrap();
    assert_eq!(
        token.expires_in(),
        Some(std::time::Duration::from_secs(LIFETIME))
    );
    let verified = f
        .verifier
        .verify(
            token.access_token().secret(),
            &cert(1),
            &partner("demo-bank"),
            NOW,
        )
        .await;
    assert_eq!(
        verified.unwrap().scopes,
        [Scope::TagsRead].into_iter().collect()
    );

    let refused = client
        .exchange_client_credentials()
        .add_scope(oauth2::Scope::new("referrals:write".into()))
        .request_async(&endpoint)
        .await
        .unwrap_err();
    let RequestTokenError::ServerResponse(error) = refused else {
        panic!("{refused:?}")
    };
    assert_eq!(*error.error(), BasicErrorResponseType::InvalidScope);
}
