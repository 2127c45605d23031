//! Issuing referral codes (`POST /v1/referral-codes`) and reading one back
//! (`GET /v1/referral-codes/{code}`).
//!
//! # Idempotency
//!
//! Every issuance carries an `Idempotency-Key` ([`IdempotencyKey`]: 1 to 64 visible ASCII
//! characters). Keys are scoped per partner (two partners may use the same key) and kept for
//! [`IDEMPOTENCY_TTL_SECS`] (24 h) in the shared store, so they hold across restarts (embedded
//! backend) and across instances (Redis backend).
//!
//! | the key was | the request | answer |
//! | --- | --- | --- |
//! | never used (or expired) | any | a new code; the 201 body is stored under the key |
//! | used, completed | same body | [`Issued`] with `replayed: true` and the **stored bytes** |
//! | used | different body | [`IssueError::IdempotencyKeyReused`] |
//! | claimed by a request still running | same body | wait up to [`IssueOptions::in_progress_wait`], polling; then replay, or [`IssueError::InProgress`] |
//!
//! "Same body" compares the parsed request (`campaign_id`, `channel`, `note`), so whitespace
//! and member order do not matter. Rejections (unknown or inactive campaign, daily cap) are not
//! stored: the claim is released and a retry with the same key is evaluated afresh.
//!
//! **One key never yields two codes.** The claim is taken before anything else, so of
//! concurrent requests with one key exactly one issues a code. If storing the response fails
//! after the code was issued, the partner still gets its 201 and the key stays claimed (a retry
//! answers `InProgress` until the key expires) rather than being released for a second code.
//! If issuing itself fails (store unreachable), the claim is released; on an ambiguous Redis
//! timeout this may leave one orphaned code nobody was told about, which counts towards the
//! daily cap and `codes_issued` and can never convert.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use gateway_core::referral::{RANDOM_BYTES, ReferralCode};
use gateway_core::time::UnixTime;
use gateway_core::{CampaignId, PartnerId, Problem, ProblemType};
use gateway_store::{
    CodeRecord, IdempotencyClaim, IdempotencyStore, IssueOutcome, ReferralStore, StoreError,
    StoredResponse,
};

use crate::body::{self, BodyError, Reader, rfc3339};
use crate::campaign::{CampaignRules, Campaigns, EventType};

/// How long an idempotency key is remembered: 24 hours.
pub const IDEMPOTENCY_TTL_SECS: u64 = 86_400;

/// Longest idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 64;

/// Longest `channel`, in characters.
pub const MAX_CHANNEL_LEN: usize = 64;

/// Longest `note`, in characters.
pub const MAX_NOTE_LEN: usize = 256;

/// The status of a fresh code's response.
pub const ISSUED_STATUS: u16 = 201;

/// `POST /v1/referral-codes` body: `{"campaign_id": ..., "channel"?: ..., "note"?: ...}`.
///
/// Built only through [`IssueRequest::from_json`] or [`IssueRequest::new`], so its fields
/// always meet `schemas/referral-code-request.schema.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    campaign_id: CampaignId,
    channel: Option<String>,
    note: Option<String>,
}

/// An `Idempotency-Key` header value: 1 to 64 visible ASCII characters (`!` to `~`).
#[derive(Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// Why an `Idempotency-Key` value is refused (answer 400 `idempotency-key-required`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidIdempotencyKey {
    /// Empty.
    #[error("idempotency key is empty")]
    Empty,
    /// Longer than [`MAX_IDEMPOTENCY_KEY_LEN`].
    #[error("idempotency key has {len} characters; at most 64 are allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A character outside visible ASCII.
    #[error("idempotency key may hold only visible ASCII characters")]
    BadCharacter,
}

/// Tuning of [`issue_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueOptions {
    /// How long a request whose key is held by a concurrent request waits for that request to
    /// finish (polling the store with backoff from 5 ms to 100 ms) before answering
    /// [`IssueError::InProgress`]. Default 2 s.
    pub in_progress_wait: Duration,
}

impl Default for IssueOptions {
    fn default() -> Self {
        IssueOptions {
            in_progress_wait: Duration::from_secs(2),
        }
    }
}

/// A code's state as partners see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeState {
    /// Its campaign is running: conversions count.
    Active,
    /// Its campaign ended (or is no longer configured): nothing counts any more.
    Expired,
}

/// The 201 body of `POST /v1/referral-codes`.
///
/// ```json
/// {"code": "7K3M-Q9TD-X2PA-HV5R-J", "campaign_id": "spring-referral-2027", "status": "active",
///  "channel": "app", "note": "spring mailing",
///  "issued_at": "2026-12-01T10:00:00Z", "expires_at": "2027-06-30T23:59:59Z"}
/// ```
///
/// `channel` and `note` are omitted when absent; `expires_at` is the campaign's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCode {
    /// The code, `XXXX-XXXX-XXXX-XXXX-C`.
    pub code: String,
    /// Its campaign.
    pub campaign_id: CampaignId,
    /// Always `active` when issued.
    pub status: CodeState,
    /// The request's channel label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The request's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When it was issued.
    #[serde(with = "rfc3339")]
    pub issued_at: UnixTime,
    /// When its campaign ends.
    #[serde(with = "rfc3339")]
    pub expires_at: UnixTime,
}

/// A successful issuance, fresh or replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The code as answered.
    pub code: IssuedCode,
    /// The exact 201 body: for a replay, the bytes stored with the first answer.
    pub body: Vec<u8>,
    /// Whether this answers a repeated key (the integrator may add a header saying so).
    pub replayed: bool,
}

/// Why a code was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The campaign is unknown, or the partner does not take part: indistinguishable.
    #[error("campaign {0} is unknown or does not include the partner")]
    CampaignNotFound(CampaignId),
    /// The campaign is not running now.
    #[error("campaign {id} runs from {starts_at} to {ends_at}, not now")]
    CampaignInactive {
        /// The campaign.
        id: CampaignId,
        /// Its start.
        starts_at: UnixTime,
        /// Its end.
        ends_at: UnixTime,
    },
    /// The partner issued `cap` codes for the campaign this UTC day already.
    #[error("daily cap of {cap} codes reached")]
    IssuanceCapReached {
        /// The cap.
        cap: u32,
        /// Seconds until the next UTC day, for `Retry-After`.
        retry_after_secs: u64,
    },
    /// The key was used before with a different request.
    #[error("idempotency key was used with a different request")]
    IdempotencyKeyReused,
    /// A concurrent request holds the key and did not finish within the wait.
    #[error("a request with this idempotency key is still in progress")]
    InProgress,
    /// The system random generator failed (a bug or a broken host).
    #[error("no randomness available for a referral code")]
    Entropy,
    /// The store failed (answer 503; nothing was issued, or see the module docs).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `GET /v1/referral-codes/{code}` answers.
///
/// ```json
/// {"code": "7K3M-Q9TD-X2PA-HV5R-J", "campaign_id": "spring-referral-2027", "status": "active",
///  "channel": "app", "issued_at": "2026-12-01T10:00:00Z", "expires_at": "2027-06-30T23:59:59Z",
///  "conversions": {"account_opened": 1, "funded": 0, "first_trade": 0}, "conversions_total": 1}
/// ```
///
/// `conversions` lists every event type (zero when none counted). `expires_at` is omitted when
/// the campaign is no longer configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeStatus {
    /// The code.
    pub code: String,
    /// Its campaign.
    pub campaign_id: CampaignId,
    /// `active` while the campaign runs, `expired` after.
    pub status: CodeState,
    /// The channel label given at issuance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The note given at issuance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When it was issued.
    #[serde(with = "rfc3339")]
    pub issued_at: UnixTime,
    /// When its campaign ends.
    #[serde(with = "rfc3339::option", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<UnixTime>,
    /// Events counted, by type.
    pub conversions: BTreeMap<String, u64>,
    /// Events counted, all types.
    pub conversions_total: u64,
}

/// Issues a code with the default [`IssueOptions`]; see [`issue_with`].
pub async fn issue<S>(
    store: &S,
    partner: &PartnerId,
    request: &IssueRequest,
    key: &IdempotencyKey,
    campaigns: &Campaigns,
    now: UnixTime,
) -> Result<Issued, IssueError>
where
    S: ReferralStore + IdempotencyStore,
{
    issue_with(
        store,
        partner,
        request,
        key,
        campaigns,
        now,
        &IssueOptions::default(),
    )
    .await
}

/// Issues a referral code for `partner` in `request.campaign_id`, idempotently under `key`
/// (see the module docs for every case).
///
/// Checks, in order: the key (replay, reuse, in progress), the campaign (known and including
/// the partner, else [`IssueError::CampaignNotFound`]; running at `now`, else
/// [`IssueError::CampaignInactive`]), then the partner's daily cap, atomically in the store.
pub async fn issue_with<S>(
    store: &S,
    partner: &PartnerId,
    request: &IssueRequest,
    key: &IdempotencyKey,
    campaigns: &Campaigns,
    now: UnixTime,
    options: &IssueOptions,
) -> Result<Issued, IssueError>
where
    S: ReferralStore + IdempotencyStore,
{
    let scoped = key.store_key(partner);
    let fingerprint = request.fingerprint();
    let deadline = tokio::time::Instant::now() + options.in_progress_wait;
    let mut pause = Duration::from_millis(5);
    loop {
        match store
            .claim(&scoped, &fingerprint, now, IDEMPOTENCY_TTL_SECS)
            .await?
        {
            IdempotencyClaim::New => break,
            IdempotencyClaim::Replay(stored) => return replayed(&scoped, stored),
            IdempotencyClaim::Mismatch => return Err(IssueError::IdempotencyKeyReused),
            IdempotencyClaim::InProgress => {
                if tokio::time::Instant::now() + pause > deadline {
                    return Err(IssueError::InProgress);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
    }

    // This request owns the claim from here on: every path below completes or releases it.
    let issued = match create(store, partner, request, campaigns, now).await {
        Ok(issued) => issued,
        Err(e) => {
            release(store, &scoped).await;
            return Err(e);
        }
    };
    let response = StoredResponse {
        status: ISSUED_STATUS,
        body: issued.body.clone(),
    };
    if let Err(e) = store.complete(&scoped, response).await {
        // The code exists and is answered; releasing the key would let a retry issue a second
        // one, so the key stays claimed until it expires (see the module docs).
        tracing::warn!(partner = %partner, error = %e, "Issued a code but could not store its idempotent response.");
    }
    Ok(issued)
}

/// The status of `code` for `partner`, or `None` when the text is not a well-formed code, its
/// check symbol fails, it is unknown, or it belongs to another partner: all alike, so nothing
/// can be probed.
pub async fn code_status<S: ReferralStore>(
    store: &S,
    partner: &PartnerId,
    code: &str,
    campaigns: &Campaigns,
    now: UnixTime,
) -> Result<Option<CodeStatus>, StoreError> {
    let Some(code) = ReferralCode::parse(code) else {
        return Ok(None);
    };
    let Some(record) = store.code(code.as_str()).await? else {
        return Ok(None);
    };
    if record.partner_id != *partner {
        return Ok(None);
    }
    let counted = store.code_conversions(code.as_str()).await?;
    let rules = campaigns.get(&record.campaign_id);
    let status = match rules {
        Some(rules) if rules.is_active_at(now) => CodeState::Active,
        _ => CodeState::Expired,
    };
    Ok(Some(CodeStatus {
        code: record.code,
        campaign_id: record.campaign_id,
        status,
        channel: record.channel,
        note: record.note,
        issued_at: record.issued_at,
        expires_at: rules.map(|r| r.ends_at),
        conversions_total: counted.values().sum(),
        conversions: by_type(counted),
    }))
}

// === impl IssueRequest ===

impl IssueRequest {
    /// A request from its parts, checked like a body.
    pub fn new(
        campaign_id: CampaignId,
        channel: Option<String>,
        note: Option<String>,
    ) -> Result<IssueRequest, BodyError> {
        let mut members = serde_json::Map::new();
        members.insert("campaign_id".into(), campaign_id.as_str().into());
        if let Some(channel) = channel {
            members.insert("channel".into(), channel.into());
        }
        if let Some(note) = note {
            members.insert("note".into(), note.into());
        }
        // Serialising a map of strings cannot fail.
        let body = serde_json::to_vec(&members).unwrap_or_default();
        IssueRequest::from_json(&body)
    }

    /// Parses and checks a body against `schemas/referral-code-request.schema.json`,
    /// reporting every violation.
    pub fn from_json(body: &[u8]) -> Result<IssueRequest, BodyError> {
        let mut r = Reader::new(body, &["campaign_id", "channel", "note"])?;
        let campaign_id = r.required("campaign_id", 1, 64, |s| {
            CampaignId::parse(s)
                .map(drop)
                .map_err(|_| "must be a campaign id: lower-case letters, digits and inner '-'")
        });
        let channel = r.optional("channel", 0, MAX_CHANNEL_LEN, body::any);
        let note = r.optional("note", 0, MAX_NOTE_LEN, body::any);
        r.finish()?;
        let campaign_id = campaign_id.and_then(|c| CampaignId::parse(&c).ok());
        match campaign_id {
            Some(campaign_id) => Ok(IssueRequest {
                campaign_id,
                channel,
                note,
            }),
            // Unreachable: `finish` reports a missing or malformed id.
            None => Err(BodyError::Invalid(vec![body::violation(
                "/campaign_id",
                "is required",
            )])),
        }
    }

    /// The campaign.
    pub fn campaign_id(&self) -> &CampaignId {
        &self.campaign_id
    }

    /// The channel label.
    pub fn channel(&self) -> Option<&str> {
        self.channel.as_deref()
    }

    /// The note.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    /// SHA-256 of the request's canonical JSON: equal for equal requests, whatever the
    /// whitespace or member order of the bodies they came from.
    pub fn fingerprint(&self) -> [u8; 32] {
        #[derive(Serialize)]
        struct Canonical<'a> {
            campaign_id: &'a str,
            channel: Option<&'a str>,
            note: Option<&'a str>,
        }
        let canonical = Canonical {
            campaign_id: self.campaign_id.as_str(),
            channel: self.channel.as_deref(),
            note: self.note.as_deref(),
        };
        // Serialising a struct of strings cannot fail.
        let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
        sha256(&bytes)
    }
}

// === impl IdempotencyKey ===

impl IdempotencyKey {
    /// Checks a header value.
    pub fn parse(text: &str) -> Result<IdempotencyKey, InvalidIdempotencyKey> {
        if text.is_empty() {
            return Err(InvalidIdempotencyKey::Empty);
        }
        if text.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(InvalidIdempotencyKey::TooLong { len: text.len() });
        }
        if !text.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
            return Err(InvalidIdempotencyKey::BadCharacter);
        }
        Ok(IdempotencyKey(text.to_owned()))
    }

    /// The key as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key under which the store keeps this key for `partner`:
    /// `referral-code:<partner>:<base64url(SHA-256(key))>`. Hashing keeps every character of
    /// the key away from the backend's key syntax (e.g. Redis hash tags).
    pub fn store_key(&self, partner: &PartnerId) -> String {
        let hash = URL_SAFE_NO_PAD.encode(sha256(self.0.as_bytes()));
        format!("referral-code:{partner}:{hash}")
    }
}

impl std::fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdempotencyKey({:?})", self.0)
    }
}

// === impl IssueError ===

impl IssueError {
    /// The problem to answer with, or `None` for a failure of ours or of a dependency
    /// (store, randomness), which travels to the rescue layer instead.
    ///
    /// [`IssueError::InProgress`] is 409 `idempotency-key-in-progress`: retry shortly and the
    /// first request's answer is replayed.
    pub fn problem(&self) -> Option<Problem> {
        Some(match self {
            IssueError::CampaignNotFound(_) => Problem::new(ProblemType::CampaignNotFound),
            IssueError::CampaignInactive { .. } => Problem::new(ProblemType::CampaignInactive)
                .with_detail("the campaign is not running now"),
            IssueError::IssuanceCapReached {
                cap,
                retry_after_secs,
            } => Problem::new(ProblemType::IssuanceCapReached)
                .with_detail(format!(
                    "at most {cap} codes per UTC day may be issued for this campaign"
                ))
                .with_extension("retry_after", (*retry_after_secs).into()),
            IssueError::IdempotencyKeyReused => Problem::new(ProblemType::IdempotencyKeyReused),
            IssueError::InProgress => Problem::new(ProblemType::IdempotencyKeyInProgress)
                .with_detail(
                    "a request with this Idempotency-Key is still being processed; retry shortly",
                ),
            IssueError::Entropy | IssueError::Store(_) => return None,
        })
    }
}

// === helpers ===

/// Checks the campaign and issues a new code under the daily cap.
async fn create<S: ReferralStore>(
    store: &S,
    partner: &PartnerId,
    request: &IssueRequest,
    campaigns: &Campaigns,
    now: UnixTime,
) -> Result<Issued, IssueError> {
    let rules: &CampaignRules = campaigns
        .for_partner(&request.campaign_id, partner)
        .ok_or_else(|| IssueError::CampaignNotFound(request.campaign_id.clone()))?;
    if !rules.is_active_at(now) {
        return Err(IssueError::CampaignInactive {
            id: rules.id.clone(),
            starts_at: rules.starts_at,
            ends_at: rules.ends_at,
        });
    }
    let mut random = [0u8; RANDOM_BYTES];
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| IssueError::Entropy)?;
    let code = ReferralCode::from_random(random);
    let record = CodeRecord {
        code: code.as_str().to_owned(),
        partner_id: partner.clone(),
        campaign_id: rules.id.clone(),
        channel: request.channel.clone(),
        note: request.note.clone(),
        issued_at: now,
    };
    match store
        .issue_code(record, rules.codes_per_partner_per_day)
        .await?
    {
        IssueOutcome::Issued { .. } => {}
        IssueOutcome::CapReached => {
            return Err(IssueError::IssuanceCapReached {
                cap: rules.codes_per_partner_per_day,
                retry_after_secs: (86_400 - now.0.rem_euclid(86_400)).unsigned_abs(),
            });
        }
    }
    let issued = IssuedCode {
        code: code.as_str().to_owned(),
        campaign_id: rules.id.clone(),
        status: CodeState::Active,
        channel: request.channel.clone(),
        note: request.note.clone(),
        issued_at: now,
        expires_at: rules.ends_at,
    };
    let body = crate::to_body(&issued);
    Ok(Issued {
        code: issued,
        body,
        replayed: false,
    })
}

/// The stored answer of a completed key.
fn replayed(key: &str, stored: StoredResponse) -> Result<Issued, IssueError> {
    let code: IssuedCode =
        serde_json::from_slice(&stored.body).map_err(|e| StoreError::Corrupt {
            key: key.to_owned(),
            reason: format!("stored response is not an issued code: {e}"),
        })?;
    Ok(Issued {
        code,
        body: stored.body,
        replayed: true,
    })
}

/// Releases our claim after a failure without effect; a failure to release only delays
/// retries with the same key until it expires.
async fn release<S: IdempotencyStore>(store: &S, key: &str) {
    if let Err(e) = store.abandon(key).await {
        tracing::warn!(error = %e, "Could not release an idempotency key after a failed issuance.");
    }
}

/// Counts by event type, with every known type present.
pub(crate) fn by_type(counted: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut all: BTreeMap<String, u64> = EventType::ALL
        .iter()
        .map(|t| (t.as_str().to_owned(), 0))
        .collect();
    all.extend(counted);
    all
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_visible_ascii_up_to_64() {
        assert!(IdempotencyKey::parse("a").is_ok());
        assert!(IdempotencyKey::parse(&"~".repeat(64)).is_ok());
        assert_eq!(IdempotencyKey::parse(""), Err(InvalidIdempotencyKey::Empty));
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(65)),
            Err(InvalidIdempotencyKey::TooLong { len: 65 })
        );
        for bad in ["a b", "a\tb", "é", "a\u{7f}"] {
            assert_eq!(
                IdempotencyKey::parse(bad),
                Err(InvalidIdempotencyKey::BadCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_are_scoped_per_partner_and_hashed() {
        let key = IdempotencyKey::parse("{tag}/x").unwrap();
        let a = key.store_key(&PartnerId::parse("demo-bank").unwrap());
        let b = key.store_key(&PartnerId::parse("demo-fund").unwrap());
        assert_ne!(a, b);
        assert!(!a.contains('{') && !a.contains('}'));
    }

    #[test]
    fn fingerprints_ignore_spelling_but_not_content() {
        let a = IssueRequest::from_json(br#"{"campaign_id":"spring","channel":"app"}"#).unwrap();
        let b =
            IssueRequest::from_json(b"{ \"channel\" : \"app\",\n \"campaign_id\": \"spring\" }")
                .unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        let c = IssueRequest::from_json(br#"{"campaign_id":"spring","note":"app"}"#).unwrap();
        assert_ne!(a.fingerprint(), c.fingerprint());
        let d = IssueRequest::from_json(br#"{"campaign_id":"spring"}"#).unwrap();
        assert_ne!(a.fingerprint(), d.fingerprint());
    }

    #[test]
    fn request_bodies_report_every_violation() {
        let body = format!(
            r#"{{"campaign_id": "Bad Id", "channel": "{}", "note": 5, "extra": true}}"#,
            "c".repeat(65)
        );
        let Err(BodyError::Invalid(v)) = IssueRequest::from_json(body.as_bytes()) else {
            panic!("expected violations");
        };
        let pointers: Vec<&str> = v.iter().map(|v| v.pointer.as_str()).collect();
        assert_eq!(pointers, ["/campaign_id", "/channel", "/extra", "/note"]);

        let Err(BodyError::Invalid(v)) = IssueRequest::from_json(b"{}") else {
            panic!("expected violations");
        };
        assert_eq!(v[0].pointer, "/campaign_id");
        assert!(matches!(
            IssueRequest::from_json(b"{\"campaign_id\":"),
            Err(BodyError::Malformed(_))
        ));
        // Lengths count characters, not bytes.
        let long_note = format!(r#"{{"campaign_id":"s","note":"{}"}}"#, "推".repeat(256));
        assert!(IssueRequest::from_json(long_note.as_bytes()).is_ok());
    }

    #[test]
    fn issued_code_wire_shape() {
        let issued = IssuedCode {
            code: "0000-0000-0000-0000-0".into(),
            campaign_id: CampaignId::parse("spring").unwrap(),
            status: CodeState::Active,
            channel: Some("app".into()),
            note: None,
            issued_at: UnixTime(1_764_583_200),
            expires_at: UnixTime(1_782_863_999),
        };
        assert_eq!(
            String::from_utf8(crate::to_body(&issued)).unwrap(),
            r#"{"code":"0000-0000-0000-0000-0","campaign_id":"spring","status":"active","channel":"app","issued_at":"2025-12-01T10:00:00Z","expires_at":"2026-06-30T23:59:59Z"}"#
        );
    }
}
