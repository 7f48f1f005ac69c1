//! Providers on loopback, each with its own domain, address (127.0.0.2,
//! .3, ...; one port for all, so that discovery asks each domain's
//! well-known path where a real deployment would), certificate from a
//! throwaway CA (`rcgen`), provider key and SQLite store, all as files in
//! a directory. What `mimid demo` and the federation tests run; a provider
//! can be stopped and started again on its own files. With Privacy Pass
//! on, each provider is an issuer (its key a file too), asks for a token
//! on `/connection_key_packages` and `/connection_request`, and accepts
//! the tokens of every issuer of the federation.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mimid_service::outbox::OutboxConfig;
use mimid_store::Durability;
use mimid_wire::ProviderDomain;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};

use crate::auth::{AuthMode, PeerModes};
use crate::clock::{Clock, SystemClock};
use crate::keys::{ProviderKey, ProviderKeys};
use crate::node::{Node, NodeSettings};
use crate::privacy_pass::{Issuer as PPIssuer, IssuerKey, PrivacyPass, PrivacyPassSettings};
use crate::server::Endpoint;
use crate::tls;

/// Why a loopback federation could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoopbackError {
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
}

fn setup(e: impl std::fmt::Display) -> LoopbackError {
    LoopbackError::Setup(e.to_string())
}

struct Provider {
    ip: IpAddr,
    dir: PathBuf,
    node: Option<Node>,
}

/// The running federation.
pub struct Loopback {
    port: u16,
    mode: AuthMode,
    domains: Vec<ProviderDomain>,
    roots: Arc<rustls::RootCertStore>,
    ca_path: PathBuf,
    providers: HashMap<ProviderDomain, Provider>,
    options: LoopbackOptions,
}

/// What a loopback federation runs besides the defaults.
#[derive(Clone, Debug, Default)]
pub struct LoopbackOptions {
    /// Rate limits by domain (the default for the others).
    pub rate_limits: HashMap<String, crate::ratelimit::RateLimits>,
    /// Privacy Pass on every provider (see the module doc).
    pub privacy_pass: bool,
}

/// A provider's Privacy Pass issuer key, in its directory.
const ISSUER_KEY_FILE: &str = "privacy-pass.pem";

impl Loopback {
    /// Starts `domains` (at most 250) in `dir`, authenticating each other
    /// with `mode`.
    pub async fn start(
        dir: &Path,
        domains: &[&str],
        mode: AuthMode,
    ) -> Result<Loopback, LoopbackError> {
        Self::start_limited(dir, domains, mode, HashMap::new()).await
    }

    /// [`Loopback::start`], with the rate limits of some providers set
    /// (the others have the defaults).
    pub async fn start_limited(
        dir: &Path,
        domains: &[&str],
        mode: AuthMode,
        rate_limits: HashMap<String, crate::ratelimit::RateLimits>,
    ) -> Result<Loopback, LoopbackError> {
        let options = LoopbackOptions {
            rate_limits,
            ..LoopbackOptions::default()
        };
        Self::start_with(dir, domains, mode, options).await
    }

    /// [`Loopback::start`] with `options`.
    pub async fn start_with(
        dir: &Path,
        domains: &[&str],
        mode: AuthMode,
        options: LoopbackOptions,
    ) -> Result<Loopback, LoopbackError> {
        let ca_key = KeyPair::generate().map_err(setup)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(setup)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mimid loopback CA");
        let ca = ca_params.self_signed(&ca_key).map_err(setup)?;
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).map_err(setup)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let roots =
            tls::root_store(&tls::load_certs(&ca_path).map_err(setup)?, false).map_err(setup)?;
        let ips: Vec<IpAddr> = (0..domains.len())
            .map(|i| {
                u8::try_from(i + 2)
                    .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
                    .map_err(|_| setup("too many providers"))
            })
            .collect::<Result<_, _>>()?;
        let (port, listeners) = bind_all(&ips).await?;
        let mut federation = Loopback {
            port,
            mode,
            domains: Vec::new(),
            roots,
            ca_path,
            providers: HashMap::new(),
            options,
        };
        let mut started = Vec::new();
        for ((domain, ip), listener) in domains.iter().zip(&ips).zip(listeners) {
            let domain: ProviderDomain = domain.parse().map_err(setup)?;
            let provider_dir = dir.join(domain.as_str());
            std::fs::create_dir_all(&provider_dir).map_err(setup)?;
            // One certificate for the provider domain and the DS host; mutual
            // TLS needs the provider domain in it.
            let key = KeyPair::generate().map_err(setup)?;
            let mut params =
                CertificateParams::new(vec![domain.to_string(), format!("ds.{domain}")])
                    .map_err(setup)?;
            params.subject_alt_names.push(SanType::IpAddress(*ip));
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let cert = params.signed_by(&key, &issuer).map_err(setup)?;
            std::fs::write(provider_dir.join("cert.pem"), cert.pem()).map_err(setup)?;
            std::fs::write(provider_dir.join("key.pem"), key.serialize_pem()).map_err(setup)?;
            let now = SystemClock.now();
            ProviderKey::generate(now.saturating_sub(60), now + 365 * 86_400)
                .map_err(setup)?
                .save(&provider_dir.join("provider.key"))
                .map_err(setup)?;
            if federation.options.privacy_pass {
                IssuerKey::generate()
                    .map_err(setup)?
                    .save(&provider_dir.join(ISSUER_KEY_FILE))
                    .map_err(setup)?;
            }
            federation.domains.push(domain.clone());
            federation.providers.insert(
                domain.clone(),
                Provider {
                    ip: *ip,
                    dir: provider_dir,
                    node: None,
                },
            );
            started.push((domain, listener));
        }
        // Each provider resolves all the others: start them once all are known.
        for (domain, listener) in started {
            let node = federation.start_node(&domain, listener).await?;
            if let Some(p) = federation.providers.get_mut(&domain) {
                p.node = Some(node);
            }
        }
        Ok(federation)
    }

    /// The port every provider listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA certificate (PEM) every provider's certificate chains to.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// The base URL of a provider's client API (`https://domain:port`).
    pub fn client_api_base(&self, domain: &str) -> String {
        format!("https://{domain}:{}", self.port)
    }

    /// An HTTPS client for the providers' client APIs: it trusts the
    /// federation's CA and finds each domain at its provider's address
    /// (whether or not the provider runs at the moment).
    pub fn client_api_http(&self) -> Result<reqwest::Client, LoopbackError> {
        let config = tls::client_config(self.roots.clone(), None).map_err(setup)?;
        let mut builder = reqwest::Client::builder().tls_backend_preconfigured(config);
        for (domain, p) in &self.providers {
            builder = builder.resolve(domain.as_str(), SocketAddr::new(p.ip, self.port));
        }
        builder.build().map_err(setup)
    }

    /// A running provider.
    pub fn node(&self, domain: &str) -> Option<&Node> {
        let domain: ProviderDomain = domain.parse().ok()?;
        self.providers.get(&domain)?.node.as_ref()
    }

    /// The running providers, in the order they were started.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.domains
            .iter()
            .filter_map(|d| self.providers.get(d)?.node.as_ref())
    }

    /// Stops a provider: its server (and every open connection), outbox and
    /// maintenance; its files stay.
    pub fn stop(&mut self, domain: &str) {
        if let Ok(domain) = domain.parse::<ProviderDomain>()
            && let Some(p) = self.providers.get_mut(&domain)
        {
            p.node = None;
        }
    }

    /// Starts a stopped provider again from its files, at its address.
    pub async fn restart(&mut self, domain: &str) -> Result<(), LoopbackError> {
        let domain: ProviderDomain = domain.parse().map_err(setup)?;
        let ip = self
            .providers
            .get(&domain)
            .ok_or_else(|| setup(format!("no provider {domain}")))?
            .ip;
        let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, self.port))
            .await
            .map_err(setup)?;
        let node = self.start_node(&domain, listener).await?;
        if let Some(p) = self.providers.get_mut(&domain) {
            p.node = Some(node);
        }
        Ok(())
    }

    /// Starts a provider from its files, as `mimid serve` does.
    async fn start_node(
        &self,
        domain: &ProviderDomain,
        listener: tokio::net::TcpListener,
    ) -> Result<Node, LoopbackError> {
        let p = self
            .providers
            .get(domain)
            .ok_or_else(|| setup(format!("no provider {domain}")))?;
        let keys = ProviderKeys::load(&[p.dir.join("provider.key")]).map_err(setup)?;
        let mut resolve = Vec::new();
        for d in &self.domains {
            if let Some(other) = self.providers.get(d) {
                let addr = SocketAddr::new(other.ip, self.port);
                resolve.push((d.to_string(), addr));
                resolve.push((format!("ds.{d}"), addr));
            }
        }
        let mut outbox = OutboxConfig::new(domain.clone());
        outbox.backoff_start = Duration::from_millis(100);
        outbox.backoff_max = Duration::from_secs(1);
        outbox.rescan = Duration::from_millis(500);
        Ok(Node::start(NodeSettings {
            domain: domain.clone(),
            listener,
            ds_authority: format!("ds.{domain}:{}", self.port),
            store_path: p.dir.join("mimid.db"),
            durability: Durability::Process,
            chain: tls::load_certs(&p.dir.join("cert.pem")).map_err(setup)?,
            key: tls::load_key(&p.dir.join("key.pem")).map_err(setup)?,
            roots: self.roots.clone(),
            keys,
            modes: PeerModes {
                default: self.mode,
                peers: HashMap::new(),
            },
            overrides: HashMap::new(),
            resolve,
            well_known_port: self.port,
            body_limit: mimid_wire::DEFAULT_BODY_LIMIT,
            limits: mimid_wire::Limits::default(),
            outbox,
            rate_limits: self
                .options
                .rate_limits
                .get(domain.as_str())
                .cloned()
                .unwrap_or_default(),
            connections: crate::connections::ConnectionLimits::default(),
            privacy_pass: self.privacy_pass(domain)?,
            clock: Arc::new(SystemClock),
        })
        .await?)
    }
}

impl Loopback {
    /// Privacy Pass of `domain` (if on): its own issuer, and every other
    /// provider's accepted.
    fn privacy_pass(
        &self,
        domain: &ProviderDomain,
    ) -> Result<Option<Arc<PrivacyPass>>, LoopbackError> {
        if !self.options.privacy_pass {
            return Ok(None);
        }
        let key = |d: &ProviderDomain| {
            let p = self
                .providers
                .get(d)
                .ok_or_else(|| setup(format!("no provider {d}")))?;
            IssuerKey::load(&p.dir.join(ISSUER_KEY_FILE)).map_err(setup)
        };
        let mut issuers = Vec::new();
        for other in self.domains.iter().filter(|d| *d != domain) {
            issuers.push(PPIssuer::new(other.as_str(), key(other)?.token_key()).map_err(setup)?);
        }
        let settings = PrivacyPassSettings {
            endpoints: vec![Endpoint::ConnectionKeyPackages, Endpoint::ConnectionRequest],
            issuer: Some((domain.to_string(), key(domain)?)),
            issuers,
            issuance: Some(crate::ratelimit::Rate {
                per_second: 10,
                burst: 100,
            }),
        };
        PrivacyPass::new(&settings, domain).map_err(setup)
    }
}

/// One listener per address, all on one port.
async fn bind_all(ips: &[IpAddr]) -> Result<(u16, Vec<tokio::net::TcpListener>), LoopbackError> {
    let Some((first_ip, rest)) = ips.split_first() else {
        return Err(setup("no provider"));
    };
    for _ in 0..20 {
        let first = tokio::net::TcpListener::bind(SocketAddr::new(*first_ip, 0))
            .await
            .map_err(setup)?;
        let port = first.local_addr().map_err(setup)?.port();
        let mut listeners = vec![first];
        for ip in rest {
            match tokio::net::TcpListener::bind(SocketAddr::new(*ip, port)).await {
                Ok(l) => listeners.push(l),
                Err(_) => break,
            }
        }
        if listeners.len() == ips.len() {
            return Ok((port, listeners));
        }
    }
    Err(setup("no port free on every loopback address"))
}
