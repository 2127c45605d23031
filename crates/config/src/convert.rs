//! Raw → typed: one conversion per file kind, each reporting every value it cannot convert.
//!
//! A conversion never stops at the first problem. Where a value is wrong it pushes a
//! [`ConfigProblem`] and carries on with a placeholder, so that the cross-checks still see the
//! rest of the file; a configuration with any problem is never returned, so no placeholder
//! escapes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway_core::context::Fingerprint;
use gateway_core::fields::{FieldCatalogue, FieldSpec, MaskRule, Tier};
use gateway_core::route::Route;
use gateway_core::scope::{Scope, ScopeSet};
use gateway_core::time::parse_rfc3339;
use gateway_core::{CampaignId, ClientId, PartnerId};

use crate::model::*;
use crate::raw::*;
use crate::report::{ConfigProblem, Location};
use crate::yaml::{Document, pointer};

/// Product types a partner may be limited to.
pub const PRODUCT_TYPES: [&str; 3] = ["fund", "etf", "fixed_income_plus"];

/// The hint for a referenced file that does not exist.
pub(crate) const MISSING_FILE_HINT: &str =
    "run `partner-gateway dev` once to generate the dev keys, or create the file";

/// Everything a conversion needs to report a problem in one file.
pub(crate) struct FileCx<'a> {
    /// The file, relative to the configuration directory.
    pub(crate) file: &'a Path,
    /// Its parsed document (positions).
    pub(crate) doc: &'a Document,
    /// The configuration directory, absolute.
    pub(crate) dir: &'a Path,
    /// Extra paths that count as existing (see `Sources::with_existing_file`).
    pub(crate) existing: &'a BTreeSet<PathBuf>,
    /// Where problems go.
    pub(crate) problems: &'a mut Vec<ConfigProblem>,
}

impl FileCx<'_> {
    /// The location of the node at `pointer`.
    pub(crate) fn location(&self, pointer: &str) -> Location {
        Location {
            line_col: self.doc.position(pointer),
            pointer: Some(pointer.to_owned()),
        }
    }

    /// The location of the mapping key holding the node at `pointer`.
    pub(crate) fn key_location(&self, pointer: &str) -> Location {
        Location {
            line_col: self.doc.key_position(pointer),
            pointer: Some(pointer.to_owned()),
        }
    }

    /// Reports a problem at `pointer`.
    pub(crate) fn report(&mut self, pointer: &str, message: String, hint: Option<String>) {
        let location = self.location(pointer);
        self.push(location, message, hint);
    }

    /// Reports a problem at the key holding `pointer`.
    pub(crate) fn report_key(&mut self, pointer: &str, message: String, hint: Option<String>) {
        let location = self.key_location(pointer);
        self.push(location, message, hint);
    }

    fn push(&mut self, location: Location, message: String, hint: Option<String>) {
        self.problems.push(ConfigProblem {
            file: self.file.to_path_buf(),
            location,
            message,
            hint,
        });
    }

    /// Resolves a configured path against the configuration directory.
    fn path(&mut self, at: &str, text: &str) -> PathBuf {
        if text.starts_with("~/") {
            self.report(
                at,
                format!("path {text:?} starts with '~', which is not expanded"),
                Some("write the path relative to the configuration directory, or absolute".into()),
            );
        }
        self.dir.join(text)
    }

    /// Resolves a path that must name an existing file.
    fn existing_file(&mut self, at: &str, text: &str) -> PathBuf {
        let path = self.path(at, text);
        if !self.existing.contains(&path) {
            if path.is_dir() {
                self.report(
                    at,
                    format!("{text:?} is a directory, not a file"),
                    Some("point it at the file itself".into()),
                );
            } else if !path.is_file() {
                self.report(
                    at,
                    format!(
                        "file {text:?} does not exist (resolved to {})",
                        path.display()
                    ),
                    Some(MISSING_FILE_HINT.into()),
                );
            }
        }
        path
    }

    fn socket_addr(&mut self, at: &str, text: &str) -> SocketAddr {
        match text.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                self.report(
                    at,
                    format!("{text:?} is not an ip:port address"),
                    Some(
                        "write an IP address and port, e.g. 127.0.0.1:9090 or 0.0.0.0:8443 \
                         (host names are not resolved; port 0 picks a free port)"
                            .into(),
                    ),
                );
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
            }
        }
    }

    fn upstream(&mut self, at: &str, text: &str) -> UpstreamUrl {
        UpstreamUrl::parse(text).unwrap_or_else(|err| {
            self.report(
                at,
                format!("bad upstream URL {text:?}: {err}"),
                Some("write http://host:port/prefix, e.g. http://127.0.0.1:8600/crm".into()),
            );
            UpstreamUrl {
                url: text.to_owned(),
                authority: String::new(),
                path_prefix: String::new(),
            }
        })
    }

    fn size(&mut self, at: &str, value: u64) -> usize {
        usize::try_from(value).unwrap_or_else(|_| {
            self.report(at, format!("{value} is too large for this machine"), None);
            usize::MAX
        })
    }

    fn u32(&mut self, at: &str, value: u64) -> u32 {
        u32::try_from(value).unwrap_or_else(|_| {
            self.report(
                at,
                format!("{value} is too large (at most {})", u32::MAX),
                None,
            );
            u32::MAX
        })
    }

    fn at_least_one(&mut self, at: &str, what: &str, value: i64) -> NonZeroU32 {
        match u32::try_from(value).ok().and_then(NonZeroU32::new) {
            Some(n) => n,
            None => {
                let (message, hint) = if value < 1 {
                    (
                        format!("{what} must be at least 1, found {value}"),
                        Some(
                            "a limit of 0 would refuse every request; suspend the partner instead"
                                .into(),
                        ),
                    )
                } else {
                    (
                        format!("{what} must be at most {}, found {value}", u32::MAX),
                        None,
                    )
                };
                self.report(at, message, hint);
                NonZeroU32::MIN
            }
        }
    }

    fn http_url(&mut self, at: &str, what: &str, text: &str, https_only: bool) {
        let lower = text.to_ascii_lowercase();
        let https = lower.starts_with("https://") && text.len() > 8;
        let http = lower.starts_with("http://") && text.len() > 7;
        let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| {
                lower
                    .strip_prefix(p)
                    .is_some_and(|r| r.is_empty() || r.starts_with([':', '/']))
            });
        let ok = if https_only {
            https || loopback
        } else {
            https || http
        };
        if !ok {
            let wanted = if https_only {
                "an https:// URL"
            } else {
                "an http:// or https:// URL"
            };
            self.report(at, format!("{what} {text:?} is not {wanted}"), None);
        }
    }
}

// === gateway.yaml ===

/// `gateway.yaml` → [`GatewaySettings`], or `None` when a section is missing (the schema
/// reported it). Every present section is converted, so all its problems are reported.
pub(crate) fn gateway(raw: &RawGateway, cx: &mut FileCx<'_>) -> Option<GatewaySettings> {
    let partner_listener = raw
        .partner_listener
        .as_ref()
        .map(|l| partner_listener(l, cx));
    let admin_listener = raw.admin_listener.as_ref().map(|a| admin_listener(a, cx));
    if let (Some(p), Some(a)) = (&partner_listener, &admin_listener) {
        listeners_conflict(p, a, cx);
    }
    let upstreams = raw.upstreams.as_ref().map(|u| upstreams(u, cx));
    let http = http(raw.http.as_ref().unwrap_or(&RawHttp::default()), cx);
    let oauth = raw.oauth.as_ref().map(|o| oauth(o, cx));
    let store = raw.store.as_ref().map(|s| store(s, cx));
    let consent = raw.consent.as_ref().map(|c| consent(c, cx));
    let audit = raw.audit.as_ref().map(|a| audit(a, raw.store.as_ref(), cx));
    let rate_limits = rate_limits(
        raw.rate_limits
            .as_ref()
            .unwrap_or(&RawRateLimits::default()),
        cx,
    );
    let telemetry = telemetry(
        raw.telemetry.as_ref().unwrap_or(&RawTelemetry::default()),
        cx,
    );
    let fields = raw.fields.as_ref().map(|f| fields(f, cx));
    Some(GatewaySettings {
        instance_id: raw.instance_id.clone()?,
        partner_listener: partner_listener?,
        admin_listener: admin_listener?,
        upstreams: upstreams?,
        http,
        oauth: oauth?,
        store: store?,
        consent: consent?,
        audit: audit?,
        rate_limits,
        telemetry,
        fields: fields?,
    })
}

fn partner_listener(l: &RawPartnerListener, cx: &mut FileCx<'_>) -> PartnerListener {
    PartnerListener {
        addr: cx.socket_addr("/partner_listener/addr", &l.addr),
        server_cert: cx.existing_file("/partner_listener/server_cert", &l.server_cert),
        server_key: cx.existing_file("/partner_listener/server_key", &l.server_key),
        client_ca: cx.existing_file("/partner_listener/client_ca", &l.client_ca),
        min_tls_version: match l.min_tls_version.as_str() {
            "1.3" => TlsVersion::Tls13,
            "1.2" => TlsVersion::Tls12,
            other => {
                // The schema only lets "1.2" and "1.3" through; kept for completeness.
                cx.report(
                    "/partner_listener/min_tls_version",
                    format!("unknown TLS version {other:?}"),
                    Some("write \"1.2\" or \"1.3\"".into()),
                );
                TlsVersion::Tls12
            }
        },
    }
}

fn admin_listener(a: &RawAdminListener, cx: &mut FileCx<'_>) -> AdminListener {
    match (&a.token_file, &a.token_env) {
        (None, None) => cx.report_key(
            "/admin_listener",
            "the admin listener has no token: set token_file or token_env".into(),
            Some(
                "the admin API is never served without a bearer token; \
                 `partner-gateway dev` writes data/admin.token"
                    .into(),
            ),
        ),
        (Some(_), Some(_)) => cx.report(
            "/admin_listener/token_env",
            "set token_file or token_env, not both".into(),
            Some("the file would win and the variable be ignored; remove one".into()),
        ),
        _ => {}
    }
    AdminListener {
        addr: cx.socket_addr("/admin_listener/addr", &a.addr),
        token_file: a
            .token_file
            .as_deref()
            .map(|f| cx.existing_file("/admin_listener/token_file", f)),
        token_env: a.token_env.clone(),
    }
}

fn upstreams(u: &RawUpstreams, cx: &mut FileCx<'_>) -> Upstreams {
    if u.connect_timeout_ms > u.request_timeout_ms {
        cx.report(
            "/upstreams/connect_timeout_ms",
            format!(
                "connect_timeout_ms ({}) is longer than request_timeout_ms ({})",
                u.connect_timeout_ms, u.request_timeout_ms
            ),
            Some("the request timeout includes connecting; make it the larger one".into()),
        );
    }
    Upstreams {
        tags: cx.upstream("/upstreams/tags", &u.tags),
        products: cx.upstream("/upstreams/products", &u.products),
        referrals: cx.upstream("/upstreams/referrals", &u.referrals),
        connect_timeout: Duration::from_millis(u.connect_timeout_ms),
        request_timeout: Duration::from_millis(u.request_timeout_ms),
        pool_max_idle_per_host: cx.size(
            "/upstreams/pool_max_idle_per_host",
            u.pool_max_idle_per_host,
        ),
    }
}

fn http(h: &RawHttp, cx: &mut FileCx<'_>) -> HttpLimits {
    if h.max_connections_per_partner > h.max_connections {
        cx.report(
            "/http/max_connections_per_partner",
            format!(
                "max_connections_per_partner ({}) is larger than max_connections ({})",
                h.max_connections_per_partner, h.max_connections
            ),
            None,
        );
    }
    HttpLimits {
        max_body_bytes: cx.size("/http/max_body_bytes", h.max_body_bytes),
        max_json_depth: cx.size("/http/max_json_depth", h.max_json_depth),
        header_read_timeout: Duration::from_millis(h.header_read_timeout_ms),
        min_body_rate: cx.u32(
            "/http/min_body_rate_bytes_per_sec",
            h.min_body_rate_bytes_per_sec,
        ),
        max_header_bytes: cx.size("/http/max_header_bytes", h.max_header_bytes),
        max_headers: cx.size("/http/max_headers", h.max_headers),
        max_connections: cx.size("/http/max_connections", h.max_connections),
        max_connections_per_partner: cx.size(
            "/http/max_connections_per_partner",
            h.max_connections_per_partner,
        ),
        max_in_flight: cx.size("/http/max_in_flight", h.max_in_flight),
        h2_max_concurrent_streams: cx.u32(
            "/http/h2_max_concurrent_streams",
            h.h2_max_concurrent_streams,
        ),
        h2_max_pending_reset_streams: cx.size(
            "/http/h2_max_pending_reset_streams",
            h.h2_max_pending_reset_streams,
        ),
        idle_timeout: Duration::from_millis(h.idle_timeout_ms),
    }
}

fn consent(c: &RawConsent, cx: &mut FileCx<'_>) -> ConsentSettings {
    ConsentSettings {
        ref_secret_file: cx.existing_file("/consent/ref_secret_file", &c.ref_secret_file),
        cache_ttl: Duration::from_millis(c.cache_ttl_ms),
        staleness_bound: Duration::from_millis(c.staleness_bound_ms),
    }
}

fn audit(au: &RawAudit, store: Option<&RawStore>, cx: &mut FileCx<'_>) -> AuditSettings {
    let embedded = store.is_some_and(|s| s.backend != RawBackend::Redis);
    if au.forward_stream.is_some() && embedded {
        cx.report(
            "/audit/forward_stream",
            "forward_stream needs the redis store backend".into(),
            Some("set store.backend to redis, or remove forward_stream".into()),
        );
    }
    AuditSettings {
        dir: cx.path("/audit/dir", &au.dir),
        mode: match au.mode {
            RawAuditMode::Sync => AuditMode::Sync,
            RawAuditMode::Async => AuditMode::Async,
        },
        segment_max_bytes: au.segment_max_bytes,
        segment_max_age: Duration::from_secs(au.segment_max_age_secs),
        checkpoint_interval: Duration::from_secs(au.checkpoint_interval_secs),
        checkpoint_key: cx.existing_file("/audit/checkpoint_key", &au.checkpoint_key),
        forward_stream: au.forward_stream.clone(),
        customer_hash_key_file: cx
            .existing_file("/audit/customer_hash_key_file", &au.customer_hash_key_file),
    }
}

fn rate_limits(r: &RawRateLimits, cx: &mut FileCx<'_>) -> RateLimitSettings {
    RateLimitSettings {
        instances: u32::try_from(r.instances)
            .ok()
            .and_then(NonZeroU32::new)
            .unwrap_or_else(|| {
                cx.report(
                    "/rate_limits/instances",
                    format!(
                        "instances must be from 1 to {}, found {}",
                        u32::MAX,
                        r.instances
                    ),
                    None,
                );
                NonZeroU32::MIN
            }),
        redis_timeout: Duration::from_millis(r.redis_timeout_ms),
        customer_data_outage: outage(r.outage_policy.customer_data),
        default_outage: outage(r.outage_policy.default),
    }
}

fn telemetry(t: &RawTelemetry, cx: &mut FileCx<'_>) -> TelemetrySettings {
    if let Some(endpoint) = &t.otlp_endpoint {
        cx.http_url("/telemetry/otlp_endpoint", "otlp_endpoint", endpoint, false);
    }
    TelemetrySettings {
        otlp_endpoint: t.otlp_endpoint.clone(),
        service_name: t.service_name.clone(),
    }
}

fn listeners_conflict(partner: &PartnerListener, admin: &AdminListener, cx: &mut FileCx<'_>) {
    let (p, a) = (partner.addr, admin.addr);
    let overlap = p.ip() == a.ip() || p.ip().is_unspecified() || a.ip().is_unspecified();
    if p.port() != 0 && p.port() == a.port() && overlap {
        cx.report(
            "/admin_listener/addr",
            format!("admin listener {a} and partner listener {p} use the same port"),
            Some("give the admin listener its own port, e.g. 127.0.0.1:9090".into()),
        );
    }
}

fn outage(policy: RawOutagePolicy) -> OutagePolicy {
    match policy {
        RawOutagePolicy::FailOpen => OutagePolicy::FailOpen,
        RawOutagePolicy::FailClosed => OutagePolicy::FailClosed,
        RawOutagePolicy::Local => OutagePolicy::Local,
    }
}

fn oauth(raw: &RawOAuth, cx: &mut FileCx<'_>) -> OAuthSettings {
    cx.http_url("/oauth/issuer", "issuer", &raw.issuer, true);

    let mut signing_keys = Vec::with_capacity(raw.signing_keys.len());
    let mut kids: BTreeMap<&str, usize> = BTreeMap::new();
    let mut active: Vec<(usize, &str)> = Vec::new();
    for (i, key) in raw.signing_keys.iter().enumerate() {
        let at = format!("/oauth/signing_keys/{i}");
        if let Some(first) = kids.insert(&key.kid, i) {
            kids.insert(&key.kid, first);
            cx.report(
                &format!("{at}/kid"),
                format!("signing key id {:?} is used twice", key.kid),
                Some(format!(
                    "kids must be unique; the first is signing_keys[{first}]"
                )),
            );
        }
        if key.status == RawKeyStatus::Active {
            active.push((i, &key.kid));
        }
        signing_keys.push(SigningKeyRef {
            kid: key.kid.clone(),
            algorithm: match key.algorithm {
                RawAlgorithm::Es256 => SigningAlgorithm::Es256,
                RawAlgorithm::EdDsa => SigningAlgorithm::EdDsa,
            },
            private_key: cx.existing_file(&format!("{at}/private_key"), &key.private_key),
            status: match key.status {
                RawKeyStatus::Active => KeyStatus::Active,
                RawKeyStatus::Next => KeyStatus::Next,
                RawKeyStatus::Retired => KeyStatus::Retired,
            },
        });
    }
    match active.as_slice() {
        [] => cx.report_key(
            "/oauth/signing_keys",
            "no signing key has status active".into(),
            Some("exactly one key signs tokens: set status: active on it".into()),
        ),
        [_] => {}
        [(_, first), rest @ ..] => {
            for (i, kid) in rest {
                cx.report(
                    &format!("/oauth/signing_keys/{i}/status"),
                    format!("signing keys {first:?} and {kid:?} are both active"),
                    Some("exactly one key signs tokens; set the other to next or retired".into()),
                );
            }
        }
    }

    let mut external = Vec::with_capacity(raw.external.len());
    let mut issuers: BTreeSet<&str> = BTreeSet::from([raw.issuer.as_str()]);
    for (i, ext) in raw.external.iter().enumerate() {
        let at = format!("/oauth/external/{i}");
        if !issuers.insert(&ext.issuer) {
            cx.report(
                &format!("{at}/issuer"),
                format!(
                    "issuer {:?} is listed twice (or is the gateway's own issuer)",
                    ext.issuer
                ),
                None,
            );
        }
        let mut partners = BTreeSet::new();
        for (j, p) in ext.partners.iter().enumerate() {
            match PartnerId::parse(p) {
                Ok(id) => {
                    partners.insert(id);
                }
                Err(err) => cx.report(&format!("{at}/partners/{j}"), err.to_string(), None),
            }
        }
        let check = match (&ext.jwks, &ext.introspection) {
            (Some(jwks), None) => {
                cx.http_url(&format!("{at}/jwks/url"), "JWKS URL", &jwks.url, true);
                ExternalCheck::Jwks {
                    url: jwks.url.clone(),
                    refresh: Duration::from_secs(jwks.refresh_secs),
                }
            }
            (None, Some(intro)) => {
                cx.http_url(
                    &format!("{at}/introspection/url"),
                    "introspection URL",
                    &intro.url,
                    true,
                );
                ExternalCheck::Introspection {
                    url: intro.url.clone(),
                    client_id: intro.client_id.clone(),
                    client_secret_file: intro.client_secret_file.as_deref().map(|f| {
                        cx.existing_file(&format!("{at}/introspection/client_secret_file"), f)
                    }),
                    cache_ttl: Duration::from_secs(intro.cache_ttl_secs),
                }
            }
            (jwks, _) => {
                let message = if jwks.is_some() {
                    "an external issuer has both jwks and introspection"
                } else {
                    "an external issuer needs jwks or introspection"
                };
                cx.report_key(
                    &at,
                    message.into(),
                    Some("give exactly one of jwks: or introspection:".into()),
                );
                ExternalCheck::Jwks {
                    url: String::new(),
                    refresh: Duration::ZERO,
                }
            }
        };
        external.push(ExternalIssuer {
            issuer: ext.issuer.clone(),
            check,
            audience: ext.audience.clone(),
            partners,
        });
    }

    OAuthSettings {
        issuer: raw.issuer.clone(),
        audience: raw.audience.clone(),
        token_lifetime: Duration::from_secs(raw.token_lifetime_secs),
        leeway: Duration::from_secs(raw.leeway_secs),
        signing_keys,
        external,
    }
}

fn store(raw: &RawStore, cx: &mut FileCx<'_>) -> StoreSettings {
    let not_for = |cx: &mut FileCx<'_>, key: &str, backend: &str, other: &str| {
        cx.report_key(
            &format!("/store/{key}"),
            format!("{key} does not apply to the {backend} backend"),
            Some(format!("remove it, or set backend: {other}")),
        );
    };
    match raw.backend {
        RawBackend::Embedded => {
            for (key, set) in [
                ("urls", raw.urls.is_some()),
                ("cluster", raw.cluster.is_some()),
                ("timeout_ms", raw.timeout_ms.is_some()),
                ("key_prefix", raw.key_prefix.is_some()),
            ] {
                if set {
                    not_for(cx, key, "embedded", "redis");
                }
            }
            let path = match &raw.path {
                Some(p) => cx.path("/store/path", p),
                // The schema requires it; kept for completeness.
                None => {
                    cx.report_key("/store", "the embedded store needs a path".into(), None);
                    PathBuf::new()
                }
            };
            StoreSettings::Embedded { path }
        }
        RawBackend::Redis => {
            if raw.path.is_some() {
                not_for(cx, "path", "redis", "embedded");
            }
            let urls = raw.urls.clone().unwrap_or_default();
            if urls.is_empty() {
                cx.report_key(
                    "/store/urls",
                    "the redis store needs at least one URL".into(),
                    Some("e.g. urls: [redis://127.0.0.1:6379/]".into()),
                );
            }
            for (i, url) in urls.iter().enumerate() {
                let lower = url.to_ascii_lowercase();
                if !(lower.starts_with("redis://") || lower.starts_with("rediss://"))
                    || url.len() < 9
                {
                    cx.report(
                        &format!("/store/urls/{i}"),
                        format!("{url:?} is not a redis:// or rediss:// URL"),
                        None,
                    );
                }
            }
            let cluster = raw.cluster.unwrap_or(false);
            if !cluster && urls.len() > 1 {
                cx.report_key(
                    "/store/urls",
                    format!("{} Redis URLs given but cluster is false", urls.len()),
                    Some("set cluster: true for Redis Cluster seed nodes, or keep one URL".into()),
                );
            }
            StoreSettings::Redis {
                urls,
                cluster,
                timeout: Duration::from_millis(raw.timeout_ms.unwrap_or(DEFAULT_REDIS_TIMEOUT_MS)),
                key_prefix: raw
                    .key_prefix
                    .clone()
                    .unwrap_or_else(|| DEFAULT_REDIS_KEY_PREFIX.to_owned()),
            }
        }
    }
}

const MASK_NAMES: &str = "mobile, name, id_number, amount_bucket, year, score_band, redact";

fn fields(raw: &BTreeMap<String, RawField>, cx: &mut FileCx<'_>) -> FieldCatalogue {
    for (name, field) in raw {
        let at = pointer(["fields", name.as_str()]);
        match (field.tier, field.mask) {
            (Tier::Sensitive, None) => cx.report_key(
                &at,
                format!("sensitive field {name:?} has no mask"),
                Some(format!("add mask: one of {MASK_NAMES}")),
            ),
            (Tier::Sensitive, Some(_)) | (_, None) => {}
            (tier, Some(_)) => cx.report(
                &format!("{at}/mask"),
                format!(
                    "field {name:?} has tier {} and is never masked",
                    tier_name(tier)
                ),
                Some("remove mask, or set tier: sensitive".into()),
            ),
        }
    }
    catalogue(raw)
}

/// The field catalogue as written (mask rules kept only on sensitive fields). Pure: `fields`
/// reports the problems.
pub(crate) fn catalogue(raw: &BTreeMap<String, RawField>) -> FieldCatalogue {
    let fields = raw
        .iter()
        .map(|(name, field)| {
            let mask: Option<MaskRule> = if field.tier == Tier::Sensitive {
                field.mask
            } else {
                None
            };
            (
                name.clone(),
                FieldSpec {
                    tier: field.tier,
                    mask,
                },
            )
        })
        .collect();
    FieldCatalogue::new(fields)
}

pub(crate) fn tier_name(tier: Tier) -> &'static str {
    match tier {
        Tier::Public => "public",
        Tier::Sensitive => "sensitive",
        Tier::Secret => "secret",
        Tier::Never => "never",
    }
}

// === partners/<id>.yaml ===

/// `partners/<id>.yaml` → [`Partner`], or `None` when a key is missing (the schema reported
/// it). `stem` is the file name without `.yaml`.
pub(crate) fn partner(raw: &RawPartner, stem: &str, cx: &mut FileCx<'_>) -> Option<Partner> {
    let id = raw
        .id
        .as_deref()
        .map(|id| parse_id(id, stem, "partners", PartnerId::parse, cx));
    let (pins, subjects) = match &raw.certificates {
        Some(certificates) => pins(certificates, raw.id.as_deref().unwrap_or(stem), cx),
        None => (Vec::new(), Vec::new()),
    };

    let client_id = raw.oauth.as_ref().and_then(|o| {
        ClientId::parse(&o.client_id)
            .map_err(|err| cx.report("/oauth/client_id", err.to_string(), None))
            .ok()
    });
    let mut scopes = ScopeSet::EMPTY;
    for (i, name) in raw.oauth.iter().flat_map(|o| o.scopes.iter()).enumerate() {
        match Scope::parse(name) {
            Some(scope) => scopes.insert(scope),
            None => cx.report(
                &format!("/oauth/scopes/{i}"),
                format!("unknown scope {name:?}"),
                Some(format!("allowed scopes are {}", scope_names())),
            ),
        }
    }

    let rate_limits = raw.rate_limits.as_ref().map(|r| {
        let default = limit(&r.default, "/rate_limits/default", cx);
        let mut routes = BTreeMap::new();
        for (name, raw_limit) in &r.routes {
            let at = pointer(["rate_limits", "routes", name.as_str()]);
            let value = limit(raw_limit, &at, cx);
            match Route::from_name(name) {
                Some(route) => {
                    routes.insert(route, value);
                }
                None => cx.report_key(
                    &at,
                    format!("unknown route {name:?} in rate_limits.routes"),
                    Some(format!("known routes are {}", route_names())),
                ),
            }
        }
        PartnerLimits { default, routes }
    });

    let mut campaigns = BTreeSet::new();
    for (i, c) in raw.campaigns.iter().flatten().enumerate() {
        match CampaignId::parse(c) {
            Ok(id) => {
                campaigns.insert(id);
            }
            Err(err) => cx.report(&format!("/campaigns/{i}"), err.to_string(), None),
        }
    }

    let product_types = raw.products.as_ref().map(|p| {
        let mut types = BTreeSet::new();
        for (i, t) in p.types.iter().enumerate() {
            if PRODUCT_TYPES.contains(&t.as_str()) {
                types.insert(t.clone());
            } else {
                cx.report(
                    &format!("/products/types/{i}"),
                    format!("unknown product type {t:?}"),
                    Some(format!(
                        "allowed product types are {}",
                        PRODUCT_TYPES.join(", ")
                    )),
                );
            }
        }
        types
    });

    Some(Partner {
        id: id??,
        display_name: raw.display_name.clone()?,
        kind: raw.kind?,
        status: raw.status?,
        pins,
        subjects,
        client_id: client_id?,
        scopes,
        rate_limits: rate_limits?,
        field_ceiling: raw.field_ceiling.iter().flatten().cloned().collect(),
        purposes: raw.purposes.iter().flatten().cloned().collect(),
        campaigns,
        product_types,
    })
}

/// Certificate pins: fingerprints and subjects, each entry exactly one of the two.
fn pins(
    certificates: &[RawCertificate],
    partner: &str,
    cx: &mut FileCx<'_>,
) -> (Vec<Fingerprint>, Vec<String>) {
    let mut pins = Vec::new();
    let mut subjects = Vec::new();
    if certificates.is_empty() {
        cx.report_key(
            "/certificates",
            format!("partner {partner:?} has no certificate pin, so it can never connect"),
            Some("add `- sha256: <fingerprint>` or `- subject: <RFC 4514 subject>`".into()),
        );
    }
    for (i, cert) in certificates.iter().enumerate() {
        let at = format!("/certificates/{i}");
        match (&cert.sha256, &cert.subject) {
            (Some(text), None) => match Fingerprint::parse(text.trim()) {
                Some(fp) if pins.contains(&fp) => cx.report(
                    &format!("{at}/sha256"),
                    format!("certificate sha256 {} is listed twice", fp.to_hex()),
                    None,
                ),
                Some(fp) => pins.push(fp),
                None => cx.report(
                    &format!("{at}/sha256"),
                    format!("{text:?} is not a SHA-256 fingerprint"),
                    Some(
                        "64 hex digits, colons optional, as `openssl x509 -noout -fingerprint \
                         -sha256 -in cert.pem` prints"
                            .into(),
                    ),
                ),
            },
            (None, Some(subject)) => match check_subject(subject) {
                Ok(()) if subjects.contains(subject) => cx.report(
                    &format!("{at}/subject"),
                    format!("certificate subject {subject:?} is listed twice"),
                    None,
                ),
                Ok(()) => subjects.push(subject.clone()),
                Err(why) => cx.report(
                    &format!("{at}/subject"),
                    format!("certificate subject {subject:?} is not an RFC 4514 name: {why}"),
                    Some(
                        "write it most specific RDN first, without spaces around ',' or '=', \
                         e.g. CN=demo-bank,O=Demo Bank"
                            .into(),
                    ),
                ),
            },
            (Some(_), Some(_)) => cx.report(
                &at,
                "a certificate entry has both sha256 and subject".into(),
                Some(
                    "give each pin its own list entry: `- sha256: ...` and `- subject: ...`".into(),
                ),
            ),
            (None, None) => cx.report(
                &at,
                "a certificate entry has neither sha256 nor subject".into(),
                Some("write `- sha256: <fingerprint>` or `- subject: <RFC 4514 subject>`".into()),
            ),
        }
    }
    (pins, subjects)
}

fn limit(raw: &RawLimit, at: &str, cx: &mut FileCx<'_>) -> Limit {
    Limit {
        rate_per_sec: cx.at_least_one(
            &format!("{at}/rate_per_sec"),
            "rate_per_sec",
            raw.rate_per_sec,
        ),
        burst: cx.at_least_one(&format!("{at}/burst"), "burst", raw.burst),
    }
}

/// Parses an id and checks it against the file name; `None` (reported) when invalid.
fn parse_id<T>(
    text: &str,
    stem: &str,
    dir: &str,
    parse: fn(&str) -> Result<T, gateway_core::IdError>,
    cx: &mut FileCx<'_>,
) -> Option<T> {
    match parse(text) {
        Err(err) => {
            cx.report("/id", err.to_string(), None);
            None
        }
        Ok(id) => {
            if text != stem {
                cx.report(
                    "/id",
                    format!("id {text:?} differs from the file name {stem:?}"),
                    Some(format!(
                        "rename the file to {dir}/{text}.yaml, or set id: {stem}"
                    )),
                );
            }
            Some(id)
        }
    }
}

/// A light RFC 4514 check: `type=value` RDNs separated by unescaped commas, no spaces around
/// the separators (the gateway compares subjects as strings, in the form rustls/x509 print).
pub(crate) fn check_subject(subject: &str) -> Result<(), &'static str> {
    if subject.trim().is_empty() {
        return Err("it is empty");
    }
    if subject.chars().any(char::is_control) {
        return Err("it has control characters");
    }
    let mut rdns = Vec::new();
    let mut current = String::new();
    let mut escaped = false;
    for c in subject.chars() {
        if escaped {
            current.push(c);
            escaped = false;
        } else if c == '\\' {
            current.push(c);
            escaped = true;
        } else if c == ',' || c == '+' {
            rdns.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    rdns.push(current);
    for rdn in &rdns {
        let Some((attr, value)) = rdn.split_once('=') else {
            return Err("every part must be type=value");
        };
        if attr.is_empty() || value.is_empty() {
            return Err("every part must be type=value");
        }
        if attr != attr.trim() || value.starts_with(' ') || value.ends_with(' ') {
            return Err("it has spaces around ',' or '='");
        }
        let oid = attr.bytes().all(|c| c.is_ascii_digit() || c == b'.');
        let name = attr.as_bytes()[0].is_ascii_alphabetic()
            && attr.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
        if !(oid || name) {
            return Err("an attribute type is not a name or an OID");
        }
    }
    Ok(())
}

fn scope_names() -> String {
    Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn route_names() -> String {
    Route::ALL
        .iter()
        .map(|r| r.name())
        .collect::<Vec<_>>()
        .join(", ")
}

// === campaigns/<id>.yaml ===

/// `campaigns/<id>.yaml` → [`Campaign`], or `None` when a key is missing (the schema reported
/// it). `stem` is the file name without `.yaml`.
pub(crate) fn campaign(raw: &RawCampaign, stem: &str, cx: &mut FileCx<'_>) -> Option<Campaign> {
    let id = raw
        .id
        .as_deref()
        .map(|id| parse_id(id, stem, "campaigns", CampaignId::parse, cx));
    let mut time = |key: &str, text: Option<&String>| {
        let text = text?;
        let parsed = parse_rfc3339(text);
        if parsed.is_none() {
            cx.report(
                &format!("/{key}"),
                format!("{key} {text:?} is not an RFC 3339 time"),
                Some(
                    "write e.g. \"2027-01-01T00:00:00Z\" or \"2027-01-01T08:00:00+08:00\", \
                     in quotes"
                        .into(),
                ),
            );
        }
        parsed
    };
    let starts_at = time("starts_at", raw.starts_at.as_ref());
    let ends_at = time("ends_at", raw.ends_at.as_ref());
    if let (Some(start), Some(end)) = (starts_at, ends_at)
        && end <= start
    {
        cx.report(
            "/ends_at",
            format!(
                "ends_at {:?} is not after starts_at {:?}",
                raw.ends_at.as_deref().unwrap_or_default(),
                raw.starts_at.as_deref().unwrap_or_default()
            ),
            None,
        );
    }

    let mut partners = BTreeSet::new();
    for (i, p) in raw.partners.iter().flatten().enumerate() {
        match PartnerId::parse(p) {
            Ok(id) => {
                partners.insert(id);
            }
            Err(err) => cx.report(&format!("/partners/{i}"), err.to_string(), None),
        }
    }

    let mut rewards = BTreeMap::new();
    for (name, reward) in raw.rewards.iter().flatten() {
        match ReferralEventType::parse(name) {
            Some(event) => {
                rewards.insert(
                    event,
                    Reward {
                        amount_minor: reward.amount_minor,
                        currency: reward.currency.clone(),
                    },
                );
            }
            // The schema only lets the three event types through; kept for completeness.
            None => cx.report_key(
                &pointer(["rewards", name.as_str()]),
                format!("unknown referral event {name:?}"),
                Some("events are account_opened, funded and first_trade".into()),
            ),
        }
    }

    let caps = raw.caps.as_ref()?;
    Some(Campaign {
        id: id??,
        name: raw.name.clone()?,
        starts_at: starts_at?,
        ends_at: ends_at?,
        partners,
        rewards,
        codes_per_partner_per_day: caps.codes_per_partner_per_day,
        conversions_per_code: caps.conversions_per_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        for ok in [
            "CN=demo-bank,O=Demo Bank",
            "CN=a\\,b,O=x",
            "2.5.4.3=x",
            "CN=a+OU=b",
        ] {
            assert_eq!(check_subject(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "demo-bank",
            "CN=a, O=b",
            "CN = a",
            "CN=",
            "=a",
            "C N=a",
            "1x=a",
            "CN=a\nb",
        ] {
            assert!(check_subject(bad).is_err(), "{bad}");
        }
    }
}
