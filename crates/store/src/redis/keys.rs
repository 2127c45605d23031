//! Key names. Each helper returns a key whose hash tag (`{…}`) names the slot it lives in; every
//! atomic operation only touches keys built from one tag (see the table in the module docs).

use gateway_core::{CampaignId, ConsentId, CustomerId, CustomerRef, PartnerId};

/// Builds every key and the change channel from the configured prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

/// The keys of one customer's consents: all tagged `{c:<customer>}`.
#[derive(Debug)]
pub(crate) struct CustomerKeys {
    /// Hash: consent id → record JSON as granted.
    pub(crate) consents: String,
    /// Hash: consent id → `revoked_at`.
    pub(crate) revoked: String,
    /// Hash: consent id → `"<expires_at> <partner>|<purpose>"`.
    pub(crate) meta: String,
    /// Hash: `"<partner>|<purpose>"` → consent id of the active grant.
    pub(crate) active: String,
    /// List: consent ids, oldest first.
    pub(crate) order: String,
}

/// The keys of one partner's referral data in one campaign: all tagged
/// `{p:<campaign>:<partner>}`.
#[derive(Debug)]
pub(crate) struct ReferralKeys {
    slot: String,
}

impl Keys {
    /// `prefix` must not contain `{` or `}` (checked by the caller), so the first `{…}` of every
    /// key is the tag we put there.
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub(crate) fn customer(&self, customer: &CustomerId) -> CustomerKeys {
        let slot = format!("{}{{c:{customer}}}", self.prefix);
        CustomerKeys {
            consents: format!("{slot}:consents"),
            revoked: format!("{slot}:revoked"),
            meta: format!("{slot}:meta"),
            active: format!("{slot}:active"),
            order: format!("{slot}:order"),
        }
    }

    /// Consent id → customer id.
    pub(crate) fn consent_locator(&self, id: &ConsentId) -> String {
        format!("{}{{i:{id}}}", self.prefix)
    }

    /// (partner, customer ref) → customer id.
    pub(crate) fn ref_locator(&self, partner: &PartnerId, customer_ref: &CustomerRef) -> String {
        format!("{}{{r:{partner}:{customer_ref}}}", self.prefix)
    }

    pub(crate) fn revoked_token(&self, jti: &str) -> String {
        format!("{}{{t:{jti}}}", self.prefix)
    }

    pub(crate) fn idempotency(&self, key: &str) -> String {
        format!("{}{{k:{key}}}", self.prefix)
    }

    /// Code → `"<campaign>/<partner>"`, the slot of its records.
    pub(crate) fn code_locator(&self, code: &str) -> String {
        format!("{}{{x:{code}}}", self.prefix)
    }

    /// Event id → `"<campaign>/<partner>"` where it is (being) recorded.
    pub(crate) fn event_guard(&self, event_id: &str) -> String {
        format!("{}{{e:{event_id}}}", self.prefix)
    }

    pub(crate) fn referral(&self, campaign: &CampaignId, partner: &PartnerId) -> ReferralKeys {
        ReferralKeys {
            slot: format!("{}{{p:{campaign}:{partner}}}", self.prefix),
        }
    }

    pub(crate) fn epoch(&self) -> String {
        format!("{}{{g}}:epoch", self.prefix)
    }

    pub(crate) fn channel(&self) -> String {
        format!("{}changes", self.prefix)
    }
}

impl ReferralKeys {
    /// String: the code's record JSON.
    pub(crate) fn code(&self, code: &str) -> String {
        format!("{}:code:{code}", self.slot)
    }

    /// String: codes issued on a UTC day (expires after 3 days).
    pub(crate) fn day(&self, day: i64) -> String {
        format!("{}:day:{day}", self.slot)
    }

    /// Hash: `codes`, `conv:<event type>`, `reward:<currency>`.
    pub(crate) fn stats(&self) -> String {
        format!("{}:stats", self.slot)
    }

    /// String: the event's JSON, as first counted.
    pub(crate) fn event(&self, event_id: &str) -> String {
        format!("{}:event:{event_id}", self.slot)
    }

    /// Hash: event type → count, for one code.
    pub(crate) fn conversions(&self, code: &str) -> String {
        format!("{}:conv:{code}", self.slot)
    }

    /// String: all events counted for one code (the cap's counter).
    pub(crate) fn conversions_total(&self, code: &str) -> String {
        format!("{}:convn:{code}", self.slot)
    }
}

/// `"<campaign>/<partner>"`: slugs contain no `/`, so it splits back unambiguously.
pub(crate) fn location(campaign: &CampaignId, partner: &PartnerId) -> String {
    format!("{campaign}/{partner}")
}

/// The inverse of [`location`]; `None` for anything we did not write.
pub(crate) fn parse_location(text: &str) -> Option<(CampaignId, PartnerId)> {
    let (campaign, partner) = text.split_once('/')?;
    Some((
        CampaignId::parse(campaign).ok()?,
        PartnerId::parse(partner).ok()?,
    ))
}

/// The hash tag Redis Cluster hashes for `key`: the text between the first `{` and the next
/// `}`, when non-empty; else the whole key.
#[cfg(test)]
pub(crate) fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_an_atomic_operation_shares_one_tag() {
        let keys = Keys::new("pgw:");
        let customer = CustomerId::parse("C000001").unwrap();
        let c = keys.customer(&customer);
        for k in [&c.consents, &c.revoked, &c.meta, &c.active, &c.order] {
            assert_eq!(hash_tag(k), "c:C000001", "{k}");
        }
        let campaign = CampaignId::parse("spring-2027").unwrap();
        let partner = PartnerId::parse("demo-bank").unwrap();
        let r = keys.referral(&campaign, &partner);
        // Codes and event ids come from outside: braces in them must not move the tag.
        for k in [
            r.code("AB{CD}"),
            r.day(20_000),
            r.stats(),
            r.event("ev}{1"),
            r.conversions("AB{CD}"),
            r.conversions_total("AB{CD}"),
        ] {
            assert_eq!(hash_tag(&k), "p:spring-2027:demo-bank", "{k}");
        }
        assert_eq!(hash_tag(&keys.epoch()), "g");
    }

    #[test]
    fn locations_round_trip() {
        let campaign = CampaignId::parse("spring-2027").unwrap();
        let partner = PartnerId::parse("demo-bank").unwrap();
        assert_eq!(
            parse_location(&location(&campaign, &partner)),
            Some((campaign, partner))
        );
        assert_eq!(parse_location("no-slash"), None);
        assert_eq!(parse_location("a/B"), None);
    }
}
