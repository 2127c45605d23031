//! gateway-audit (work in progress).
