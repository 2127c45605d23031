//! The gateway's HTTP side: listeners, the partner stack, handlers, the upstream client, the
//! admin API, metrics and reloading.
//!
//! # Layout
//!
//! - [`listener`]: the mTLS partner listener (accept, handshake, [`gateway_core::PeerIdentity`],
//!   connection limits, HTTP/1.1 and HTTP/2).
//! - [`partner`]: the partner stack, assembled in one function, in request order:
//!
//! ```text
//!  Rescue ─▶ InteractionId ─▶ Audit ─▶ Observe ─▶ Shed ─▶ Identify ─▶ RequireToken
//!         ─▶ RateLimit ─▶ Dispatch ─▶ handlers
//! ```
//!
//! - [`handlers`]: one function per route; [`proxy`]: the pooled upstream client.
//! - [`admin`]: the internal admin listener. [`state`]: configuration in force and reload.
//! - [`edge`]: the rescue and interaction-id layers. [`body`]: the one body type.
//! - [`server`]: binds nothing itself; runs both listeners on listeners it is given.
#![warn(missing_docs)]

pub mod admin;
pub mod body;
mod consents;
pub mod devdata;
pub mod edge;
pub mod handlers;
pub mod json;
pub mod listener;
pub mod metrics;
pub mod partner;
pub mod proxy;
pub mod query;
pub mod registry;
pub mod server;
pub mod state;

pub use body::{Body, BoxError};
pub use state::{GatewayState, Overrides, PrepareError, Prepared, StartError, prepare};
