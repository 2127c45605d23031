//! Fixtures shared by the referral suites: both store backends, sample campaigns, builders.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use gateway_core::referral::ReferralCode;
use gateway_core::time::{UnixTime, parse_rfc3339};
use gateway_core::{CampaignId, CustomerId, PartnerId};
use gateway_referral::{
    CampaignRules, Campaigns, EventRequest, EventType, IdempotencyKey, IssueRequest, Reward,
};
use gateway_store::{CampaignStats, ReferralStore, Store, StoreConfig};
use gateway_testutil::RedisServer;

/// "Now" in every scenario: inside the sample campaign, injected, never the wall clock.
pub fn now() -> UnixTime {
    at("2026-12-01T10:00:00Z")
}

pub fn at(text: &str) -> UnixTime {
    parse_rfc3339(text).unwrap()
}

pub const SPRING: &str = "spring-referral-2027";
pub const AUTUMN: &str = "autumn-funds-2026";
pub const OVER: &str = "summer-2026";

/// Bound on one store operation: generous, because tests share 2 busy cores.
const TIMEOUT: Duration = Duration::from_secs(3);

/// One backend; hands out several store instances sharing its state.
pub enum Backend {
    /// A redb file in a temp dir; instances are clones of one open store (one process opens a
    /// file once).
    Embedded {
        store: Option<Store>,
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    /// A `redis-server` of this test's own; each instance is a separate `Store::open`.
    Redis { server: RedisServer },
}

impl Backend {
    pub async fn embedded() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let store = open_embedded(path.clone()).await;
        Backend::Embedded {
            store: Some(store),
            path,
            _dir: dir,
        }
    }

    pub async fn redis() -> Backend {
        Backend::Redis {
            server: RedisServer::start(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded { .. } => "embedded",
            Backend::Redis { .. } => "redis",
        }
    }

    /// A store instance sharing this backend's state.
    pub async fn store(&self) -> Store {
        match self {
            Backend::Embedded { store, .. } => store.clone().expect("the store is open"),
            Backend::Redis { server } => Store::open(StoreConfig::Redis {
                urls: vec![server.url()],
                cluster: false,
                timeout: TIMEOUT,
                key_prefix: "pgw-referral-test:".to_owned(),
            })
            .await
            .unwrap(),
        }
    }

    /// `n` instances.
    pub async fn stores(&self, n: usize) -> Vec<Store> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.store().await);
        }
        out
    }

    /// Embedded only: closes the file (every clone handed out must be dropped first) and opens
    /// it again, as a restarted gateway would.
    pub async fn reopen(&mut self) {
        if let Backend::Embedded { store, path, .. } = self {
            drop(store.take());
            *store = Some(open_embedded(path.clone()).await);
        }
    }
}

async fn open_embedded(path: PathBuf) -> Store {
    Store::open(StoreConfig::Embedded { path }).await.unwrap()
}

/// Runs a scenario against both backends, as two tests.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::embedded().await).await;
                }
            )+
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::redis().await).await;
                }
            )+
        }
    };
}

// === campaigns ===

pub fn partner(id: &str) -> PartnerId {
    PartnerId::parse(id).unwrap()
}

pub fn bank() -> PartnerId {
    partner("demo-bank")
}

pub fn fund() -> PartnerId {
    partner("demo-fund")
}

pub fn insurer() -> PartnerId {
    partner("demo-insurer")
}

pub fn campaign(id: &str) -> CampaignId {
    CampaignId::parse(id).unwrap()
}

pub fn cny(amount_minor: u64) -> Reward {
    Reward {
        amount_minor,
        currency: "CNY".to_owned(),
    }
}

/// The sample campaign of `partner-config/campaigns/`, with caps the scenario picks.
pub fn spring(codes_per_day: u32, conversions_per_code: u32) -> CampaignRules {
    CampaignRules {
        id: campaign(SPRING),
        starts_at: at("2026-11-01T00:00:00Z"),
        ends_at: at("2027-06-30T23:59:59Z"),
        partners: [bank(), fund()].into(),
        rewards: BTreeMap::from([
            (EventType::AccountOpened, cny(5000)),
            (EventType::Funded, cny(10000)),
            (EventType::FirstTrade, cny(2000)),
        ]),
        codes_per_partner_per_day: codes_per_day,
        conversions_per_code,
    }
}

/// A second running campaign that rewards only `funded`, in HKD, for demo-bank.
pub fn autumn() -> CampaignRules {
    CampaignRules {
        id: campaign(AUTUMN),
        starts_at: at("2026-09-01T00:00:00Z"),
        ends_at: at("2027-01-01T00:00:00Z"),
        partners: [bank()].into(),
        rewards: BTreeMap::from([(
            EventType::Funded,
            Reward {
                amount_minor: 700,
                currency: "HKD".to_owned(),
            },
        )]),
        codes_per_partner_per_day: 100,
        conversions_per_code: 100,
    }
}

/// A campaign that ended before `now()`.
pub fn over() -> CampaignRules {
    CampaignRules {
        id: campaign(OVER),
        starts_at: at("2026-06-01T00:00:00Z"),
        ends_at: at("2026-09-01T00:00:00Z"),
        partners: [bank()].into(),
        rewards: BTreeMap::from([(EventType::AccountOpened, cny(1))]),
        codes_per_partner_per_day: 100,
        conversions_per_code: 100,
    }
}

pub fn campaigns(spring: CampaignRules) -> Campaigns {
    Campaigns::new([spring, autumn(), over()])
}

// === requests ===

pub fn request(campaign_id: &str) -> IssueRequest {
    IssueRequest::new(campaign(campaign_id), None, None).unwrap()
}

pub fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::parse(text).unwrap()
}

pub fn event(id: &str, code: &str, event_type: EventType, occurred_at: UnixTime) -> EventRequest {
    EventRequest {
        event_id: id.to_owned(),
        code: code.to_owned(),
        event_type,
        occurred_at,
        customer_id: CustomerId::parse("C000002").unwrap(),
    }
}

/// A well-formed code that was never issued.
pub fn unissued_code() -> String {
    ReferralCode::from_random([7; 10]).to_string()
}

pub async fn stats(store: &Store, campaign_id: &str, partner: &PartnerId) -> CampaignStats {
    store
        .campaign_stats(&campaign(campaign_id), partner)
        .await
        .unwrap()
}

pub fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}
