//! gateway-ratelimit (work in progress).
