//! Token verification cost: a cache hit (the hot path for a repeated token) against a cache
//! miss (signature verification, claims, revocation lookup), ES256 and EdDSA; and the cost of
//! issuing a token.
//!
//! Run: `cargo bench -p gateway-auth --bench verify`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tokio::sync::broadcast;

use gateway_auth::keys::generate_pem;
use gateway_auth::{
    ClientRegistration, FORM_URLENCODED, Issuer, IssuerSettings, KeySet, KeyStatus,
    SigningAlgorithm, SigningKeyFile, TokenVerifier,
};
use gateway_core::time::UnixTime;
use gateway_core::{ClientId, Fingerprint, PartnerId, PeerIdentity, Scope};
use gateway_store::{Change, RevocationStore, StoreError};

/// A store that never has a revocation: the miss path's lookup, without I/O.
#[derive(Clone)]
struct NothingRevoked;

impl RevocationStore for NothingRevoked {
    async fn revoke_token(&self, _jti: &str, _expires_at: UnixTime) -> Result<(), StoreError> {
        Ok(())
    }

    async fn is_token_revoked(&self, _jti: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
}

const NOW: UnixTime = UnixTime(1_800_000_000);

fn issuer(algorithm: SigningAlgorithm) -> Arc<Issuer> {
    let settings = IssuerSettings {
        issuer: "https://gateway.test".into(),
        audience: "https://gateway.test/v1".into(),
        lifetime: Duration::from_secs(300),
        leeway: Duration::from_secs(5),
    };
    let key = SigningKeyFile {
        kid: "k1".into(),
        algorithm,
        pem: generate_pem(algorithm).unwrap().into_bytes(),
        status: KeyStatus::Active,
    };
    Issuer::new(settings, KeySet::load(&[key]).unwrap())
}

fn registration() -> ClientRegistration {
    ClientRegistration {
        partner: PartnerId::parse("demo-bank").unwrap(),
        client_id: ClientId::parse("demo-bank").unwrap(),
        scopes: Scope::ALL.into_iter().collect(),
        active: true,
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cert = Fingerprint([7; 32]);
    let partner = PartnerId::parse("demo-bank").unwrap();
    let reg = registration();

    for (name, algorithm) in [
        ("es256", SigningAlgorithm::Es256),
        ("eddsa", SigningAlgorithm::EdDsa),
    ] {
        let issuer = issuer(algorithm);
        // The sender stays alive so the verifier trusts its notifications (hits skip the store).
        let (changes, receiver) = broadcast::channel::<Change>(16);
        let verifier = TokenVerifier::builder(issuer.clone(), NothingRevoked)
            .notifications(receiver)
            .build();
        let token = issuer
            .issue(&reg, reg.scopes, &cert, NOW)
            .unwrap()
            .access_token;
        runtime
            .block_on(verifier.verify(&token, &cert, &partner, NOW))
            .unwrap();

        c.bench_function(&format!("verify/{name}/cache_hit"), |b| {
            b.iter(|| {
                let answer = verifier.verify_cached(black_box(&token), &cert, &partner, NOW);
                assert!(matches!(answer, Some(Ok(_))));
                answer
            })
        });
        c.bench_function(&format!("verify/{name}/cache_miss"), |b| {
            b.iter_batched(
                || {
                    issuer
                        .issue(&reg, reg.scopes, &cert, NOW)
                        .unwrap()
                        .access_token
                },
                |fresh| {
                    runtime
                        .block_on(verifier.verify(black_box(&fresh), &cert, &partner, NOW))
                        .unwrap()
                },
                BatchSize::SmallInput,
            )
        });
        drop(changes);
    }

    let issuer = issuer(SigningAlgorithm::Es256);
    let peer = PeerIdentity {
        fingerprint: cert,
        subject: Arc::from("CN=demo-bank"),
        connection: 1,
    };
    let form = b"grant_type=client_credentials&client_id=demo-bank&scope=tags:read";
    c.bench_function("token_request/es256", |b| {
        b.iter(|| {
            issuer
                .token_request(
                    black_box(form),
                    Some(FORM_URLENCODED),
                    &peer,
                    Some(&reg),
                    NOW,
                )
                .unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
