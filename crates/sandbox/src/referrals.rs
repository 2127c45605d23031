//! The referral / account-opening service: codes registered by the gateway, and account
//! openings that produce the `account_opened` event an internal service would report.
//!
//! State lives in memory, per running sandbox.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use gateway_core::time::{Clock, UnixTime, format_rfc3339};
use gateway_core::{CampaignId, CustomerId, PartnerId};
use http::{Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::prng::SplitMix64;
use crate::respond::{Body, clip, error, json_value, not_found};

/// The event type an account opening reports.
pub(crate) const ACCOUNT_OPENED: &str = "account_opened";

/// Codes and openings of one sandbox.
#[derive(Debug)]
pub(crate) struct Referrals {
    book: Mutex<Book>,
    /// Random per sandbox, so event ids differ across restarts: the gateway's event intake is
    /// idempotent by event id, and a restarted sandbox must not replay old ids.
    event_seed: u64,
    next_event: AtomicU64,
}

#[derive(Debug, Default)]
struct Book {
    codes: HashMap<String, CodeEntry>,
    /// Openings by customer: a customer opens one account.
    openings: HashMap<CustomerId, AccountOpened>,
}

#[derive(Debug, Clone)]
struct CodeEntry {
    partner_id: PartnerId,
    campaign_id: CampaignId,
    registered_at: UnixTime,
    account_openings: u32,
}

/// `POST /referrals/codes` body.
#[derive(Debug, Deserialize)]
pub(crate) struct RegisterCode {
    code: String,
    partner_id: String,
    campaign_id: String,
}

/// `POST /referrals/account-openings` body.
#[derive(Debug, Deserialize)]
pub(crate) struct OpenAccount {
    code: String,
    customer_id: String,
}

/// The event reported for an account opening.
#[derive(Debug, Clone, Serialize)]
struct AccountOpened {
    event_id: String,
    code: String,
    event_type: &'static str,
    occurred_at: String,
    customer_id: CustomerId,
}

#[derive(Serialize)]
struct CodeView<'a> {
    code: &'a str,
    partner_id: &'a PartnerId,
    campaign_id: &'a CampaignId,
    status: &'static str,
    registered_at: String,
    account_openings: u32,
}

impl Referrals {
    pub(crate) fn new() -> Self {
        Referrals {
            book: Mutex::new(Book::default()),
            event_seed: RandomState::new().hash_one(std::time::SystemTime::now()),
            next_event: AtomicU64::new(0),
        }
    }

    /// Registers a code: 201 when new, 200 when the same registration is repeated, 409 when
    /// the code belongs to another partner or campaign, 400 on a malformed field.
    pub(crate) fn register(&self, request: RegisterCode, clock: &dyn Clock) -> Response<Body> {
        if !is_code(&request.code) {
            return invalid_field("code", "1 to 64 letters, digits, '-' or '_'");
        }
        let Ok(partner_id) = PartnerId::parse(&request.partner_id) else {
            return invalid_field("partner_id", "a partner id such as demo-bank");
        };
        let Ok(campaign_id) = CampaignId::parse(&request.campaign_id) else {
            return invalid_field("campaign_id", "a campaign id such as spring-referral-2027");
        };
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        match book.codes.entry(request.code) {
            Entry::Occupied(entry) => {
                let existing = entry.get();
                if existing.partner_id == partner_id && existing.campaign_id == campaign_id {
                    json_value(StatusCode::OK, &view(entry.key(), existing))
                } else {
                    error(
                        StatusCode::CONFLICT,
                        "code_conflict",
                        "the code is registered for another partner or campaign",
                    )
                }
            }
            Entry::Vacant(entry) => {
                let code = entry.key().clone();
                let registered = entry.insert(CodeEntry {
                    partner_id,
                    campaign_id,
                    registered_at: clock.now(),
                    account_openings: 0,
                });
                json_value(StatusCode::CREATED, &view(&code, registered))
            }
        }
    }

    /// The code's registration and its account openings, or 404.
    pub(crate) fn lookup(&self, code: &str) -> Response<Body> {
        let book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        match book.codes.get(code) {
            Some(entry) => json_value(StatusCode::OK, &view(code, entry)),
            None => not_found(&format!("no referral code {:?}", clip(code))),
        }
    }

    /// Opens an account under a registered code: 201 with the `account_opened` event, 422 for
    /// an unregistered code, 409 (with the first event) when the customer already has an
    /// account, 400 on a malformed field.
    pub(crate) fn open_account(&self, request: OpenAccount, clock: &dyn Clock) -> Response<Body> {
        let Ok(customer_id) = CustomerId::parse(&request.customer_id) else {
            return invalid_field("customer_id", "a customer id such as C000001");
        };
        if !is_code(&request.code) {
            return invalid_field("code", "1 to 64 letters, digits, '-' or '_'");
        }
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(first) = book.openings.get(&customer_id) {
            let body = serde_json::json!({
                "error": "already_opened",
                "detail": "this customer has already opened an account",
                "event": first,
            });
            return json_value(StatusCode::CONFLICT, &body);
        }
        let Some(entry) = book.codes.get_mut(&request.code) else {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_code",
                "register the code with POST /referrals/codes first",
            );
        };
        entry.account_openings += 1;
        let event = AccountOpened {
            event_id: self.event_id(),
            code: request.code,
            event_type: ACCOUNT_OPENED,
            occurred_at: format_rfc3339(clock.now()),
            customer_id: customer_id.clone(),
        };
        book.openings.insert(customer_id, event.clone());
        json_value(StatusCode::CREATED, &event)
    }

    /// A fresh event id in UUID v4 layout.
    fn event_id(&self) -> String {
        let n = self.next_event.fetch_add(1, Ordering::Relaxed);
        let mut r = SplitMix64::for_item(self.event_seed, n);
        let (high, low) = (r.next_u64(), r.next_u64());
        let high = (high & !0xF000) | 0x4000; // version 4
        let low = (low & !(0b11 << 62)) | (0b10 << 62); // RFC 4122 variant
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xFFFF,
            high & 0xFFFF,
            low >> 48,
            low & 0xFFFF_FFFF_FFFF
        )
    }
}

fn view<'a>(code: &'a str, entry: &'a CodeEntry) -> CodeView<'a> {
    CodeView {
        code,
        partner_id: &entry.partner_id,
        campaign_id: &entry.campaign_id,
        status: "active",
        registered_at: format_rfc3339(entry.registered_at),
        account_openings: entry.account_openings,
    }
}

fn is_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn invalid_field(field: &str, expected: &str) -> Response<Body> {
    let body = serde_json::json!({
        "error": "invalid_field",
        "field": field,
        "detail": format!("{field} must be {expected}"),
    });
    json_value(StatusCode::BAD_REQUEST, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_uuid_v4_shaped_and_distinct() {
        let referrals = Referrals::new();
        let a = referrals.event_id();
        let b = referrals.event_id();
        assert_ne!(a, b);
        for id in [&a, &b] {
            assert_eq!(id.len(), 36, "{id}");
            assert_eq!(&id[14..15], "4", "{id}");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        }
        // Another sandbox (e.g. after a restart) does not repeat them.
        assert_ne!(Referrals::new().event_id(), a);
    }

    #[test]
    fn codes_are_url_safe_tokens() {
        assert!(is_code("K7MX-2P4Q_9"));
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(!is_code(bad), "{bad:?}");
        }
    }
}
