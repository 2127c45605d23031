//! Live partner connections, so that a configuration change can close the connections it no
//! longer allows (a suspended partner, a removed pin) within a second, instead of letting
//! keep-alive connections live on under the old decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use gateway_config::Config;
use gateway_core::{PartnerId, PeerIdentity};

/// Every open partner connection, by connection number.
#[derive(Debug, Clone, Default)]
pub struct ConnectionRegistry {
    inner: Arc<Mutex<HashMap<u64, Entry>>>,
}

#[derive(Debug)]
struct Entry {
    peer: PeerIdentity,
    /// The partner the certificate mapped to when the connection opened (for per-partner
    /// connection limits); `None` for trusted-but-unmapped certificates.
    partner: Option<PartnerId>,
    /// Cancelled to ask the connection task to close the connection.
    close: CancellationToken,
}

/// A registered connection. Dropping it removes the connection from the registry.
#[derive(Debug)]
pub struct Registration {
    registry: ConnectionRegistry,
    connection: u64,
    close: CancellationToken,
}

/// Why a connection was refused at registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterError {
    /// The partner already has the maximum number of connections open.
    PartnerConnectionLimit,
}

impl ConnectionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a connection whose handshake completed, unless its partner already has
    /// `per_partner_limit` connections open.
    pub fn register(
        &self,
        peer: &PeerIdentity,
        config: &Config,
        per_partner_limit: usize,
    ) -> Result<Registration, RegisterError> {
        let partner = config
            .partner_for_certificate(&peer.fingerprint, &peer.subject)
            .map(|p| p.id.clone());
        let close = CancellationToken::new();
        let mut map = self.lock();
        if let Some(partner) = &partner {
            let open = map
                .values()
                .filter(|e| e.partner.as_ref() == Some(partner))
                .count();
            if open >= per_partner_limit {
                return Err(RegisterError::PartnerConnectionLimit);
            }
        }
        map.insert(
            peer.connection,
            Entry {
                peer: peer.clone(),
                partner,
                close: close.clone(),
            },
        );
        drop(map);
        Ok(Registration {
            registry: self.clone(),
            connection: peer.connection,
            close,
        })
    }

    /// Asks every connection that `config` no longer allows (certificate maps to no partner,
    /// or to a suspended one) to close. Returns how many were asked.
    pub fn enforce(&self, config: &Config) -> usize {
        let map = self.lock();
        let mut closed = 0;
        for entry in map.values() {
            let allowed = config
                .partner_for_certificate(&entry.peer.fingerprint, &entry.peer.subject)
                .is_some_and(|p| p.is_active());
            // Connections of unmapped certificates were never allowed to do anything but
            // receive 403s; close them too when the decision is re-made.
            if !allowed && !entry.close.is_cancelled() {
                entry.close.cancel();
                closed += 1;
            }
        }
        closed
    }

    /// Open connections of a partner.
    pub fn count_for(&self, partner: &PartnerId) -> usize {
        self.lock()
            .values()
            .filter(|e| e.partner.as_ref() == Some(partner))
            .count()
    }

    /// All open connections.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Registration {
    /// Resolves when the registry asks this connection to close.
    pub async fn closed(&self) {
        self.close.cancelled().await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.connection);
    }
}
