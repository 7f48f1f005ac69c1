//! Rate limits (`docs/protocol.md` 3.4): token buckets (`governor`) per
//! key, in layers: per remote IP before anything is read, per sending
//! provider once it is authenticated. A request over a limit is answered
//! 429 `rate_limited` with `Retry-After`, having changed nothing.
//!
//! Memory stays bounded under any number of distinct keys: a limiter
//! tracks at most `max_keys`; when full it first forgets keys whose bucket
//! is full again (they are indistinguishable from new ones), and while it
//! is still full every request shares one overflow bucket, so a flood of
//! fresh keys (rotating addresses) is limited as one. The price: a flood of
//! more than `max_keys` fresh keys within a bucket's refill time (burst /
//! rate) also puts the keys already tracked on the shared bucket until
//! room is made (`governor` cannot tell a tracked key from a new one
//! without inserting it).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use mimid_wire::{ProviderDomain, UserId};

use crate::error::TransportError;
use serde::Deserialize;

/// How often a full limiter looks for keys it can forget.
const PRUNE_EVERY: Duration = Duration::from_millis(100);

/// A bucket: `per_second` tokens a second, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> Option<Quota> {
        let per_second = NonZeroU32::new(self.per_second)?;
        let burst = NonZeroU32::new(self.burst)?;
        Some(Quota::per_second(per_second).allow_burst(burst))
    }
}

/// The limits of one server; `None` turns a layer off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Per remote IP address, before TLS-level authentication is looked at
    /// or a body is read.
    pub per_ip: Option<Rate>,
    /// Per sending provider, once its signature or certificate is checked.
    pub per_provider: Option<Rate>,
    /// Per group and sending provider, on `/welcome_information` and
    /// `/external_commit_information`.
    pub per_group: Option<Rate>,
    /// Per member (group and leaf) and sending provider, on
    /// `/group_operation`.
    pub per_member: Option<Rate>,
    /// Per target user, on `/connection_key_packages` and
    /// `/connection_request`, whoever asks.
    pub per_target_user: Option<Rate>,
    /// Keys a limiter tracks at most (memory: ~100 bytes a key).
    pub max_keys: usize,
}

impl Default for RateLimits {
    /// Generous enough for a busy peer provider (a hub's outbox sends
    /// batches, so requests are fewer than messages), tight enough that one
    /// address or provider cannot take the server.
    fn default() -> Self {
        RateLimits {
            per_ip: Some(Rate {
                per_second: 1_000,
                burst: 2_000,
            }),
            per_provider: Some(Rate {
                per_second: 1_000,
                burst: 2_000,
            }),
            per_group: Some(Rate {
                per_second: 20,
                burst: 100,
            }),
            per_member: Some(Rate {
                per_second: 50,
                burst: 200,
            }),
            per_target_user: Some(Rate {
                per_second: 5,
                burst: 20,
            }),
            max_keys: 100_000,
        }
    }
}

/// One layer: a bucket per key, bounded.
pub struct Limiter<K: Hash + Eq + Clone> {
    keyed: DefaultKeyedRateLimiter<K>,
    /// Shared by the keys that find no room.
    overflow: DefaultDirectRateLimiter,
    max_keys: usize,
    /// When room was last made (one caller at a time makes it).
    pruning: Mutex<Option<std::time::Instant>>,
    /// Keys refused lately, and when their bucket has a token again: what
    /// [`Limiter::refusing`] answers without taking anything.
    refused: Mutex<HashMap<K, std::time::Instant>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// `None` if `rate` is zero in either part (the layer is off).
    pub fn new(rate: Rate, max_keys: usize) -> Option<Self> {
        let quota = rate.quota()?;
        Some(Limiter {
            keyed: RateLimiter::keyed(quota),
            overflow: RateLimiter::direct(quota),
            max_keys: max_keys.max(1),
            pruning: Mutex::new(None),
            refused: Mutex::new(HashMap::new()),
        })
    }

    /// How long `key` still has no token, if a check refused it lately:
    /// a request of that key would be refused anyway, so it can be turned
    /// away before work that would be wasted on it (a provider's signature
    /// check). Takes nothing.
    pub fn refusing(&self, key: &K) -> Option<Duration> {
        let refused = self.refused.lock().ok()?;
        let until = refused.get(key)?;
        until.checked_duration_since(std::time::Instant::now())
    }

    /// Remembers that `key` has no token for `wait` (bounded like the
    /// buckets: expired entries go first, and a full table takes no more).
    fn note_refused(&self, key: &K, wait: Duration) {
        let Ok(mut refused) = self.refused.lock() else {
            return;
        };
        let now = std::time::Instant::now();
        if refused.len() >= self.max_keys {
            refused.retain(|_, until| *until > now);
        }
        if refused.len() < self.max_keys || refused.contains_key(key) {
            refused.insert(key.clone(), now + wait);
        }
    }

    /// Takes a token for `key`, or says how long until one is there.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        if self.keyed.len() >= self.max_keys {
            // A full scan at most every PRUNE_EVERY: under a flood of fresh
            // keys, checks stay cheap.
            if let Ok(mut last) = self.pruning.try_lock()
                && last.is_none_or(|at| at.elapsed() >= PRUNE_EVERY)
            {
                self.keyed.retain_recent();
                self.keyed.shrink_to_fit();
                *last = Some(std::time::Instant::now());
            }
            if self.keyed.len() >= self.max_keys {
                let now = self.overflow.clock().now();
                return self.overflow.check().map_err(|n| n.wait_time_from(now));
            }
        }
        let now = self.keyed.clock().now();
        self.keyed.check_key(key).map_err(|n| {
            let wait = n.wait_time_from(now);
            self.note_refused(key, wait);
            wait
        })
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.keyed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keyed.is_empty()
    }
}

/// The layer's 429 if `limiter` refused `key` lately and its bucket has
/// no token yet ([`Limiter::refusing`]); takes nothing.
pub(crate) fn refusing<K: Hash + Eq + Clone>(
    limiter: &Option<Limiter<K>>,
    key: &K,
    layer: &'static str,
) -> Result<(), TransportError> {
    match limiter.as_ref().and_then(|l| l.refusing(key)) {
        Some(wait) => Err(TransportError::RateLimited {
            layer,
            retry_after: retry_after(wait),
        }),
        None => Ok(()),
    }
}

/// Whole seconds to wait, at least one (the `Retry-After` value).
pub fn retry_after(wait: Duration) -> u32 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    u32::try_from(seconds.max(1)).unwrap_or(u32::MAX)
}

/// The server's layers.
pub struct Limiters {
    pub per_ip: Option<Limiter<IpAddr>>,
    pub per_provider: Option<Limiter<ProviderDomain>>,
    /// (sending provider, MLS group id).
    pub per_group: Option<Limiter<(ProviderDomain, Vec<u8>)>>,
    /// (sending provider, MLS group id, leaf index).
    pub per_member: Option<Limiter<(ProviderDomain, Vec<u8>, u32)>>,
    pub per_target_user: Option<Limiter<UserId>>,
}

impl Limiters {
    pub fn new(limits: &RateLimits) -> Self {
        fn layer<K: Hash + Eq + Clone>(rate: Option<Rate>, max_keys: usize) -> Option<Limiter<K>> {
            rate.and_then(|r| Limiter::new(r, max_keys))
        }
        Limiters {
            per_ip: layer(limits.per_ip, limits.max_keys),
            per_provider: layer(limits.per_provider, limits.max_keys),
            per_group: layer(limits.per_group, limits.max_keys),
            per_member: layer(limits.per_member, limits.max_keys),
            per_target_user: layer(limits.per_target_user, limits.max_keys),
        }
    }
}

/// Takes a token from `limiter` (if the layer is on) for `key`, or the
/// layer's 429.
pub(crate) fn take<K: Hash + Eq + Clone>(
    limiter: &Option<Limiter<K>>,
    key: &K,
    layer: &'static str,
) -> Result<(), TransportError> {
    match limiter.as_ref().map(|l| l.check(key)) {
        Some(Err(wait)) => Err(TransportError::RateLimited {
            layer,
            retry_after: retry_after(wait),
        }),
        _ => Ok(()),
    }
}
