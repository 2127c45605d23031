//! The running gateway's shared state: the configuration in force, the TLS server
//! configuration built from it, the live connections, and reloading.
//!
//! A reload builds the new [`Config`] and TLS configuration off to the side and swaps both
//! atomically; on any error the running configuration stays and the error is reported.
//! After a swap, connections the new configuration no longer allows are closed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tracing::{info, warn};

use gateway_config::{Config, Report, UpstreamUrl};

use crate::metrics::Metrics;
use crate::proxy::UpstreamClient;
use crate::registry::ConnectionRegistry;

/// Changes applied to every loaded configuration (the `dev` subcommand points the upstreams
/// at its own sandbox).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replace the `host:port` of every upstream URL.
    pub upstream_authority: Option<String>,
}

impl Overrides {
    /// Applies the overrides to a freshly loaded configuration.
    pub fn apply(&self, config: &mut Config) {
        if let Some(authority) = &self.upstream_authority {
            let upstreams = &mut config.gateway.upstreams;
            for url in [
                &mut upstreams.tags,
                &mut upstreams.products,
                &mut upstreams.referrals,
            ] {
                *url = UpstreamUrl {
                    url: format!("http://{authority}{}", url.path_prefix),
                    authority: authority.clone(),
                    path_prefix: url.path_prefix.clone(),
                };
            }
        }
    }
}

/// Why a configuration could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The files have problems.
    #[error("{0}")]
    Config(Report),
    /// The TLS material named by the files is unusable.
    #[error("partner listener TLS: {0}")]
    Tls(#[from] gateway_tls::TlsError),
    /// An external authorization server cannot be used.
    #[error("oauth.external: {0}")]
    External(String),
    /// A token signing key named by `oauth.signing_keys` is unusable.
    #[error("oauth.signing_keys: {file}: {cause}")]
    SigningKey {
        /// The key file.
        file: String,
        /// What is wrong.
        cause: String,
    },
}

/// A configuration ready to be put in force.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The configuration.
    pub config: Arc<Config>,
    /// The partner listener's TLS configuration built from it.
    pub tls: Arc<rustls::ServerConfig>,
    /// The authorization server built from it (settings and signing keys).
    pub issuer: Arc<gateway_auth::Issuer>,
}

/// Loads and checks everything a configuration directory names, without binding anything.
/// `config check` runs exactly this.
pub fn prepare(dir: &Path, overrides: &Overrides) -> Result<Prepared, PrepareError> {
    let mut config = gateway_config::load(dir).map_err(PrepareError::Config)?;
    overrides.apply(&mut config);
    let listener = &config.gateway.partner_listener;
    let min = match listener.min_tls_version {
        gateway_config::TlsVersion::Tls12 => gateway_tls::MinTlsVersion::Tls12,
        gateway_config::TlsVersion::Tls13 => gateway_tls::MinTlsVersion::Tls13,
    };
    let tls = gateway_tls::server_config(
        &listener.server_cert,
        &listener.server_key,
        &listener.client_ca,
        min,
    )?;
    let issuer = issuer(&config)?;
    for external in &config.gateway.oauth.external {
        let (gateway_config::ExternalCheck::Jwks { url, .. }
        | gateway_config::ExternalCheck::Introspection { url, .. }) = &external.check;
        if !url.starts_with("http://") {
            return Err(PrepareError::External(format!(
                "{}: {url}: the gateway reaches external authorization servers over plain HTTP on \
                 the internal network only (https is not supported yet)",
                external.issuer
            )));
        }
    }
    Ok(Prepared {
        config: Arc::new(config),
        tls,
        issuer,
    })
}

/// Reads the signing keys and builds the authorization server of a configuration.
fn issuer(config: &Config) -> Result<Arc<gateway_auth::Issuer>, PrepareError> {
    let oauth = &config.gateway.oauth;
    let mut files = Vec::with_capacity(oauth.signing_keys.len());
    for key in &oauth.signing_keys {
        let pem = std::fs::read(&key.private_key).map_err(|e| PrepareError::SigningKey {
            file: key.private_key.display().to_string(),
            cause: e.to_string(),
        })?;
        files.push(gateway_auth::SigningKeyFile {
            kid: key.kid.clone(),
            algorithm: match key.algorithm {
                gateway_config::SigningAlgorithm::Es256 => gateway_auth::SigningAlgorithm::Es256,
                gateway_config::SigningAlgorithm::EdDsa => gateway_auth::SigningAlgorithm::EdDsa,
            },
            pem,
            status: match key.status {
                gateway_config::KeyStatus::Active => gateway_auth::KeyStatus::Active,
                gateway_config::KeyStatus::Next => gateway_auth::KeyStatus::Next,
                gateway_config::KeyStatus::Retired => gateway_auth::KeyStatus::Retired,
            },
        });
    }
    let keys = gateway_auth::KeySet::load(&files).map_err(|e| PrepareError::SigningKey {
        file: "gateway.yaml".into(),
        cause: e.to_string(),
    })?;
    let settings = gateway_auth::IssuerSettings {
        issuer: oauth.issuer.clone(),
        audience: oauth.audience.clone(),
        lifetime: oauth.token_lifetime,
        leeway: oauth.leeway,
    };
    Ok(gateway_auth::Issuer::new(settings, keys))
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state store could not be opened.
    #[error("state store: {0}")]
    Store(#[from] gateway_store::StoreError),
    /// The audit trail could not be opened.
    #[error("audit trail: {0}")]
    Audit(String),
    /// The consent service could not be set up.
    #[error("consent: {0}")]
    Consent(String),
    /// An external authorization server is misconfigured.
    #[error("oauth.external: {0}")]
    External(String),
    /// The cluster rate limiter could not be set up.
    #[error("rate limiter: {0}")]
    RateLimit(String),
}

/// The external authorization servers of `oauth.external`: JWKS or RFC 7662 introspection
/// over plain HTTP on the internal network (an `https` URL is refused at start: the gateway's
/// outbound client does not carry TLS), each call bounded to 2 s and 1 MiB.
fn external_issuers(config: &Config) -> Result<Vec<gateway_auth::ExternalIssuer>, StartError> {
    let oauth = &config.gateway.oauth;
    if oauth.external.is_empty() {
        return Ok(Vec::new());
    }
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_connect_timeout(Some(std::time::Duration::from_millis(500)));
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let http = gateway_auth::HttpClient::new(move |request: http::Request<Vec<u8>>| {
        let client = client.clone();
        async move {
            let (parts, body) = request.into_parts();
            let request = http::Request::from_parts(
                parts,
                http_body_util::Full::new(bytes::Bytes::from(body)),
            );
            let exchange = async {
                let response = client.request(request).await.map_err(|e| e.to_string())?;
                let (parts, body) = response.into_parts();
                let body = crate::body::read_limited(body, 1 << 20)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(http::Response::from_parts(parts, body.to_vec()))
            };
            match tokio::time::timeout(std::time::Duration::from_secs(2), exchange).await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(e)) => Err(gateway_auth::external::HttpError(e)),
                Err(_) => Err(gateway_auth::external::HttpError(
                    "timed out after 2 s".into(),
                )),
            }
        }
    });
    let mut issuers = Vec::new();
    for external in &oauth.external {
        let url = match &external.check {
            gateway_config::ExternalCheck::Jwks { url, .. }
            | gateway_config::ExternalCheck::Introspection { url, .. } => url,
        };
        if !url.starts_with("http://") {
            return Err(StartError::External(format!(
                "{}: only http:// URLs are supported",
                external.issuer
            )));
        }
        let check = match &external.check {
            gateway_config::ExternalCheck::Jwks { url, refresh } => {
                gateway_auth::ExternalCheck::Jwks {
                    url: url.clone(),
                    refresh: *refresh,
                    min_refetch_interval: std::time::Duration::from_secs(30),
                }
            }
            gateway_config::ExternalCheck::Introspection {
                url,
                client_id,
                client_secret_file,
                cache_ttl,
            } => {
                let client_secret = match client_secret_file {
                    Some(file) => Some(
                        std::fs::read_to_string(file)
                            .map_err(|e| StartError::External(format!("{}: {e}", file.display())))?
                            .trim()
                            .to_owned(),
                    ),
                    None => None,
                };
                gateway_auth::ExternalCheck::Introspection {
                    url: url.clone(),
                    client_id: client_id.clone(),
                    client_secret,
                    cache_ttl: *cache_ttl,
                }
            }
        };
        let clients = config
            .partners
            .values()
            .filter(|p| external.partners.is_empty() || external.partners.contains(&p.id))
            .map(|p| (p.client_id.clone(), p.id.clone()))
            .collect();
        let settings = gateway_auth::ExternalIssuerSettings {
            issuer: external.issuer.clone(),
            audience: external.audience.clone(),
            check,
            clients,
            leeway: oauth.leeway,
            cache_capacity: 100_000,
        };
        issuers.push(
            gateway_auth::ExternalIssuer::new(settings, http.clone())
                .map_err(|e| StartError::External(e.to_string()))?,
        );
    }
    Ok(issuers)
}

/// The rate limiter for the configured store: the cluster tier on the store's Redis, else
/// the local tier alone.
fn limiter(config: &Config) -> Result<gateway_ratelimit::Limiter, StartError> {
    let limits = &config.gateway.rate_limits;
    let settings = gateway_ratelimit::LimiterSettings {
        instances: limits.instances,
        redis_timeout: limits.redis_timeout,
        ..Default::default()
    };
    match &config.gateway.store {
        gateway_config::StoreSettings::Redis { urls, .. } => {
            let url = urls.first().map(String::as_str).unwrap_or_default();
            let connection = gateway_ratelimit::redis_connection(url, &settings)
                .map_err(|e| StartError::RateLimit(e.to_string()))?;
            Ok(gateway_ratelimit::Limiter::cluster(connection, settings))
        }
        gateway_config::StoreSettings::Embedded { .. } => {
            Ok(gateway_ratelimit::Limiter::local(settings))
        }
    }
}

/// The limit and outage policy of a partner on a route, from the configuration in force.
pub fn limit_for(
    config: &Config,
    partner: &gateway_core::PartnerId,
    route: gateway_core::Route,
) -> Option<(gateway_ratelimit::Limit, gateway_ratelimit::OutagePolicy)> {
    let limit = config.partner(partner)?.limit_for(route);
    let settings = &config.gateway.rate_limits;
    let policy = if route.is_customer_data() {
        settings.customer_data_outage
    } else {
        settings.default_outage
    };
    let policy = match policy {
        gateway_config::OutagePolicy::FailOpen => gateway_ratelimit::OutagePolicy::FailOpen,
        gateway_config::OutagePolicy::FailClosed => gateway_ratelimit::OutagePolicy::FailClosed,
        gateway_config::OutagePolicy::Local => gateway_ratelimit::OutagePolicy::Local,
    };
    Some((
        gateway_ratelimit::Limit::new(limit.rate_per_sec, limit.burst),
        policy,
    ))
}

/// Opens the audit writer and the customer-id hasher named by the configuration.
async fn open_audit(
    config: &Config,
) -> Result<(gateway_audit::AuditWriter, gateway_audit::CustomerHasher), StartError> {
    let settings = &config.gateway.audit;
    let signer = gateway_audit::CheckpointSigner::from_pem_file(&settings.checkpoint_key)
        .map_err(|e| StartError::Audit(format!("{}: {e}", settings.checkpoint_key.display())))?;
    let hasher = gateway_audit::CustomerHasher::from_key_file(&settings.customer_hash_key_file)
        .map_err(|e| StartError::Audit(e.to_string()))?;
    let mut writer = gateway_audit::WriterConfig::new(&settings.dir, &config.gateway.instance_id);
    writer.durability = match settings.mode {
        gateway_config::AuditMode::Sync => gateway_audit::Durability::Sync,
        gateway_config::AuditMode::Async => gateway_audit::Durability::Async,
    };
    writer.segment_max_bytes = settings.segment_max_bytes;
    writer.segment_max_age = settings.segment_max_age;
    writer.checkpoint_interval = settings.checkpoint_interval;
    writer.signer = Some(Arc::new(signer));
    let writer = gateway_audit::AuditWriter::open(writer)
        .await
        .map_err(|e| StartError::Audit(e.to_string()))?;
    Ok((writer, hasher))
}

/// Hands audit records to the OpenTelemetry log pipeline (when OTLP export is on). Export
/// from there is best effort (the SDK's batch exporter); the Redis stream is the
/// at-least-once channel.
#[derive(Debug)]
struct OtlpAuditSink {
    instance: String,
}

impl gateway_audit::ForwardSink for OtlpAuditSink {
    fn name(&self) -> &str {
        "otlp"
    }

    async fn send(
        &mut self,
        batch: &[gateway_audit::ForwardRecord],
    ) -> Result<(), gateway_audit::SinkError> {
        for record in batch {
            let line = std::str::from_utf8(&record.line)
                .map_err(|e| gateway_audit::SinkError(e.to_string()))?;
            let seq = record.seq.to_string();
            gateway_telemetry::emit_audit_log(
                line.trim_end(),
                &[("seq", &seq), ("instance", &self.instance)],
            );
        }
        Ok(())
    }
}

/// Forwards audit records, from the segment files, to the Redis stream named by
/// `audit.forward_stream` and to OpenTelemetry logs when OTLP export is on, until `stop` is
/// cancelled.
fn spawn_forwarder(
    config: &Config,
    audit: &gateway_audit::AuditWriter,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<(), StartError> {
    if gateway_telemetry::exporting() {
        let sink = OtlpAuditSink {
            instance: config.gateway.instance_id.clone(),
        };
        let forwarder = gateway_audit::Forwarder::new(&config.gateway.audit.dir, sink)
            .map_err(|e| StartError::Audit(format!("OTLP forwarder: {e}")))?
            .follow(audit.durable());
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Err(err) = forwarder.run(stop.cancelled_owned()).await {
                tracing::error!(error = %err, "Audit OTLP forwarder stopped.");
            }
        });
    }
    let (Some(stream), gateway_config::StoreSettings::Redis { urls, .. }) =
        (&config.gateway.audit.forward_stream, &config.gateway.store)
    else {
        return Ok(());
    };
    let Some(url) = urls.first() else {
        return Ok(());
    };
    let sink =
        gateway_audit::RedisStreamSink::new(url, stream.clone(), &config.gateway.instance_id)
            .map_err(|e| StartError::Audit(format!("forwarder: {e}")))?;
    let forwarder = gateway_audit::Forwarder::new(&config.gateway.audit.dir, sink)
        .map_err(|e| StartError::Audit(format!("forwarder: {e}")))?
        .follow(audit.durable());
    let stop = stop.clone();
    tokio::spawn(async move {
        if let Err(err) = forwarder.run(stop.cancelled_owned()).await {
            tracing::error!(error = %err, "Audit forwarder stopped.");
        }
    });
    Ok(())
}

/// Fetches the catalogue (`GET {products}/products`) for the gateway's product cache, from the
/// products upstream in force.
#[derive(Debug, Clone)]
pub struct FetchProducts {
    upstream: UpstreamClient,
    config: Arc<ArcSwap<Config>>,
}

/// The largest catalogue document accepted from the upstream.
const MAX_CATALOGUE_BYTES: usize = 32 << 20;

impl gateway_referral::FetchCatalogue for FetchProducts {
    async fn fetch(&self) -> Result<bytes::Bytes, crate::body::BoxError> {
        let config = self.config.load_full();
        let upstreams = &config.gateway.upstreams;
        let (parts, body) = self
            .upstream
            .fetch(
                crate::proxy::UpstreamRequest {
                    upstream: crate::proxy::Upstream::Products,
                    base: &upstreams.products,
                    method: http::Method::GET,
                    path_and_query: "/products",
                    headers: http::HeaderMap::new(),
                    body: crate::body::Body::empty(),
                    trace: None,
                    interaction_id: None,
                    timeout: upstreams.request_timeout,
                },
                MAX_CATALOGUE_BYTES,
            )
            .await?;
        if parts.status != http::StatusCode::OK {
            return Err(Box::new(crate::proxy::UpstreamError::BadResponse {
                upstream: "products",
                reason: format!("catalogue answered {}", parts.status),
            }));
        }
        Ok(body)
    }
}

/// Every partner's consent policy, built once per configuration.
fn policies(
    config: &Config,
) -> std::collections::HashMap<gateway_core::PartnerId, Arc<gateway_consent::PartnerPolicy>> {
    config
        .partners
        .values()
        .map(|p| {
            let policy = gateway_consent::PartnerPolicy {
                id: p.id.clone(),
                ceiling: p.field_ceiling.clone(),
                purposes: p.purposes.clone(),
                active: p.is_active(),
            };
            (p.id.clone(), Arc::new(policy))
        })
        .collect()
}

/// The referral campaigns of a configuration, as the referral crate takes them.
fn campaigns(config: &Config) -> gateway_referral::Campaigns {
    gateway_referral::Campaigns::new(config.campaigns.values().map(|c| {
        gateway_referral::CampaignRules {
            id: c.id.clone(),
            starts_at: c.starts_at,
            ends_at: c.ends_at,
            // Only partners that both list the campaign and are listed by it.
            partners: c
                .partners
                .iter()
                .filter(|p| {
                    config
                        .partner(p)
                        .is_some_and(|p| p.campaigns.contains(&c.id))
                })
                .cloned()
                .collect(),
            rewards: c
                .rewards
                .iter()
                .filter_map(|(event, reward)| {
                    Some((
                        gateway_referral::EventType::parse(event.as_str())?,
                        gateway_referral::Reward {
                            amount_minor: reward.amount_minor,
                            currency: reward.currency.clone(),
                        },
                    ))
                })
                .collect(),
            codes_per_partner_per_day: c.codes_per_partner_per_day,
            conversions_per_code: c.conversions_per_code,
        }
    }))
}

fn store_config(config: &Config) -> gateway_store::StoreConfig {
    match &config.gateway.store {
        gateway_config::StoreSettings::Embedded { path } => {
            gateway_store::StoreConfig::Embedded { path: path.clone() }
        }
        gateway_config::StoreSettings::Redis {
            urls,
            cluster,
            timeout,
            key_prefix,
        } => gateway_store::StoreConfig::Redis {
            urls: urls.clone(),
            cluster: *cluster,
            timeout: *timeout,
            key_prefix: key_prefix.clone(),
        },
    }
}

/// State shared by the listeners and every request.
#[derive(Debug)]
pub struct GatewayState {
    dir: PathBuf,
    overrides: Overrides,
    config: Arc<ArcSwap<Config>>,
    tls: ArcSwap<rustls::ServerConfig>,
    campaigns: ArcSwap<gateway_referral::Campaigns>,
    /// The product catalogue, cached from the products upstream.
    pub catalogue: gateway_referral::ProductCatalogue<FetchProducts>,
    /// Open partner connections.
    pub registry: ConnectionRegistry,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Requests and tokens per partner, for the admin API.
    pub partner_counts: crate::metrics::PartnerCounts,
    /// The pooled upstream client.
    pub upstream: UpstreamClient,
    /// The admin bearer token.
    admin_token: ArcSwap<String>,
    /// Shared state: consents, revocations, idempotency keys, referral counters.
    pub store: gateway_store::Store,
    /// Verifies access tokens (and holds the authorization server in force).
    pub tokens: gateway_auth::TokenVerifier<gateway_store::Store>,
    /// The token check of the partner stack: the gateway's own tokens and those of the
    /// external authorization servers of `oauth.external` (built at start).
    pub token_layer: gateway_auth::RequireTokenLayer<gateway_auth::Verifiers<gateway_store::Store>>,
    /// Where "now" comes from (tokens, consents, campaigns).
    pub clock: Arc<dyn gateway_core::time::Clock>,
    /// Consent grants, lookups (cached, invalidated cluster-wide) and pairwise refs.
    pub consents: gateway_consent::ConsentService,
    policies: ArcSwap<
        std::collections::HashMap<gateway_core::PartnerId, Arc<gateway_consent::PartnerPolicy>>,
    >,
    /// Rate limits: local GCRA, or exact cluster GCRA in Redis with a local fallback.
    pub limiter: gateway_ratelimit::Limiter,
    /// The audit trail.
    pub audit: gateway_audit::AuditWriter,
    /// Keyed hash of internal customer ids in audit records.
    pub audit_hasher: gateway_audit::CustomerHasher,
    /// Cancelled when the gateway stops (background tasks such as the audit forwarder).
    pub background: tokio_util::sync::CancellationToken,
    reload_lock: tokio::sync::Mutex<()>,
    next_connection: AtomicU64,
    /// Partner requests being served (load shedding).
    pub in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// Test-only hook run by `Dispatch` before every handler (e.g. to make it panic).
    #[cfg(feature = "test-util")]
    handler_hook: std::sync::OnceLock<DebugHook>,
}

#[cfg(feature = "test-util")]
struct DebugHook(HandlerHook);

#[cfg(feature = "test-util")]
impl std::fmt::Debug for DebugHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandlerHook")
    }
}

/// A hook run before every partner handler; tests use it to inject a panic.
#[cfg(feature = "test-util")]
pub type HandlerHook = Arc<dyn Fn(&http::request::Parts) + Send + Sync>;

/// The outcome of a successful reload.
#[derive(Debug, Clone)]
pub struct Reloaded {
    /// What changed, for logs and the admin answer.
    pub changes: Vec<String>,
    /// Connections closed because the new configuration no longer allows them.
    pub connections_closed: usize,
}

impl GatewayState {
    /// Opens the state store and builds the state for a prepared configuration loaded from
    /// `dir`, with the system clock.
    pub async fn start(
        dir: PathBuf,
        overrides: Overrides,
        prepared: Prepared,
        admin_token: String,
    ) -> Result<Self, StartError> {
        let clock = Arc::new(gateway_core::time::SystemClock);
        Self::start_with_clock(dir, overrides, prepared, admin_token, clock).await
    }

    /// As [`GatewayState::start`], with an injected clock (tests move time instead of waiting).
    pub async fn start_with_clock(
        dir: PathBuf,
        overrides: Overrides,
        prepared: Prepared,
        admin_token: String,
        clock: Arc<dyn gateway_core::time::Clock>,
    ) -> Result<Self, StartError> {
        let store = gateway_store::Store::open(store_config(&prepared.config)).await?;
        let tokens = gateway_auth::TokenVerifier::builder(prepared.issuer.clone(), store.clone())
            .notifications(store.subscribe())
            .cache_capacity(100_000)
            .build();
        let externals = external_issuers(&prepared.config)?;
        let token_layer = gateway_auth::RequireTokenLayer::new(gateway_auth::Verifiers::new(
            tokens.clone(),
            externals,
        ))
        .with_clock(clock.clone());
        let limiter = limiter(&prepared.config)?;
        let consent = &prepared.config.gateway.consent;
        let refs = gateway_consent::RefKey::from_file(&consent.ref_secret_file)
            .map_err(|e| StartError::Consent(e.to_string()))?;
        let consents = gateway_consent::ConsentService::new(
            store.clone(),
            refs,
            gateway_consent::CacheSettings {
                ttl: consent.cache_ttl,
                staleness_bound: consent.staleness_bound,
                ..Default::default()
            },
        );
        let (audit, audit_hasher) = open_audit(&prepared.config).await?;
        let background = tokio_util::sync::CancellationToken::new();
        spawn_forwarder(&prepared.config, &audit, &background)?;
        let upstreams = &prepared.config.gateway.upstreams;
        let upstream =
            UpstreamClient::new(upstreams.connect_timeout, upstreams.pool_max_idle_per_host);
        let config = Arc::new(ArcSwap::new(prepared.config.clone()));
        let catalogue = gateway_referral::ProductCatalogue::new(
            FetchProducts {
                upstream: upstream.clone(),
                config: config.clone(),
            },
            gateway_referral::CacheSettings::default(),
        );
        Ok(GatewayState {
            dir,
            overrides,
            campaigns: ArcSwap::new(Arc::new(campaigns(&prepared.config))),
            catalogue,
            config,
            tls: ArcSwap::new(prepared.tls),
            registry: ConnectionRegistry::new(),
            metrics: Metrics::new(),
            partner_counts: Default::default(),
            upstream,
            admin_token: ArcSwap::new(Arc::new(admin_token)),
            store,
            tokens,
            token_layer,
            clock,
            consents,
            policies: ArcSwap::new(Arc::new(policies(&prepared.config))),
            limiter,
            audit,
            audit_hasher,
            background,
            reload_lock: tokio::sync::Mutex::new(()),
            next_connection: AtomicU64::new(1),
            in_flight: Arc::default(),
            #[cfg(feature = "test-util")]
            handler_hook: std::sync::OnceLock::new(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// The TLS configuration in force (new handshakes use it).
    pub fn tls(&self) -> Arc<rustls::ServerConfig> {
        self.tls.load_full()
    }

    /// A partner's consent policy (ceiling, purposes, status) in force.
    pub fn partner_policy(
        &self,
        partner: &gateway_core::PartnerId,
    ) -> Option<Arc<gateway_consent::PartnerPolicy>> {
        self.policies.load().get(partner).cloned()
    }

    /// The referral campaigns in force.
    pub fn campaigns(&self) -> Arc<gateway_referral::Campaigns> {
        self.campaigns.load_full()
    }

    /// The current time.
    pub fn now(&self) -> gateway_core::time::UnixTime {
        self.clock.now()
    }

    /// The admin bearer token in force.
    pub fn admin_token(&self) -> Arc<String> {
        self.admin_token.load_full()
    }

    /// The configuration directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A process-unique connection number.
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Installs a hook run before every partner handler. Test builds only: it lets a test
    /// make a handler panic to check the rescue path. Set once.
    #[cfg(feature = "test-util")]
    pub fn dangerous_set_handler_hook(&self, hook: HandlerHook) {
        let _ = self.handler_hook.set(DebugHook(hook));
    }

    /// Runs the handler hook, if any.
    #[cfg(feature = "test-util")]
    pub(crate) fn run_handler_hook(&self, parts: &http::request::Parts) {
        if let Some(hook) = self.handler_hook.get() {
            (hook.0)(parts);
        }
    }

    /// Records a reload in the audit trail (an admin change). A reload is not refused when
    /// its record fails: the failure shows in `/readyz` and the log.
    async fn audit_reload(&self, outcome: &str, details: serde_json::Value) {
        use gateway_core::audit::{AdminAction, AuditRecord, AuditTime};
        let record = AuditRecord::admin_change(
            AuditTime::now(),
            self.config().gateway.instance_id.clone(),
            AdminAction {
                actor: "reload".into(),
                action: "reload".into(),
                target: Some(outcome.into()),
                details,
            },
        );
        if let Err(err) = self
            .audit
            .append_with(&record, gateway_audit::Durability::Sync)
            .await
        {
            warn!(error = %err, "Reload could not be audited.");
        }
    }

    /// Reloads the configuration directory. On any error the running configuration stays.
    pub async fn reload(&self) -> Result<Reloaded, PrepareError> {
        let _serialised = self.reload_lock.lock().await;
        let dir = self.dir.clone();
        let overrides = self.overrides.clone();
        let prepared = tokio::task::spawn_blocking(move || prepare(&dir, &overrides))
            .await
            .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()));
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(err) => {
                self.metrics.reload("rejected");
                warn!(error = %err, "Configuration reload rejected; the running configuration stays.");
                self.audit_reload("rejected", serde_json::json!({"error": err.to_string()}))
                    .await;
                return Err(err);
            }
        };
        let admin_token = gateway_config::admin_token(
            &prepared.config.gateway.admin_listener,
            &gateway_config::SystemEnv,
        );
        let old = self.config.load_full();
        let changes = gateway_config::diff(&old, &prepared.config);
        self.tls.store(prepared.tls);
        if self.tokens.issuer().settings() != prepared.issuer.settings()
            || self.tokens.issuer().keys().jwks() != prepared.issuer.keys().jwks()
            || self.tokens.issuer().keys().active_kid() != prepared.issuer.keys().active_kid()
        {
            self.tokens.set_issuer(prepared.issuer);
        }
        if old.gateway.upstreams.products != prepared.config.gateway.upstreams.products {
            self.catalogue.invalidate();
        }
        self.campaigns.store(Arc::new(campaigns(&prepared.config)));
        self.policies.store(Arc::new(policies(&prepared.config)));
        self.config.store(prepared.config.clone());
        if let Ok(token) = admin_token {
            self.admin_token.store(Arc::new(token));
        }
        let connections_closed = self.registry.enforce(&prepared.config);
        if connections_closed > 0 {
            for _ in 0..connections_closed {
                self.metrics.connection_closed("config_change");
            }
        }
        self.metrics.reload("applied");
        info!(
            changes = changes.len(),
            connections_closed, "Configuration reloaded."
        );
        for change in &changes {
            info!(change = %change, "Configuration change.");
        }
        self.audit_reload(
            "applied",
            serde_json::json!({"changes": changes, "connections_closed": connections_closed}),
        )
        .await;
        Ok(Reloaded {
            changes,
            connections_closed,
        })
    }
}
