//! Load tests: the gateway compared, in one run and as ratios, with nginx and with bare
//! rustls+hyper servers on the same machine (issue 8).
//!
//! # Layout
//!
//! The binaries (`src/bin/`):
//!
//! - `upstream` — (a) a fixed 1 KiB JSON responder over plain HTTP, one thread;
//! - `bare-server` — (d) rustls + hyper mTLS answering the same 1 KiB (the ceiling);
//! - `bare-proxy` — (e) rustls + hyper mTLS reverse proxy to (a), pooled hyper-util client;
//! - `loadgen` — the load generator (keep-alive, new connection per request, fixed rate);
//! - `run` — the orchestrator: builds, starts each server pinned to core 0, drives it from
//!   core 1, repeats, and writes `load-tests/results/`.
//!
//! This library holds what they share — the [`client`] side, the [`server`] accept loop, the
//! [`fixture`] body, the [`report`] `loadgen` prints — and the pure parts the unit tests cover: the [`hist`]ogram,
//! [`procfs`] parsing, the [`scenario`] plan, [`results`] (medians, CSV, Markdown, ratios),
//! the SVG [`chart`], the config [`rewrite`]s, the [`nginx`] configuration and request
//! [`template`]s. No test starts a load run.
#![warn(missing_docs)]

pub mod chart;
pub mod client;
pub mod fixture;
pub mod hist;
pub mod nginx;
pub mod procfs;
pub mod report;
pub mod results;
pub mod rewrite;
pub mod scenario;
pub mod server;
pub mod template;
