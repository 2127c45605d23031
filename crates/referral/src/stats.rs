//! Campaign totals for one partner (`GET /v1/campaigns/{campaign_id}/stats`).
//!
//! The counters are kept by the store, updated in the same atomic step that counts an event or
//! issues a code, so they are exact under concurrent intake from any number of instances.

use std::collections::BTreeMap;

use serde::Serialize;

use gateway_core::time::UnixTime;
use gateway_core::{CampaignId, PartnerId};
use gateway_store::{ReferralStore, StoreError};

use crate::body::rfc3339;
use crate::campaign::{CampaignState, Campaigns};
use crate::codes::by_type;

/// What `GET /v1/campaigns/{campaign_id}/stats` answers: this partner's codes only.
///
/// ```json
/// {"campaign_id": "spring-referral-2027", "status": "active",
///  "starts_at": "2026-11-01T00:00:00Z", "ends_at": "2027-06-30T23:59:59Z",
///  "codes_issued": 1, "conversions": {"account_opened": 1, "first_trade": 0, "funded": 0},
///  "rewards": {"CNY": 5000}}
/// ```
///
/// `conversions` lists every event type; `rewards` maps each currency to its total in minor
/// units, and is empty before the first conversion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CampaignStatsView {
    /// The campaign.
    pub campaign_id: CampaignId,
    /// `scheduled`, `active` or `ended`.
    pub status: CampaignState,
    /// Its start.
    #[serde(with = "rfc3339")]
    pub starts_at: UnixTime,
    /// Its end.
    #[serde(with = "rfc3339")]
    pub ends_at: UnixTime,
    /// Codes this partner issued.
    pub codes_issued: u64,
    /// Events counted for them, by type.
    pub conversions: BTreeMap<String, u64>,
    /// Rewards credited for them: currency → total in minor units.
    pub rewards: BTreeMap<String, u64>,
}

/// The totals of `partner`'s codes in `campaign`, or `None` when the id is malformed, the
/// campaign is unknown or the partner does not take part (answer 404 `campaign-not-found`).
pub async fn campaign_stats<S: ReferralStore>(
    store: &S,
    partner: &PartnerId,
    campaign: &str,
    campaigns: &Campaigns,
    now: UnixTime,
) -> Result<Option<CampaignStatsView>, StoreError> {
    let Ok(id) = CampaignId::parse(campaign) else {
        return Ok(None);
    };
    let Some(rules) = campaigns.for_partner(&id, partner) else {
        return Ok(None);
    };
    let stats = store.campaign_stats(&id, partner).await?;
    Ok(Some(CampaignStatsView {
        campaign_id: id,
        status: rules.state_at(now),
        starts_at: rules.starts_at,
        ends_at: rules.ends_at,
        codes_issued: stats.codes_issued,
        conversions: by_type(stats.conversions),
        rewards: stats.rewards_minor,
    }))
}

impl CampaignStatsView {
    /// The response body.
    pub fn body(&self) -> Vec<u8> {
        crate::to_body(self)
    }
}
