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
    pub ops: OpsSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub connections: ConnectionSettings,
    #[serde(default)]
    pub privacy_pass: PrivacyPassSettings,
}

/// The operator's side: where metrics and health are served, and how long
/// a stop may take (`docs/operations.md`, "Monitoring" and "Stopping").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsSettings {
    /// Plain-HTTP listener for `/metrics`, `/healthz` and `/readyz`; none
    /// by default (nothing listens that the operator did not ask for).
    pub listen: Option<SocketAddr>,
    /// On SIGTERM or SIGINT: the longest wait for requests and deliveries
    /// in flight before the process exits anyway.
    pub shutdown_grace_seconds: u64,
}

impl Default for OpsSettings {
    fn default() -> Self {
        OpsSettings {
            listen: None,
            shutdown_grace_seconds: 30,
        }
    }
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

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging (to standard error).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `warn,mimid_transport=debug`, ...);
    /// `RUST_LOG` replaces it when set.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// The sections of the file, as environment overrides name them.
const SECTIONS: [&str; 10] = [
    "provider",
    "tls",
    "federation",
    "store",
    "limits",
    "delivery",
    "rate_limits",
    "connections",
    "ops",
    "log",
];

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "MIMID_";

/// Sets `section.key` in `table` for each `MIMID_<SECTION>_<KEY>` of
/// `env` (upper case, as in the file otherwise). A value is read as a TOML
/// value (number, boolean, array, inline table, quoted string), else taken
/// as a string. Returns the settings overridden, with their variables.
fn apply_overrides(
    table: &mut toml::Table,
    env: &[(String, String)],
) -> Result<Vec<(String, String)>, String> {
    let mut applied = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let found = SECTIONS.iter().find_map(|section| {
            rest.strip_prefix(section.to_uppercase().as_str())
                .and_then(|r| r.strip_prefix('_'))
                .filter(|key| !key.is_empty())
                .map(|key| (*section, key.to_lowercase()))
        });
        let Some((section, key)) = found else {
            return Err(format!(
                "{name}: no such setting (MIMID_<SECTION>_<KEY>, sections: {})",
                SECTIONS.join(", ")
            ));
        };
        let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let entry = table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let toml::Value::Table(section_table) = entry else {
            return Err(format!("{name}: {section} is not a section in the file"));
        };
        section_table.insert(key.clone(), value);
        applied.push((format!("{section}.{key}"), name.clone()));
    }
    Ok(applied)
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

/// Privacy Pass (`docs/operations.md`, "Privacy Pass";
/// `docs/protocol.md` 3.6). Off by default: no endpoint needs a token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyPassSettings {
    /// The paths that need a token (of `docs/protocol.md` 3.2).
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// This provider's issuer key (`mimid privacy-pass keygen`): its
    /// clients get tokens from it, and its tokens are accepted.
    pub issuer_key: Option<PathBuf>,
    /// The name of this provider's issuer in its challenges (default: the
    /// provider's domain).
    pub issuer_name: Option<String>,
    /// Tokens one client may be issued: a rate of zero is no limit.
    #[serde(default = "default_issuance")]
    pub issuance: mimid_transport::ratelimit::Rate,
    /// Other issuers whose tokens are accepted.
    #[serde(default)]
    pub issuers: Vec<AcceptedIssuer>,
}

impl Default for PrivacyPassSettings {
    fn default() -> Self {
        PrivacyPassSettings {
            endpoints: Vec::new(),
            issuer_key: None,
            issuer_name: None,
            issuance: default_issuance(),
            issuers: Vec::new(),
        }
    }
}

fn default_issuance() -> mimid_transport::ratelimit::Rate {
    mimid_transport::ratelimit::Rate {
        per_second: 1,
        burst: 100,
    }
}

/// An issuer whose tokens are accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedIssuer {
    /// Its name, as its challenges carry it.
    pub name: String,
    /// Its public key: DER SubjectPublicKeyInfo, base64url (what `mimid
    /// privacy-pass keygen` prints as `token_key`).
    pub token_key: String,
}

impl AcceptedIssuer {
    fn issuer(&self) -> Result<mimid_transport::privacy_pass::Issuer, String> {
        let key = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            self.token_key.trim_end_matches('='),
        )
        .map_err(|e| format!("token_key: not base64url: {e}"))?;
        mimid_transport::privacy_pass::Issuer::new(&self.name, &key).map_err(|e| e.to_string())
    }
}

impl PrivacyPassSettings {
    /// The guarded endpoints.
    fn endpoints(&self) -> Result<Vec<mimid_transport::Endpoint>, String> {
        self.endpoints
            .iter()
            .map(|path| {
                mimid_transport::Endpoint::from_path(path)
                    .filter(|e| *e != mimid_transport::Endpoint::WellKnown)
                    .ok_or_else(|| format!("{path:?} is not a MIMI endpoint of this server"))
            })
            .collect()
    }

    /// The server's settings, the issuer key read from its file.
    pub fn to_settings(
        &self,
        domain: &ProviderDomain,
    ) -> Result<mimid_transport::privacy_pass::PrivacyPassSettings, String> {
        let issuer = match &self.issuer_key {
            Some(path) => {
                let key = mimid_transport::privacy_pass::IssuerKey::load(path)
                    .map_err(|e| format!("issuer_key: {e}"))?;
                let name = self
                    .issuer_name
                    .clone()
                    .unwrap_or_else(|| domain.to_string());
                Some((name, key))
            }
            None => None,
        };
        Ok(mimid_transport::privacy_pass::PrivacyPassSettings {
            endpoints: self.endpoints()?,
            issuer,
            issuers: self
                .issuers
                .iter()
                .map(AcceptedIssuer::issuer)
                .collect::<Result<_, _>>()?,
            issuance: (self.issuance.per_second > 0).then_some(self.issuance),
        })
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
    /// Reads and checks `path`, with the process environment's
    /// `MIMID_<SECTION>_<KEY>` overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut env = Vec::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
                continue;
            };
            let value = value.into_string().map_err(|_| ConfigError::Parse {
                path: path.to_owned(),
                message: format!("{name}: not UTF-8"),
            })?;
            env.push((name.to_owned(), value));
        }
        env.sort();
        Self::parse_with(path, &text, &env)
    }

    /// Parses and checks a configuration's text (`path` names it in errors).
    #[cfg(test)]
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Self::parse_with(path, text, &[])
    }

    /// [`Config::parse`] with environment overrides (`env`: the variables
    /// starting with `MIMID_`).
    pub fn parse_with(
        path: &Path,
        text: &str,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_owned(),
            message,
        };
        let (config, overridden): (Config, _) = if env.is_empty() {
            // Straight from the text: errors point at the line.
            (
                toml::from_str(text).map_err(|e| parse_error(e.to_string()))?,
                Vec::new(),
            )
        } else {
            let mut table: toml::Table =
                toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
            let overridden = apply_overrides(&mut table, env).map_err(parse_error)?;
            let config = toml::Value::Table(table).try_into().map_err(|e| {
                let names: Vec<&str> = overridden.iter().map(|(_, n)| n.as_str()).collect();
                parse_error(format!(
                    "{} (with the environment's {})",
                    e.to_string().trim_end(),
                    names.join(", ")
                ))
            })?;
            (config, overridden)
        };
        config.check(path, &overridden)?;
        Ok(config)
    }

    /// This provider's domain (`Config::load` has checked it).
    pub fn domain(&self) -> Result<ProviderDomain, String> {
        self.provider
            .domain
            .parse()
            .map_err(|e: mimid_wire::IdentifierError| format!("provider.domain: {}", e.0))
    }

    fn check(&self, path: &Path, overridden: &[(String, String)]) -> Result<(), ConfigError> {
        let invalid = |setting: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            setting: match overridden
                .iter()
                .find(|(s, _)| setting.starts_with(s.as_str()))
            {
                Some((_, name)) => format!("{setting} (from {name})"),
                None => setting.to_owned(),
            },
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
        let pp = &self.privacy_pass;
        let endpoints = pp
            .endpoints()
            .map_err(|e| invalid("privacy_pass.endpoints", e))?;
        if !endpoints.is_empty() && pp.issuer_key.is_none() && pp.issuers.is_empty() {
            return Err(invalid(
                "privacy_pass",
                "endpoints need a token but no issuer is accepted: set issuer_key or issuers"
                    .into(),
            ));
        }
        if let Some(name) = &pp.issuer_name
            && pp.issuer_key.is_none()
        {
            return Err(invalid(
                "privacy_pass.issuer_name",
                format!("{name:?} needs privacy_pass.issuer_key"),
            ));
        }
        if (pp.issuance.per_second == 0) != (pp.issuance.burst == 0) {
            return Err(invalid(
                "privacy_pass.issuance",
                "per_second and burst must both be 0 (no limit) or both at least 1".into(),
            ));
        }
        for (i, issuer) in pp.issuers.iter().enumerate() {
            issuer
                .issuer()
                .map_err(|e| invalid(&format!("privacy_pass.issuers[{i}]"), e))?;
        }
        if self.delivery.lanes == 0 || self.delivery.lanes > 1024 {
            return Err(invalid(
                "delivery.lanes",
                "must be between 1 and 1024".into(),
            ));
        }
        if self.ops.shutdown_grace_seconds > 3600 {
            return Err(invalid(
                "ops.shutdown_grace_seconds",
                "must be at most 3600".into(),
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(invalid("log.level", e.to_string()));
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
        )
        .chain(
            self.privacy_pass
                .issuer_key
                .iter()
                .map(|f| ("privacy_pass.issuer_key", f)),
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
        assert!(config.privacy_pass.endpoints.is_empty());
        assert!(config.privacy_pass.issuer_key.is_none());
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
            (
                format!("{MINIMAL}\n[ops]\nshutdown_grace_seconds = 7200\n"),
                "ops.shutdown_grace_seconds",
            ),
            (
                format!("{MINIMAL}\n[log]\nlevel = \"info,=\"\n"),
                "log.level",
            ),
            (format!("{MINIMAL}\n[log]\nformat = \"xml\"\n"), "format"),
            (
                format!("{MINIMAL}\n[privacy_pass]\nendpoints = [\"/nowhere\"]\n"),
                "privacy_pass.endpoints",
            ),
            (
                format!("{MINIMAL}\n[privacy_pass]\nendpoints = [\"/connection_request\"]\n"),
                "privacy_pass",
            ),
            (
                format!("{MINIMAL}\n[privacy_pass]\nissuer_key = \"missing.pem\"\n"),
                "privacy_pass.issuer_key",
            ),
            (
                format!(
                    "{MINIMAL}\n[[privacy_pass.issuers]]\nname = \"i.example\"\ntoken_key = \"AAAA\"\n"
                ),
                "privacy_pass.issuers[0]",
            ),
        ];
        for (text, setting) in cases {
            let error = parse(&text).expect_err(setting).to_string();
            assert!(error.contains(setting), "{setting}: {error}");
        }
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn environment_variables_override_the_file() {
        let vars = env(&[
            ("MIMID_PROVIDER_LISTEN", "127.0.0.1:9443"),
            ("MIMID_DELIVERY_LANES", "3"),
            ("MIMID_RATE_LIMITS_MAX_KEYS", "77"),
            ("MIMID_RATE_LIMITS_PER_IP", "{ per_second = 5, burst = 9 }"),
            ("MIMID_STORE_DURABILITY", "power_loss"),
            ("MIMID_OPS_LISTEN", "127.0.0.1:9464"),
            ("MIMID_LOG_FORMAT", "json"),
            ("MIMID_TLS_WEBPKI_ROOTS", "false"),
        ]);
        let config = Config::parse_with(Path::new("test.toml"), MINIMAL, &vars).unwrap();
        assert_eq!(config.provider.listen.port(), 9443);
        assert_eq!(config.provider.domain, "a.example");
        assert_eq!(config.delivery.lanes, 3);
        assert_eq!(config.rate_limits.max_keys, 77);
        assert_eq!(config.rate_limits.per_ip.burst, 9);
        assert_eq!(config.store.durability, Durability::PowerLoss);
        assert_eq!(config.ops.listen.map(|a| a.port()), Some(9464));
        assert_eq!(config.log.format, LogFormat::Json);
        assert!(!config.tls.webpki_roots);
    }

    #[test]
    fn a_bad_override_names_its_variable() {
        let cases = [
            (
                ("MIMID_DELIVERY_LANES", "0"),
                "delivery.lanes (from MIMID_DELIVERY_LANES)",
            ),
            (("MIMID_DELIVERY_LANES", "many"), "MIMID_DELIVERY_LANES"),
            (("MIMID_STORE_PATHS", "x.db"), "paths"),
            (("MIMID_NOWHERE_X", "1"), "MIMID_NOWHERE_X: no such setting"),
            (("MIMID_PROVIDER_", "1"), "MIMID_PROVIDER_: no such setting"),
        ];
        for ((name, value), expected) in cases {
            let error = Config::parse_with(Path::new("test.toml"), MINIMAL, &env(&[(name, value)]))
                .expect_err(name)
                .to_string();
            assert!(error.contains(expected), "{name}: {error}");
        }
    }
}
