//! TLS for the partner listener: the rustls server configuration, the identity of the peer
//! certificate, and the development PKI.
//!
//! # What this crate owns
//!
//! - [`server_config`]: a rustls [`ServerConfig`](rustls::ServerConfig) restricted to the
//!   BCP 195 (RFC 9325) recommendations — TLS 1.3, and TLS 1.2 with ECDHE and AEAD suites only —
//!   that **requires** a client certificate chaining to the partner CA bundle, and offers ALPN
//!   `h2` and `http/1.1`. rustls never renegotiates, never compresses and never accepts 0-RTT
//!   data unless asked to; this crate does not ask.
//! - [`peer_identity`]: the SHA-256 [`Fingerprint`](gateway_core::Fingerprint) and the RFC 4514
//!   subject of the verified leaf certificate, computed once per connection as a
//!   [`PeerIdentity`](gateway_core::PeerIdentity). The subject comes from a small, defensive DER
//!   walker ([`subject`]) that never panics.
//! - [`handshake_failure_reason`]: a bounded set of metric labels for failed handshakes.
//! - [`devpki`]: the generator of `certs/dev/` (CA, server certificate, one client certificate
//!   per sample partner) and the certificate factory tests use.
//! - With the `test-util` feature, `testing`: rustls clients and a raw `ClientHello` builder.
//!
//! # What it does not own
//!
//! Mapping a fingerprint or subject to a partner, suspensions and pins are decisions over the
//! configuration in force and belong to the listener (`gateway-http`). This crate knows
//! nothing of `gateway-config`: callers pass paths and a [`MinTlsVersion`].
//!
//! # Crypto provider
//!
//! aws-lc-rs is the only provider. [`server_config`] builds its provider explicitly
//! ([`crypto_provider`]), so it never depends on the process default; call
//! [`install_crypto_provider`] at the start of `main` and of test harnesses anyway, so that
//! other rustls users in the process (an HTTPS upstream client) never panic looking for one.
//!
//! # Layout
//!
//! - `server.rs`: provider, PEM loading, [`server_config`], [`TlsError`].
//! - `identity.rs`: [`peer_identity`], [`fingerprint`].
//! - `subject.rs`: the DER walker behind [`subject`].
//! - `failure.rs`: [`handshake_failure_reason`].
//! - `devpki.rs`, `testing.rs`.
#![warn(missing_docs)]

pub mod devpki;
mod failure;
mod identity;
mod server;
mod subject;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use failure::{HANDSHAKE_FAILURE_REASONS, handshake_failure_reason};
pub use identity::{fingerprint, peer_identity};
pub use server::{
    ALPN_H2, ALPN_HTTP_1_1, MinTlsVersion, TlsError, crypto_provider, install_crypto_provider,
    read_certificates, read_client_roots, read_private_key, server_config, server_config_from_pem,
};
pub use subject::{DerError, subject};
