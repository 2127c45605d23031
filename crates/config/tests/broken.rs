//! Broken configurations: each one is the sample with one mistake, and the load reports that
//! mistake alone, with its file, line and column, JSON pointer and message.

mod common;

use common::*;
use gateway_config::Sources;

// === syntax and schema ===

#[test]
fn yaml_syntax_error_is_reported_with_line_and_column() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-insurer.yaml",
        "scopes: [tags:read, products:read, referrals:read]",
        "scopes: [tags:read, products:read",
    );
    let p = only_problem(&s);
    // The unclosed flow list runs on until the ':' of the next key.
    assert_problem(
        &p,
        "partners/demo-insurer.yaml",
        Some((11, 12)),
        None,
        "YAML syntax: illegal placement of ':' indicator",
    );
}

#[test]
fn wrong_type_is_reported_at_the_value() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "max_body_bytes: 65536",
        "max_body_bytes: big",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((27, 19)),
        Some("/http/max_body_bytes"),
        "/http/max_body_bytes: expected an integer (a whole number), found the string \"big\"",
    );
    assert_eq!(
        p.hint.as_deref(),
        Some("largest request body accepted, in bytes")
    );
}

#[test]
fn unknown_key_is_reported_at_the_key_with_the_allowed_keys() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-fund.yaml",
        "kind: fund_house\n",
        "kind: fund_house\ncolour: blue\n",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-fund.yaml",
        Some((5, 1)),
        Some("/colour"),
        "unknown key \"colour\"",
    );
    assert!(
        p.hint
            .as_deref()
            .unwrap()
            .starts_with("allowed keys are campaigns, certificates,")
    );
}

#[test]
fn nested_unknown_key_names_its_mapping() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "  max_headers: 64\n",
        "  max_headers: 64\n  max_header: 64\n",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((33, 3)),
        Some("/http/max_header"),
        "/http: unknown key \"max_header\"",
    );
}

#[test]
fn missing_required_key_is_reported_where_its_mapping_starts() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "  client_ca: ../certs/dev/ca.pem          # partner client certificates must chain to this bundle\n",
        "",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((7, 1)),
        Some("/partner_listener"),
        "/partner_listener: missing required key \"client_ca\"",
    );
    assert_eq!(
        p.hint.as_deref(),
        Some("client_ca: CA bundle that partner client certificates must chain to (PEM)")
    );
}

#[test]
fn value_outside_an_enum_lists_the_choices() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-bank.yaml",
        "kind: bank",
        "kind: broker",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-bank.yaml",
        Some((4, 7)),
        Some("/kind"),
        "/kind: \"broker\" is not one of \"bank\", \"fund_house\", \"insurer\"",
    );
}

#[test]
fn unquoted_tls_version_is_explained() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "min_tls_version: \"1.2\"",
        "min_tls_version: 1.2",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((12, 20)),
        Some("/partner_listener/min_tls_version"),
        "/partner_listener/min_tls_version: 1.2 is not one of \"1.2\", \"1.3\"",
    );
    assert!(p.hint.as_deref().unwrap().contains("quoted"));
}

#[test]
fn empty_file_is_reported() {
    let s = sample().with("campaigns/spring-referral-2027.yaml", "# nothing yet\n");
    let report = report(&s);
    // The partners still name the campaign, but its file is known to be broken.
    assert_eq!(report.len(), 1, "{report}");
    assert_problem(
        &report.problems()[0],
        "campaigns/spring-referral-2027.yaml",
        None,
        None,
        "file is empty",
    );
}

// === conversion ===

#[test]
fn unknown_scope_lists_the_allowed_scopes() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-bank.yaml",
        "[tags:read, products:read",
        "[tags:write, products:read",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-bank.yaml",
        Some((16, 12)),
        Some("/oauth/scopes/0"),
        "unknown scope \"tags:write\"",
    );
    assert_eq!(
        p.to_string(),
        "partners/demo-bank.yaml:16:12: unknown scope \"tags:write\" (hint: allowed scopes are \
         tags:read, products:read, referrals:write, referrals:read)"
    );
}

#[test]
fn unknown_route_in_limits() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-bank.yaml",
        "    customer_tags:",
        "    customer_tag:",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-bank.yaml",
        Some((21, 5)),
        Some("/rate_limits/routes/customer_tag"),
        "unknown route \"customer_tag\" in rate_limits.routes",
    );
    assert!(p.hint.as_deref().unwrap().contains("customer_tags"));
}

#[test]
fn zero_rate_and_negative_burst() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-fund.yaml",
        "default: { rate_per_sec: 100, burst: 200 }",
        "default: { rate_per_sec: 0, burst: -1 }",
    );
    let report = report(&s);
    assert_eq!(report.len(), 2, "{report}");
    assert_problem(
        &report.problems()[0],
        "partners/demo-fund.yaml",
        Some((12, 28)),
        Some("/rate_limits/default/rate_per_sec"),
        "rate_per_sec must be at least 1, found 0",
    );
    assert_problem(
        &report.problems()[1],
        "partners/demo-fund.yaml",
        Some((12, 38)),
        Some("/rate_limits/default/burst"),
        "burst must be at least 1, found -1",
    );
}

#[test]
fn bad_fingerprint() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-fund.yaml",
        "  - subject: CN=demo-fund,O=Demo Fund",
        "  - sha256: ab:cd:ef",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-fund.yaml",
        Some((7, 13)),
        Some("/certificates/0/sha256"),
        "\"ab:cd:ef\" is not a SHA-256 fingerprint",
    );
}

#[test]
fn subject_with_spaces_after_commas() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-fund.yaml",
        "CN=demo-fund,O=Demo Fund",
        "CN=demo-fund, O=Demo Fund",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-fund.yaml",
        Some((7, 14)),
        Some("/certificates/0/subject"),
        "certificate subject \"CN=demo-fund, O=Demo Fund\" is not an RFC 4514 name: it has spaces around ',' or '='",
    );
}

#[test]
fn partner_without_a_certificate_pin() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-insurer.yaml",
        "certificates:\n  - subject: CN=demo-insurer,O=Demo Insurer\n",
        "certificates: []\n",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-insurer.yaml",
        Some((6, 1)),
        Some("/certificates"),
        "partner \"demo-insurer\" has no certificate pin, so it can never connect",
    );
}

#[test]
fn id_differs_from_file_name() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-insurer.yaml",
        "\nid: demo-insurer",
        "\nid: demo-insurance",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-insurer.yaml",
        Some((2, 5)),
        Some("/id"),
        "id \"demo-insurance\" differs from the file name \"demo-insurer\"",
    );
    assert_eq!(
        p.hint.as_deref(),
        Some("rename the file to partners/demo-insurance.yaml, or set id: demo-insurer")
    );
}

#[test]
fn bad_upstream_url() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "tags: http://127.0.0.1:8600/crm",
        "tags: https://127.0.0.1:8600/crm",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((19, 9)),
        Some("/upstreams/tags"),
        "bad upstream URL \"https://127.0.0.1:8600/crm\": upstream URL must start with http:// \
         (upstreams are plain HTTP on the internal network)",
    );
}

#[test]
fn bad_listener_address() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "addr: 127.0.0.1:9090",
        "addr: localhost:9090",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((15, 9)),
        Some("/admin_listener/addr"),
        "\"localhost:9090\" is not an ip:port address",
    );
}

#[test]
fn two_active_signing_keys() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "      status: active                      # active (signs) | next (published, not signing yet) | retired\n",
        "      status: active\n    - kid: dev-2\n      algorithm: EdDSA\n      private_key: ../data/keys/token-dev-1.pem\n      status: active\n",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((53, 15)),
        Some("/oauth/signing_keys/1/status"),
        "signing keys \"dev-1\" and \"dev-2\" are both active",
    );
}

#[test]
fn duplicate_signing_key_id() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "      status: active                      # active (signs) | next (published, not signing yet) | retired\n",
        "      status: active\n    - kid: dev-1\n      algorithm: EdDSA\n      private_key: ../data/keys/token-dev-1.pem\n      status: next\n",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((50, 12)),
        Some("/oauth/signing_keys/1/kid"),
        "signing key id \"dev-1\" is used twice",
    );
}

#[test]
fn sensitive_field_without_mask() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "mobile:                { tier: sensitive, mask: mobile }",
        "mobile:                { tier: sensitive }",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((97, 3)),
        Some("/fields/mobile"),
        "sensitive field \"mobile\" has no mask",
    );
}

#[test]
fn mask_on_a_public_field() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "occupation:            { tier: public }",
        "occupation:            { tier: public, mask: redact }",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((92, 48)),
        Some("/fields/occupation/mask"),
        "field \"occupation\" has tier public and is never masked",
    );
}

#[test]
fn campaign_ending_before_it_starts() {
    let mut s = sample();
    edit(
        &mut s,
        "campaigns/spring-referral-2027.yaml",
        "ends_at: \"2027-06-30T23:59:59Z\"",
        "ends_at: \"2026-10-01T00:00:00Z\"",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "campaigns/spring-referral-2027.yaml",
        Some((5, 10)),
        Some("/ends_at"),
        "ends_at \"2026-10-01T00:00:00Z\" is not after starts_at \"2026-11-01T00:00:00Z\"",
    );
}

#[test]
fn unknown_product_type() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-insurer.yaml",
        "types: [fixed_income_plus]",
        "types: [fixed_income_plus, annuity]",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-insurer.yaml",
        Some((30, 30)),
        Some("/products/types/1"),
        "unknown product type \"annuity\"",
    );
    assert_eq!(
        p.hint.as_deref(),
        Some("allowed product types are fund, etf, fixed_income_plus")
    );
}

// === missing files ===

#[test]
fn missing_client_ca_file() {
    let s = sample_without(&["../certs/dev/ca.pem"]);
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((11, 14)),
        Some("/partner_listener/client_ca"),
        &format!(
            "file \"../certs/dev/ca.pem\" does not exist (resolved to {DIR}/../certs/dev/ca.pem)"
        ),
    );
    assert_eq!(
        p.hint.as_deref(),
        Some("run `partner-gateway dev` once to generate the dev keys, or create the file")
    );
}

#[test]
fn missing_gateway_file() {
    let mut s = sample();
    s.remove("gateway.yaml");
    let p = only_problem(&s);
    assert_problem(&p, "gateway.yaml", None, None, "gateway.yaml is missing");
}

#[test]
fn yml_extension_is_reported_with_a_hint() {
    let mut s = sample();
    let text = s.remove("partners/demo-insurer.yaml").unwrap();
    s.insert("partners/demo-insurer.yml", text);
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-insurer.yml",
        None,
        None,
        "demo-insurer.yml has the extension .yml and is not read",
    );
    assert_eq!(
        p.hint.as_deref(),
        Some(
            "only partners/*.yaml files are read; rename it to partners/demo-insurer.yaml or move it out of partners/"
        )
    );
}

#[test]
fn dotfiles_are_ignored() {
    let s = sample()
        .with("partners/.demo-bank.yaml.swp", "\u{0}binary")
        .with("campaigns/.keep", "");
    assert!(gateway_config::load_sources(std::path::Path::new(DIR), &s).is_ok());
}

// === cross-checks ===

#[test]
fn duplicate_subject_pin_across_partners() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-fund.yaml",
        "CN=demo-fund,O=Demo Fund",
        "CN=demo-bank,O=Demo Bank",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-fund.yaml",
        Some((7, 14)),
        Some("/certificates/0/subject"),
        "certificate subject \"CN=demo-bank,O=Demo Bank\" is already pinned by partner \"demo-bank\" \
         (partners/demo-bank.yaml:12)",
    );
}

#[test]
fn duplicate_sha256_pin_across_partners() {
    let fp = "AB".repeat(32);
    let colons: Vec<String> = (0..32).map(|_| "ab".to_owned()).collect();
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-bank.yaml",
        "  - subject: CN=demo-bank,O=Demo Bank",
        &format!("  - sha256: {fp}"),
    );
    edit(
        &mut s,
        "partners/demo-fund.yaml",
        "  - subject: CN=demo-fund,O=Demo Fund",
        &format!("  - sha256: \"{}\"", colons.join(":")),
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-fund.yaml",
        Some((7, 13)),
        Some("/certificates/0/sha256"),
        &format!(
            "certificate sha256 {} is already pinned by partner \"demo-bank\" (partners/demo-bank.yaml:12)",
            "ab".repeat(32)
        ),
    );
}

#[test]
fn duplicate_client_id() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-insurer.yaml",
        "client_id: demo-insurer",
        "client_id: demo-bank",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-insurer.yaml",
        Some((9, 14)),
        Some("/oauth/client_id"),
        "client id \"demo-bank\" is already used by partner \"demo-bank\" (partners/demo-bank.yaml:15)",
    );
}

#[test]
fn never_field_in_a_ceiling() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-bank.yaml",
        "  - home_address\n",
        "  - home_address\n  - trade_password_hash\n",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-bank.yaml",
        Some((40, 5)),
        Some("/field_ceiling/14"),
        "field \"trade_password_hash\" has tier never and can never be released",
    );
}

#[test]
fn ceiling_field_not_in_the_catalogue() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-fund.yaml",
        "  - holdings\n",
        "  - holding\n",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-fund.yaml",
        Some((19, 5)),
        Some("/field_ceiling/5"),
        "field \"holding\" is not in the field catalogue",
    );
}

#[test]
fn unknown_campaign_in_a_partner() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-insurer.yaml",
        "campaigns: []",
        "campaigns: [autumn-2027]",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-insurer.yaml",
        Some((28, 13)),
        Some("/campaigns/0"),
        "unknown campaign \"autumn-2027\"",
    );
    assert_eq!(
        p.hint.as_deref(),
        Some("campaigns are files in campaigns/; known campaigns are spring-referral-2027")
    );
}

#[test]
fn partner_lists_a_campaign_that_does_not_list_it() {
    let mut s = sample();
    edit(
        &mut s,
        "partners/demo-insurer.yaml",
        "campaigns: []",
        "campaigns: [spring-referral-2027]",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "partners/demo-insurer.yaml",
        Some((28, 13)),
        Some("/campaigns/0"),
        "campaign \"spring-referral-2027\" does not list partner \"demo-insurer\"",
    );
}

#[test]
fn campaign_with_an_unknown_partner() {
    let mut s = sample();
    edit(
        &mut s,
        "campaigns/spring-referral-2027.yaml",
        "partners: [demo-bank, demo-fund]",
        "partners: [demo-bank, demo-fund, demo-broker]",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "campaigns/spring-referral-2027.yaml",
        Some((6, 34)),
        Some("/partners/2"),
        "unknown partner \"demo-broker\"",
    );
}

#[test]
fn campaign_lists_a_partner_that_does_not_list_it() {
    let mut s = sample();
    edit(
        &mut s,
        "campaigns/spring-referral-2027.yaml",
        "partners: [demo-bank, demo-fund]",
        "partners: [demo-bank, demo-fund, demo-insurer]",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "campaigns/spring-referral-2027.yaml",
        Some((6, 34)),
        Some("/partners/2"),
        "partner \"demo-insurer\" does not list campaign \"spring-referral-2027\"",
    );
}

#[test]
fn a_broken_partner_file_is_not_reported_again_by_its_campaign() {
    let s = sample().with("partners/demo-fund.yaml", "id: [\n");
    let report = report(&s);
    assert_eq!(report.len(), 1, "{report}");
    assert_eq!(
        report.problems()[0].file,
        std::path::Path::new("partners/demo-fund.yaml")
    );
}

#[test]
fn forward_stream_needs_redis() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "  checkpoint_key:",
        "  forward_stream: audit\n  checkpoint_key:",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((71, 19)),
        Some("/audit/forward_stream"),
        "forward_stream needs the redis store backend",
    );
}

#[test]
fn both_admin_token_sources() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "  token_file: ../data/admin.token         # or token_env: PARTNER_GATEWAY_ADMIN_TOKEN\n",
        "  token_file: ../data/admin.token\n  token_env: PARTNER_GATEWAY_ADMIN_TOKEN\n",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((17, 14)),
        Some("/admin_listener/token_env"),
        "set token_file or token_env, not both",
    );
}

// === many at once ===

#[test]
fn many_mistakes_are_all_reported_at_once_sorted_by_file_and_line() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "max_body_bytes: 65536",
        "max_body_bytes: -5",
    );
    edit(
        &mut s,
        "gateway.yaml",
        "mobile:                { tier: sensitive, mask: mobile }",
        "mobile:                { tier: sensitive }",
    );
    edit(
        &mut s,
        "partners/demo-bank.yaml",
        "[tags:read, products:read",
        "[tags:write, products:read",
    );
    edit(
        &mut s,
        "partners/demo-bank.yaml",
        "  - home_address\n",
        "  - home_address\n  - trade_password_hash\n",
    );
    edit(
        &mut s,
        "partners/demo-fund.yaml",
        "CN=demo-fund,O=Demo Fund",
        "CN=demo-bank,O=Demo Bank",
    );
    edit(
        &mut s,
        "partners/demo-fund.yaml",
        "rate_per_sec: 100",
        "rate_per_sec: 0",
    );
    edit(
        &mut s,
        "partners/demo-insurer.yaml",
        "\nid: demo-insurer",
        "\nid: demo-insurance",
    );
    edit(
        &mut s,
        "partners/demo-insurer.yaml",
        "client_id: demo-insurer",
        "client_id: demo-bank",
    );
    edit(
        &mut s,
        "campaigns/spring-referral-2027.yaml",
        "partners: [demo-bank, demo-fund]",
        "partners: [demo-bank, demo-fund, nobody]",
    );
    let s = s.with("campaigns/autumn.yml", "id: autumn\n");
    let mut s: Sources = s;
    s.insert(
        "partners/demo-broker.yaml",
        "id: demo-broker\nkind: broker\n",
    );

    let report = report(&s);
    let lines: Vec<String> = report
        .problems()
        .iter()
        .map(|p| {
            let at = p
                .location
                .line_col
                .map(|lc| format!(":{}", lc.line))
                .unwrap_or_default();
            format!("{}{at} {}", p.file.display(), p.message)
        })
        .collect();
    assert_eq!(
        lines,
        [
            "campaigns/autumn.yml autumn.yml has the extension .yml and is not read",
            "campaigns/spring-referral-2027.yaml:6 unknown partner \"nobody\"",
            "gateway.yaml:27 /http/max_body_bytes: -5 is less than the minimum of 1",
            "gateway.yaml:97 sensitive field \"mobile\" has no mask",
            "partners/demo-bank.yaml:16 unknown scope \"tags:write\"",
            "partners/demo-bank.yaml:40 field \"trade_password_hash\" has tier never and can never be released",
            "partners/demo-broker.yaml:1 missing required key \"certificates\"",
            "partners/demo-broker.yaml:1 missing required key \"display_name\"",
            "partners/demo-broker.yaml:1 missing required key \"oauth\"",
            "partners/demo-broker.yaml:1 missing required key \"rate_limits\"",
            "partners/demo-broker.yaml:1 missing required key \"status\"",
            "partners/demo-broker.yaml:2 /kind: \"broker\" is not one of \"bank\", \"fund_house\", \"insurer\"",
            "partners/demo-fund.yaml:7 certificate subject \"CN=demo-bank,O=Demo Bank\" is already pinned by partner \"demo-bank\" (partners/demo-bank.yaml:12)",
            "partners/demo-fund.yaml:12 rate_per_sec must be at least 1, found 0",
            "partners/demo-insurer.yaml:2 id \"demo-insurance\" differs from the file name \"demo-insurer\"",
            "partners/demo-insurer.yaml:9 client id \"demo-bank\" is already used by partner \"demo-bank\" (partners/demo-bank.yaml:15)",
        ]
    );
    // Display: one problem per line, in the same order.
    assert_eq!(report.to_string().lines().count(), lines.len());
}

// === operator traps ===

#[test]
fn admin_and_partner_listeners_on_the_same_port() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "addr: 127.0.0.1:9090",
        "addr: 127.0.0.1:8443",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((15, 9)),
        Some("/admin_listener/addr"),
        "admin listener 127.0.0.1:8443 and partner listener 0.0.0.0:8443 use the same port",
    );
}

#[test]
fn several_redis_urls_without_cluster() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "  backend: embedded\n  path: ../data/state.redb\n",
        "  backend: redis\n  urls: [redis://10.0.0.1:6379/, redis://10.0.0.2:6379/]\n",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((53, 3)),
        Some("/store/urls"),
        "2 Redis URLs given but cluster is false",
    );
}

#[test]
fn external_issuer_naming_an_unknown_partner() {
    let mut s = sample();
    edit(
        &mut s,
        "gateway.yaml",
        "\nstore:\n",
        "  external:\n    - issuer: https://as.example\n      audience: partner-gateway\n      \
         partners: [demo-bank, demo-bnak]\n      jwks: { url: https://as.example/jwks.json }\n\nstore:\n",
    );
    let p = only_problem(&s);
    assert_problem(
        &p,
        "gateway.yaml",
        Some((53, 29)),
        Some("/oauth/external/0/partners/1"),
        "unknown partner \"demo-bnak\"",
    );
}
