//! `mimid serve --config FILE`: the TOML configuration, every setting with
//! a safe default where one exists (`docs/operations.md`, "Configuration").
//! A bad file fails at start with a message naming the setting.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use mimid_wire::ProviderDomain;
use serde::Deserialize;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown or ill-typed setting (the
    /// message names it).
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A setting has a value mimid cannot use.
    #[error("{path}: {setting}: {message}")]
    Invalid {
        path: PathBuf,
        setting: String,
        message: String,
    },
}

/// How a receiver authenticates sending providers (`docs/protocol.md` 3.1).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProviderAuth {
    /// The `MIMI-Provider-Signature` header (section 4).
    #[default]
    Signature,
    /// Mutual TLS: the client certificate names the sender.
    Mtls,
    /// Both, on every request.
    Both,
}

/// Durability of acknowledged writes.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Survives a crash of the process (SQLite `synchronous = NORMAL`).
    #[default]
    Process,
    /// Survives a power loss (`synchronous = FULL`).
    PowerLoss,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub provider: Provider,
    pub tls: Tls,
    #[serde(default)]
    pub federation: Federation,
    pub store: StoreSettings,
    #[serde(default)]
    pub limits: LimitSettings,
    #[serde(default)]
    pub delivery: Delivery,
    #[serde(default)]
    pub rate_limits: RateLimitSettings,
    #[serde(default)]
    pub connections: ConnectionSettings,
}

/// Connection timeouts and caps (`docs/operations.md`, "Connections").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionSettings {
    /// Longest TLS handshake.
    pub handshake_seconds: u64,
    /// Longest time from an HTTP/1.1 request's first byte to the end of its
    /// headers.
    pub headers_seconds: u64,
    /// Longest time from a request's headers to the end of its body.
    pub body_seconds: u64,
    /// A connection with no request being handled is closed after this long.
    pub idle_seconds: u64,
    /// Open connections, in all.
    pub max: usize,
    /// Open connections from one address.
    pub max_per_ip: usize,
    /// Requests in flight from one address, until authenticated as a
    /// provider's.
    pub in_flight_per_ip: usize,
    /// Requests in flight of one provider.
    pub in_flight_per_provider: usize,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        let d = mimid_transport::connections::ConnectionLimits::default();
        ConnectionSettings {
            handshake_seconds: d.handshake.as_secs(),
            headers_seconds: d.headers.as_secs(),
            body_seconds: d.body.as_secs(),
            idle_seconds: d.idle.as_secs(),
            max: d.max_connections,
            max_per_ip: d.max_connections_per_ip,
            in_flight_per_ip: d.in_flight_per_ip,
            in_flight_per_provider: d.in_flight_per_provider,
        }
    }
}

impl ConnectionSettings {
    /// The server's limits.
    pub fn to_limits(&self) -> mimid_transport::connections::ConnectionLimits {
        use std::time::Duration;
        mimid_transport::connections::ConnectionLimits {
            handshake: Duration::from_secs(self.handshake_seconds),
            headers: Duration::from_secs(self.headers_seconds),
            body: Duration::from_secs(self.body_seconds),
            idle: Duration::from_secs(self.idle_seconds),
            max_connections: self.max,
            max_connections_per_ip: self.max_per_ip,
            in_flight_per_ip: self.in_flight_per_ip,
            in_flight_per_provider: self.in_flight_per_provider,
        }
    }
}

/// Rate limits (`docs/operations.md`, "Rate limits"). A rate of zero (both
/// numbers) turns its layer off.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    /// Per remote IP address, before anything of a request is read.
    pub per_ip: mimid_transport::ratelimit::Rate,
    /// Per sending provider, once authenticated.
    pub per_provider: mimid_transport::ratelimit::Rate,
    /// Per group (and sending provider), on the two information endpoints.
    pub per_group: mimid_transport::ratelimit::Rate,
    /// Per member (and sending provider), on `/group_operation`.
    pub per_member: mimid_transport::ratelimit::Rate,
    /// Per target user, on `/connection_key_packages` and `/connection_request`.
    pub per_target_user: mimid_transport::ratelimit::Rate,
    /// Keys each layer tracks at most; beyond, new keys share one bucket.
    pub max_keys: usize,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        let defaults = mimid_transport::ratelimit::RateLimits::default();
        let off = mimid_transport::ratelimit::Rate {
            per_second: 0,
            burst: 0,
        };
        RateLimitSettings {
            per_ip: defaults.per_ip.unwrap_or(off),
            per_provider: defaults.per_provider.unwrap_or(off),
            per_group: defaults.per_group.unwrap_or(off),
            per_member: defaults.per_member.unwrap_or(off),
            per_target_user: defaults.per_target_user.unwrap_or(off),
            max_keys: defaults.max_keys,
        }
    }
}

impl RateLimitSettings {
    /// The server's limits.
    pub fn to_limits(&self) -> mimid_transport::ratelimit::RateLimits {
        let on = |r: mimid_transport::ratelimit::Rate| (r.per_second > 0).then_some(r);
        mimid_transport::ratelimit::RateLimits {
            per_ip: on(self.per_ip),
            per_provider: on(self.per_provider),
            per_group: on(self.per_group),
            per_member: on(self.per_member),
            per_target_user: on(self.per_target_user),
            max_keys: self.max_keys,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// This provider's domain: the hub of the groups whose ids name it.
    pub domain: String,
    /// Where the DS listens (address:port).
    pub listen: SocketAddr,
    /// `host[:port]` peers reach the DS at, as the well-known answer says
    /// (default: the domain, port 443).
    pub ds_authority: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain of the DS host (and, for mutual TLS, naming
    /// the provider's domain).
    pub certificate: PathBuf,
    /// PEM private key of the certificate.
    pub key: PathBuf,
    /// Extra trust anchors (PEM), for private federations and tests.
    #[serde(default)]
    pub trust_anchors: Vec<PathBuf>,
    /// Whether the WebPKI roots are trusted too.
    #[serde(default = "yes")]
    pub webpki_roots: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Federation {
    /// How other providers must authenticate (default `signature`).
    #[serde(default)]
    pub provider_auth: ProviderAuth,
    /// Provider key files (`mimid keygen`): the current one first, during a
    /// rotation the next one after it. Required unless every peer uses
    /// mutual TLS only.
    #[serde(default)]
    pub provider_keys: Vec<PathBuf>,
    /// Per-peer settings, by provider domain.
    #[serde(default)]
    pub peers: BTreeMap<String, Peer>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Where the peer's DS is (`host:port`), instead of discovery.
    pub ds_authority: Option<String>,
    /// How this peer must authenticate, instead of the default.
    pub provider_auth: Option<ProviderAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// The SQLite database file (created if missing), for one mimid
    /// process; or else `postgres_url`.
    pub path: Option<PathBuf>,
    /// SQLite only.
    #[serde(default)]
    pub durability: Durability,
    /// A PostgreSQL database (`postgres://user[:password]@host[:port]/db`),
    /// which several mimid processes of one provider may share.
    pub postgres_url: Option<String>,
    /// Connections each process keeps to PostgreSQL (at least 2).
    #[serde(default = "default_postgres_connections")]
    pub postgres_connections: u32,
    /// How long a request waits for a database connection (or for an
    /// unreachable database) before it is answered 503 `unavailable`.
    #[serde(default = "default_postgres_wait_ms")]
    pub postgres_wait_ms: u64,
}

fn default_postgres_connections() -> u32 {
    16
}

fn default_postgres_wait_ms() -> u64 {
    5000
}

/// The store a configuration names.
pub enum Backend<'a> {
    Sqlite(&'a Path),
    Postgres(mimid_store::PostgresOptions),
}

impl StoreSettings {
    /// The configured backend (checked at load: exactly one is set).
    pub fn backend(&self) -> Backend<'_> {
        match (&self.path, &self.postgres_url) {
            (Some(path), _) => Backend::Sqlite(path),
            (None, url) => {
                let mut options =
                    mimid_store::PostgresOptions::new(url.clone().unwrap_or_default());
                options.max_connections = self.postgres_connections;
                options.acquire_timeout = std::time::Duration::from_millis(self.postgres_wait_ms);
                Backend::Postgres(options)
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Largest request body, in bytes.
    pub body_bytes: usize,
    /// Largest GroupInfo extensions of a commit, in bytes.
    pub group_info_extensions_bytes: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            body_bytes: mimid_wire::DEFAULT_BODY_LIMIT,
            group_info_extensions_bytes: mimid_wire::DEFAULT_GROUP_INFO_EXTENSIONS,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Delivery {
    /// A job undelivered this long goes to the dead letters.
    pub expiry_seconds: u64,
    /// First retry delay, in milliseconds; doubles per failure.
    pub backoff_start_ms: u64,
    /// Longest retry delay, in seconds.
    pub backoff_max_seconds: u64,
    /// Groups whose messages are sent side by side to one provider (each
    /// group's one at a time, in order).
    pub lanes: usize,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            expiry_seconds: 7 * 24 * 3600,
            backoff_start_ms: 1000,
            backoff_max_seconds: 600,
            lanes: 8,
        }
    }
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks a configuration's text (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.check(path)?;
        Ok(config)
    }

    /// This provider's domain (`Config::load` has checked it).
    pub fn domain(&self) -> Result<ProviderDomain, String> {
        self.provider
            .domain
            .parse()
            .map_err(|e: mimid_wire::IdentifierError| format!("provider.domain: {}", e.0))
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |setting: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            setting: setting.to_owned(),
            message,
        };
        self.provider
            .domain
            .parse::<ProviderDomain>()
            .map_err(|e| invalid("provider.domain", e.0))?;
        for domain in self.federation.peers.keys() {
            domain
                .parse::<ProviderDomain>()
                .map_err(|e| invalid(&format!("federation.peers.\"{domain}\""), e.0))?;
        }
        let needs_keys = self.federation.provider_auth != ProviderAuth::Mtls
            || self
                .federation
                .peers
                .values()
                .any(|p| p.provider_auth.is_some_and(|a| a != ProviderAuth::Mtls));
        if needs_keys && self.federation.provider_keys.is_empty() {
            return Err(invalid(
                "federation.provider_keys",
                "signature authentication needs at least one provider key (make one with \
                 `mimid keygen`)"
                    .into(),
            ));
        }
        match (&self.store.path, &self.store.postgres_url) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "store",
                    "set `path` (SQLite) or `postgres_url` (PostgreSQL), not both".into(),
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "store",
                    "set `path` (SQLite) or `postgres_url` (PostgreSQL)".into(),
                ));
            }
            _ => {}
        }
        if self.store.postgres_wait_ms == 0 {
            return Err(invalid("store.postgres_wait_ms", "must be above 0".into()));
        }
        if self.store.postgres_connections < 2 {
            return Err(invalid(
                "store.postgres_connections",
                "must be at least 2".into(),
            ));
        }
        if self.limits.body_bytes == 0 {
            return Err(invalid("limits.body_bytes", "must be above 0".into()));
        }
        if self.delivery.backoff_start_ms == 0 {
            return Err(invalid(
                "delivery.backoff_start_ms",
                "must be above 0".into(),
            ));
        }
        if self.delivery.backoff_max_seconds.saturating_mul(1000) < self.delivery.backoff_start_ms {
            return Err(invalid(
                "delivery.backoff_max_seconds",
                "must not be below delivery.backoff_start_ms".into(),
            ));
        }
        for (setting, rate) in [
            ("rate_limits.per_ip", self.rate_limits.per_ip),
            ("rate_limits.per_provider", self.rate_limits.per_provider),
            ("rate_limits.per_group", self.rate_limits.per_group),
            ("rate_limits.per_member", self.rate_limits.per_member),
            (
                "rate_limits.per_target_user",
                self.rate_limits.per_target_user,
            ),
        ] {
            if (rate.per_second == 0) != (rate.burst == 0) {
                return Err(invalid(
                    setting,
                    "per_second and burst must both be 0 (off) or both at least 1".into(),
                ));
            }
        }
        if self.rate_limits.max_keys == 0 {
            return Err(invalid("rate_limits.max_keys", "must be at least 1".into()));
        }
        let c = &self.connections;
        for (setting, seconds, max) in [
            ("connections.handshake_seconds", c.handshake_seconds, 3600),
            ("connections.headers_seconds", c.headers_seconds, 3600),
            // A request takes at most 30 s in all (then 503): a longer body
            // time would never be reached.
            ("connections.body_seconds", c.body_seconds, 30),
            ("connections.idle_seconds", c.idle_seconds, 3600),
        ] {
            if seconds == 0 || seconds > max {
                return Err(invalid(setting, format!("must be between 1 and {max}")));
            }
        }
        for (setting, value) in [
            ("connections.max", c.max),
            ("connections.max_per_ip", c.max_per_ip),
            ("connections.in_flight_per_ip", c.in_flight_per_ip),
            (
                "connections.in_flight_per_provider",
                c.in_flight_per_provider,
            ),
        ] {
            if value == 0 {
                return Err(invalid(setting, "must be at least 1".into()));
            }
        }
        if c.max_per_ip > c.max {
            return Err(invalid(
                "connections.max_per_ip",
                "must not be above connections.max".into(),
            ));
        }
        if self.delivery.lanes == 0 || self.delivery.lanes > 1024 {
            return Err(invalid(
                "delivery.lanes",
                "must be between 1 and 1024".into(),
            ));
        }
        for (setting, file) in [
            ("tls.certificate", &self.tls.certificate),
            ("tls.key", &self.tls.key),
        ]
        .into_iter()
        .chain(
            self.tls
                .trust_anchors
                .iter()
                .map(|f| ("tls.trust_anchors", f)),
        )
        .chain(
            self.federation
                .provider_keys
                .iter()
                .map(|f| ("federation.provider_keys", f)),
        ) {
            if !file.is_file() {
                return Err(invalid(
                    setting,
                    format!("{} is not a readable file", file.display()),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), text)
    }

    const MINIMAL: &str = r#"
[provider]
domain = "a.example"
listen = "127.0.0.1:8443"

[tls]
certificate = "Cargo.toml"
key = "Cargo.toml"

[federation]
provider_auth = "mtls"

[store]
path = "a.db"
"#;

    #[test]
    fn a_minimal_file_gets_the_documented_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.federation.provider_auth, ProviderAuth::Mtls);
        assert_eq!(config.store.durability, Durability::Process);
        assert_eq!(config.limits.body_bytes, 4 * 1024 * 1024);
        assert_eq!(config.delivery.expiry_seconds, 7 * 24 * 3600);
        assert_eq!(config.delivery.lanes, 8);
        assert!(config.tls.webpki_roots);
        assert_eq!(
            config.connections.to_limits(),
            mimid_transport::connections::ConnectionLimits::default()
        );
        let c = &config.connections;
        assert_eq!(
            (
                c.handshake_seconds,
                c.headers_seconds,
                c.body_seconds,
                c.idle_seconds
            ),
            (10, 10, 20, 60)
        );
        assert_eq!(
            (
                c.max,
                c.max_per_ip,
                c.in_flight_per_ip,
                c.in_flight_per_provider
            ),
            (4096, 256, 64, 256)
        );
    }

    #[test]
    fn errors_name_the_setting() {
        let cases = [
            (MINIMAL.replace("a.example", "A_example"), "provider.domain"),
            (MINIMAL.replace("127.0.0.1:8443", "nowhere"), "listen"),
            (
                MINIMAL.replace("\"mtls\"", "\"signature\""),
                "federation.provider_keys",
            ),
            (
                MINIMAL.replace("\"mtls\"", "\"telepathy\""),
                "provider_auth",
            ),
            (
                MINIMAL.replace("key = \"Cargo.toml\"", "key = \"missing.pem\""),
                "tls.key",
            ),
            (
                format!("{MINIMAL}\n[limits]\nbody_bytes = 0\n"),
                "limits.body_bytes",
            ),
            (
                format!("{MINIMAL}\n[delivery]\nlanes = 0\n"),
                "delivery.lanes",
            ),
            (
                format!("{MINIMAL}\n[rate_limits]\nper_ip = {{ per_second = 5, burst = 0 }}\n"),
                "rate_limits.per_ip",
            ),
            (
                format!("{MINIMAL}\n[rate_limits]\nmax_keys = 0\n"),
                "rate_limits.max_keys",
            ),
            (
                format!("{MINIMAL}\n[connections]\nheaders_seconds = 0\n"),
                "connections.headers_seconds",
            ),
            (
                format!("{MINIMAL}\n[connections]\nbody_seconds = 31\n"),
                "connections.body_seconds",
            ),
            (
                format!("{MINIMAL}\n[connections]\nin_flight_per_provider = 0\n"),
                "connections.in_flight_per_provider",
            ),
            (
                format!("{MINIMAL}\n[connections]\nmax = 10\nmax_per_ip = 11\n"),
                "connections.max_per_ip",
            ),
            (format!("{MINIMAL}\n[connections]\nidle = 5\n"), "idle"),
            (format!("{MINIMAL}\nlisten_twice = 1\n"), "listen_twice"),
        ];
        for (text, setting) in cases {
            let error = parse(&text).expect_err(setting).to_string();
            assert!(error.contains(setting), "{setting}: {error}");
        }
    }
}
