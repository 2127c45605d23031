//! The files as written: serde structs that mirror the YAML exactly.
//!
//! Every struct denies unknown fields. Values that need checking (ids, scopes, routes,
//! fingerprints, addresses, URLs, paths) stay strings here; `convert` turns them into the
//! types of [`crate::model`] and reports what it cannot convert. Defaults live here and are
//! repeated as `default` in the JSON Schemas (a unit test keeps the two in step).

use std::collections::BTreeMap;

use gateway_core::fields::{MaskRule, Tier};
use gateway_core::partner::{PartnerKind, PartnerStatus};
use serde::{Deserialize, Serialize};

// === gateway.yaml ===

/// `gateway.yaml`.
///
/// Every top-level section is optional here: the schema enforces presence, and a section
/// that failed the schema is left out (pruned) so the others are still converted and
/// cross-checked.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawGateway {
    pub(crate) instance_id: Option<String>,
    pub(crate) partner_listener: Option<RawPartnerListener>,
    pub(crate) admin_listener: Option<RawAdminListener>,
    pub(crate) upstreams: Option<RawUpstreams>,
    pub(crate) http: Option<RawHttp>,
    pub(crate) oauth: Option<RawOAuth>,
    pub(crate) store: Option<RawStore>,
    pub(crate) consent: Option<RawConsent>,
    pub(crate) audit: Option<RawAudit>,
    pub(crate) rate_limits: Option<RawRateLimits>,
    pub(crate) telemetry: Option<RawTelemetry>,
    pub(crate) fields: Option<BTreeMap<String, RawField>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPartnerListener {
    pub(crate) addr: String,
    pub(crate) server_cert: String,
    pub(crate) server_key: String,
    pub(crate) client_ca: String,
    #[serde(default = "default_min_tls_version")]
    pub(crate) min_tls_version: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdminListener {
    pub(crate) addr: String,
    #[serde(default)]
    pub(crate) token_file: Option<String>,
    #[serde(default)]
    pub(crate) token_env: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstreams {
    pub(crate) tags: String,
    pub(crate) products: String,
    pub(crate) referrals: String,
    #[serde(default = "default_connect_timeout_ms")]
    pub(crate) connect_timeout_ms: u64,
    #[serde(default = "default_request_timeout_ms")]
    pub(crate) request_timeout_ms: u64,
    #[serde(default = "default_pool_max_idle_per_host")]
    pub(crate) pool_max_idle_per_host: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawHttp {
    pub(crate) max_body_bytes: u64,
    pub(crate) max_json_depth: u64,
    pub(crate) header_read_timeout_ms: u64,
    pub(crate) min_body_rate_bytes_per_sec: u64,
    pub(crate) max_header_bytes: u64,
    pub(crate) max_headers: u64,
    pub(crate) max_connections: u64,
    pub(crate) max_connections_per_partner: u64,
    pub(crate) max_in_flight: u64,
    pub(crate) h2_max_concurrent_streams: u64,
    pub(crate) h2_max_pending_reset_streams: u64,
    pub(crate) idle_timeout_ms: u64,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            max_body_bytes: 65_536,
            max_json_depth: 32,
            header_read_timeout_ms: 5_000,
            min_body_rate_bytes_per_sec: 1_024,
            max_header_bytes: 16_384,
            max_headers: 64,
            max_connections: 4_096,
            max_connections_per_partner: 512,
            max_in_flight: 2_048,
            h2_max_concurrent_streams: 128,
            h2_max_pending_reset_streams: 32,
            idle_timeout_ms: 60_000,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOAuth {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    #[serde(default = "default_token_lifetime_secs")]
    pub(crate) token_lifetime_secs: u64,
    #[serde(default = "default_leeway_secs")]
    pub(crate) leeway_secs: u64,
    pub(crate) signing_keys: Vec<RawSigningKey>,
    #[serde(default)]
    pub(crate) external: Vec<RawExternal>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSigningKey {
    pub(crate) kid: String,
    pub(crate) algorithm: RawAlgorithm,
    pub(crate) private_key: String,
    pub(crate) status: RawKeyStatus,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
pub(crate) enum RawAlgorithm {
    #[serde(rename = "ES256")]
    Es256,
    #[serde(rename = "EdDSA")]
    EdDsa,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawKeyStatus {
    Active,
    Next,
    Retired,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExternal {
    pub(crate) issuer: String,
    pub(crate) audience: String,
    #[serde(default)]
    pub(crate) partners: Vec<String>,
    #[serde(default)]
    pub(crate) jwks: Option<RawJwks>,
    #[serde(default)]
    pub(crate) introspection: Option<RawIntrospection>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwks {
    pub(crate) url: String,
    #[serde(default = "default_jwks_refresh_secs")]
    pub(crate) refresh_secs: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIntrospection {
    pub(crate) url: String,
    pub(crate) client_id: String,
    #[serde(default)]
    pub(crate) client_secret_file: Option<String>,
    #[serde(default = "default_introspection_cache_ttl_secs")]
    pub(crate) cache_ttl_secs: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub(crate) backend: RawBackend,
    #[serde(default)]
    pub(crate) path: Option<String>,
    #[serde(default)]
    pub(crate) urls: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) cluster: Option<bool>,
    #[serde(default)]
    pub(crate) timeout_ms: Option<u64>,
    #[serde(default)]
    pub(crate) key_prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawBackend {
    Embedded,
    Redis,
}

/// Redis store defaults (applied when the backend is `redis`).
pub(crate) const DEFAULT_REDIS_TIMEOUT_MS: u64 = 250;
pub(crate) const DEFAULT_REDIS_KEY_PREFIX: &str = "pgw";

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConsent {
    pub(crate) ref_secret_file: String,
    #[serde(default = "default_consent_cache_ttl_ms")]
    pub(crate) cache_ttl_ms: u64,
    #[serde(default = "default_staleness_bound_ms")]
    pub(crate) staleness_bound_ms: u64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub(crate) dir: String,
    #[serde(default = "default_audit_mode")]
    pub(crate) mode: RawAuditMode,
    #[serde(default = "default_segment_max_bytes")]
    pub(crate) segment_max_bytes: u64,
    #[serde(default = "default_segment_max_age_secs")]
    pub(crate) segment_max_age_secs: u64,
    #[serde(default = "default_checkpoint_interval_secs")]
    pub(crate) checkpoint_interval_secs: u64,
    pub(crate) checkpoint_key: String,
    #[serde(default)]
    pub(crate) forward_stream: Option<String>,
    pub(crate) customer_hash_key_file: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawAuditMode {
    Sync,
    Async,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawRateLimits {
    pub(crate) instances: u64,
    pub(crate) redis_timeout_ms: u64,
    pub(crate) outage_policy: RawOutagePolicies,
}

impl Default for RawRateLimits {
    fn default() -> Self {
        RawRateLimits {
            instances: 1,
            redis_timeout_ms: 20,
            outage_policy: RawOutagePolicies::default(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawOutagePolicies {
    pub(crate) customer_data: RawOutagePolicy,
    pub(crate) default: RawOutagePolicy,
}

impl Default for RawOutagePolicies {
    fn default() -> Self {
        RawOutagePolicies {
            customer_data: RawOutagePolicy::FailClosed,
            default: RawOutagePolicy::Local,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RawOutagePolicy {
    FailOpen,
    FailClosed,
    Local,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawTelemetry {
    pub(crate) otlp_endpoint: Option<String>,
    pub(crate) service_name: String,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        RawTelemetry {
            otlp_endpoint: None,
            service_name: "partner-gateway".to_owned(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawField {
    pub(crate) tier: Tier,
    #[serde(default)]
    pub(crate) mask: Option<MaskRule>,
}

fn default_min_tls_version() -> String {
    "1.2".to_owned()
}
fn default_connect_timeout_ms() -> u64 {
    250
}
fn default_request_timeout_ms() -> u64 {
    2_000
}
fn default_pool_max_idle_per_host() -> u64 {
    64
}
fn default_token_lifetime_secs() -> u64 {
    300
}
fn default_leeway_secs() -> u64 {
    5
}
fn default_jwks_refresh_secs() -> u64 {
    300
}
fn default_introspection_cache_ttl_secs() -> u64 {
    60
}
fn default_consent_cache_ttl_ms() -> u64 {
    30_000
}
fn default_staleness_bound_ms() -> u64 {
    2_000
}
fn default_audit_mode() -> RawAuditMode {
    RawAuditMode::Sync
}
fn default_segment_max_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_segment_max_age_secs() -> u64 {
    3_600
}
fn default_checkpoint_interval_secs() -> u64 {
    10
}

// === partners/<id>.yaml ===

/// `partners/<id>.yaml`. Top-level keys are optional for the same reason as in
/// [`RawGateway`].
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawPartner {
    pub(crate) id: Option<String>,
    pub(crate) display_name: Option<String>,
    pub(crate) kind: Option<PartnerKind>,
    pub(crate) status: Option<PartnerStatus>,
    pub(crate) certificates: Option<Vec<RawCertificate>>,
    pub(crate) oauth: Option<RawPartnerOAuth>,
    pub(crate) rate_limits: Option<RawPartnerLimits>,
    pub(crate) field_ceiling: Option<Vec<String>>,
    pub(crate) purposes: Option<Vec<String>>,
    pub(crate) campaigns: Option<Vec<String>>,
    pub(crate) products: Option<RawProducts>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    #[serde(default)]
    pub(crate) sha256: Option<String>,
    #[serde(default)]
    pub(crate) subject: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPartnerOAuth {
    pub(crate) client_id: String,
    pub(crate) scopes: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPartnerLimits {
    pub(crate) default: RawLimit,
    #[serde(default)]
    pub(crate) routes: BTreeMap<String, RawLimit>,
}

/// Signed so that `0` and `-1` reach the conversion and get a precise message.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimit {
    pub(crate) rate_per_sec: i64,
    pub(crate) burst: i64,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProducts {
    pub(crate) types: Vec<String>,
}

// === campaigns/<id>.yaml ===

/// `campaigns/<id>.yaml`. Top-level keys are optional for the same reason as in
/// [`RawGateway`].
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawCampaign {
    pub(crate) id: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) starts_at: Option<String>,
    pub(crate) ends_at: Option<String>,
    pub(crate) partners: Option<Vec<String>>,
    pub(crate) rewards: Option<BTreeMap<String, RawReward>>,
    pub(crate) caps: Option<RawCaps>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReward {
    pub(crate) amount_minor: u64,
    pub(crate) currency: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCaps {
    pub(crate) codes_per_partner_per_day: u32,
    pub(crate) conversions_per_code: u32,
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Every `default` the schema documents under `properties`, by JSON pointer.
    fn documented_defaults(schema: &Value, node: &Value, at: &str, out: &mut Vec<(String, Value)>) {
        let Some(properties) = node.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (key, site) in properties {
            let target = match site.get("$ref").and_then(Value::as_str) {
                Some(r) => schema.pointer(r.trim_start_matches('#')).unwrap(),
                None => site,
            };
            let pointer = format!("{at}/{key}");
            if let Some(default) = site.get("default").or_else(|| target.get("default")) {
                out.push((pointer.clone(), default.clone()));
            }
            documented_defaults(schema, target, &pointer, out);
        }
    }

    #[test]
    fn gateway_schema_defaults_are_the_raw_defaults() {
        let minimal = "instance_id: gw\n\
            partner_listener: { addr: 0.0.0.0:8443, server_cert: c, server_key: k, client_ca: ca }\n\
            admin_listener: { addr: 127.0.0.1:9090, token_env: T }\n\
            upstreams: { tags: http://a:1, products: http://a:1, referrals: http://a:1 }\n\
            oauth: { issuer: https://x, audience: y, signing_keys: [], external: [] }\n\
            store: { backend: embedded, path: s }\n\
            consent: { ref_secret_file: r }\n\
            audit: { dir: d, checkpoint_key: c, customer_hash_key_file: h }\n\
            fields: {}\n";
        let raw: RawGateway = serde_saphyr::from_str(minimal).unwrap();
        let mut value = serde_json::to_value(&raw).unwrap();
        // Whole sections that default when absent.
        value["http"] = serde_json::to_value(RawHttp::default()).unwrap();
        value["rate_limits"] = serde_json::to_value(RawRateLimits::default()).unwrap();
        value["telemetry"] = serde_json::to_value(RawTelemetry::default()).unwrap();

        let schema: Value = serde_json::from_str(crate::schema::GATEWAY_SCHEMA).unwrap();
        let mut defaults = Vec::new();
        documented_defaults(&schema, &schema, "", &mut defaults);
        assert!(defaults.len() > 30, "{defaults:?}");
        for (pointer, default) in defaults {
            let expected = match pointer.as_str() {
                // Redis-only settings default in the conversion.
                "/store/cluster" => Value::from(false),
                "/store/timeout_ms" => Value::from(DEFAULT_REDIS_TIMEOUT_MS),
                "/store/key_prefix" => Value::from(DEFAULT_REDIS_KEY_PREFIX),
                // Defaults inside list items (external issuers) are checked below.
                p if p.starts_with("/oauth/external") => continue,
                p => value.pointer(p).cloned().unwrap_or(Value::Null),
            };
            assert_eq!(expected, default, "schema default of {pointer}");
        }

        let jwks: RawJwks = serde_saphyr::from_str("url: https://x\n").unwrap();
        let intro: RawIntrospection =
            serde_saphyr::from_str("url: https://x\nclient_id: c\n").unwrap();
        let external =
            &schema["properties"]["oauth"]["properties"]["external"]["items"]["properties"];
        assert_eq!(
            external["jwks"]["properties"]["refresh_secs"]["default"],
            jwks.refresh_secs
        );
        assert_eq!(
            external["introspection"]["properties"]["cache_ttl_secs"]["default"],
            intro.cache_ttl_secs
        );
    }
}
