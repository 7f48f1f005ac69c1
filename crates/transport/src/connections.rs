//! Connection hygiene (`docs/protocol.md` 3.5): timeouts for the TLS
//! handshake, a request's headers and body, and idle connections; caps on
//! open connections (overall and per remote address) and on requests in
//! flight per peer (per address until a request is authenticated as a
//! provider's, per provider from then on). Slow or stuck peers hold what
//! they hold for a bounded time, and never more than their share.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mimid_wire::ProviderDomain;

/// The settings (`[connections]` in the configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Longest TLS handshake.
    pub handshake: Duration,
    /// Longest time from the first byte of an HTTP/1.1 request to the end
    /// of its headers (h2: see `idle`).
    pub headers: Duration,
    /// Longest time from a request's headers to the end of its body.
    pub body: Duration,
    /// A connection on which no request is being handled is closed after
    /// this long (h2 too, whatever control frames it carries; this is also
    /// how long an h2 peer may take to send a request's headers).
    pub idle: Duration,
    /// Open connections, in all.
    pub max_connections: usize,
    /// Open connections from one remote address.
    pub max_connections_per_ip: usize,
    /// Requests in flight from one remote address, until authenticated as
    /// a provider's (the client API is not counted here).
    pub in_flight_per_ip: usize,
    /// Requests in flight of one authenticated provider.
    pub in_flight_per_provider: usize,
}

impl Default for ConnectionLimits {
    /// Generous for peers that behave (a peer's outbox keeps a few
    /// requests in flight on one or two connections), small enough that
    /// slow peers cannot hold a server's memory or descriptors.
    fn default() -> Self {
        ConnectionLimits {
            handshake: Duration::from_secs(10),
            headers: Duration::from_secs(10),
            body: Duration::from_secs(20),
            idle: Duration::from_secs(60),
            max_connections: 4_096,
            max_connections_per_ip: 256,
            in_flight_per_ip: 64,
            in_flight_per_provider: 256,
        }
    }
}

/// Counts of something held per key, capped per key and optionally in all.
/// Keys are forgotten when their count falls to zero, so memory follows
/// what is held, never what was.
pub(crate) struct Caps<K: Hash + Eq + Clone> {
    total_max: Option<usize>,
    per_key_max: usize,
    counts: Mutex<Counts<K>>,
}

struct Counts<K> {
    total: usize,
    by_key: HashMap<K, usize>,
}

/// Which cap refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Over {
    Total,
    Key,
}

/// One unit held for `key`; given back when dropped.
pub(crate) struct Held<K: Hash + Eq + Clone> {
    caps: Arc<Caps<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Caps<K> {
    pub(crate) fn new(total_max: Option<usize>, per_key_max: usize) -> Arc<Self> {
        Arc::new(Caps {
            total_max,
            per_key_max,
            counts: Mutex::new(Counts {
                total: 0,
                by_key: HashMap::new(),
            }),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts<K>> {
        // The counts are consistent between statements: a panic elsewhere
        // while holding the lock cannot leave them half-updated.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one for `key`, or says which cap is reached.
    pub(crate) fn take(self: &Arc<Self>, key: &K) -> Result<Held<K>, Over> {
        let mut counts = self.counts();
        if self.total_max.is_some_and(|max| counts.total >= max) {
            return Err(Over::Total);
        }
        let held = counts.by_key.get(key).copied().unwrap_or(0);
        if held >= self.per_key_max {
            return Err(Over::Key);
        }
        counts.by_key.insert(key.clone(), held + 1);
        counts.total += 1;
        Ok(Held {
            caps: self.clone(),
            key: key.clone(),
        })
    }

    /// Held now, in all.
    pub(crate) fn total(&self) -> usize {
        self.counts().total
    }

    /// Held now for `key`.
    pub(crate) fn of(&self, key: &K) -> usize {
        self.counts().by_key.get(key).copied().unwrap_or(0)
    }
}

impl<K: Hash + Eq + Clone> Drop for Held<K> {
    fn drop(&mut self) {
        let mut counts = self.caps.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_key.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_key.remove(&self.key);
            }
        }
    }
}

/// The server's in-flight caps.
pub(crate) struct InFlight {
    pub(crate) per_ip: Arc<Caps<IpAddr>>,
    pub(crate) per_provider: Arc<Caps<ProviderDomain>>,
}

impl InFlight {
    pub(crate) fn new(limits: &ConnectionLimits) -> Self {
        InFlight {
            per_ip: Caps::new(None, limits.in_flight_per_ip),
            per_provider: Caps::new(None, limits.in_flight_per_provider),
        }
    }
}

/// What a request in flight holds: its address's unit until it is
/// authenticated as a provider's, then its provider's. Shared between the
/// first layer (which gives it back once the answer is ready) and the
/// provider authentication (which swaps it).
#[derive(Clone)]
pub(crate) struct RequestSlot(Arc<Mutex<Holding>>);

struct Holding {
    _ip: Option<Held<IpAddr>>,
    _provider: Option<Held<ProviderDomain>>,
}

impl RequestSlot {
    pub(crate) fn ip(held: Held<IpAddr>) -> Self {
        RequestSlot(Arc::new(Mutex::new(Holding {
            _ip: Some(held),
            _provider: None,
        })))
    }

    /// Holds the provider's unit instead of the address's (given back now).
    pub(crate) fn to_provider(&self, held: Held<ProviderDomain>) {
        let mut holding = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        holding._ip = None;
        holding._provider = Some(held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_per_key_and_in_all_and_forget_empty_keys() {
        let caps: Arc<Caps<u8>> = Caps::new(Some(3), 2);
        let a1 = caps.take(&1).unwrap();
        let _a2 = caps.take(&1).unwrap();
        assert_eq!(caps.take(&1).err(), Some(Over::Key));
        let _b1 = caps.take(&2).unwrap();
        assert_eq!(caps.take(&3).err(), Some(Over::Total));
        drop(a1);
        assert_eq!((caps.total(), caps.of(&1)), (2, 1));
        let _c1 = caps.take(&3).unwrap();
        drop(_a2);
        assert_eq!(caps.of(&1), 0);
        assert!(!caps.counts().by_key.contains_key(&1));
    }

    #[test]
    fn a_slot_gives_back_what_it_held_when_swapped_and_when_dropped() {
        let ips: Arc<Caps<IpAddr>> = Caps::new(None, 1);
        let providers: Arc<Caps<ProviderDomain>> = Caps::new(None, 1);
        let ip: IpAddr = [127, 0, 0, 9].into();
        let provider: ProviderDomain = "b.example".parse().unwrap();
        let slot = RequestSlot::ip(ips.take(&ip).unwrap());
        let copy = slot.clone();
        assert_eq!(ips.of(&ip), 1);
        copy.to_provider(providers.take(&provider).unwrap());
        assert_eq!((ips.of(&ip), providers.of(&provider)), (0, 1));
        drop(copy);
        assert_eq!(providers.of(&provider), 1, "a copy is still held");
        drop(slot);
        assert_eq!(providers.of(&provider), 0);
    }
}
