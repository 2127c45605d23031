//! The audit record (owned by the audit trail work, issue 7).
