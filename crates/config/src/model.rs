//! The typed configuration: what the rest of the gateway reads.
//!
//! Every value here passed the JSON Schema and the cross-checks: rates are non-zero, scopes and
//! routes are enums, fingerprints are parsed, referenced partners, campaigns and fields exist,
//! and paths are absolute (resolved against the configuration directory).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gateway_core::context::Fingerprint;
use gateway_core::fields::FieldCatalogue;
use gateway_core::partner::{PartnerKind, PartnerStatus};
use gateway_core::route::Route;
use gateway_core::scope::ScopeSet;
use gateway_core::time::UnixTime;
use gateway_core::{CampaignId, ClientId, PartnerId};

/// The whole configuration: `gateway.yaml`, every partner file and every campaign file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The configuration directory it was loaded from.
    pub dir: PathBuf,
    /// `gateway.yaml`.
    pub gateway: GatewaySettings,
    /// `partners/<id>.yaml`, by id.
    pub partners: BTreeMap<PartnerId, Arc<Partner>>,
    /// `campaigns/<id>.yaml`, by id.
    pub campaigns: BTreeMap<CampaignId, Arc<Campaign>>,
    /// Index: certificate fingerprint → partner (pins are unique across partners).
    pub pins: HashMap<Fingerprint, PartnerId>,
    /// Index: certificate subject (RFC 4514) → partner (unique across partners).
    pub subjects: HashMap<String, PartnerId>,
    /// Index: OAuth client id → partner (unique across partners).
    pub clients: HashMap<ClientId, PartnerId>,
}

impl Config {
    /// The partner a verified client certificate belongs to: by fingerprint first, then by
    /// subject.
    pub fn partner_for_certificate(
        &self,
        fingerprint: &Fingerprint,
        subject: &str,
    ) -> Option<&Arc<Partner>> {
        let id = self
            .pins
            .get(fingerprint)
            .or_else(|| self.subjects.get(subject))?;
        self.partners.get(id)
    }

    /// The partner an OAuth client id belongs to.
    pub fn partner_for_client(&self, client_id: &ClientId) -> Option<&Arc<Partner>> {
        self.partners.get(self.clients.get(client_id)?)
    }

    /// A partner by id.
    pub fn partner(&self, id: &PartnerId) -> Option<&Arc<Partner>> {
        self.partners.get(id)
    }

    /// A campaign by id.
    pub fn campaign(&self, id: &CampaignId) -> Option<&Arc<Campaign>> {
        self.campaigns.get(id)
    }
}

/// `gateway.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewaySettings {
    /// This instance's name in logs, metrics and audit records.
    pub instance_id: String,
    /// The mTLS partner listener.
    pub partner_listener: PartnerListener,
    /// The internal admin listener.
    pub admin_listener: AdminListener,
    /// The broker's internal services.
    pub upstreams: Upstreams,
    /// Limits that protect the gateway itself.
    pub http: HttpLimits,
    /// The authorization server side.
    pub oauth: OAuthSettings,
    /// Where shared state lives.
    pub store: StoreSettings,
    /// Consent caching and pairwise references.
    pub consent: ConsentSettings,
    /// The audit trail.
    pub audit: AuditSettings,
    /// Cluster rate limiting.
    pub rate_limits: RateLimitSettings,
    /// Traces, metrics, logs export.
    pub telemetry: TelemetrySettings,
    /// The field catalogue with sensitivity tiers.
    pub fields: FieldCatalogue,
}

/// The partner listener.
#[derive(Debug, Clone, PartialEq)]
pub struct PartnerListener {
    /// Where to listen (`--partner-addr` overrides).
    pub addr: SocketAddr,
    /// Server certificate chain (PEM).
    pub server_cert: PathBuf,
    /// Server private key (PEM).
    pub server_key: PathBuf,
    /// CA bundle that partner client certificates must chain to (PEM).
    pub client_ca: PathBuf,
    /// Lowest TLS version accepted.
    pub min_tls_version: TlsVersion,
}

/// A TLS protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2 (BCP 195 ECDHE+AEAD suites only).
    Tls12,
    /// TLS 1.3.
    Tls13,
}

/// The admin listener.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminListener {
    /// Where to listen (`--admin-addr` overrides); loopback by default.
    pub addr: SocketAddr,
    /// File holding the admin bearer token.
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the admin bearer token (checked when no file is set).
    pub token_env: Option<String>,
}

/// Base URLs of the internal services.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstreams {
    /// CRM tag service.
    pub tags: UpstreamUrl,
    /// Product catalogue.
    pub products: UpstreamUrl,
    /// Referral and account-opening service.
    pub referrals: UpstreamUrl,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (to the end of the response head).
    pub request_timeout: Duration,
    /// Idle pooled connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
}

/// A plain-HTTP upstream base URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// As written, e.g. `http://127.0.0.1:8600/crm`.
    pub url: String,
    /// `host:port`.
    pub authority: String,
    /// The path prefix without a trailing `/` (empty for none).
    pub path_prefix: String,
}

/// Protection of the gateway itself.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpLimits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Deepest JSON nesting accepted.
    pub max_json_depth: usize,
    /// Time allowed to receive a request head (slowloris defence).
    pub header_read_timeout: Duration,
    /// Minimum body receive rate in bytes per second once a body starts.
    pub min_body_rate: u32,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Most request headers.
    pub max_headers: usize,
    /// Most open connections in all.
    pub max_connections: usize,
    /// Most open connections of one partner.
    pub max_connections_per_partner: usize,
    /// Most requests in flight before load shedding (503).
    pub max_in_flight: usize,
    /// HTTP/2 concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 locally reset streams allowed (rapid-reset defence).
    pub h2_max_pending_reset_streams: usize,
    /// Idle keep-alive connections are closed after this.
    pub idle_timeout: Duration,
}

/// The gateway as OAuth authorization server (and verifier of external tokens).
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthSettings {
    /// `iss` of issued tokens.
    pub issuer: String,
    /// `aud` of issued tokens.
    pub audience: String,
    /// Lifetime of issued tokens.
    pub token_lifetime: Duration,
    /// Clock leeway when checking `exp`, `nbf`, `iat`.
    pub leeway: Duration,
    /// Signing keys.
    pub signing_keys: Vec<SigningKeyRef>,
    /// External authorization servers whose tokens are also accepted.
    pub external: Vec<ExternalIssuer>,
}

/// A signing key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRef {
    /// Key id (`kid`).
    pub kid: String,
    /// `ES256` or `EdDSA`.
    pub algorithm: SigningAlgorithm,
    /// PKCS#8 PEM private key.
    pub private_key: PathBuf,
    /// Rotation state.
    pub status: KeyStatus,
}

/// Token signing algorithms the gateway issues and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlgorithm {
    /// ECDSA P-256 SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

/// Where a key is in its rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyStatus {
    /// Signs new tokens (exactly one) and verifies.
    Active,
    /// Published in JWKS, verifies, does not sign yet.
    Next,
    /// Verifies tokens it signed until they expire; no longer signs.
    Retired,
}

/// An external authorization server.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalIssuer {
    /// Its `iss`.
    pub issuer: String,
    /// How its tokens are checked.
    pub check: ExternalCheck,
    /// Expected `aud`.
    pub audience: String,
    /// Partners whose tokens it issues (empty: any).
    pub partners: BTreeSet<PartnerId>,
}

/// How tokens of an external issuer are checked.
#[derive(Debug, Clone, PartialEq)]
pub enum ExternalCheck {
    /// JWTs verified against the issuer's JWKS.
    Jwks {
        /// JWKS URL.
        url: String,
        /// How long a fetched key set is used before refreshing.
        refresh: Duration,
    },
    /// Opaque tokens checked by RFC 7662 introspection.
    Introspection {
        /// Introspection endpoint URL.
        url: String,
        /// Client id used to authenticate to it.
        client_id: String,
        /// Client secret file.
        client_secret_file: Option<PathBuf>,
        /// Upper bound on how long an introspection answer is cached.
        cache_ttl: Duration,
    },
}

/// Where shared state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// A redb file on local disk: one node.
    Embedded {
        /// The database file.
        path: PathBuf,
    },
    /// Redis: several gateway instances share state.
    Redis {
        /// `redis://` URL (standalone) or seed nodes (cluster).
        urls: Vec<String>,
        /// Whether the URLs are Redis Cluster nodes.
        cluster: bool,
        /// Timeout of one store command.
        timeout: Duration,
        /// Key prefix (hash tags are added per key).
        key_prefix: String,
    },
}

/// Consent caching and pairwise references.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentSettings {
    /// File with the secret keying pairwise customer refs.
    pub ref_secret_file: PathBuf,
    /// How long a consent answer is cached per instance (invalidated by push sooner).
    pub cache_ttl: Duration,
    /// Oldest cached answer used while the store is unreachable; beyond it, 503.
    pub staleness_bound: Duration,
}

/// How an audit record is made durable before the response leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditMode {
    /// The response waits for the record's fsync (group commit).
    Sync,
    /// The response does not wait; a crash may lose the last batch.
    Async,
}

/// The audit trail.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditSettings {
    /// Directory of segment files.
    pub dir: PathBuf,
    /// Durability mode.
    pub mode: AuditMode,
    /// Segment rotation by size.
    pub segment_max_bytes: u64,
    /// Segment rotation by age.
    pub segment_max_age: Duration,
    /// Signed checkpoint cadence.
    pub checkpoint_interval: Duration,
    /// Ed25519 PKCS#8 PEM key signing checkpoints.
    pub checkpoint_key: PathBuf,
    /// Redis stream to forward to, if any.
    pub forward_stream: Option<String>,
    /// Key hashing internal customer ids in records.
    pub customer_hash_key_file: PathBuf,
}

/// What a route class does while the cluster limiter is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutagePolicy {
    /// Admit everything.
    FailOpen,
    /// Refuse everything (503).
    FailClosed,
    /// Local limiter with the quota divided by `instances`.
    Local,
}

/// Cluster rate limiting.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitSettings {
    /// Gateway instances sharing the quota (local fallback divides by this).
    pub instances: NonZeroU32,
    /// Timeout of one Redis decision.
    pub redis_timeout: Duration,
    /// Policy for customer-data routes while Redis is unreachable.
    pub customer_data_outage: OutagePolicy,
    /// Policy for all other routes while Redis is unreachable.
    pub default_outage: OutagePolicy,
}

/// Telemetry export.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// OTLP/HTTP endpoint; `None` disables export.
    pub otlp_endpoint: Option<String>,
    /// `service.name`.
    pub service_name: String,
}

/// One partner (`partners/<id>.yaml`).
#[derive(Debug, Clone, PartialEq)]
pub struct Partner {
    /// Its id (also the file name).
    pub id: PartnerId,
    /// Display name.
    pub display_name: String,
    /// Bank, fund house or insurer.
    pub kind: PartnerKind,
    /// Active or suspended.
    pub status: PartnerStatus,
    /// Certificate fingerprints (several during rotation).
    pub pins: Vec<Fingerprint>,
    /// Certificate subjects (RFC 4514), accepted as pins.
    pub subjects: Vec<String>,
    /// OAuth client id.
    pub client_id: ClientId,
    /// Scopes the partner may be granted.
    pub scopes: ScopeSet,
    /// Rate limits.
    pub rate_limits: PartnerLimits,
    /// Fields this partner may ever receive.
    pub field_ceiling: BTreeSet<String>,
    /// Purposes consents for this partner may name.
    pub purposes: BTreeSet<String>,
    /// Campaigns it may issue codes for.
    pub campaigns: BTreeSet<CampaignId>,
    /// Product types it sees (`None`: all).
    pub product_types: Option<BTreeSet<String>>,
}

impl Partner {
    /// Whether the partner is active.
    pub fn is_active(&self) -> bool {
        self.status == PartnerStatus::Active
    }

    /// The limit that applies to a route.
    pub fn limit_for(&self, route: Route) -> Limit {
        self.rate_limits
            .routes
            .get(&route)
            .copied()
            .unwrap_or(self.rate_limits.default)
    }
}

/// A GCRA limit: sustained rate and burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Requests per second, sustained.
    pub rate_per_sec: NonZeroU32,
    /// Requests allowed at once.
    pub burst: NonZeroU32,
}

/// A partner's rate limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerLimits {
    /// For routes without an override.
    pub default: Limit,
    /// Per-route overrides.
    pub routes: BTreeMap<Route, Limit>,
}

/// A referral campaign (`campaigns/<id>.yaml`).
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    /// Its id (also the file name).
    pub id: CampaignId,
    /// Display name.
    pub name: String,
    /// First instant codes may be issued and events counted.
    pub starts_at: UnixTime,
    /// Instant after which nothing is issued or counted.
    pub ends_at: UnixTime,
    /// Partners taking part.
    pub partners: BTreeSet<PartnerId>,
    /// Reward per event type.
    pub rewards: BTreeMap<ReferralEventType, Reward>,
    /// Codes one partner may issue per UTC day.
    pub codes_per_partner_per_day: u32,
    /// Conversions (events) one code may count.
    pub conversions_per_code: u32,
}

impl Campaign {
    /// Whether `now` is inside the campaign window.
    pub fn is_active_at(&self, now: UnixTime) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

/// Events the referral programme counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReferralEventType {
    /// `account_opened`
    AccountOpened,
    /// `funded`
    Funded,
    /// `first_trade`
    FirstTrade,
}

impl ReferralEventType {
    /// Every event type.
    pub const ALL: [ReferralEventType; 3] = [
        ReferralEventType::AccountOpened,
        ReferralEventType::Funded,
        ReferralEventType::FirstTrade,
    ];

    /// Wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReferralEventType::AccountOpened => "account_opened",
            ReferralEventType::Funded => "funded",
            ReferralEventType::FirstTrade => "first_trade",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// A reward for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reward {
    /// Amount in minor units (fen).
    pub amount_minor: u64,
    /// ISO 4217 currency.
    pub currency: String,
}
