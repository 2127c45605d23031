#![allow(unreachable_pub)]
//! gateway-auth integration suites, one binary to keep link time down.

mod common;
mod external;
mod layer;
mod store;
mod token_endpoint;
mod verify;
