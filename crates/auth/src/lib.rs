//! gateway-auth (work in progress).
