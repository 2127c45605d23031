//! What changed between two configurations, in words, for reload logs.

use std::collections::BTreeSet;
use std::fmt::Debug;

use gateway_core::route::Route;

use crate::model::{
    Campaign, Config, GatewaySettings, Limit, Partner, PartnerLimits, StoreSettings,
};

/// Marks a change that takes effect only after a restart.
pub const RESTART_REQUIRED: &str = "(restart required)";

/// The changes from `old` to `new`, one human-readable line each, partners first, then
/// campaigns, then gateway settings. Settings that a reload cannot apply end with
/// [`RESTART_REQUIRED`]. Empty when nothing changed.
pub fn diff(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (id, p) in &old.partners {
        match new.partners.get(id) {
            None => out.push(format!("partner {id} removed")),
            Some(n) => partner_changes(p, n, &mut out),
        }
    }
    for (id, p) in &new.partners {
        if !old.partners.contains_key(id) {
            out.push(format!(
                "partner {id} added ({}, {})",
                status_name(p),
                pins_summary(p)
            ));
        }
    }
    for (id, c) in &old.campaigns {
        match new.campaigns.get(id) {
            None => out.push(format!("campaign {id} removed")),
            Some(n) => campaign_changes(c, n, &mut out),
        }
    }
    for id in new.campaigns.keys() {
        if !old.campaigns.contains_key(id) {
            out.push(format!("campaign {id} added"));
        }
    }
    gateway_changes(&old.gateway, &new.gateway, &mut out);
    if old.dir != new.dir {
        out.push(format!(
            "configuration directory {} → {}",
            old.dir.display(),
            new.dir.display()
        ));
    }
    out
}

/// Whether any change between `old` and `new` needs a restart to take effect (see
/// [`RESTART_REQUIRED`]).
pub fn needs_restart(old: &Config, new: &Config) -> bool {
    let mut out = Vec::new();
    gateway_changes(&old.gateway, &new.gateway, &mut out);
    out.iter().any(|line| line.ends_with(RESTART_REQUIRED))
}

fn status_name(p: &Partner) -> &'static str {
    if p.is_active() { "active" } else { "suspended" }
}

fn pins_summary(p: &Partner) -> String {
    let n = p.pins.len() + p.subjects.len();
    if n == 1 {
        "1 pin".to_owned()
    } else {
        format!("{n} pins")
    }
}

fn partner_changes(old: &Partner, new: &Partner, out: &mut Vec<String>) {
    let id = &new.id;
    if old.status != new.status {
        out.push(format!(
            "partner {id} status {} → {}",
            status_name(old),
            status_name(new)
        ));
    }
    let pins = |p: &Partner| -> BTreeSet<String> {
        p.pins
            .iter()
            .map(|f| format!("sha256 {}", f.to_hex()))
            .chain(p.subjects.iter().map(|s| format!("subject {s}")))
            .collect()
    };
    let (old_pins, new_pins) = (pins(old), pins(new));
    if old_pins != new_pins {
        let added: Vec<String> = new_pins
            .difference(&old_pins)
            .map(|p| format!("+{p}"))
            .collect();
        let removed: Vec<String> = old_pins
            .difference(&new_pins)
            .map(|p| format!("-{p}"))
            .collect();
        let all: Vec<String> = added.into_iter().chain(removed).collect();
        out.push(format!("partner {id} pins changed: {}", all.join(", ")));
    }
    if old.client_id != new.client_id {
        out.push(format!(
            "partner {id} client id {} → {}",
            old.client_id, new.client_id
        ));
    }
    if old.scopes != new.scopes {
        out.push(format!(
            "partner {id} scopes [{}] → [{}]",
            old.scopes, new.scopes
        ));
    }
    if old.rate_limits != new.rate_limits {
        out.push(format!(
            "partner {id} rate limits changed: {} → {}",
            limits_text(&old.rate_limits),
            limits_text(&new.rate_limits)
        ));
    }
    set_change(
        out,
        id.as_str(),
        "field ceiling",
        &old.field_ceiling,
        &new.field_ceiling,
    );
    set_change(out, id.as_str(), "purposes", &old.purposes, &new.purposes);
    set_change(
        out,
        id.as_str(),
        "campaigns",
        &old.campaigns,
        &new.campaigns,
    );
    if old.product_types != new.product_types {
        let show = |t: &Option<BTreeSet<String>>| match t {
            None => "all".to_owned(),
            Some(t) => format!("[{}]", t.iter().cloned().collect::<Vec<_>>().join(", ")),
        };
        out.push(format!(
            "partner {id} product types {} → {}",
            show(&old.product_types),
            show(&new.product_types)
        ));
    }
    if old.display_name != new.display_name || old.kind != new.kind {
        out.push(format!("partner {id} display name or kind changed"));
    }
}

fn set_change<T: Ord + std::fmt::Display>(
    out: &mut Vec<String>,
    owner: &str,
    what: &str,
    old: &BTreeSet<T>,
    new: &BTreeSet<T>,
) {
    if old == new {
        return;
    }
    let added = new.difference(old).map(|x| format!("+{x}"));
    let removed = old.difference(new).map(|x| format!("-{x}"));
    let all: Vec<String> = added.chain(removed).collect();
    out.push(format!(
        "partner {owner} {what} changed: {}",
        all.join(", ")
    ));
}

fn limit_text(l: &Limit) -> String {
    format!("{}/s burst {}", l.rate_per_sec, l.burst)
}

fn limits_text(l: &PartnerLimits) -> String {
    let mut parts = vec![format!("default {}", limit_text(&l.default))];
    parts.extend(
        l.routes.iter().map(|(route, limit): (&Route, &Limit)| {
            format!("{} {}", route.name(), limit_text(limit))
        }),
    );
    parts.join(", ")
}

fn campaign_changes(old: &Campaign, new: &Campaign, out: &mut Vec<String>) {
    let id = &new.id;
    if old.starts_at != new.starts_at || old.ends_at != new.ends_at {
        out.push(format!(
            "campaign {id} window {}..{} → {}..{}",
            gateway_core::time::format_rfc3339(old.starts_at),
            gateway_core::time::format_rfc3339(old.ends_at),
            gateway_core::time::format_rfc3339(new.starts_at),
            gateway_core::time::format_rfc3339(new.ends_at)
        ));
    }
    if old.partners != new.partners {
        let added = new
            .partners
            .difference(&old.partners)
            .map(|x| format!("+{x}"));
        let removed = old
            .partners
            .difference(&new.partners)
            .map(|x| format!("-{x}"));
        let all: Vec<String> = added.chain(removed).collect();
        out.push(format!(
            "campaign {id} partners changed: {}",
            all.join(", ")
        ));
    }
    if old.rewards != new.rewards {
        out.push(format!("campaign {id} rewards changed"));
    }
    if old.codes_per_partner_per_day != new.codes_per_partner_per_day
        || old.conversions_per_code != new.conversions_per_code
    {
        out.push(format!(
            "campaign {id} caps {}/day {}/code → {}/day {}/code",
            old.codes_per_partner_per_day,
            old.conversions_per_code,
            new.codes_per_partner_per_day,
            new.conversions_per_code
        ));
    }
    if old.name != new.name {
        out.push(format!("campaign {id} name changed"));
    }
}

fn gateway_changes(old: &GatewaySettings, new: &GatewaySettings, out: &mut Vec<String>) {
    let mut setting = |name: &str, changed: bool, detail: Option<String>, restart: bool| {
        if !changed {
            return;
        }
        let mut line = format!("gateway {name} changed");
        if let Some(detail) = detail {
            line.push_str(": ");
            line.push_str(&detail);
        }
        if restart {
            line.push(' ');
            line.push_str(RESTART_REQUIRED);
        }
        out.push(line);
    };
    fn arrow<T: Debug>(old: &T, new: &T) -> Option<String> {
        Some(format!("{old:?} → {new:?}"))
    }
    let (op, np) = (&old.partner_listener, &new.partner_listener);
    setting(
        "partner_listener.addr",
        op.addr != np.addr,
        arrow(&op.addr, &np.addr),
        true,
    );
    // Certificates, CA bundle and TLS version are rebuilt on reload (new handshakes).
    setting(
        "partner_listener TLS material",
        op.server_cert != np.server_cert
            || op.server_key != np.server_key
            || op.client_ca != np.client_ca
            || op.min_tls_version != np.min_tls_version,
        None,
        false,
    );
    let (oa, na) = (&old.admin_listener, &new.admin_listener);
    setting(
        "admin_listener.addr",
        oa.addr != na.addr,
        arrow(&oa.addr, &na.addr),
        true,
    );
    setting(
        "admin_listener token source",
        oa.token_file != na.token_file || oa.token_env != na.token_env,
        None,
        false,
    );
    setting(
        "instance_id",
        old.instance_id != new.instance_id,
        arrow(&old.instance_id, &new.instance_id),
        true,
    );
    setting("upstreams", old.upstreams != new.upstreams, None, false);
    setting("http limits", old.http != new.http, None, false);
    setting(
        "oauth",
        old.oauth != new.oauth,
        oauth_detail(old, new),
        false,
    );
    let store = |s: &StoreSettings| match s {
        StoreSettings::Embedded { path } => format!("embedded {}", path.display()),
        StoreSettings::Redis { urls, .. } => format!("redis {}", urls.join(" ")),
    };
    setting(
        "store",
        old.store != new.store,
        Some(format!("{} → {}", store(&old.store), store(&new.store))),
        true,
    );
    setting("consent", old.consent != new.consent, None, false);
    setting("audit", old.audit != new.audit, None, true);
    setting(
        "rate_limits",
        old.rate_limits != new.rate_limits,
        None,
        false,
    );
    setting("telemetry", old.telemetry != new.telemetry, None, true);
    setting("field catalogue", old.fields != new.fields, None, false);
}

/// Signing-key rotation in words; other OAuth changes are only named.
fn oauth_detail(old: &GatewaySettings, new: &GatewaySettings) -> Option<String> {
    let keys = |g: &GatewaySettings| -> Vec<(String, String)> {
        g.oauth
            .signing_keys
            .iter()
            .map(|k| (k.kid.clone(), format!("{:?}", k.status).to_lowercase()))
            .collect()
    };
    let (old_keys, new_keys) = (keys(old), keys(new));
    if old_keys == new_keys {
        return None;
    }
    let mut parts = Vec::new();
    for (kid, status) in &new_keys {
        match old_keys.iter().find(|(k, _)| k == kid) {
            None => parts.push(format!("+key {kid} ({status})")),
            Some((_, was)) if was != status => parts.push(format!("key {kid} {was} → {status}")),
            Some(_) => {}
        }
    }
    for (kid, _) in &old_keys {
        if !new_keys.iter().any(|(k, _)| k == kid) {
            parts.push(format!("-key {kid}"));
        }
    }
    if parts.is_empty() {
        parts.push("signing key files changed".to_owned());
    }
    Some(parts.join(", "))
}
