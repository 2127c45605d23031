//! `partner-config/` → a typed, checked [`Config`], or a [`Report`] of every problem.
//!
//! This crate owns the configuration files and their meaning: `gateway.yaml`,
//! `partners/<id>.yaml` and `campaigns/<id>.yaml`, their JSON Schemas in `schemas/`, the
//! typed [`model`] the rest of the gateway reads, the check report printed by
//! `partner-gateway config check`, and the reload [`diff`]. It does not watch files, bind
//! ports or swap configurations: the `http` crate does that with what [`load`] returns.
//!
//! # The load pipeline
//!
//! ```text
//!  read      Sources::read_dir: gateway.yaml, partners/*.yaml, campaigns/*.yaml
//!    │       (dotfiles skipped; .yml and other extensions reported)
//!  parse     YAML (serde-saphyr) → a JSON value + a JSON pointer → line:column index
//!    │       syntax errors: file:line:col
//!  schema    JSON Schema 2020-12 (schemas/*.schema.json, embedded): every violation,
//!    │       with its JSON pointer and line
//!  convert   raw structs (deny_unknown_fields) → model types: NonZeroU32 rates, Scopes,
//!    │       Routes, Fingerprints, socket addresses, upstream URLs, absolute paths
//!  check     across files: references (campaigns, partners, fields), unique pins and
//!    │       client ids, referenced files exist
//!  result    Ok(Config) with its indexes filled, or Err(Report) with every problem
//! ```
//!
//! Each stage collects every problem it finds and the load fails once, at the end (STYLE §6).
//! A file that fails an early stage skips the later ones, and references to it are not
//! reported again, so one mistake gives one problem.
//!
//! ```no_run
//! # use std::path::Path;
//! match gateway_config::load(Path::new("partner-config")) {
//!     Ok(config) => println!("{} partners", config.partners.len()),
//!     Err(report) => {
//!         // partners/demo-bank.yaml:16:5: unknown scope "tags:write" (hint: allowed ...)
//!         eprintln!("{report}");
//!         std::process::exit(1);
//!     }
//! }
//! ```
//!
//! # API
//!
//! - [`load`] reads a directory; [`load_sources`] takes in-memory [`Sources`] (tests need no
//!   files); [`parse_gateway`], [`parse_partner`] and [`parse_campaign`] check one file
//!   without the cross-file checks.
//! - [`Report`] holds every [`ConfigProblem`] (file, [`Location`], message, hint), sorted by
//!   file then location; its `Display` prints one per line, e.g.
//!   `partners/demo-bank.yaml:16:12: unknown scope "tags:write" (hint: allowed scopes are ...)`.
//! - [`diff`] describes a reload in words; [`needs_restart`] says whether some of it only
//!   applies after a restart.
//! - [`admin_token`] reads the admin bearer token through an [`Env`] ([`SystemEnv`] in the
//!   binary, [`MapEnv`] in tests, so nothing calls `set_var`).
//! - The schemas are embedded as [`GATEWAY_SCHEMA`], [`PARTNER_SCHEMA`] and
//!   [`CAMPAIGN_SCHEMA`].
#![warn(missing_docs)]

mod check;
mod convert;
mod diff;
mod env;
mod load;
pub mod model;
mod raw;
mod report;
mod schema;
mod url;
mod yaml;

pub use convert::PRODUCT_TYPES;
pub use diff::{RESTART_REQUIRED, diff, needs_restart};
pub use env::{AdminTokenError, Env, MIN_ADMIN_TOKEN_LEN, MapEnv, SystemEnv, admin_token};
pub use load::{
    CAMPAIGNS_DIR, GATEWAY_FILE, PARTNERS_DIR, Sources, load, load_sources, parse_campaign,
    parse_gateway, parse_partner,
};
pub use model::*;
pub use report::{ConfigProblem, LineCol, Location, Report};
pub use schema::{CAMPAIGN_SCHEMA, GATEWAY_SCHEMA, PARTNER_SCHEMA};
pub use url::UpstreamUrlError;
