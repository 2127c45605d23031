//! Fixtures and record builders shared by the store tests.

pub(crate) mod suite;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use gateway_core::time::UnixTime;
use gateway_core::{CampaignId, ConsentId, CustomerId, CustomerRef, PartnerId};
use gateway_store::{
    Change, CodeRecord, ConsentRecord, ConsentStatus, Disclosure, ReferralEvent, Store, StoreConfig,
};
use gateway_testutil::{RedisServer, free_port};
use tokio::sync::broadcast;

/// "Now" for every scenario: an injected time, never the wall clock.
pub(crate) const NOW: UnixTime = UnixTime(1_800_000_000);

/// Operation bound for the behavioural suite: generous, because tests share 2 busy cores.
pub(crate) const SUITE_TIMEOUT: Duration = Duration::from_secs(2);

/// One backend under test, able to hand out several store instances sharing its state.
pub(crate) enum Fixture {
    /// A redb file in a temp dir; "instances" are clones of one open store (one process may
    /// open a file once).
    Embedded {
        store: Store,
        _dir: tempfile::TempDir,
    },
    /// A `redis-server` of our own; each instance is a separate `Store::open`.
    Redis { server: RedisServer },
    /// A cluster owned by the caller; `prefix` keeps scenarios apart.
    Cluster { urls: Vec<String>, prefix: String },
}

impl Fixture {
    pub(crate) async fn embedded() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let store = Store::open(StoreConfig::Embedded { path }).await.unwrap();
        Fixture::Embedded { store, _dir: dir }
    }

    pub(crate) async fn redis() -> Fixture {
        Fixture::Redis {
            server: RedisServer::start(),
        }
    }

    pub(crate) fn cluster(cluster: &Cluster, prefix: &str) -> Fixture {
        Fixture::Cluster {
            urls: cluster.urls(),
            prefix: prefix.to_owned(),
        }
    }

    /// `n` instances sharing this backend's state, each subscribed to changes.
    pub(crate) async fn stores(&self, n: usize) -> Vec<Store> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let store = match self {
                Fixture::Embedded { store, .. } => store.clone(),
                Fixture::Redis { server } => {
                    open_redis(vec![server.url()], false, "pgw-test:", SUITE_TIMEOUT).await
                }
                Fixture::Cluster { urls, prefix } => {
                    open_redis(urls.clone(), true, prefix, SUITE_TIMEOUT).await
                }
            };
            wait_until(Duration::from_secs(10), || store.is_subscribed()).await;
            out.push(store);
        }
        out
    }
}

pub(crate) async fn open_redis(
    urls: Vec<String>,
    cluster: bool,
    prefix: &str,
    timeout: Duration,
) -> Store {
    Store::open(StoreConfig::Redis {
        urls,
        cluster,
        timeout,
        key_prefix: prefix.to_owned(),
    })
    .await
    .unwrap()
}

/// Polls `condition` until it holds; panics at the deadline.
pub(crate) async fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !condition() {
        assert!(
            Instant::now() < end,
            "condition not met within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The next change that is not a `Resync`, within `deadline`.
pub(crate) async fn next_change(
    rx: &mut broadcast::Receiver<Change>,
    deadline: Duration,
) -> Change {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Ok(Change::Resync)) => continue,
            Ok(Ok(change)) => return change,
            Ok(Err(e)) => panic!("change receiver failed: {e}"),
            Err(_) => panic!("no change within {deadline:?}"),
        }
    }
}

/// Waits for a `Resync`, skipping other changes.
pub(crate) async fn expect_resync(rx: &mut broadcast::Receiver<Change>, deadline: Duration) {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Ok(Change::Resync)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => return,
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => panic!("change receiver failed: {e}"),
            Err(_) => panic!("no Resync within {deadline:?}"),
        }
    }
}

// === records ===

pub(crate) fn customer(id: &str) -> CustomerId {
    CustomerId::parse(id).unwrap()
}

pub(crate) fn partner(id: &str) -> PartnerId {
    PartnerId::parse(id).unwrap()
}

pub(crate) fn campaign(id: &str) -> CampaignId {
    CampaignId::parse(id).unwrap()
}

/// A stand-in for the HMAC pairwise ref: distinct per (customer, partner), 43 URL-safe chars.
pub(crate) fn pairwise(customer: &str, partner: &str) -> CustomerRef {
    let text: String = format!("{customer}_{partner}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .chain(std::iter::repeat('A'))
        .take(43)
        .collect();
    CustomerRef::parse(&text).unwrap()
}

pub(crate) fn grant_of(
    id: &str,
    customer_id: &str,
    partner_id: &str,
    purpose: &str,
) -> ConsentRecord {
    ConsentRecord {
        consent_id: ConsentId::parse(id).unwrap(),
        customer_id: customer(customer_id),
        partner_id: partner(partner_id),
        customer_ref: pairwise(customer_id, partner_id),
        purpose: purpose.to_owned(),
        fields: BTreeMap::from([
            ("risk_segment".to_owned(), Disclosure::Plain),
            ("mobile".to_owned(), Disclosure::Masked),
        ]),
        granted_at: NOW,
        expires_at: UnixTime(NOW.0 + 90 * 86_400),
        second_authorisation: false,
        status: ConsentStatus::Active,
    }
}

pub(crate) fn code_of(
    code: &str,
    partner_id: &str,
    campaign_id: &str,
    issued_at: UnixTime,
) -> CodeRecord {
    CodeRecord {
        code: code.to_owned(),
        partner_id: partner(partner_id),
        campaign_id: campaign(campaign_id),
        channel: Some("app".to_owned()),
        note: None,
        issued_at,
    }
}

pub(crate) fn event_of(
    event_id: &str,
    code: &str,
    event_type: &str,
    reward_minor: u64,
) -> ReferralEvent {
    ReferralEvent {
        event_id: event_id.to_owned(),
        code: code.to_owned(),
        event_type: event_type.to_owned(),
        occurred_at: NOW,
        customer_id: customer("C900001"),
        reward_minor,
        currency: "CNY".to_owned(),
    }
}

// === a Redis Cluster of our own ===

/// Three `redis-server --cluster-enabled yes` nodes joined with `redis-cli --cluster create`,
/// all slots assigned. Killed by pid when dropped (the `RedisServer` guards).
pub(crate) struct Cluster {
    nodes: Vec<RedisServer>,
}

impl Cluster {
    /// `None` (with the reason) when `redis-cli` is not installed.
    pub(crate) fn start() -> Result<Cluster, String> {
        if Command::new("redis-cli").arg("--version").output().is_err() {
            return Err("redis-cli is not installed".to_owned());
        }
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                // The bus port defaults to port + 10000, which may be taken or out of range.
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&out.stdout)
            ));
        }
        let cluster = Cluster { nodes };
        let end = Instant::now() + Duration::from_secs(20);
        while !cluster.ready() {
            if Instant::now() > end {
                return Err("cluster did not reach cluster_state:ok".to_owned());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(cluster)
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Every node says the cluster is ok and knows all three nodes.
    fn ready(&self) -> bool {
        self.nodes.iter().all(|n| {
            let Ok(client) = redis::Client::open(n.url()) else {
                return false;
            };
            let Ok(mut con) = client.get_connection() else {
                return false;
            };
            let Ok(info) = redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut con) else {
                return false;
            };
            info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
        })
    }
}
