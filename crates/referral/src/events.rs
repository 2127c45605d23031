//! Conversion intake (`POST /admin/v1/referral-events`): events reported by internal
//! services, counted once per `event_id`.
//!
//! # Outcomes
//!
//! | case | result | HTTP |
//! | --- | --- | --- |
//! | first time, accepted | [`Recorded::Created`] | 201 |
//! | an `event_id` counted before | [`Recorded::Replayed`] with the **first** outcome | 200 |
//! | refused | [`EventError::Rejected`] with a [`RejectReason`] | 422 `referral-event-rejected`, `reason` |
//! | store failure | [`EventError::Store`] | 503 |
//!
//! Checks, in order: the code is well formed (check symbol) and known (`unknown_code`); its
//! campaign is configured and `occurred_at` is not more than [`FUTURE_TOLERANCE_SECS`] ahead of
//! `now` (`occurred_in_future`) and lies in the campaign window (`campaign_ended`); the
//! campaign rewards the event type (`event_type_not_rewarded`); then, atomically in the store,
//! once per event id and under the code's conversion cap (`conversion_cap_reached`).
//!
//! Events may arrive in any order: `funded` before `account_opened`, or an older event after a
//! newer one, are each counted on their own.
//!
//! A rejection is not stored: the same event sent again is evaluated again (a future event may
//! be accepted once its time has come). Before answering a rejection that depends on
//! configuration or time, the store is asked whether the event id was counted before, so a
//! counted event keeps replaying its first outcome even after the campaign changed. A replayed
//! event id whose body differs from the first is answered with the first outcome as well, and
//! logged.
//!
//! Durability is the store's: `record_event` returns after the event and its counters are
//! durable (embedded: fsync; Redis: as configured).

use serde::Serialize;

use gateway_core::referral::ReferralCode;
use gateway_core::time::{UnixTime, parse_rfc3339};
use gateway_core::{CampaignId, CustomerId, PartnerId, Problem, ProblemType};
use gateway_store::{EventOutcome, ReferralEvent, ReferralStore, StoreError};

use crate::body::{self, BodyError, Reader, rfc3339};
use crate::campaign::{Campaigns, EventType, Reward};

/// Longest `event_id`, in characters.
pub const MAX_EVENT_ID_LEN: usize = 128;

/// How far ahead of the gateway's clock `occurred_at` may be (clock skew between services).
pub const FUTURE_TOLERANCE_SECS: i64 = 60;

/// `POST /admin/v1/referral-events` body.
///
/// ```json
/// {"event_id": "evt-1", "code": "7K3M-Q9TD-X2PA-HV5R-J", "event_type": "account_opened",
///  "occurred_at": "2026-12-01T10:00:00Z", "customer_id": "C000002"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRequest {
    /// The reporter's id for the event: 1 to 128 visible ASCII characters.
    pub event_id: String,
    /// The code as reported (checked by [`record_event`], so a bad one is `unknown_code`).
    pub code: String,
    /// What happened.
    pub event_type: EventType,
    /// When it happened.
    pub occurred_at: UnixTime,
    /// The referred customer (internal id).
    pub customer_id: CustomerId,
}

/// A counted event: the 201 body, and the 200 body of every replay.
///
/// ```json
/// {"event_id": "evt-1", "status": "counted", "code": "7K3M-Q9TD-X2PA-HV5R-J",
///  "campaign_id": "spring-referral-2027", "partner_id": "demo-bank",
///  "event_type": "account_opened", "occurred_at": "2026-12-01T10:00:00Z",
///  "customer_id": "C000002", "reward": {"amount_minor": 5000, "currency": "CNY"}}
/// ```
///
/// Built only from what the store keeps of the first event, so a replay answers the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conversion {
    /// The event id.
    pub event_id: String,
    /// Always `counted`.
    pub status: &'static str,
    /// The code it was counted for.
    pub code: String,
    /// The code's campaign.
    pub campaign_id: CampaignId,
    /// The partner that issued the code.
    pub partner_id: PartnerId,
    /// What happened.
    pub event_type: String,
    /// When it happened.
    #[serde(with = "rfc3339")]
    pub occurred_at: UnixTime,
    /// The referred customer (internal id; this is an admin answer).
    pub customer_id: CustomerId,
    /// The reward credited.
    pub reward: Reward,
}

/// An accepted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Counted now (201).
    Created(Conversion),
    /// Counted before under this event id; the first outcome (200).
    Replayed(Conversion),
}

/// Why an event is not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The code is malformed, fails its check symbol, or was never issued.
    UnknownCode,
    /// `occurred_at` lies outside the campaign window (or the campaign is gone).
    CampaignEnded,
    /// The campaign has no reward for this event type.
    EventTypeNotRewarded,
    /// The code counted its campaign's `conversions_per_code` already.
    ConversionCapReached,
    /// `occurred_at` is more than [`FUTURE_TOLERANCE_SECS`] after now.
    OccurredInFuture,
}

/// Why [`record_event`] did not accept an event.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Refused for a reason the reporter can act on (422).
    #[error("referral event rejected: {}", .0.as_str())]
    Rejected(RejectReason),
    /// The store failed; nothing was counted unless a retry finds a replay.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records one conversion event; see the module docs for the checks and outcomes.
pub async fn record_event<S: ReferralStore>(
    store: &S,
    request: &EventRequest,
    campaigns: &Campaigns,
    now: UnixTime,
) -> Result<Recorded, EventError> {
    let reject = |reason| Err(EventError::Rejected(reason));
    let Some(code) = ReferralCode::parse(&request.code) else {
        return reject(RejectReason::UnknownCode);
    };
    let Some(record) = store.code(code.as_str()).await? else {
        return reject(RejectReason::UnknownCode);
    };
    let mut event = ReferralEvent {
        event_id: request.event_id.clone(),
        code: code.as_str().to_owned(),
        event_type: request.event_type.as_str().to_owned(),
        occurred_at: request.occurred_at,
        customer_id: request.customer_id.clone(),
        reward_minor: 0,
        currency: String::new(),
    };

    let rules = campaigns.get(&record.campaign_id);
    let refusal = match rules {
        None => Some(RejectReason::CampaignEnded),
        Some(_) if request.occurred_at.0 > now.0.saturating_add(FUTURE_TOLERANCE_SECS) => {
            Some(RejectReason::OccurredInFuture)
        }
        Some(rules) if !rules.is_active_at(request.occurred_at) => {
            Some(RejectReason::CampaignEnded)
        }
        Some(rules) => match rules.rewards.get(&request.event_type) {
            None => Some(RejectReason::EventTypeNotRewarded),
            Some(reward) => {
                event.reward_minor = reward.amount_minor;
                event.currency.clone_from(&reward.currency);
                None
            }
        },
    };
    // A cap of 0 stores nothing: the store answers a replay if the id was counted before, and
    // `CapReached` otherwise, which then means "refuse for the reason found above".
    let cap = match (refusal, rules) {
        (None, Some(rules)) => rules.conversions_per_code,
        _ => 0,
    };
    match store.record_event(event.clone(), cap).await? {
        EventOutcome::Counted { .. } => Ok(Recorded::Created(Conversion::from_stored(
            event,
            record.campaign_id,
            record.partner_id,
        ))),
        EventOutcome::Replay(first) => {
            if !same_event(&first, request, code.as_str()) {
                tracing::warn!(
                    event_id = %first.event_id,
                    "Referral event id replayed with a different body; answering with the first outcome."
                );
            }
            let (campaign_id, partner_id) = if first.code == record.code {
                (record.campaign_id, record.partner_id)
            } else {
                match store.code(&first.code).await? {
                    Some(other) => (other.campaign_id, other.partner_id),
                    None => {
                        return Err(EventError::Store(StoreError::Corrupt {
                            key: format!("event:{}", first.event_id),
                            reason: "counted for a code the store does not know".to_owned(),
                        }));
                    }
                }
            };
            Ok(Recorded::Replayed(Conversion::from_stored(
                first,
                campaign_id,
                partner_id,
            )))
        }
        EventOutcome::CapReached => reject(refusal.unwrap_or(RejectReason::ConversionCapReached)),
        EventOutcome::UnknownCode => reject(RejectReason::UnknownCode),
    }
}

// === impl EventRequest ===

impl EventRequest {
    /// Parses and checks a body against `schemas/referral-event.schema.json`, reporting every
    /// violation. The code's own syntax is checked by [`record_event`] (`unknown_code`).
    pub fn from_json(body: &[u8]) -> Result<EventRequest, BodyError> {
        let mut r = Reader::new(
            body,
            &[
                "event_id",
                "code",
                "event_type",
                "occurred_at",
                "customer_id",
            ],
        )?;
        let event_id = r.required("event_id", 1, MAX_EVENT_ID_LEN, |s| {
            if s.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
                Ok(())
            } else {
                Err("must be visible ASCII characters")
            }
        });
        let code = r.required("code", 1, 64, body::any);
        let event_type = r
            .required("event_type", 1, 32, |s| {
                EventType::parse(s)
                    .map(drop)
                    .ok_or("must be one of account_opened, funded, first_trade")
            })
            .and_then(|s| EventType::parse(&s));
        let occurred_at = r
            .required("occurred_at", 1, 64, |s| {
                parse_rfc3339(s)
                    .map(drop)
                    .ok_or("must be an RFC 3339 date-time, e.g. 2026-12-01T10:00:00Z")
            })
            .and_then(|s| parse_rfc3339(&s));
        let customer_id = r
            .required("customer_id", 1, 64, |s| {
                CustomerId::parse(s)
                    .map(drop)
                    .map_err(|_| "must be a customer id: letters, digits, '-', '_' or '.'")
            })
            .and_then(|s| CustomerId::parse(&s).ok());
        r.finish()?;
        match (event_id, code, event_type, occurred_at, customer_id) {
            (
                Some(event_id),
                Some(code),
                Some(event_type),
                Some(occurred_at),
                Some(customer_id),
            ) => Ok(EventRequest {
                event_id,
                code,
                event_type,
                occurred_at,
                customer_id,
            }),
            // Unreachable: `finish` reports every member that failed.
            _ => Err(BodyError::Invalid(vec![body::violation(
                "",
                "incomplete event",
            )])),
        }
    }
}

// === impl Recorded ===

impl Recorded {
    /// 201 for a new count, 200 for a replay.
    pub fn status(&self) -> u16 {
        match self {
            Recorded::Created(_) => 201,
            Recorded::Replayed(_) => 200,
        }
    }

    /// The outcome.
    pub fn conversion(&self) -> &Conversion {
        match self {
            Recorded::Created(c) | Recorded::Replayed(c) => c,
        }
    }

    /// The response body (identical for the first answer and every replay).
    pub fn body(&self) -> Vec<u8> {
        crate::to_body(self.conversion())
    }
}

// === impl Conversion ===

impl Conversion {
    fn from_stored(first: ReferralEvent, campaign_id: CampaignId, partner_id: PartnerId) -> Self {
        Conversion {
            event_id: first.event_id,
            status: "counted",
            code: first.code,
            campaign_id,
            partner_id,
            event_type: first.event_type,
            occurred_at: first.occurred_at,
            customer_id: first.customer_id,
            reward: Reward {
                amount_minor: first.reward_minor,
                currency: first.currency,
            },
        }
    }
}

// === impl RejectReason ===

impl RejectReason {
    /// The wire name, as in the problem's `reason` member.
    pub const fn as_str(self) -> &'static str {
        match self {
            RejectReason::UnknownCode => "unknown_code",
            RejectReason::CampaignEnded => "campaign_ended",
            RejectReason::EventTypeNotRewarded => "event_type_not_rewarded",
            RejectReason::ConversionCapReached => "conversion_cap_reached",
            RejectReason::OccurredInFuture => "occurred_in_future",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            RejectReason::UnknownCode => "no referral code was issued with this spelling",
            RejectReason::CampaignEnded => "occurred_at lies outside the campaign window",
            RejectReason::EventTypeNotRewarded => "the campaign does not reward this event type",
            RejectReason::ConversionCapReached => "the code has counted its maximum of events",
            RejectReason::OccurredInFuture => "occurred_at lies in the future",
        }
    }
}

// === impl EventError ===

impl EventError {
    /// The problem to answer with (422 `referral-event-rejected` with a `reason` member), or
    /// `None` for a store failure, which travels to the rescue layer instead.
    pub fn problem(&self) -> Option<Problem> {
        match self {
            EventError::Rejected(reason) => Some(
                Problem::new(ProblemType::ReferralEventRejected)
                    .with_detail(reason.detail())
                    .with_extension("reason", reason.as_str().into()),
            ),
            EventError::Store(_) => None,
        }
    }
}

// === helpers ===

fn same_event(first: &ReferralEvent, request: &EventRequest, code: &str) -> bool {
    first.code == code
        && first.event_type == request.event_type.as_str()
        && first.occurred_at == request.occurred_at
        && first.customer_id == request.customer_id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_bodies_parse_and_report_every_violation() {
        let ok = br#"{"event_id":"e-1","code":"x","event_type":"funded",
                      "occurred_at":"2026-12-01T10:00:00+08:00","customer_id":"C000002"}"#;
        let event = EventRequest::from_json(ok).unwrap();
        assert_eq!(event.event_type, EventType::Funded);
        assert_eq!(
            event.occurred_at,
            parse_rfc3339("2026-12-01T02:00:00Z").unwrap()
        );

        let bad = format!(
            r#"{{"event_id":"{}","event_type":"opened","occurred_at":"yesterday",
                "customer_id":"C 1","more":1}}"#,
            "e".repeat(129)
        );
        let Err(BodyError::Invalid(v)) = EventRequest::from_json(bad.as_bytes()) else {
            panic!("expected violations");
        };
        let pointers: Vec<&str> = v.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/code",
                "/customer_id",
                "/event_id",
                "/event_type",
                "/more",
                "/occurred_at"
            ]
        );
    }

    #[test]
    fn rejections_become_422_with_a_reason() {
        let problem = EventError::Rejected(RejectReason::ConversionCapReached)
            .problem()
            .unwrap();
        assert_eq!(problem.kind, ProblemType::ReferralEventRejected);
        assert_eq!(problem.status().as_u16(), 422);
        assert_eq!(
            problem.extensions,
            vec![("reason", "conversion_cap_reached".into())]
        );
    }
}
