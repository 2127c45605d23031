//! The sample `partner-config/` loads cleanly from disk into the documented model, and the
//! reload diff describes edits to it.

mod common;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use gateway_config::{
    AuditMode, Config, KeyStatus, Limit, OutagePolicy, SigningAlgorithm, StoreSettings, TlsVersion,
    diff, load, load_sources, needs_restart,
};
use gateway_core::fields::{MaskRule, Tier};
use gateway_core::partner::{PartnerKind, PartnerStatus};
use gateway_core::route::Route;
use gateway_core::scope::Scope;
use gateway_core::time::parse_rfc3339;
use gateway_core::{CampaignId, ClientId, Fingerprint, PartnerId};

/// A copy of the sample in `<tmp>/partner-config`, with empty placeholders for every file it
/// references (only their existence is checked).
struct SampleCopy {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl SampleCopy {
    fn new() -> SampleCopy {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("partner-config");
        copy_dir(&sample_dir(), &dir);
        for file in REFERENCED_FILES {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "").unwrap();
        }
        SampleCopy { _tmp: tmp, dir }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn id(s: &str) -> PartnerId {
    PartnerId::parse(s).unwrap()
}

fn limit(rate: u32, burst: u32) -> Limit {
    Limit {
        rate_per_sec: NonZeroU32::new(rate).unwrap(),
        burst: NonZeroU32::new(burst).unwrap(),
    }
}

#[test]
fn sample_config_loads_from_disk() {
    let copy = SampleCopy::new();
    let config = load(&copy.dir).unwrap_or_else(|report| panic!("{report}"));
    let g = &config.gateway;

    assert_eq!(config.dir, copy.dir);
    assert_eq!(g.instance_id, "gw-dev-1");
    assert_eq!(
        g.partner_listener.addr,
        "0.0.0.0:8443".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        g.partner_listener.client_ca,
        copy.dir.join("../certs/dev/ca.pem")
    );
    assert!(g.partner_listener.server_cert.is_absolute());
    assert_eq!(g.partner_listener.min_tls_version, TlsVersion::Tls12);
    assert_eq!(
        g.admin_listener.addr,
        "127.0.0.1:9090".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        g.admin_listener.token_file.as_deref(),
        Some(copy.dir.join("../data/admin.token").as_path())
    );
    assert_eq!(g.admin_listener.token_env, None);

    assert_eq!(g.upstreams.tags.authority, "127.0.0.1:8600");
    assert_eq!(g.upstreams.tags.path_prefix, "/crm");
    assert_eq!(g.upstreams.products.path_prefix, "/catalogue");
    assert_eq!(g.upstreams.referrals.url, "http://127.0.0.1:8600/referrals");
    assert_eq!(g.upstreams.connect_timeout, Duration::from_millis(250));
    assert_eq!(g.upstreams.request_timeout, Duration::from_secs(2));
    assert_eq!(g.upstreams.pool_max_idle_per_host, 64);

    assert_eq!(g.http.max_body_bytes, 65_536);
    assert_eq!(g.http.min_body_rate, 1_024);
    assert_eq!(g.http.idle_timeout, Duration::from_secs(60));
    assert_eq!(g.http.h2_max_pending_reset_streams, 32);

    assert_eq!(g.oauth.issuer, "https://localhost:8443");
    assert_eq!(g.oauth.token_lifetime, Duration::from_secs(300));
    assert_eq!(g.oauth.leeway, Duration::from_secs(5));
    assert_eq!(g.oauth.signing_keys.len(), 1);
    let key = &g.oauth.signing_keys[0];
    assert_eq!(
        (key.kid.as_str(), key.algorithm, key.status),
        ("dev-1", SigningAlgorithm::Es256, KeyStatus::Active)
    );
    assert!(g.oauth.external.is_empty());

    assert_eq!(
        g.store,
        StoreSettings::Embedded {
            path: copy.dir.join("../data/state.redb")
        }
    );
    assert_eq!(g.consent.cache_ttl, Duration::from_secs(30));
    assert_eq!(g.consent.staleness_bound, Duration::from_secs(2));
    assert_eq!(g.audit.mode, AuditMode::Sync);
    assert_eq!(g.audit.dir, copy.dir.join("../data/audit"));
    assert_eq!(g.audit.segment_max_bytes, 64 * 1024 * 1024);
    assert_eq!(g.audit.checkpoint_interval, Duration::from_secs(10));
    assert_eq!(g.audit.forward_stream, None);
    assert_eq!(g.rate_limits.instances.get(), 1);
    assert_eq!(g.rate_limits.redis_timeout, Duration::from_millis(20));
    assert_eq!(g.rate_limits.customer_data_outage, OutagePolicy::FailClosed);
    assert_eq!(g.rate_limits.default_outage, OutagePolicy::Local);
    assert_eq!(g.telemetry.otlp_endpoint, None);
    assert_eq!(g.telemetry.service_name, "partner-gateway");

    // The field catalogue of PRODUCT.md §9.
    assert_eq!(g.fields.get("name").unwrap().tier, Tier::Public);
    assert_eq!(
        g.fields.get("mobile").map(|f| (f.tier, f.mask)),
        Some((Tier::Sensitive, Some(MaskRule::Mobile)))
    );
    assert_eq!(g.fields.get("home_address").unwrap().tier, Tier::Secret);
    assert_eq!(
        g.fields.get("trade_password_hash").unwrap().tier,
        Tier::Never
    );
}

#[test]
fn sample_partners_and_campaign_match_the_product() {
    let copy = SampleCopy::new();
    let config = load(&copy.dir).unwrap_or_else(|report| panic!("{report}"));
    assert_eq!(
        config
            .partners
            .keys()
            .map(|p| p.as_str())
            .collect::<Vec<_>>(),
        ["demo-bank", "demo-fund", "demo-insurer"]
    );

    let bank = config.partner(&id("demo-bank")).unwrap();
    assert_eq!(bank.kind, PartnerKind::Bank);
    assert_eq!(bank.status, PartnerStatus::Active);
    assert_eq!(bank.client_id, ClientId::parse("demo-bank").unwrap());
    assert_eq!(bank.subjects, ["CN=demo-bank,O=Demo Bank"]);
    assert!(bank.pins.is_empty());
    assert!(Scope::ALL.iter().all(|s| bank.scopes.contains(*s)));
    assert_eq!(bank.limit_for(Route::CustomerTags), limit(100, 200));
    assert_eq!(bank.limit_for(Route::IssueReferralCode), limit(10, 20));
    assert_eq!(bank.limit_for(Route::Products), limit(200, 400));
    // demo-bank may receive every field but the never-tier ones.
    let releasable: Vec<&str> = config
        .gateway
        .fields
        .iter()
        .filter(|(_, f)| f.tier != Tier::Never)
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        bank.field_ceiling
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        releasable
    );
    assert_eq!(
        bank.product_types.as_ref().unwrap().len(),
        3,
        "{:?}",
        bank.product_types
    );

    let fund = config.partner(&id("demo-fund")).unwrap();
    assert_eq!(fund.kind, PartnerKind::FundHouse);
    assert_eq!(fund.product_types.as_ref().map(|t| t.len()), Some(2));

    let insurer = config.partner(&id("demo-insurer")).unwrap();
    assert_eq!(insurer.kind, PartnerKind::Insurer);
    assert!(!insurer.field_ceiling.contains("holdings"));
    assert!(!insurer.scopes.contains(Scope::ReferralsWrite));
    assert!(insurer.campaigns.is_empty());

    let spring = CampaignId::parse("spring-referral-2027").unwrap();
    let campaign = config.campaign(&spring).unwrap();
    assert_eq!(
        campaign.starts_at,
        parse_rfc3339("2026-11-01T00:00:00Z").unwrap()
    );
    assert!(campaign.ends_at > campaign.starts_at);
    assert_eq!(
        campaign
            .partners
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>(),
        ["demo-bank", "demo-fund"]
    );
    assert_eq!(campaign.rewards.len(), 3);
    assert_eq!(campaign.codes_per_partner_per_day, 1000);
    assert!(bank.campaigns.contains(&spring));
}

#[test]
fn indexes_map_certificates_and_clients_to_partners() {
    let fp = "0f".repeat(32);
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-fund.yaml",
        "certificates:\n",
        &format!("certificates:\n  - sha256: {fp}\n"),
    );
    let config = load_sources(Path::new(DIR), &s).unwrap_or_else(|r| panic!("{r}"));
    let fingerprint = Fingerprint::parse(&fp).unwrap();
    assert_eq!(config.pins.get(&fingerprint), Some(&id("demo-fund")));
    assert_eq!(config.pins.len(), 1);
    assert_eq!(config.subjects.len(), 3);
    assert_eq!(
        config.subjects.get("CN=demo-insurer,O=Demo Insurer"),
        Some(&id("demo-insurer"))
    );
    assert_eq!(config.clients.len(), 3);
    assert_eq!(
        config.clients.get(&ClientId::parse("demo-bank").unwrap()),
        Some(&id("demo-bank"))
    );

    // By fingerprint first, then by subject; unknown certificates map to nobody.
    let other = Fingerprint([7; 32]);
    let by_pin = config
        .partner_for_certificate(&fingerprint, "CN=whoever")
        .unwrap();
    assert_eq!(by_pin.id, id("demo-fund"));
    let by_subject = config
        .partner_for_certificate(&other, "CN=demo-bank,O=Demo Bank")
        .unwrap();
    assert_eq!(by_subject.id, id("demo-bank"));
    assert!(
        config
            .partner_for_certificate(&other, "CN=demo-bank")
            .is_none()
    );
}

#[test]
fn files_on_disk_that_are_not_read_are_reported() {
    let copy = SampleCopy::new();
    std::fs::write(copy.dir.join("partners/notes.txt"), "hello").unwrap();
    std::fs::write(copy.dir.join("partners/.demo-bank.yaml.swp"), [0u8, 1, 2]).unwrap();
    std::fs::create_dir(copy.dir.join("partners/archive")).unwrap();
    std::fs::write(copy.dir.join("campaigns/old.yml"), "id: old\n").unwrap();
    std::fs::write(copy.dir.join("README.md"), "# notes\n").unwrap();
    let report = load(&copy.dir).unwrap_err();
    let lines: Vec<String> = report.problems().iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "campaigns/old.yml: old.yml has the extension .yml and is not read (hint: only \
             campaigns/*.yaml files are read; rename it to campaigns/old.yaml or move it out of \
             campaigns/)",
            "partners/archive: subdirectories are not read (hint: put partners files directly in \
             partners/, or move this directory out of the configuration)",
            "partners/notes.txt: notes.txt is not a .yaml file and is not read (hint: only \
             partners/*.yaml files are read; rename it to partners/notes.yaml or move it out of \
             partners/)",
        ]
    );
}

#[test]
fn a_missing_directory_is_one_problem() {
    let report = load(Path::new("/nonexistent-partner-gateway-test/nowhere")).unwrap_err();
    assert_eq!(report.len(), 2, "{report}");
    assert!(
        report.problems()[0]
            .message
            .starts_with("cannot read the configuration directory"),
        "{report}"
    );
    assert_eq!(report.problems()[1].message, "gateway.yaml is missing");
}

// === diff ===

fn sample_config() -> Config {
    load_sources(Path::new(DIR), &sample()).unwrap_or_else(|r| panic!("{r}"))
}

#[test]
fn diff_of_identical_configs_is_empty() {
    assert_eq!(
        diff(&sample_config(), &sample_config()),
        Vec::<String>::new()
    );
}

#[test]
fn diff_describes_partner_campaign_and_gateway_changes() {
    let old = sample_config();
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-fund.yaml",
        "status: active",
        "status: suspended",
    );
    edit(
        &mut s,
        "partners/demo-fund.yaml",
        "  - subject: CN=demo-fund,O=Demo Fund",
        &format!("  - sha256: {}", "ab".repeat(32)),
    );
    edit(
        &mut s,
        "partners/demo-bank.yaml",
        "customer_tags: { rate_per_sec: 100, burst: 200 }",
        "customer_tags: { rate_per_sec: 50, burst: 200 }",
    );
    edit(
        &mut s,
        "partners/demo-insurer.yaml",
        "scopes: [tags:read, products:read, referrals:read]",
        "scopes: [tags:read, referrals:read]",
    );
    edit(
        &mut s,
        "campaigns/spring-referral-2027.yaml",
        "conversions_per_code: 50",
        "conversions_per_code: 40",
    );
    edit(
        &mut s,
        "gateway.yaml",
        "addr: 127.0.0.1:9090",
        "addr: 127.0.0.1:9091",
    );
    edit(
        &mut s,
        "gateway.yaml",
        "request_timeout_ms: 2000",
        "request_timeout_ms: 3000",
    );
    let new = load_sources(Path::new(DIR), &s).unwrap_or_else(|r| panic!("{r}"));
    let expected: Vec<String> = vec![
        "partner demo-bank rate limits changed: default 200/s burst 400, customer_tags \
         100/s burst 200, referral_code_issue 10/s burst 20 → default 200/s burst 400, \
         customer_tags 50/s burst 200, referral_code_issue 10/s burst 20"
            .into(),
        "partner demo-fund status active → suspended".into(),
        format!(
            "partner demo-fund pins changed: +sha256 {}, -subject CN=demo-fund,O=Demo Fund",
            "ab".repeat(32)
        ),
        "partner demo-insurer scopes [tags:read products:read referrals:read] → [tags:read \
         referrals:read]"
            .into(),
        "campaign spring-referral-2027 caps 1000/day 50/code → 1000/day 40/code".into(),
        "gateway admin_listener.addr changed: 127.0.0.1:9090 → 127.0.0.1:9091 (restart required)"
            .into(),
        "gateway upstreams changed".into(),
    ];
    assert_eq!(diff(&old, &new), expected);
    assert!(needs_restart(&old, &new));
}

#[test]
fn diff_reports_added_and_removed_partners_and_campaigns() {
    let old = sample_config();
    let mut s = sample();
    s.remove("campaigns/spring-referral-2027.yaml");
    edit(
        &mut s,
        "partners/demo-bank.yaml",
        "campaigns: [spring-referral-2027]",
        "campaigns: []",
    );
    edit(
        &mut s,
        "partners/demo-fund.yaml",
        "campaigns: [spring-referral-2027]",
        "campaigns: []",
    );
    s.remove("partners/demo-insurer.yaml");
    let fund = s.get("partners/demo-fund.yaml").unwrap().to_owned();
    s.insert(
        "partners/demo-fund-2.yaml",
        fund.replace("demo-fund", "demo-fund-2")
            .replace("status: active", "status: suspended"),
    );
    let new = load_sources(Path::new(DIR), &s).unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(
        diff(&old, &new),
        [
            "partner demo-bank campaigns changed: -spring-referral-2027",
            "partner demo-fund campaigns changed: -spring-referral-2027",
            "partner demo-insurer removed",
            "partner demo-fund-2 added (suspended, 1 pin)",
            "campaign spring-referral-2027 removed",
        ]
    );
    assert!(!needs_restart(&old, &new));
}

// === one file at a time ===

#[test]
fn single_files_parse_on_their_own() {
    let s = sample();
    let bank = gateway_config::parse_partner(
        s.get("partners/demo-bank.yaml").unwrap(),
        Path::new("partners/demo-bank.yaml"),
    )
    .unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(bank.id, id("demo-bank"));
    let campaign = gateway_config::parse_campaign(
        s.get("campaigns/spring-referral-2027.yaml").unwrap(),
        Path::new("campaigns/spring-referral-2027.yaml"),
    )
    .unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(campaign.partners.len(), 2);

    let copy = SampleCopy::new();
    let settings = gateway_config::parse_gateway(
        s.get("gateway.yaml").unwrap(),
        Path::new("gateway.yaml"),
        &copy.dir,
    )
    .unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(settings.instance_id, "gw-dev-1");
    // Without the placeholder files, every referenced file is reported.
    let report = gateway_config::parse_gateway(
        s.get("gateway.yaml").unwrap(),
        Path::new("gateway.yaml"),
        Path::new(DIR),
    )
    .unwrap_err();
    assert_eq!(report.len(), REFERENCED_FILES.len(), "{report}");
}

#[test]
fn a_single_file_is_checked_against_its_origin() {
    let s = sample();
    let report = gateway_config::parse_partner(
        s.get("partners/demo-bank.yaml").unwrap(),
        Path::new("partners/bank.yaml"),
    )
    .unwrap_err();
    assert_eq!(
        report.to_string(),
        "partners/bank.yaml:2:5: id \"demo-bank\" differs from the file name \"bank\" (hint: \
         rename the file to partners/demo-bank.yaml, or set id: bank)"
    );
    let report =
        gateway_config::parse_campaign("id: x\n", Path::new("campaigns/x.yaml")).unwrap_err();
    assert_eq!(report.len(), 5, "{report}");
}

#[test]
fn partner_for_client_uses_the_client_index() {
    let config = sample_config();
    let client = ClientId::parse("demo-insurer").unwrap();
    assert_eq!(
        config.partner_for_client(&client).unwrap().id,
        id("demo-insurer")
    );
    assert!(
        config
            .partner_for_client(&ClientId::parse("nobody").unwrap())
            .is_none()
    );
}

#[test]
fn diff_describes_a_signing_key_rotation() {
    let old = sample_config();
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "      status: active                      # active (signs) | next (published, not signing yet) | retired\n",
        "      status: retired\n    - kid: dev-2\n      algorithm: EdDSA\n      private_key: ../data/keys/token-dev-1.pem\n      status: active\n",
    );
    let new = load_sources(Path::new(DIR), &s).unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(
        diff(&old, &new),
        ["gateway oauth changed: key dev-1 active → retired, +key dev-2 (active)"]
    );
}

/// Prints how long a load of the sample takes; run with
/// `cargo test --release -p gateway-config --test sample -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a check"]
fn measure_sample_load_time() {
    let s = sample();
    let n = 200;
    let _ = load_sources(Path::new(DIR), &s);
    let start = std::time::Instant::now();
    for _ in 0..n {
        load_sources(Path::new(DIR), &s).unwrap();
    }
    println!("sample load: {:?} per load", start.elapsed() / n);
}
