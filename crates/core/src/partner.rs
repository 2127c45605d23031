//! Partner attributes that more than one crate needs.

use serde::{Deserialize, Serialize};

/// What kind of institution a partner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartnerKind {
    /// A bank.
    Bank,
    /// A fund house.
    FundHouse,
    /// An insurer.
    Insurer,
}

/// Whether a partner may call the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartnerStatus {
    /// Calls are served.
    Active,
    /// Every request is refused with `partner-suspended`; its tokens stop working.
    Suspended,
}
