//! The behavioural suite, written once against the store traits and run on every backend.
//!
//! Each scenario takes instances that share one backend's state (`stores[0]` is enough for most;
//! the concurrency scenarios spread their calls over all of them, as several gateway instances
//! would).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use gateway_core::time::UnixTime;
use gateway_core::{ConsentId, CustomerRef};
use gateway_store::{
    CampaignStats, Change, ConsentStatus, ConsentStore, EventOutcome, GrantOutcome,
    IdempotencyClaim, IdempotencyStore, IssueOutcome, ReferralStore, RevocationStore,
    RevokeOutcome, StoredResponse,
};
use tokio::sync::broadcast;
use tokio::task::JoinSet;

use super::*;

/// What the change scenario needs besides the traits.
pub(crate) trait Changes {
    fn changes(&self) -> broadcast::Receiver<Change>;
}

impl Changes for Store {
    fn changes(&self) -> broadcast::Receiver<Change> {
        self.subscribe()
    }
}

pub(crate) async fn grant_is_found_by_ref_for_its_partner_only<S: ConsentStore>(stores: &[S]) {
    let s = &stores[0];
    let bank = grant_of("cons-bank-1", "C000001", "demo-bank", "wealth-advice");
    assert_eq!(
        s.grant(bank.clone()).await.unwrap(),
        GrantOutcome::Granted(bank.clone())
    );

    assert_eq!(
        s.consent(&bank.consent_id).await.unwrap(),
        Some(bank.clone())
    );
    assert_eq!(
        s.consents_by_ref(&partner("demo-bank"), &bank.customer_ref)
            .await
            .unwrap(),
        std::slice::from_ref(&bank)
    );
    // demo-fund presenting demo-bank's ref for the same customer finds nothing.
    assert_eq!(
        s.consents_by_ref(&partner("demo-fund"), &bank.customer_ref)
            .await
            .unwrap(),
        []
    );

    let fund = grant_of("cons-fund-1", "C000001", "demo-fund", "wealth-advice");
    assert_eq!(
        s.grant(fund.clone()).await.unwrap(),
        GrantOutcome::Granted(fund.clone())
    );
    assert_eq!(
        s.consents_by_ref(&partner("demo-bank"), &fund.customer_ref)
            .await
            .unwrap(),
        []
    );
    assert_eq!(
        s.consents_by_ref(&partner("demo-fund"), &fund.customer_ref)
            .await
            .unwrap(),
        std::slice::from_ref(&fund)
    );

    // The consent centre sees both, oldest first; other customers see none of them.
    assert_eq!(
        s.consents_of_customer(&customer("C000001")).await.unwrap(),
        [bank.clone(), fund]
    );
    assert_eq!(
        s.consents_of_customer(&customer("C000002")).await.unwrap(),
        []
    );

    let unknown_ref = CustomerRef::parse(&"Z".repeat(43)).unwrap();
    assert_eq!(
        s.consents_by_ref(&partner("demo-bank"), &unknown_ref)
            .await
            .unwrap(),
        []
    );
    assert_eq!(
        s.consent(&ConsentId::parse("cons-unknown").unwrap())
            .await
            .unwrap(),
        None
    );
}

pub(crate) async fn a_second_active_grant_for_the_same_purpose_is_refused<S: ConsentStore>(
    stores: &[S],
) {
    let s = &stores[0];
    let first = grant_of("cons-a", "C000010", "demo-bank", "wealth-advice");
    s.grant(first.clone()).await.unwrap();

    let second = grant_of("cons-b", "C000010", "demo-bank", "wealth-advice");
    assert_eq!(
        s.grant(second.clone()).await.unwrap(),
        GrantOutcome::AlreadyGranted(first.clone())
    );
    // Nothing of the refused grant was stored.
    assert_eq!(s.consent(&second.consent_id).await.unwrap(), None);
    assert_eq!(
        s.consents_of_customer(&customer("C000010")).await.unwrap(),
        std::slice::from_ref(&first)
    );

    // The same id again is refused too, and does not overwrite.
    let mut same_id = grant_of("cons-a", "C000010", "demo-bank", "marketing");
    same_id.fields.clear();
    assert_eq!(
        s.grant(same_id).await.unwrap(),
        GrantOutcome::AlreadyGranted(first.clone())
    );

    // Another purpose is another grant.
    let other_purpose = grant_of("cons-c", "C000010", "demo-bank", "marketing");
    assert_eq!(
        s.grant(other_purpose.clone()).await.unwrap(),
        GrantOutcome::Granted(other_purpose)
    );

    // Once the first is revoked, the purpose is free again.
    s.revoke(&first.consent_id, NOW).await.unwrap();
    assert_eq!(
        s.grant(second.clone()).await.unwrap(),
        GrantOutcome::Granted(second.clone())
    );

    // An expired grant does not block a new one.
    let mut later = grant_of("cons-d", "C000010", "demo-bank", "wealth-advice");
    later.granted_at = UnixTime(second.expires_at.0 + 1);
    later.expires_at = UnixTime(later.granted_at.0 + 86_400);
    assert_eq!(
        s.grant(later.clone()).await.unwrap(),
        GrantOutcome::Granted(later)
    );
}

pub(crate) async fn revoking_twice_answers_already_revoked_and_unknown_not_found<
    S: ConsentStore,
>(
    stores: &[S],
) {
    let s = &stores[0];
    let record = grant_of("cons-r", "C000020", "demo-bank", "wealth-advice");
    s.grant(record.clone()).await.unwrap();

    let mut revoked = record.clone();
    revoked.status = ConsentStatus::Revoked {
        revoked_at: UnixTime(NOW.0 + 60),
    };
    assert_eq!(
        s.revoke(&record.consent_id, UnixTime(NOW.0 + 60))
            .await
            .unwrap(),
        RevokeOutcome::Revoked(revoked.clone())
    );
    assert_eq!(
        s.consent(&record.consent_id).await.unwrap(),
        Some(revoked.clone())
    );
    assert_eq!(
        s.consents_by_ref(&partner("demo-bank"), &record.customer_ref)
            .await
            .unwrap(),
        [revoked.clone()]
    );

    // The second revoke keeps the first time.
    assert_eq!(
        s.revoke(&record.consent_id, UnixTime(NOW.0 + 120))
            .await
            .unwrap(),
        RevokeOutcome::AlreadyRevoked(revoked.clone())
    );
    assert_eq!(s.consent(&record.consent_id).await.unwrap(), Some(revoked));

    let unknown = ConsentId::parse("cons-nope").unwrap();
    assert_eq!(
        s.revoke(&unknown, NOW).await.unwrap(),
        RevokeOutcome::NotFound
    );
    assert_eq!(s.consent(&unknown).await.unwrap(), None);
}

pub(crate) async fn revoked_tokens_are_remembered<S: RevocationStore>(stores: &[S]) {
    let s = &stores[0];
    let expires = UnixTime(UnixTime::now().0 + 600);
    assert!(!s.is_token_revoked("jti-1").await.unwrap());
    s.revoke_token("jti-1", expires).await.unwrap();
    assert!(s.is_token_revoked("jti-1").await.unwrap());
    assert!(!s.is_token_revoked("jti-2").await.unwrap());
    // Revoking again, even with an earlier expiry, keeps it revoked.
    s.revoke_token("jti-1", UnixTime(expires.0 - 300))
        .await
        .unwrap();
    assert!(s.is_token_revoked("jti-1").await.unwrap());
    // Every instance sees it.
    for other in stores {
        assert!(other.is_token_revoked("jti-1").await.unwrap());
    }
}

pub(crate) async fn idempotency_keys_replay_or_refuse<S: IdempotencyStore>(stores: &[S]) {
    let s = &stores[0];
    let (body_a, body_b) = ([1u8; 32], [2u8; 32]);
    let day = 86_400;
    assert_eq!(
        s.claim("demo-bank:codes:k1", &body_a, NOW, day)
            .await
            .unwrap(),
        IdempotencyClaim::New
    );
    assert_eq!(
        s.claim("demo-bank:codes:k1", &body_a, NOW, day)
            .await
            .unwrap(),
        IdempotencyClaim::InProgress
    );
    assert_eq!(
        s.claim("demo-bank:codes:k1", &body_b, NOW, day)
            .await
            .unwrap(),
        IdempotencyClaim::Mismatch
    );

    let response = StoredResponse {
        status: 201,
        body: br#"{"code":"7K3M"}"#.to_vec(),
    };
    s.complete("demo-bank:codes:k1", response.clone())
        .await
        .unwrap();
    assert_eq!(
        stores[stores.len() - 1]
            .claim("demo-bank:codes:k1", &body_a, UnixTime(NOW.0 + 10), day)
            .await
            .unwrap(),
        IdempotencyClaim::Replay(response.clone())
    );
    assert_eq!(
        s.claim("demo-bank:codes:k1", &body_b, NOW, day)
            .await
            .unwrap(),
        IdempotencyClaim::Mismatch
    );
    // A completed key cannot be abandoned.
    s.abandon("demo-bank:codes:k1").await.unwrap();
    assert_eq!(
        s.claim("demo-bank:codes:k1", &body_a, NOW, day)
            .await
            .unwrap(),
        IdempotencyClaim::Replay(response)
    );
    // After its TTL (by the caller's clock) the key is new again.
    assert_eq!(
        s.claim(
            "demo-bank:codes:k1",
            &body_b,
            UnixTime(NOW.0 + day as i64),
            day
        )
        .await
        .unwrap(),
        IdempotencyClaim::New
    );

    // An abandoned claim frees the key for a retry.
    assert_eq!(
        s.claim("demo-bank:codes:k2", &body_a, NOW, day)
            .await
            .unwrap(),
        IdempotencyClaim::New
    );
    s.abandon("demo-bank:codes:k2").await.unwrap();
    assert_eq!(
        s.claim("demo-bank:codes:k2", &body_b, NOW, day)
            .await
            .unwrap(),
        IdempotencyClaim::New
    );
}

pub(crate) async fn concurrent_claims_of_one_key_make_exactly_one_new<S>(stores: &[S])
where
    S: IdempotencyStore + Clone + 'static,
{
    let mut tasks = JoinSet::new();
    for i in 0..30 {
        let s = stores[i % stores.len()].clone();
        tasks.spawn(async move {
            s.claim("demo-bank:codes:race", &[7u8; 32], NOW, 3600)
                .await
                .unwrap()
        });
    }
    let claims = tasks.join_all().await;
    assert_eq!(
        claims
            .iter()
            .filter(|c| **c == IdempotencyClaim::New)
            .count(),
        1,
        "{claims:?}"
    );
    assert_eq!(
        claims
            .iter()
            .filter(|c| **c == IdempotencyClaim::InProgress)
            .count(),
        29,
        "{claims:?}"
    );
}

pub(crate) async fn the_daily_code_cap_holds_exactly_under_50_concurrent_issues<S>(stores: &[S])
where
    S: ReferralStore + Clone + 'static,
{
    let cap = 20;
    let mut tasks = JoinSet::new();
    for i in 0..50 {
        let s = stores[i % stores.len()].clone();
        tasks.spawn(async move {
            let code = format!("CODE{i:04}");
            let outcome = s
                .issue_code(code_of(&code, "demo-bank", "spring-2027", NOW), cap)
                .await
                .unwrap();
            (code, outcome)
        });
    }
    let results = tasks.join_all().await;
    let issued: Vec<_> = results
        .iter()
        .filter(|(_, o)| matches!(o, IssueOutcome::Issued { .. }))
        .collect();
    let counts: BTreeSet<u32> = issued
        .iter()
        .map(|(_, o)| match o {
            IssueOutcome::Issued { issued_today } => *issued_today,
            IssueOutcome::CapReached => unreachable!(),
        })
        .collect();
    assert_eq!(issued.len(), cap as usize, "{results:?}");
    assert_eq!(
        counts,
        (1..=cap).collect::<BTreeSet<_>>(),
        "each count is handed out once"
    );

    let s = &stores[0];
    for (code, outcome) in &results {
        let stored = s.code(code).await.unwrap();
        match outcome {
            IssueOutcome::Issued { .. } => {
                assert_eq!(stored, Some(code_of(code, "demo-bank", "spring-2027", NOW)))
            }
            IssueOutcome::CapReached => assert_eq!(stored, None, "a refused code is not stored"),
        }
    }
    let stats = s
        .campaign_stats(&campaign("spring-2027"), &partner("demo-bank"))
        .await
        .unwrap();
    assert_eq!(stats.codes_issued, u64::from(cap));

    // The cap is per partner and per UTC day.
    let other_partner = code_of("FUND0001", "demo-fund", "spring-2027", NOW);
    assert_eq!(
        s.issue_code(other_partner, cap).await.unwrap(),
        IssueOutcome::Issued { issued_today: 1 }
    );
    let tomorrow = code_of(
        "NEXTDAY1",
        "demo-bank",
        "spring-2027",
        UnixTime(NOW.0 + 86_400),
    );
    assert_eq!(
        s.issue_code(tomorrow, cap).await.unwrap(),
        IssueOutcome::Issued { issued_today: 1 }
    );
    assert_eq!(
        s.issue_code(code_of("LATE0001", "demo-bank", "spring-2027", NOW), cap)
            .await
            .unwrap(),
        IssueOutcome::CapReached
    );
}

pub(crate) async fn events_count_once_and_stop_at_the_cap<S>(stores: &[S])
where
    S: ReferralStore + Clone + 'static,
{
    let s = &stores[0];
    s.issue_code(code_of("EVT00001", "demo-bank", "spring-2027", NOW), 100)
        .await
        .unwrap();
    s.issue_code(code_of("EVT00002", "demo-bank", "spring-2027", NOW), 100)
        .await
        .unwrap();

    let first = event_of("ev-1", "EVT00001", "account_opened", 5_000);
    assert_eq!(
        s.record_event(first.clone(), 10).await.unwrap(),
        EventOutcome::Counted { conversions: 1 }
    );
    // A replay answers with the first outcome, even if the reporter changed a field.
    let mut again = first.clone();
    again.occurred_at = UnixTime(NOW.0 + 5);
    assert_eq!(
        s.record_event(again, 10).await.unwrap(),
        EventOutcome::Replay(first.clone())
    );
    // The same event id under another code is still the same event.
    let mut elsewhere = first.clone();
    elsewhere.code = "EVT00002".to_owned();
    assert_eq!(
        s.record_event(elsewhere, 10).await.unwrap(),
        EventOutcome::Replay(first.clone())
    );
    assert_eq!(
        s.code_conversions("EVT00002").await.unwrap(),
        BTreeMap::new()
    );

    assert_eq!(
        s.record_event(event_of("ev-2", "NOSUCHCODE", "funded", 1), 10)
            .await
            .unwrap(),
        EventOutcome::UnknownCode
    );
    assert_eq!(s.code("NOSUCHCODE").await.unwrap(), None);
    assert_eq!(
        s.code_conversions("NOSUCHCODE").await.unwrap(),
        BTreeMap::new()
    );

    // 20 concurrent events against a cap of 5 (one already counted): exactly 4 more count.
    let cap = 5;
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let s = stores[i % stores.len()].clone();
        let event_type = if i % 2 == 0 { "funded" } else { "first_trade" };
        let event = event_of(&format!("ev-race-{i}"), "EVT00001", event_type, 100);
        tasks.spawn(async move {
            (
                event.event_id.clone(),
                s.record_event(event, cap).await.unwrap(),
            )
        });
    }
    let results = tasks.join_all().await;
    let counted: BTreeSet<u32> = results
        .iter()
        .filter_map(|(_, o)| match o {
            EventOutcome::Counted { conversions } => Some(*conversions),
            _ => None,
        })
        .collect();
    assert_eq!(counted, (2..=5).collect::<BTreeSet<_>>(), "{results:?}");
    assert_eq!(
        results
            .iter()
            .filter(|(_, o)| *o == EventOutcome::CapReached)
            .count(),
        16
    );
    let conversions = s.code_conversions("EVT00001").await.unwrap();
    assert_eq!(conversions.values().sum::<u64>(), 5, "{conversions:?}");
    assert_eq!(conversions.get("account_opened"), Some(&1));

    // A refused event was not stored: with room under a higher cap it counts.
    let (refused, _) = results
        .iter()
        .find(|(_, o)| *o == EventOutcome::CapReached)
        .unwrap();
    let retry = event_of(refused, "EVT00001", "funded", 100);
    assert_eq!(
        s.record_event(retry, 6).await.unwrap(),
        EventOutcome::Counted { conversions: 6 }
    );
}

pub(crate) async fn campaign_stats_are_exact_under_concurrent_events_from_three_instances<S>(
    stores: &[S],
) where
    S: ReferralStore + Clone + 'static,
{
    assert_eq!(stores.len(), 3);
    let s = &stores[0];
    let codes = ["STAT0001", "STAT0002", "STAT0003", "STAT0004"];
    for code in codes {
        s.issue_code(code_of(code, "demo-bank", "autumn-2027", NOW), 100)
            .await
            .unwrap();
    }
    s.issue_code(code_of("FSTAT001", "demo-fund", "autumn-2027", NOW), 100)
        .await
        .unwrap();

    let types = ["account_opened", "funded", "first_trade"];
    let mut expected = CampaignStats {
        codes_issued: 4,
        ..CampaignStats::default()
    };
    let mut tasks = JoinSet::new();
    for i in 0..90usize {
        let event_type = types[i % 3];
        let reward = 100 + i as u64;
        *expected
            .conversions
            .entry(event_type.to_owned())
            .or_default() += 1;
        *expected.rewards_minor.entry("CNY".to_owned()).or_default() += reward;
        let event = event_of(
            &format!("ev-stat-{i}"),
            codes[i % codes.len()],
            event_type,
            reward,
        );
        let s = stores[i % 3].clone();
        tasks.spawn(async move { s.record_event(event, 1_000).await.unwrap() });
        // Every tenth event is also reported twice, by another instance: counted once.
        if i % 10 == 0 {
            let event = event_of(
                &format!("ev-stat-{i}"),
                codes[i % codes.len()],
                event_type,
                reward,
            );
            let s = stores[(i + 1) % 3].clone();
            tasks.spawn(async move { s.record_event(event, 1_000).await.unwrap() });
        }
    }
    let outcomes = tasks.join_all().await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, EventOutcome::Counted { .. } | EventOutcome::Replay(_)))
    );

    for store in stores {
        let stats = store
            .campaign_stats(&campaign("autumn-2027"), &partner("demo-bank"))
            .await
            .unwrap();
        assert_eq!(stats, expected);
    }
    let fund = s
        .campaign_stats(&campaign("autumn-2027"), &partner("demo-fund"))
        .await
        .unwrap();
    assert_eq!(
        fund,
        CampaignStats {
            codes_issued: 1,
            ..CampaignStats::default()
        }
    );
    assert_eq!(
        s.campaign_stats(&campaign("winter-2027"), &partner("demo-bank"))
            .await
            .unwrap(),
        CampaignStats::default()
    );
}

pub(crate) async fn changes_reach_every_subscriber<S>(stores: &[S])
where
    S: ConsentStore + RevocationStore + Changes,
{
    let mut receivers: Vec<_> = stores.iter().map(Changes::changes).collect();
    let record = grant_of("cons-w", "C000030", "demo-bank", "wealth-advice");
    stores[0].grant(record.clone()).await.unwrap();
    let expected = Change::Consent {
        partner_id: record.partner_id.clone(),
        customer_ref: record.customer_ref.clone(),
        consent_id: record.consent_id.clone(),
    };
    for rx in &mut receivers {
        assert_eq!(next_change(rx, Duration::from_secs(5)).await, expected);
    }
    let last = stores.len() - 1;
    stores[last].revoke(&record.consent_id, NOW).await.unwrap();
    for rx in &mut receivers {
        assert_eq!(next_change(rx, Duration::from_secs(5)).await, expected);
    }
    stores[0]
        .revoke_token("jti-w", UnixTime(UnixTime::now().0 + 60))
        .await
        .unwrap();
    for rx in &mut receivers {
        assert_eq!(
            next_change(rx, Duration::from_secs(5)).await,
            Change::TokenRevoked {
                jti: "jti-w".to_owned()
            }
        );
    }
}
