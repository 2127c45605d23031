//! Shared state of the partner gateway.
//!
//! This crate owns everything the gateway must remember across requests, restarts and
//! instances: consent grants and the pairwise customer references they issue, revoked token
//! ids, idempotency keys, referral codes and their counters. It does not decide anything: the
//! rules (which fields to release, whether a campaign is active, caps) are applied by the
//! concern crates, which call these traits with the values the rules need.
//!
//! Two backends implement every trait:
//! - [`embedded`]: a redb file on local disk, for one node. A write returns only after it is
//!   durable (redb `Durability::Immediate`), so a 2xx answered on it survives `kill -9`.
//! - [`redis`]: Redis standalone or Cluster, for several gateway instances. Keys carry hash
//!   tags so every multi-key update runs in one slot, atomically (MULTI or a Lua script).
//!
//! [`Store`] wraps either backend behind one type chosen by configuration. Change
//! notifications (consent grants and revocations, token revocations) reach every instance
//! through [`Store::subscribe`]: an in-process broadcast for the embedded backend, Redis
//! pub/sub for the Redis backend.

pub mod model;
pub use model::*;
