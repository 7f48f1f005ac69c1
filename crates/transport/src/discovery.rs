//! Discovery (`docs/protocol.md` 3.3): from a provider domain to the host
//! and port of its DS. The answer's grammar, the cache and its backoff are
//! here; the HTTPS fetch is [`crate::TransportClient::discover`].

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;

use mimid_wire::ProviderDomain;

/// The well-known path a provider domain serves.
pub const WELL_KNOWN_PATH: &str = "/.well-known/mimi/ds-domain";

/// Where a provider's DS is: `host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    pub host: Host,
    pub port: u16,
}

/// The host of an [`Authority`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, lower case.
    Dns(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Dns(h) => write!(f, "{h}:{}", self.port),
            Host::V4(a) => write!(f, "{a}:{}", self.port),
            Host::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}

/// Why a provider's DS could not be found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("invalid ds-domain answer: {0}")]
    Invalid(String),
    #[error("discovery of {domain} failed: {reason}")]
    Failed { domain: String, reason: String },
    /// A recent failure is cached; no request is made before `retry_at`.
    #[error("discovery of {domain} failed recently ({reason}); retry after {retry_at}")]
    BackingOff {
        domain: String,
        reason: String,
        retry_at: u64,
    },
}

fn is_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        // An all-digit top label would read as a (malformed) IPv4 address.
        && !h
            .rsplit('.')
            .next()
            .is_some_and(|top| top.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_port(p: &str) -> Result<u16, DiscoveryError> {
    let bad = || DiscoveryError::Invalid(format!("bad port {p:?}"));
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) || p.starts_with('0') {
        return Err(bad());
    }
    p.parse::<u16>().map_err(|_| bad())
}

/// Parses a `host[:port]` authority (also the form of a static override).
/// The host is a lower-case DNS name, an IPv4 literal or an IPv6 literal in
/// brackets; the port is 1..65535 without leading zeros, 443 when absent.
pub fn parse_authority(s: &str) -> Result<Authority, DiscoveryError> {
    let invalid = || DiscoveryError::Invalid(format!("{s:?} is not host[:port]"));
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(invalid)?;
        let host = Host::V6(v6.parse().map_err(|_| invalid())?);
        let port = match after {
            "" => 443,
            p => parse_port(p.strip_prefix(':').ok_or_else(invalid)?)?,
        };
        (host, port)
    } else {
        let (h, port) = match s.split_once(':') {
            Some((h, p)) => (h, parse_port(p)?),
            None => (s, 443),
        };
        let host = if let Ok(v4) = h.parse::<Ipv4Addr>() {
            Host::V4(v4)
        } else if is_dns_name(h) {
            Host::Dns(h.to_owned())
        } else {
            return Err(invalid());
        };
        (host, port)
    };
    Ok(Authority { host, port })
}

/// Parses the body of `/.well-known/mimi/ds-domain`: one line
/// `host[":"port]`, optionally followed by a single `\n`; nothing else.
pub fn parse_ds_domain(body: &[u8]) -> Result<Authority, DiscoveryError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| DiscoveryError::Invalid("answer is not UTF-8".into()))?;
    let line = text.strip_suffix('\n').unwrap_or(text);
    if line.contains(['\n', '\r', ' ', '\t']) {
        return Err(DiscoveryError::Invalid(format!(
            "{text:?} is not a single host[:port] line"
        )));
    }
    parse_authority(line)
}

/// `max-age` of a `Cache-Control` value, if any.
pub fn max_age(cache_control: &str) -> Option<u64> {
    cache_control.split(',').find_map(|d| {
        let (name, value) = d.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse().ok())
            .flatten()
    })
}

/// Settings of discovery.
#[derive(Clone, Debug)]
pub struct DiscoveryConfig {
    /// Static overrides (domain -> `host[:port]`), checked before the
    /// network (`[federation.peers]`).
    pub overrides: HashMap<ProviderDomain, Authority>,
    /// The port of the provider domain's HTTPS server, where the
    /// well-known path is asked for: 443. Only tests and unusual private
    /// set-ups change it.
    pub well_known_port: u16,
    /// Lifetime of a success without `Cache-Control: max-age` (3600 s).
    pub default_ttl: u64,
    /// Bounds of a success's lifetime (300 s..86400 s).
    pub min_ttl: u64,
    pub max_ttl: u64,
    /// First retry after a failure (5 s), doubling up to `max_backoff`
    /// (900 s).
    pub first_backoff: u64,
    pub max_backoff: u64,
    /// Domains remembered at most (expired entries go first; then the
    /// cache is emptied).
    pub max_entries: usize,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            overrides: HashMap::new(),
            well_known_port: 443,
            default_ttl: 3600,
            min_ttl: 300,
            max_ttl: 86_400,
            first_backoff: 5,
            max_backoff: 900,
            max_entries: 10_000,
        }
    }
}

#[derive(Clone, Debug)]
enum Entry {
    Found {
        authority: Authority,
        until: u64,
    },
    Failed {
        reason: String,
        retry_at: u64,
        backoff: u64,
    },
}

/// The discovery cache: successes for their lifetime, failures with
/// exponential backoff.
#[derive(Debug)]
pub struct DiscoveryCache {
    config: DiscoveryConfig,
    entries: Mutex<HashMap<ProviderDomain, Entry>>,
}

/// What to do for a domain.
#[derive(Debug)]
pub enum Lookup {
    Known(Authority),
    /// Ask the network.
    Fetch,
    Failed(DiscoveryError),
}

impl DiscoveryCache {
    pub fn new(config: DiscoveryConfig) -> Self {
        DiscoveryCache {
            config,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &DiscoveryConfig {
        &self.config
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<ProviderDomain, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The override, a cached answer, a cached failure, or `Fetch`.
    pub fn lookup(&self, domain: &ProviderDomain, now: u64) -> Lookup {
        if let Some(a) = self.config.overrides.get(domain) {
            return Lookup::Known(a.clone());
        }
        match self.entries().get(domain) {
            Some(Entry::Found { authority, until }) if now < *until => {
                Lookup::Known(authority.clone())
            }
            Some(Entry::Failed {
                reason, retry_at, ..
            }) if now < *retry_at => Lookup::Failed(DiscoveryError::BackingOff {
                domain: domain.to_string(),
                reason: reason.clone(),
                retry_at: *retry_at,
            }),
            _ => Lookup::Fetch,
        }
    }

    fn insert(&self, domain: &ProviderDomain, entry: Entry, now: u64) {
        let mut entries = self.entries();
        if entries.len() >= self.config.max_entries && !entries.contains_key(domain) {
            entries.retain(|_, e| match e {
                Entry::Found { until, .. } => now < *until,
                Entry::Failed { retry_at, .. } => now < *retry_at,
            });
            if entries.len() >= self.config.max_entries {
                entries.clear();
            }
        }
        entries.insert(domain.clone(), entry);
    }

    /// Records a success with its `max-age`, if any.
    pub fn found(
        &self,
        domain: &ProviderDomain,
        authority: Authority,
        max_age: Option<u64>,
        now: u64,
    ) {
        let ttl = max_age
            .unwrap_or(self.config.default_ttl)
            .clamp(self.config.min_ttl, self.config.max_ttl);
        self.insert(
            domain,
            Entry::Found {
                authority,
                until: now.saturating_add(ttl),
            },
            now,
        );
    }

    /// Records a failure; returns when the next attempt may be made.
    pub fn failed(&self, domain: &ProviderDomain, reason: String, now: u64) -> u64 {
        let backoff = match self.entries().get(domain) {
            Some(Entry::Failed { backoff, .. }) => {
                backoff.saturating_mul(2).min(self.config.max_backoff)
            }
            _ => self.config.first_backoff,
        };
        let retry_at = now.saturating_add(backoff);
        self.insert(
            domain,
            Entry::Failed {
                reason,
                retry_at,
                backoff,
            },
            now,
        );
        retry_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let ok = |s: &[u8]| parse_ds_domain(s).map(|a| a.to_string());
        assert_eq!(ok(b"ds.a.example:8443\n").unwrap(), "ds.a.example:8443");
        assert_eq!(ok(b"ds.a.example").unwrap(), "ds.a.example:443");
        assert_eq!(ok(b"127.0.0.2:1\n").unwrap(), "127.0.0.2:1");
        assert_eq!(ok(b"[::1]:8443").unwrap(), "[::1]:8443");
        assert_eq!(ok(b"[::1]").unwrap(), "[::1]:443");
        for bad in [
            &b""[..],
            b"\n",
            b"ds.a.example\n\n",
            b"ds.a.example\r\n",
            b" ds.a.example",
            b"DS.a.example",
            b"ds.a.example:",
            b"ds.a.example:0",
            b"ds.a.example:65536",
            b"ds.a.example:08443",
            b"ds.a.example:+1",
            b"::1",
            b"[::1]8443",
            b"[zz]:1",
            b"1.2.3.400",
            b"-a.example",
            b"a..example",
            b"https://a.example",
            b"a.example/x",
            b"a.example:1\nb.example",
            b"\xff",
        ] {
            assert!(parse_ds_domain(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cache_lifetimes_and_backoff() {
        let d: ProviderDomain = "a.example".parse().unwrap();
        let cache = DiscoveryCache::new(DiscoveryConfig::default());
        let a = parse_authority("ds.a.example:1").unwrap();
        assert!(matches!(cache.lookup(&d, 0), Lookup::Fetch));
        // Clamped to 5 minutes.
        cache.found(&d, a.clone(), Some(10), 0);
        assert!(matches!(cache.lookup(&d, 299), Lookup::Known(_)));
        assert!(matches!(cache.lookup(&d, 300), Lookup::Fetch));
        // Clamped to a day; absent: an hour.
        cache.found(&d, a.clone(), Some(1_000_000), 0);
        assert!(matches!(cache.lookup(&d, 86_399), Lookup::Known(_)));
        assert!(matches!(cache.lookup(&d, 86_400), Lookup::Fetch));
        cache.found(&d, a, None, 0);
        assert!(matches!(cache.lookup(&d, 3_599), Lookup::Known(_)));
        assert!(matches!(cache.lookup(&d, 3_600), Lookup::Fetch));
        // 5, 10, 20, ... 900 seconds.
        let mut now = 10_000;
        for expected in [5, 10, 20, 40, 80, 160, 320, 640, 900, 900] {
            let retry_at = cache.failed(&d, "down".into(), now);
            assert_eq!(retry_at - now, expected);
            assert!(matches!(cache.lookup(&d, retry_at - 1), Lookup::Failed(_)));
            assert!(matches!(cache.lookup(&d, retry_at), Lookup::Fetch));
            now = retry_at;
        }
        assert_eq!(max_age("public, max-age=600"), Some(600));
        assert_eq!(max_age("no-cache"), None);
    }
}
