//! Stand-in internal services of the broker, with deterministic synthetic data, so a partner
//! developer can try the gateway with no other service running.
//!
//! The sandbox owns the *upstream* side of `partner-gateway dev` and `partner-gateway sandbox`:
//! one plain-HTTP listener on loopback that plays the CRM tag service, the product catalogue
//! and the referral / account-opening service under three path prefixes, plus test hooks. It
//! does not own anything the gateway enforces — no TLS, tokens, consent, masking, limits or
//! audit — and it answers plain `application/json` (errors as
//! `{"error": "<code>", "detail": "..."}`), not RFC 9457 problems.
//!
//! # Endpoints
//!
//! The sample `partner-config/gateway.yaml` points `tags` at `http://127.0.0.1:8600/crm`,
//! `products` at `.../catalogue` and `referrals` at `.../referrals`.
//!
//! | method & path | answer |
//! | --- | --- |
//! | `GET /crm/customers/{customer_id}/tags` | 200 `{"customer_id", "tags": {...}}`; 404 for an unknown id. Customers `C000001` … `C002000` ([`data::CUSTOMER_COUNT`]) |
//! | `GET /catalogue/products` | 200 `{"products": [...], "version"}` sorted by `id`, with `ETag: "<version>"`; 304 on a matching `If-None-Match` |
//! | `GET /catalogue/products/{id}` | 200 the product; 404 |
//! | `POST /referrals/codes` `{code, partner_id, campaign_id}` | 201 registered (200 when repeated identically; 409 when the code is another partner's or campaign's) |
//! | `GET /referrals/codes/{code}` | 200 `{code, partner_id, campaign_id, status, registered_at, account_openings}`; 404 |
//! | `POST /referrals/account-openings` `{code, customer_id}` | 201 `{event_id, code, event_type: "account_opened", occurred_at, customer_id}`; 422 for an unregistered code; 409 (with the first event) when the customer already opened an account |
//! | `GET /sandbox/health` | 200 `{"status": "ok"}` (poll it for readiness) |
//! | `GET /sandbox/echo-headers` | 200 `{"method", "path", "version", "headers": {name: value}}` of this request |
//! | `GET /sandbox/last-headers` | 200 `{"headers": {...} \| null}` of the last service request |
//! | `GET /sandbox/controls` | 200 `{"stall_ms", "fail_status", "requests"}` |
//! | `PUT /sandbox/controls/stall` `{"ms": n \| null}` | sets [`Controls::set_stall`] |
//! | `PUT /sandbox/controls/fail` `{"status": n \| null}` | sets [`Controls::set_fail`]; 400 outside 200..=599 |
//! | `POST /sandbox/controls/reset` | [`Controls::reset`] |
//!
//! POST bodies are JSON of at most 16 KiB: a non-JSON `Content-Type` is 415, a larger body
//! 413, bad syntax 400 `malformed_json`, a missing or mistyped field 400 `invalid_request`, a
//! malformed id 400 `invalid_field` (naming the field). A wrong method is 405 with `Allow`;
//! any other path 404. Query strings are ignored (filtering and paging are the gateway's
//! job). Referral state lives in memory, per running sandbox.
//!
//! *Service requests* — everything outside `/sandbox/` — are counted, have their headers
//! kept, wait out the stall and answer the fail status when those [`Controls`] are set.
//!
//! # Performance
//!
//! Customer documents and the catalogue are serialized once, at first use (or in [`start`]),
//! into shared [`bytes::Bytes`]; a request clones those bytes and serializes nothing. The
//! per-request cost on top of hyper is a counter increment and one `HeaderMap` clone for
//! [`Controls::last_headers`].
//!
//! # Layout
//!
//! - [`data`]: the generators and the shared, pre-serialized documents. Pure; no I/O.
//! - `controls`: [`Controls`], the live test hooks.
//! - `service`, `referrals`, `respond`: routing and handlers.
//! - `server`: [`serve`] (the accept loop, mini-redis style), [`start`] and [`SandboxHandle`].
//!
//! # Example
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! let sandbox = gateway_sandbox::start("127.0.0.1:0".parse().unwrap()).await?;
//! let tags_upstream = format!("{}/crm", sandbox.base_url());
//! sandbox.controls().set_fail(Some(503)).unwrap(); // every service request now fails
//! # let _ = tags_upstream;
//! sandbox.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod controls;
pub mod data;
mod prng;
mod referrals;
mod respond;
mod server;
mod service;

pub use controls::{ControlError, Controls};
pub use server::{SandboxHandle, serve, start, start_with};
