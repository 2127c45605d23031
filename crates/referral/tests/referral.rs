//! Referral codes, conversion intake and campaign stats against both store backends: a redb
//! file in a temp dir, and a real `redis-server` shared by several store instances.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use gateway_core::referral::ReferralCode;
use gateway_core::time::UnixTime;
use gateway_core::{PartnerId, ProblemType};
use gateway_referral::{
    CampaignRules, Campaigns, CodeState, EventError, EventType, IssueError, IssueOptions,
    IssueRequest, Issued, Recorded, RejectReason, campaign_stats, code_status, issue, issue_with,
    record_event,
};
use gateway_store::{ReferralStore, Store};

use common::*;

on_both_backends!(
    issued_codes_read_back_for_their_partner_only,
    same_key_and_body_replay_the_stored_bytes,
    same_key_with_another_body_is_refused_and_changes_nothing,
    keys_are_scoped_per_partner_and_expire_after_a_day,
    concurrent_requests_with_one_key_on_two_instances_issue_one_code,
    the_daily_cap_is_exact_and_resets_the_next_utc_day,
    the_daily_cap_holds_under_concurrent_issuance,
    unknown_foreign_and_inactive_campaigns_issue_nothing,
    events_count_once_and_replay_their_first_outcome,
    out_of_order_events_each_count,
    events_follow_their_codes_campaign,
    the_conversion_cap_is_exact,
    rejected_events_change_nothing,
    a_counted_event_replays_after_its_campaign_changed,
    stats_are_exact_under_concurrent_intake_from_three_instances,
);

// === codes ===

async fn issued_codes_read_back_for_their_partner_only(backend: Backend) {
    let store = backend.store().await;
    let campaigns = campaigns(spring(10, 10));
    let request = IssueRequest::new(
        campaign(SPRING),
        Some("app".to_owned()),
        Some("spring mailing".to_owned()),
    )
    .unwrap();
    let issued = issue(&store, &bank(), &request, &key("k1"), &campaigns, now())
        .await
        .unwrap();
    assert!(!issued.replayed);
    let code = issued.code.code.clone();
    assert_eq!(
        ReferralCode::parse(&code).map(|c| c.to_string()),
        Some(code.clone())
    );
    let body: serde_json::Value = serde_json::from_slice(&issued.body).unwrap();
    assert_eq!(
        body,
        json!({"code": code, "campaign_id": SPRING, "status": "active", "channel": "app",
               "note": "spring mailing", "issued_at": "2026-12-01T10:00:00Z",
               "expires_at": "2027-06-30T23:59:59Z"})
    );

    // Read back however the partner spells it.
    let typed = code.to_lowercase().replace('-', "");
    let status = code_status(&store, &bank(), &typed, &campaigns, now())
        .await
        .unwrap()
        .expect("the partner's own code");
    let body: serde_json::Value = serde_json::from_slice(&status.body()).unwrap();
    assert_eq!(
        body,
        json!({"code": code, "campaign_id": SPRING, "status": "active", "channel": "app",
               "note": "spring mailing", "issued_at": "2026-12-01T10:00:00Z",
               "expires_at": "2027-06-30T23:59:59Z",
               "conversions": {"account_opened": 0, "first_trade": 0, "funded": 0},
               "conversions_total": 0})
    );

    // Another partner's code, a typo, garbage and a code never issued look the same.
    let mut typo = code.clone().into_bytes();
    typo[0] = if typo[0] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    for (partner, text) in [
        (fund(), code.as_str()),
        (bank(), typo.as_str()),
        (bank(), "not-a-code"),
        (bank(), ""),
        (bank(), &unissued_code()),
    ] {
        let found = code_status(&store, &partner, text, &campaigns, now())
            .await
            .unwrap();
        assert_eq!(found, None, "{partner} {text:?}");
    }

    // After the campaign's end the code is expired.
    let later = code_status(
        &store,
        &bank(),
        &code,
        &campaigns,
        at("2027-07-01T00:00:00Z"),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(later.status, CodeState::Expired);
}

async fn same_key_and_body_replay_the_stored_bytes(backend: Backend) {
    let store = backend.store().await;
    let running = campaigns(spring(10, 10));
    let first = issue(
        &store,
        &bank(),
        &request(SPRING),
        &key("k1"),
        &running,
        now(),
    )
    .await
    .unwrap();

    // The same request, spelled differently, an hour later.
    let respelled =
        IssueRequest::from_json(b"{ \"campaign_id\" :\n \"spring-referral-2027\" }").unwrap();
    let hour_later = UnixTime(now().0 + 3600);
    let again = issue(
        &store,
        &bank(),
        &respelled,
        &key("k1"),
        &running,
        hour_later,
    )
    .await
    .unwrap();
    assert!(again.replayed);
    assert_eq!(again.body, first.body);
    assert_eq!(again.code, first.code);

    // The stored answer stands even once the campaign is over.
    let mut ended = spring(10, 10);
    ended.ends_at = hour_later;
    let late = issue(
        &store,
        &bank(),
        &request(SPRING),
        &key("k1"),
        &Campaigns::new([ended]),
        hour_later,
    )
    .await
    .unwrap();
    assert_eq!(late.body, first.body);
    assert_eq!(stats(&store, SPRING, &bank()).await.codes_issued, 1);
}

async fn same_key_with_another_body_is_refused_and_changes_nothing(backend: Backend) {
    let store = backend.store().await;
    let campaigns = campaigns(spring(10, 10));
    let first = issue(
        &store,
        &bank(),
        &request(SPRING),
        &key("k1"),
        &campaigns,
        now(),
    )
    .await
    .unwrap();
    let other = IssueRequest::new(campaign(SPRING), Some("branch".to_owned()), None).unwrap();
    let err = issue(&store, &bank(), &other, &key("k1"), &campaigns, now())
        .await
        .unwrap_err();
    assert!(matches!(err, IssueError::IdempotencyKeyReused), "{err:?}");
    let problem = err.problem().unwrap();
    assert_eq!(problem.kind, ProblemType::IdempotencyKeyReused);
    assert_eq!(problem.status().as_u16(), 422);
    assert_eq!(stats(&store, SPRING, &bank()).await.codes_issued, 1);
    // The key still answers its first request.
    let again = issue(
        &store,
        &bank(),
        &request(SPRING),
        &key("k1"),
        &campaigns,
        now(),
    )
    .await
    .unwrap();
    assert_eq!(again.body, first.body);
}

async fn keys_are_scoped_per_partner_and_expire_after_a_day(backend: Backend) {
    let store = backend.store().await;
    let campaigns = campaigns(spring(10, 10));
    let issue_at = |partner: PartnerId, t: UnixTime| {
        let (store, campaigns) = (&store, &campaigns);
        async move {
            issue(
                store,
                &partner,
                &request(SPRING),
                &key("shared"),
                campaigns,
                t,
            )
            .await
            .unwrap()
        }
    };
    let a = issue_at(bank(), now()).await;
    let b = issue_at(fund(), now()).await;
    assert!(!b.replayed);
    assert_ne!(a.code.code, b.code.code);
    let almost_a_day = issue_at(bank(), UnixTime(now().0 + 86_399)).await;
    assert!(almost_a_day.replayed);
    let a_day_later = issue_at(bank(), UnixTime(now().0 + 86_400)).await;
    assert!(!a_day_later.replayed);
    assert_ne!(a_day_later.code.code, a.code.code);
    assert_eq!(stats(&store, SPRING, &bank()).await.codes_issued, 2);
    assert_eq!(stats(&store, SPRING, &fund()).await.codes_issued, 1);
}

async fn concurrent_requests_with_one_key_on_two_instances_issue_one_code(backend: Backend) {
    let stores = backend.stores(2).await;
    let campaigns = Arc::new(campaigns(spring(100, 10)));
    // Generous: 20 requests queue behind one on 2 busy cores.
    let options = IssueOptions {
        in_progress_wait: Duration::from_secs(8),
    };
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = stores[i % 2].clone();
            let (campaigns, options) = (campaigns.clone(), options.clone());
            tokio::spawn(async move {
                issue_with(
                    &store,
                    &bank(),
                    &request(SPRING),
                    &key("one-key"),
                    &campaigns,
                    now(),
                    &options,
                )
                .await
            })
        })
        .collect();
    let mut answers: Vec<Issued> = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().unwrap());
    }
    assert_eq!(answers.iter().filter(|a| !a.replayed).count(), 1);
    assert!(answers.iter().all(|a| a.body == answers[0].body));
    assert_eq!(stats(&stores[1], SPRING, &bank()).await.codes_issued, 1);
}

async fn the_daily_cap_is_exact_and_resets_the_next_utc_day(backend: Backend) {
    let store = backend.store().await;
    let campaigns = campaigns(spring(3, 10));
    for i in 0..3 {
        issue(
            &store,
            &bank(),
            &request(SPRING),
            &key(&format!("k{i}")),
            &campaigns,
            now(),
        )
        .await
        .unwrap();
    }
    let err = issue(
        &store,
        &bank(),
        &request(SPRING),
        &key("k3"),
        &campaigns,
        now(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            IssueError::IssuanceCapReached {
                cap: 3,
                retry_after_secs: 50_400
            }
        ),
        "{err:?}"
    );
    let problem = err.problem().unwrap();
    assert_eq!(problem.kind, ProblemType::IssuanceCapReached);
    assert_eq!(problem.status().as_u16(), 429);
    assert_eq!(stats(&store, SPRING, &bank()).await.codes_issued, 3);

    // Other partners have their own cap.
    issue(
        &store,
        &fund(),
        &request(SPRING),
        &key("k0"),
        &campaigns,
        now(),
    )
    .await
    .unwrap();
    // The refused key was released: the next UTC day it issues a code.
    let next_day = at("2026-12-02T00:00:00Z");
    let issued = issue(
        &store,
        &bank(),
        &request(SPRING),
        &key("k3"),
        &campaigns,
        next_day,
    )
    .await
    .unwrap();
    assert!(!issued.replayed);
    assert_eq!(stats(&store, SPRING, &bank()).await.codes_issued, 4);
}

async fn the_daily_cap_holds_under_concurrent_issuance(backend: Backend) {
    let stores = backend.stores(2).await;
    let campaigns = Arc::new(campaigns(spring(5, 10)));
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = stores[i % 2].clone();
            let campaigns = campaigns.clone();
            tokio::spawn(async move {
                issue(
                    &store,
                    &bank(),
                    &request(SPRING),
                    &key(&format!("k{i}")),
                    &campaigns,
                    now(),
                )
                .await
            })
        })
        .collect();
    let (mut issued, mut capped) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => issued += 1,
            Err(IssueError::IssuanceCapReached { cap: 5, .. }) => capped += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((issued, capped), (5, 7));
    assert_eq!(stats(&stores[0], SPRING, &bank()).await.codes_issued, 5);
}

async fn unknown_foreign_and_inactive_campaigns_issue_nothing(backend: Backend) {
    let store = backend.store().await;
    let campaigns = campaigns(spring(10, 10));
    for (partner, campaign_id) in [(bank(), "no-such-campaign"), (insurer(), SPRING)] {
        let err = issue(
            &store,
            &partner,
            &request(campaign_id),
            &key("k"),
            &campaigns,
            now(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, IssueError::CampaignNotFound(_)), "{err:?}");
        assert_eq!(err.problem().unwrap().kind, ProblemType::CampaignNotFound);
    }
    let err = issue(
        &store,
        &bank(),
        &request(OVER),
        &key("k"),
        &campaigns,
        now(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, IssueError::CampaignInactive { .. }),
        "{err:?}"
    );
    assert_eq!(err.problem().unwrap().kind, ProblemType::CampaignInactive);
    let early = at("2026-10-01T00:00:00Z");
    let err = issue(
        &store,
        &bank(),
        &request(SPRING),
        &key("early"),
        &campaigns,
        early,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, IssueError::CampaignInactive { .. }),
        "{err:?}"
    );

    for (campaign_id, partner) in [(SPRING, bank()), (SPRING, insurer()), (OVER, bank())] {
        assert_eq!(stats(&store, campaign_id, &partner).await.codes_issued, 0);
    }
    // Refusals are not remembered under the key: once the campaign runs, it issues.
    let issued = issue(
        &store,
        &bank(),
        &request(SPRING),
        &key("early"),
        &campaigns,
        now(),
    )
    .await
    .unwrap();
    assert!(!issued.replayed);
}

// === events ===

/// Issues a code for `partner` in `campaign_id`, at `t`.
async fn code_for(
    store: &Store,
    partner: &PartnerId,
    campaign_id: &str,
    campaigns: &Campaigns,
    t: UnixTime,
) -> String {
    let k = key(&format!("code-{}", unique()));
    issue(store, partner, &request(campaign_id), &k, campaigns, t)
        .await
        .unwrap()
        .code
        .code
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn rejected(result: Result<Recorded, EventError>) -> RejectReason {
    match result {
        Err(EventError::Rejected(reason)) => reason,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

async fn events_count_once_and_replay_their_first_outcome(backend: Backend) {
    let store = backend.store().await;
    let campaigns = campaigns(spring(10, 10));
    let code = code_for(&store, &bank(), SPRING, &campaigns, now()).await;
    let opened = event(
        "e1",
        &code,
        EventType::AccountOpened,
        at("2026-12-01T09:59:00Z"),
    );

    let first = record_event(&store, &opened, &campaigns, now())
        .await
        .unwrap();
    assert!(matches!(first, Recorded::Created(_)));
    assert_eq!(first.status(), 201);
    let body: serde_json::Value = serde_json::from_slice(&first.body()).unwrap();
    assert_eq!(
        body,
        json!({"event_id": "e1", "status": "counted", "code": code, "campaign_id": SPRING,
               "partner_id": "demo-bank", "event_type": "account_opened",
               "occurred_at": "2026-12-01T09:59:00Z", "customer_id": "C000002",
               "reward": {"amount_minor": 5000, "currency": "CNY"}})
    );

    let replay = record_event(&store, &opened, &campaigns, now())
        .await
        .unwrap();
    assert!(matches!(replay, Recorded::Replayed(_)));
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.body(), first.body());

    // The same id with another body answers with the first outcome, and counts nothing.
    let mut altered = opened.clone();
    altered.event_type = EventType::Funded;
    altered.code = code.to_lowercase();
    let replay = record_event(&store, &altered, &campaigns, now())
        .await
        .unwrap();
    assert_eq!(replay.body(), first.body());

    let status = code_status(&store, &bank(), &code, &campaigns, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.conversions_total, 1);
    assert_eq!(
        status.conversions,
        counts(&[("account_opened", 1), ("first_trade", 0), ("funded", 0)])
    );
    let view = campaign_stats(&store, &bank(), SPRING, &campaigns, now())
        .await
        .unwrap()
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&view.body()).unwrap();
    assert_eq!(
        body,
        json!({"campaign_id": SPRING, "status": "active", "starts_at": "2026-11-01T00:00:00Z",
               "ends_at": "2027-06-30T23:59:59Z", "codes_issued": 1,
               "conversions": {"account_opened": 1, "first_trade": 0, "funded": 0},
               "rewards": {"CNY": 5000}})
    );
    // Stats are per partner, and only for partners in the campaign.
    let fund_view = campaign_stats(&store, &fund(), SPRING, &campaigns, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fund_view.codes_issued, 0);
    assert!(fund_view.rewards.is_empty());
    for (partner, id) in [(insurer(), SPRING), (bank(), "nope"), (bank(), "Bad Id")] {
        let view = campaign_stats(&store, &partner, id, &campaigns, now())
            .await
            .unwrap();
        assert_eq!(view, None, "{partner} {id}");
    }
}

async fn out_of_order_events_each_count(backend: Backend) {
    let store = backend.store().await;
    let campaigns = campaigns(spring(10, 10));
    let code = code_for(&store, &bank(), SPRING, &campaigns, now()).await;
    // Reported newest first, and `funded` before the account opening it depends on.
    for (id, event_type, t) in [
        ("trade", EventType::FirstTrade, "2026-12-01T09:00:00Z"),
        ("fund", EventType::Funded, "2026-12-01T08:00:00Z"),
        ("open", EventType::AccountOpened, "2026-11-30T08:00:00Z"),
        ("fund-again", EventType::Funded, "2026-11-30T09:00:00Z"),
    ] {
        let recorded = record_event(
            &store,
            &event(id, &code, event_type, at(t)),
            &campaigns,
            now(),
        )
        .await
        .unwrap();
        assert!(matches!(recorded, Recorded::Created(_)), "{id}");
    }
    let s = stats(&store, SPRING, &bank()).await;
    assert_eq!(
        s.conversions,
        counts(&[("account_opened", 1), ("first_trade", 1), ("funded", 2)])
    );
    assert_eq!(
        s.rewards_minor,
        counts(&[("CNY", 5000 + 2000 + 2 * 10_000)])
    );
}

async fn events_follow_their_codes_campaign(backend: Backend) {
    let store = backend.store().await;
    let campaigns = campaigns(spring(10, 10));
    let spring_code = code_for(&store, &bank(), SPRING, &campaigns, now()).await;
    let autumn_code = code_for(&store, &bank(), AUTUMN, &campaigns, now()).await;
    // Issued while the summer campaign ran.
    let summer_code = code_for(
        &store,
        &bank(),
        OVER,
        &campaigns,
        at("2026-07-01T00:00:00Z"),
    )
    .await;

    let funded = record_event(
        &store,
        &event("a1", &autumn_code, EventType::Funded, now()),
        &campaigns,
        now(),
    )
    .await
    .unwrap();
    assert_eq!(funded.conversion().campaign_id.as_str(), AUTUMN);
    assert_eq!(
        funded.conversion().reward,
        gateway_referral::Reward {
            amount_minor: 700,
            currency: "HKD".to_owned()
        }
    );
    // Autumn does not reward account openings, whatever spring does.
    let reason = rejected(
        record_event(
            &store,
            &event("a2", &autumn_code, EventType::AccountOpened, now()),
            &campaigns,
            now(),
        )
        .await,
    );
    assert_eq!(reason, RejectReason::EventTypeNotRewarded);
    // A late report of something that happened inside the summer window counts; something
    // after it does not.
    let late = event(
        "s1",
        &summer_code,
        EventType::AccountOpened,
        at("2026-08-31T23:59:59Z"),
    );
    assert!(record_event(&store, &late, &campaigns, now()).await.is_ok());
    let after = event(
        "s2",
        &summer_code,
        EventType::AccountOpened,
        at("2026-09-01T00:00:00Z"),
    );
    assert_eq!(
        rejected(record_event(&store, &after, &campaigns, now()).await),
        RejectReason::CampaignEnded
    );

    assert_eq!(
        stats(&store, SPRING, &bank()).await.conversions,
        counts(&[])
    );
    let autumn = stats(&store, AUTUMN, &bank()).await;
    assert_eq!(autumn.conversions, counts(&[("funded", 1)]));
    assert_eq!(autumn.rewards_minor, counts(&[("HKD", 700)]));
    assert_eq!(
        stats(&store, OVER, &bank()).await.rewards_minor,
        counts(&[("CNY", 1)])
    );
    let spring_status = code_status(&store, &bank(), &spring_code, &campaigns, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(spring_status.conversions_total, 0);
}

async fn the_conversion_cap_is_exact(backend: Backend) {
    let store = backend.store().await;
    let campaigns = campaigns(spring(10, 2));
    let code = code_for(&store, &bank(), SPRING, &campaigns, now()).await;
    let other = code_for(&store, &bank(), SPRING, &campaigns, now()).await;
    for (id, event_type) in [("c1", EventType::AccountOpened), ("c2", EventType::Funded)] {
        record_event(
            &store,
            &event(id, &code, event_type, now()),
            &campaigns,
            now(),
        )
        .await
        .unwrap();
    }
    let third = event("c3", &code, EventType::FirstTrade, now());
    assert_eq!(
        rejected(record_event(&store, &third, &campaigns, now()).await),
        RejectReason::ConversionCapReached
    );
    let problem = EventError::Rejected(RejectReason::ConversionCapReached)
        .problem()
        .unwrap();
    assert_eq!(problem.kind, ProblemType::ReferralEventRejected);
    // Counted events still replay, and the cap is per code.
    let replay = record_event(
        &store,
        &event("c1", &code, EventType::AccountOpened, now()),
        &campaigns,
        now(),
    )
    .await
    .unwrap();
    assert!(matches!(replay, Recorded::Replayed(_)));
    record_event(
        &store,
        &event("o1", &other, EventType::FirstTrade, now()),
        &campaigns,
        now(),
    )
    .await
    .unwrap();
    let s = stats(&store, SPRING, &bank()).await;
    assert_eq!(
        s.conversions,
        counts(&[("account_opened", 1), ("first_trade", 1), ("funded", 1)])
    );
}

async fn rejected_events_change_nothing(backend: Backend) {
    let store = backend.store().await;
    let campaigns = campaigns(spring(10, 10));
    let code = code_for(&store, &bank(), SPRING, &campaigns, now()).await;
    let mut typo = code.clone().into_bytes();
    typo.swap(0, 1);
    if typo[0] == typo[1] {
        typo[0] = if typo[0] == b'A' { b'B' } else { b'A' };
    }
    let typo = String::from_utf8(typo).unwrap();
    let unissued = unissued_code();
    let too_late = UnixTime(now().0 + 61);
    let cases = [
        (
            "x1",
            "garbage",
            EventType::AccountOpened,
            now(),
            RejectReason::UnknownCode,
        ),
        (
            "x2",
            typo.as_str(),
            EventType::AccountOpened,
            now(),
            RejectReason::UnknownCode,
        ),
        (
            "x3",
            unissued.as_str(),
            EventType::AccountOpened,
            now(),
            RejectReason::UnknownCode,
        ),
        (
            "x4",
            code.as_str(),
            EventType::AccountOpened,
            too_late,
            RejectReason::OccurredInFuture,
        ),
        (
            "x5",
            code.as_str(),
            EventType::AccountOpened,
            at("2026-10-31T23:59:59Z"),
            RejectReason::CampaignEnded,
        ),
    ];
    for (id, code_text, event_type, t, reason) in cases {
        let result = record_event(
            &store,
            &event(id, code_text, event_type, t),
            &campaigns,
            now(),
        )
        .await;
        assert_eq!(rejected(result), reason, "{id}");
    }
    let s = stats(&store, SPRING, &bank()).await;
    assert!(
        s.conversions.is_empty() && s.rewards_minor.is_empty(),
        "{s:?}"
    );
    assert!(store.code_conversions(&code).await.unwrap().is_empty());

    // A rejection is not remembered: once its time has come, the event counts; and the edge of
    // the tolerance is accepted.
    let future = event("x4", &code, EventType::AccountOpened, too_late);
    let recorded = record_event(&store, &future, &campaigns, too_late)
        .await
        .unwrap();
    assert!(matches!(recorded, Recorded::Created(_)));
    let edge = event("x6", &code, EventType::Funded, UnixTime(now().0 + 60));
    assert!(record_event(&store, &edge, &campaigns, now()).await.is_ok());
}

async fn a_counted_event_replays_after_its_campaign_changed(backend: Backend) {
    let store = backend.store().await;
    let campaigns = campaigns(spring(10, 10));
    let code = code_for(&store, &bank(), SPRING, &campaigns, now()).await;
    let opened = event("r1", &code, EventType::AccountOpened, now());
    let first = record_event(&store, &opened, &campaigns, now())
        .await
        .unwrap();

    let mut changed: CampaignRules = spring(10, 10);
    changed.rewards.remove(&EventType::AccountOpened);
    changed.ends_at = now();
    for config in [Campaigns::new([changed]), Campaigns::default()] {
        let replay = record_event(&store, &opened, &config, now()).await.unwrap();
        assert!(matches!(replay, Recorded::Replayed(_)));
        assert_eq!(replay.body(), first.body());
    }
    // New events meet the new rules.
    let mut no_openings = spring(10, 10);
    no_openings.rewards.remove(&EventType::AccountOpened);
    let new = event("r2", &code, EventType::AccountOpened, now());
    assert_eq!(
        rejected(record_event(&store, &new, &Campaigns::new([no_openings]), now()).await),
        RejectReason::EventTypeNotRewarded
    );
    assert_eq!(
        stats(&store, SPRING, &bank()).await.conversions,
        counts(&[("account_opened", 1)])
    );
}

async fn stats_are_exact_under_concurrent_intake_from_three_instances(backend: Backend) {
    let stores = backend.stores(3).await;
    let campaigns = Arc::new(campaigns(spring(100, 1000)));
    let mut codes = Vec::new();
    for partner in [bank(), bank(), bank(), bank(), fund(), fund()] {
        let code = code_for(&stores[0], &partner, SPRING, &campaigns, now()).await;
        codes.push((partner, code));
    }
    // 60 events, each sent twice at once through two different instances.
    let events: Vec<_> = (0..60)
        .map(|i| {
            let (partner, code) = &codes[i % codes.len()];
            let event_type = EventType::ALL[i % 3];
            (
                partner.clone(),
                event(&format!("ev-{i}"), code, event_type, now()),
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for (i, (_, e)) in events.iter().enumerate() {
        for instance in [i % 3, (i + 1) % 3] {
            let (store, e, campaigns) = (stores[instance].clone(), e.clone(), campaigns.clone());
            tasks.push(tokio::spawn(async move {
                record_event(&store, &e, &campaigns, now()).await
            }));
        }
    }
    let (mut created, mut replayed) = (0, 0);
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Recorded::Created(_) => created += 1,
            Recorded::Replayed(_) => replayed += 1,
        }
    }
    assert_eq!((created, replayed), (60, 60));

    for partner in [bank(), fund()] {
        let mine: Vec<_> = events.iter().filter(|(p, _)| *p == partner).collect();
        let mut conversions = std::collections::BTreeMap::new();
        let mut reward = 0;
        for (_, e) in &mine {
            *conversions
                .entry(e.event_type.as_str().to_owned())
                .or_insert(0u64) += 1;
            reward += spring(1, 1).rewards[&e.event_type].amount_minor;
        }
        let s = stats(&stores[2], SPRING, &partner).await;
        assert_eq!(s.conversions, conversions, "{partner}");
        assert_eq!(s.rewards_minor, counts(&[("CNY", reward)]), "{partner}");
        assert_eq!(
            s.codes_issued,
            codes.iter().filter(|(p, _)| *p == partner).count() as u64
        );
    }
    for (partner, code) in &codes {
        let status = code_status(&stores[1], partner, code, &campaigns, now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.conversions_total, 10, "{code}");
    }
}

// === restarts ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_reopening_the_embedded_store() {
    let mut backend = Backend::embedded().await;
    let campaigns = campaigns(spring(10, 10));
    let (first, recorded) = {
        let store = backend.store().await;
        let first = issue(
            &store,
            &bank(),
            &request(SPRING),
            &key("k1"),
            &campaigns,
            now(),
        )
        .await
        .unwrap();
        let opened = event("e1", &first.code.code, EventType::AccountOpened, now());
        let recorded = record_event(&store, &opened, &campaigns, now())
            .await
            .unwrap();
        (first, recorded)
    };
    backend.reopen().await;
    let store = backend.store().await;
    let again = issue(
        &store,
        &bank(),
        &request(SPRING),
        &key("k1"),
        &campaigns,
        now(),
    )
    .await
    .unwrap();
    assert!(again.replayed);
    assert_eq!(again.body, first.body);
    let opened = event("e1", &first.code.code, EventType::AccountOpened, now());
    let replay = record_event(&store, &opened, &campaigns, now())
        .await
        .unwrap();
    assert!(matches!(replay, Recorded::Replayed(_)));
    assert_eq!(replay.body(), recorded.body());
    assert_eq!(stats(&store, SPRING, &bank()).await.codes_issued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_held_by_a_stalled_request_answers_in_progress() {
    use gateway_store::{IdempotencyClaim, IdempotencyStore};

    let backend = Backend::embedded().await;
    let store = backend.store().await;
    let campaigns = campaigns(spring(10, 10));
    let request = request(SPRING);
    let stalled = key("stalled");
    // Another instance claimed the key and never finished (it is stuck, or died).
    let claim = store
        .claim(
            &stalled.store_key(&bank()),
            &request.fingerprint(),
            now(),
            gateway_referral::IDEMPOTENCY_TTL_SECS,
        )
        .await
        .unwrap();
    assert_eq!(claim, IdempotencyClaim::New);
    let options = IssueOptions {
        in_progress_wait: Duration::from_millis(50),
    };
    let err = issue_with(
        &store,
        &bank(),
        &request,
        &stalled,
        &campaigns,
        now(),
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, IssueError::InProgress), "{err:?}");
    assert_eq!(stats(&store, SPRING, &bank()).await.codes_issued, 0);
}
