//! Campaign rules as the referral logic reads them.
//!
//! These mirror `gateway_config::Campaign` field for field without depending on the config
//! crate: the integrator converts each configured campaign once per (re)load into a
//! [`CampaignRules`] and keeps the set as a [`Campaigns`] next to the running configuration.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use gateway_core::time::UnixTime;
use gateway_core::{CampaignId, PartnerId};

/// Events the referral programme counts (mirrors `gateway_config::ReferralEventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// `account_opened`: the referred customer opened an account.
    AccountOpened,
    /// `funded`: the new account received its first deposit.
    Funded,
    /// `first_trade`: the customer traded for the first time.
    FirstTrade,
}

impl EventType {
    /// Every event type, in wire order.
    pub const ALL: [EventType; 3] = [
        EventType::AccountOpened,
        EventType::Funded,
        EventType::FirstTrade,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventType::AccountOpened => "account_opened",
            EventType::Funded => "funded",
            EventType::FirstTrade => "first_trade",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reward credited for one counted event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    /// Amount in minor units (fen for CNY).
    pub amount_minor: u64,
    /// ISO 4217 currency code, e.g. `CNY`.
    pub currency: String,
}

/// The rules of one referral campaign (`partner-config/campaigns/<id>.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CampaignRules {
    /// Its id.
    pub id: CampaignId,
    /// First instant codes may be issued and events counted.
    pub starts_at: UnixTime,
    /// First instant nothing is issued or counted any more (the window is
    /// `starts_at <= t < ends_at`, as `gateway_config::Campaign::is_active_at`).
    pub ends_at: UnixTime,
    /// Partners taking part. Pass the partners that both list the campaign and are listed by
    /// it (the config cross-check makes the two agree).
    pub partners: BTreeSet<PartnerId>,
    /// Reward per event type; an event type without a reward is not counted.
    pub rewards: BTreeMap<EventType, Reward>,
    /// Codes one partner may issue per UTC day.
    pub codes_per_partner_per_day: u32,
    /// Events one code may count, all types together.
    pub conversions_per_code: u32,
}

/// Where a campaign is in its life at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignState {
    /// Before `starts_at`.
    Scheduled,
    /// Inside the window.
    Active,
    /// At or after `ends_at`.
    Ended,
}

impl CampaignRules {
    /// Whether `t` lies inside the campaign window.
    pub fn is_active_at(&self, t: UnixTime) -> bool {
        self.starts_at <= t && t < self.ends_at
    }

    /// The campaign's state at `now`.
    pub fn state_at(&self, now: UnixTime) -> CampaignState {
        if now < self.starts_at {
            CampaignState::Scheduled
        } else if now < self.ends_at {
            CampaignState::Active
        } else {
            CampaignState::Ended
        }
    }

    /// Whether `partner` takes part.
    pub fn includes(&self, partner: &PartnerId) -> bool {
        self.partners.contains(partner)
    }
}

/// Every configured campaign, by id. Build it once per configuration (re)load.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Campaigns {
    by_id: BTreeMap<CampaignId, CampaignRules>,
}

impl Campaigns {
    /// A set of campaigns; a later duplicate id replaces an earlier one.
    pub fn new(rules: impl IntoIterator<Item = CampaignRules>) -> Campaigns {
        rules.into_iter().collect()
    }

    /// A campaign by id.
    pub fn get(&self, id: &CampaignId) -> Option<&CampaignRules> {
        self.by_id.get(id)
    }

    /// A campaign by id, only if `partner` takes part: what a partner may see of campaigns.
    pub fn for_partner(&self, id: &CampaignId, partner: &PartnerId) -> Option<&CampaignRules> {
        self.get(id).filter(|c| c.includes(partner))
    }

    /// How many campaigns there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

impl FromIterator<CampaignRules> for Campaigns {
    fn from_iter<I: IntoIterator<Item = CampaignRules>>(iter: I) -> Campaigns {
        Campaigns {
            by_id: iter.into_iter().map(|c| (c.id.clone(), c)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> CampaignRules {
        CampaignRules {
            id: CampaignId::parse("spring").unwrap(),
            starts_at: UnixTime(100),
            ends_at: UnixTime(200),
            partners: [PartnerId::parse("demo-bank").unwrap()].into(),
            rewards: BTreeMap::new(),
            codes_per_partner_per_day: 1,
            conversions_per_code: 1,
        }
    }

    #[test]
    fn the_window_includes_its_start_and_excludes_its_end() {
        let c = rules();
        assert!(!c.is_active_at(UnixTime(99)));
        assert!(c.is_active_at(UnixTime(100)));
        assert!(c.is_active_at(UnixTime(199)));
        assert!(!c.is_active_at(UnixTime(200)));
        assert_eq!(c.state_at(UnixTime(99)), CampaignState::Scheduled);
        assert_eq!(c.state_at(UnixTime(150)), CampaignState::Active);
        assert_eq!(c.state_at(UnixTime(200)), CampaignState::Ended);
    }

    #[test]
    fn partners_outside_a_campaign_do_not_find_it() {
        let campaigns = Campaigns::new([rules()]);
        let id = CampaignId::parse("spring").unwrap();
        let bank = PartnerId::parse("demo-bank").unwrap();
        let insurer = PartnerId::parse("demo-insurer").unwrap();
        assert!(campaigns.for_partner(&id, &bank).is_some());
        assert!(campaigns.for_partner(&id, &insurer).is_none());
        let other = CampaignId::parse("autumn").unwrap();
        assert!(campaigns.for_partner(&other, &bank).is_none());
    }

    #[test]
    fn event_type_names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }
        assert_eq!(EventType::parse("Account_Opened"), None);
    }
}
