//! Verification of the gateway's own tokens: every forgery and mismatch, revocation through
//! the cache, key rotation.

use aws_lc_rs::hmac;
use serde_json::json;

use gateway_auth::{
    FORM_URLENCODED, IssuerSettings, KeyStatus, Revocation, SigningAlgorithm, TokenError,
    TokenVerifier,
};
use gateway_core::ProblemType;
use gateway_core::time::UnixTime;
use gateway_store::Change;

use crate::common::*;

#[tokio::test]
async fn a_fresh_token_verifies_with_its_claims() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    let claims = f
        .verifier
        .verify(&token, &cert(1), &partner("demo-bank"), NOW)
        .await
        .unwrap();
    assert_eq!(claims.partner, partner("demo-bank"));
    assert_eq!(claims.client_id.as_str(), "demo-bank");
    assert_eq!(claims.scopes, registration("demo-bank").scopes);
    assert_eq!(claims.bound_to, cert(1));
    assert_eq!(claims.issued_at, NOW);
    assert_eq!(claims.expires_at, UnixTime(NOW.0 + LIFETIME as i64));
    assert_eq!(claims.jti.len(), 22, "128 random bits, base64url");
}

#[tokio::test]
async fn eddsa_tokens_verify_too() {
    let key = key("ed", SigningAlgorithm::EdDsa, KeyStatus::Active);
    let issuer = issuer_with(settings(), &[key]);
    let store = MemoryStore::default();
    let verifier = TokenVerifier::builder(issuer.clone(), store).build();
    let token = issuer
        .issue(&registration("demo-bank"), all_scopes(), &cert(1), NOW)
        .unwrap()
        .access_token;
    assert_eq!(header_of(&token)["alg"], "EdDSA");
    assert!(
        verifier
            .verify(&token, &cert(1), &partner("demo-bank"), NOW)
            .await
            .is_ok()
    );
}

/// Verifies `token` over demo-bank's certificate 1 and asserts the error, its problem type,
/// and that the store recorded no revocation.
async fn refused(f: &Fixture, token: &str, expected: TokenError, problem: ProblemType) {
    let error = f
        .verifier
        .verify(token, &cert(1), &partner("demo-bank"), NOW)
        .await
        .unwrap_err();
    assert_eq!(error, expected);
    assert_eq!(error.problem_type(), problem);
    assert!(f.store.revoked().is_empty());
}

#[tokio::test]
async fn forged_signature_is_refused() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    let signature = token.rsplit('.').next().unwrap().to_owned();
    let mut claims = claims_of(&token);
    claims["scope"] = json!("tags:read products:read referrals:write referrals:read");
    let forged = format!(
        "{}.{signature}",
        assemble(&header_of(&token), &claims, b"").trim_end_matches('.')
    );
    refused(
        &f,
        &forged,
        TokenError::BadSignature,
        ProblemType::InvalidToken,
    )
    .await;

    // Signed by a key of the same kid that is not ours.
    let impostor = issuer_with(
        settings(),
        &[key("k1", SigningAlgorithm::Es256, KeyStatus::Active)],
    );
    let token = impostor
        .issue(&registration("demo-bank"), all_scopes(), &cert(1), NOW)
        .unwrap();
    refused(
        &f,
        &token.access_token,
        TokenError::BadSignature,
        ProblemType::InvalidToken,
    )
    .await;
}

#[tokio::test]
async fn alg_none_is_refused() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    let header = json!({"alg": "none", "typ": "at+jwt", "kid": "k1"});
    let forged = assemble(&header, &claims_of(&token), b"");
    let expected = TokenError::AlgorithmNotAllowed { alg: "none".into() };
    refused(&f, &forged, expected, ProblemType::InvalidToken).await;
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"});
    let jwks: serde_json::Value = serde_json::from_slice(f.issuer.jwks()).unwrap();
    // Try the public key in the forms an attacker would: the JWKS JSON and the raw x coordinate.
    let x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    for secret in [f.issuer.jwks().to_vec(), x.into_bytes()] {
        let unsigned = assemble(&header, &claims_of(&token), b"");
        let input = unsigned.trim_end_matches('.');
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &secret),
            input.as_bytes(),
        );
        let forged = assemble(&header, &claims_of(&token), tag.as_ref());
        let expected = TokenError::AlgorithmNotAllowed {
            alg: "HS256".into(),
        };
        refused(&f, &forged, expected, ProblemType::InvalidToken).await;
    }
}

#[tokio::test]
async fn an_allowed_alg_that_is_not_the_keys_own_is_refused() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    let mut header = header_of(&token);
    header["alg"] = json!("EdDSA");
    let signature = token.rsplit('.').next().unwrap();
    let forged = format!("{}{signature}", assemble(&header, &claims_of(&token), b""));
    let expected = TokenError::AlgorithmNotAllowed {
        alg: "EdDSA".into(),
    };
    refused(&f, &forged, expected, ProblemType::InvalidToken).await;
}

#[tokio::test]
async fn unknown_kid_is_refused() {
    let f = Fixture::new();
    let other = issuer_with(
        settings(),
        &[key("k9", SigningAlgorithm::Es256, KeyStatus::Active)],
    );
    let token = other
        .issue(&registration("demo-bank"), all_scopes(), &cert(1), NOW)
        .unwrap();
    let expected = TokenError::UnknownKey { kid: "k9".into() };
    refused(&f, &token.access_token, expected, ProblemType::InvalidToken).await;
}

#[tokio::test]
async fn expired_token_is_refused_after_the_leeway() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    let exp = NOW.0 + LIFETIME as i64;
    let at_edge = UnixTime(exp + LEEWAY);
    assert!(
        f.verifier
            .verify(&token, &cert(1), &partner("demo-bank"), at_edge)
            .await
            .is_ok()
    );
    let late = UnixTime(exp + LEEWAY + 1);
    let error = f
        .verifier
        .verify(&token, &cert(1), &partner("demo-bank"), late)
        .await
        .unwrap_err();
    assert_eq!(error, TokenError::Expired { exp: UnixTime(exp) });
    assert_eq!(error.problem_type(), ProblemType::InvalidToken);
    // Also refused when it was never cached.
    let fresh = Fixture::new();
    let token = fresh.token("demo-bank", 1, NOW);
    let error = fresh
        .verifier
        .verify(&token, &cert(1), &partner("demo-bank"), late)
        .await;
    assert_eq!(
        error.unwrap_err(),
        TokenError::Expired { exp: UnixTime(exp) }
    );
}

#[tokio::test]
async fn not_yet_valid_token_is_refused() {
    let f = Fixture::new();
    let future = UnixTime(NOW.0 + 100);
    let token = f.token("demo-bank", 1, future);
    refused(
        &f,
        &token,
        TokenError::NotYetValid { nbf: future },
        ProblemType::InvalidToken,
    )
    .await;
    // Within the leeway it is accepted.
    let slightly = f.token("demo-bank", 1, UnixTime(NOW.0 + LEEWAY));
    assert!(
        f.verifier
            .verify(&slightly, &cert(1), &partner("demo-bank"), NOW)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn wrong_issuer_and_wrong_audience_are_refused() {
    let f = Fixture::new();
    let evil = IssuerSettings {
        issuer: "https://evil.test".into(),
        ..settings()
    };
    let token = issuer_with(evil, std::slice::from_ref(&f.key))
        .issue(&registration("demo-bank"), all_scopes(), &cert(1), NOW)
        .unwrap();
    let expected = TokenError::WrongIssuer {
        iss: "https://evil.test".into(),
    };
    refused(&f, &token.access_token, expected, ProblemType::InvalidToken).await;

    let other_aud = IssuerSettings {
        audience: "https://other.test".into(),
        ..settings()
    };
    let token = issuer_with(other_aud, std::slice::from_ref(&f.key))
        .issue(&registration("demo-bank"), all_scopes(), &cert(1), NOW)
        .unwrap();
    refused(
        &f,
        &token.access_token,
        TokenError::WrongAudience,
        ProblemType::InvalidToken,
    )
    .await;
}

#[tokio::test]
async fn token_presented_by_another_partner_is_rejected() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    // demo-fund's connection: its own certificate and partner.
    let error = f
        .verifier
        .verify(&token, &cert(2), &partner("demo-fund"), NOW)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        TokenError::PartnerMismatch {
            token: "demo-bank".into(),
            connection: partner("demo-fund")
        }
    );
    assert_eq!(error.problem_type(), ProblemType::TokenCertificateMismatch);
    // Still refused once the token is cached by a legitimate use.
    assert!(
        f.verifier
            .verify(&token, &cert(1), &partner("demo-bank"), NOW)
            .await
            .is_ok()
    );
    let again = f
        .verifier
        .verify_cached(&token, &cert(2), &partner("demo-fund"), NOW);
    assert!(matches!(
        again,
        Some(Err(TokenError::PartnerMismatch { .. }))
    ));
}

#[tokio::test]
async fn token_presented_over_other_certificate_is_rejected() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    // demo-bank's rotated certificate 2 while the token is bound to certificate 1.
    let error = f
        .verifier
        .verify(&token, &cert(2), &partner("demo-bank"), NOW)
        .await
        .unwrap_err();
    assert_eq!(error, TokenError::CertificateMismatch);
    assert_eq!(error.problem_type(), ProblemType::TokenCertificateMismatch);
    // A cache hit made over certificate 1 does not carry over to certificate 2.
    assert!(
        f.verifier
            .verify(&token, &cert(1), &partner("demo-bank"), NOW)
            .await
            .is_ok()
    );
    assert_eq!(
        f.verifier
            .verify_cached(&token, &cert(2), &partner("demo-bank"), NOW),
        Some(Err(TokenError::CertificateMismatch))
    );
}

#[tokio::test]
async fn garbage_and_oversized_tokens_are_refused() {
    let f = Fixture::new();
    for garbage in ["", "abc", "a.b.c", "e30.e30.e30"] {
        let error = f
            .verifier
            .verify(garbage, &cert(1), &partner("demo-bank"), NOW)
            .await;
        assert!(
            matches!(error, Err(TokenError::Malformed { .. })),
            "{garbage:?}: {error:?}"
        );
    }
    let big = "a".repeat(5000);
    refused(
        &f,
        &big,
        TokenError::TooLarge { len: 5000 },
        ProblemType::InvalidToken,
    )
    .await;
}

fn revoke_form(token: &str, client: &str) -> Vec<u8> {
    format!("token={token}&client_id={client}").into_bytes()
}

#[tokio::test]
async fn revoked_token_is_refused_by_the_same_verifier() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    assert!(
        f.verifier
            .verify(&token, &cert(1), &partner("demo-bank"), NOW)
            .await
            .is_ok()
    );
    let outcome = f
        .verifier
        .revoke_request(
            &revoke_form(&token, "demo-bank"),
            Some(FORM_URLENCODED),
            &peer(1),
            Some(&registration("demo-bank")),
            NOW,
        )
        .await
        .unwrap();
    let Revocation::Revoked { jti } = outcome else {
        panic!("not revoked: {outcome:?}")
    };
    assert_eq!(
        f.store.revoked().get(&jti),
        Some(&UnixTime(NOW.0 + LIFETIME as i64 + LEEWAY))
    );
    let error = f
        .verifier
        .verify(&token, &cert(1), &partner("demo-bank"), NOW)
        .await
        .unwrap_err();
    assert_eq!(error, TokenError::Revoked);
    assert_eq!(error.problem_type(), ProblemType::InvalidToken);
}

#[tokio::test]
async fn cache_hit_after_revocation_is_refused() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    let bank = partner("demo-bank");
    f.verifier
        .verify(&token, &cert(1), &bank, NOW)
        .await
        .unwrap();
    assert!(matches!(
        f.verifier.verify_cached(&token, &cert(1), &bank, NOW),
        Some(Ok(_))
    ));
    let reads = f.store.reads();
    // Revoked elsewhere: the store notifies.
    let jti = claims_of(&token)["jti"].as_str().unwrap().to_owned();
    gateway_store::RevocationStore::revoke_token(&f.store, &jti, UnixTime(NOW.0 + 400))
        .await
        .unwrap();
    assert_eq!(
        f.verifier.verify_cached(&token, &cert(1), &bank, NOW),
        Some(Err(TokenError::Revoked))
    );
    assert_eq!(
        f.verifier.verify(&token, &cert(1), &bank, NOW).await,
        Err(TokenError::Revoked)
    );
    assert_eq!(
        f.store.reads(),
        reads,
        "learned from the notification, not the store"
    );
}

#[tokio::test]
async fn revocation_reaches_a_second_verifier_through_the_broadcast() {
    let f = Fixture::new();
    let second = TokenVerifier::builder(f.issuer.clone(), f.store.clone())
        .notifications(f.store.subscribe())
        .build();
    let token = f.token("demo-bank", 1, NOW);
    let bank = partner("demo-bank");
    second.verify(&token, &cert(1), &bank, NOW).await.unwrap();
    assert!(matches!(
        second.verify_cached(&token, &cert(1), &bank, NOW),
        Some(Ok(_))
    ));
    let reads = f.store.reads();
    f.verifier
        .revoke_request(
            &revoke_form(&token, "demo-bank"),
            Some(FORM_URLENCODED),
            &peer(1),
            Some(&registration("demo-bank")),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(
        second.verify(&token, &cert(1), &bank, NOW).await,
        Err(TokenError::Revoked)
    );
    assert_eq!(f.store.reads(), reads);
}

#[tokio::test]
async fn without_notifications_every_use_reads_the_store() {
    let f = Fixture::new();
    let deaf = TokenVerifier::builder(f.issuer.clone(), f.store.clone()).build();
    let token = f.token("demo-bank", 1, NOW);
    let bank = partner("demo-bank");
    deaf.verify(&token, &cert(1), &bank, NOW).await.unwrap();
    assert_eq!(deaf.verify_cached(&token, &cert(1), &bank, NOW), None);
    let jti = claims_of(&token)["jti"].as_str().unwrap().to_owned();
    // Revoked behind the verifier's back, without any notification reaching it.
    f.store.inner_revoke_silently(&jti);
    assert_eq!(
        deaf.verify(&token, &cert(1), &bank, NOW).await,
        Err(TokenError::Revoked)
    );
}

#[tokio::test]
async fn resync_sends_cached_tokens_back_to_the_store() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    let bank = partner("demo-bank");
    f.verifier
        .verify(&token, &cert(1), &bank, NOW)
        .await
        .unwrap();
    let jti = claims_of(&token)["jti"].as_str().unwrap().to_owned();
    // A revocation whose notification was lost, then the store says "resync".
    f.store.inner_revoke_silently(&jti);
    assert!(matches!(
        f.verifier.verify_cached(&token, &cert(1), &bank, NOW),
        Some(Ok(_))
    ));
    f.store.send(Change::Resync);
    assert_eq!(f.verifier.verify_cached(&token, &cert(1), &bank, NOW), None);
    assert_eq!(
        f.verifier.verify(&token, &cert(1), &bank, NOW).await,
        Err(TokenError::Revoked)
    );
}

#[tokio::test]
async fn unreachable_store_fails_closed() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    let bank = partner("demo-bank");
    f.store.set_down(true);
    let error = f
        .verifier
        .verify(&token, &cert(1), &bank, NOW)
        .await
        .unwrap_err();
    assert_eq!(
        error,
        TokenError::StoreUnavailable {
            reason: "state store unavailable: connection refused".into()
        }
    );
    assert_eq!(error.problem_type(), ProblemType::StoreUnavailable);
    // Nothing was admitted into the "checked" state meanwhile.
    assert_eq!(f.verifier.verify_cached(&token, &cert(1), &bank, NOW), None);
    f.store.set_down(false);
    assert!(
        f.verifier
            .verify(&token, &cert(1), &bank, NOW)
            .await
            .is_ok()
    );
    // After a resync the store must be read again, and while it is down the token is refused.
    f.store.send(Change::Resync);
    f.store.set_down(true);
    assert!(matches!(
        f.verifier.verify(&token, &cert(1), &bank, NOW).await,
        Err(TokenError::StoreUnavailable { .. })
    ));
}

#[tokio::test]
async fn key_rotation_keeps_old_tokens_until_their_key_is_removed() {
    let k1 = key("k1", SigningAlgorithm::Es256, KeyStatus::Active);
    let k2 = key("k2", SigningAlgorithm::Es256, KeyStatus::Next);
    let store = MemoryStore::default();
    let bank = partner("demo-bank");
    // Step 1: k2 published as Next; k1 still signs.
    let issuer = issuer_with(settings(), &[k1.clone(), k2.clone()]);
    let verifier = TokenVerifier::builder(issuer.clone(), store.clone())
        .notifications(store.subscribe())
        .build();
    let jwks: serde_json::Value = serde_json::from_slice(issuer.jwks()).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let old = issuer
        .issue(&registration("demo-bank"), all_scopes(), &cert(1), NOW)
        .unwrap()
        .access_token;
    assert_eq!(header_of(&old)["kid"], "k1");
    verifier.verify(&old, &cert(1), &bank, NOW).await.unwrap();

    // Step 2: k2 active, k1 retired.
    let rotated = issuer_with(
        settings(),
        &[
            with_status(&k1, KeyStatus::Retired),
            with_status(&k2, KeyStatus::Active),
        ],
    );
    verifier.set_issuer(rotated.clone());
    assert!(
        verifier.verify(&old, &cert(1), &bank, NOW).await.is_ok(),
        "retired key still verifies"
    );
    let new = rotated
        .issue(&registration("demo-bank"), all_scopes(), &cert(1), NOW)
        .unwrap()
        .access_token;
    assert_eq!(header_of(&new)["kid"], "k2");
    assert!(verifier.verify(&new, &cert(1), &bank, NOW).await.is_ok());

    // Step 3: k1 removed. Its token is refused at once, even though it was cached.
    let later = UnixTime(NOW.0 + 10);
    verifier.set_issuer(issuer_with(
        settings(),
        &[with_status(&k2, KeyStatus::Active)],
    ));
    assert_eq!(
        verifier.verify(&old, &cert(1), &bank, later).await,
        Err(TokenError::UnknownKey { kid: "k1".into() })
    );
    assert!(verifier.verify(&new, &cert(1), &bank, later).await.is_ok());
}

#[tokio::test]
async fn a_repeated_token_is_answered_from_the_cache() {
    let f = Fixture::new();
    let token = f.token("demo-bank", 1, NOW);
    let bank = partner("demo-bank");
    f.verifier
        .verify(&token, &cert(1), &bank, NOW)
        .await
        .unwrap();
    let reads = f.store.reads();
    for _ in 0..3 {
        assert!(matches!(
            f.verifier.verify_cached(&token, &cert(1), &bank, NOW),
            Some(Ok(_))
        ));
        f.verifier
            .verify(&token, &cert(1), &bank, NOW)
            .await
            .unwrap();
    }
    assert_eq!(f.store.reads(), reads);
    // Expiry still applies on a hit.
    let late = UnixTime(NOW.0 + LIFETIME as i64 + LEEWAY + 1);
    assert!(matches!(
        f.verifier.verify_cached(&token, &cert(1), &bank, late),
        Some(Err(TokenError::Expired { .. }))
    ));
}
