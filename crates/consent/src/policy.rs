//! The partner facts consent decisions need, without depending on the config crate.

use std::collections::BTreeSet;

use gateway_core::PartnerId;

/// What consent rules need to know about one partner: filled by the integrator from
/// `gateway_config::Partner` (`field_ceiling`, `purposes`, `is_active()`), ideally once per
/// config load and shared behind an `Arc`, not rebuilt per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerPolicy {
    /// The partner.
    pub id: PartnerId,
    /// Fields this partner may ever receive (`field_ceiling`).
    pub ceiling: BTreeSet<String>,
    /// Purposes a consent for this partner may name.
    pub purposes: BTreeSet<String>,
    /// `false` when the partner is suspended: no grant is accepted and no consent is active.
    pub active: bool,
}
