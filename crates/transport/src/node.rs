//! One provider, whole: its store, hub and guest side, HTTPS server and
//! client, outbox and maintenance, started together (what `mimid serve`
//! and `mimid demo` run). Its own clients' DS requests go to the hub named
//! in their group: this provider's own hub directly, another over HTTPS.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mimid_core::{DsEndpoint, Hub, HubConfig};
use mimid_service::guest::LocalCourier;
use mimid_service::outbox::{Outbox, OutboxConfig};
use mimid_service::{HubService, ServiceConfig};
use mimid_store::{Durability, SqliteStore, Store};
use mimid_wire::{DSError, DSRequest, DSResponseBody, ProviderDomain};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::auth::PeerModes;
use crate::cert_slot::CertSlot;
use crate::client::{ClientConfig, TransportClient};
use crate::clock::Clock;
use crate::courier::FederationCourier;
use crate::discovery::{Authority, DiscoveryConfig};
use crate::keys::{KeyRing, ProviderKeys};
use crate::server::{AppState, RunningServer, ServerConfig, router, serve};
use crate::tls;

/// Everything a provider is started from.
pub struct NodeSettings {
    pub domain: ProviderDomain,
    /// Where the DS listens (bound already, so that a caller can learn the
    /// port before anything starts).
    pub listener: tokio::net::TcpListener,
    /// `host[:port]` served on the well-known path.
    pub ds_authority: String,
    /// The SQLite database of [`Node::start`] (not used by
    /// [`Node::start_with`], which is given its store).
    pub store_path: PathBuf,
    pub durability: Durability,
    /// The DS certificate chain and key (naming the provider's domain too,
    /// for mutual TLS).
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// Trust anchors for peers' servers and client certificates.
    pub roots: Arc<RootCertStore>,
    pub keys: ProviderKeys,
    pub modes: PeerModes,
    /// Where peers are, instead of discovery.
    pub overrides: HashMap<ProviderDomain, Authority>,
    /// Static name resolution (host -> address), for private networks and
    /// loopback federations.
    pub resolve: Vec<(String, std::net::SocketAddr)>,
    /// The port the well-known path is asked for on (443).
    pub well_known_port: u16,
    pub body_limit: usize,
    pub limits: mimid_wire::Limits,
    /// The outbox's tuning (its `domain` is set from `domain`).
    pub outbox: OutboxConfig,
    /// Rate limits of the server.
    pub rate_limits: crate::ratelimit::RateLimits,
    /// Timeouts and caps of the server's connections and requests.
    pub connections: crate::connections::ConnectionLimits,
    /// Privacy Pass (`None`: off).
    pub privacy_pass: Option<Arc<crate::privacy_pass::PrivacyPass>>,
    pub clock: Arc<dyn Clock>,
}

/// Why a provider could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("store: {0}")]
    Store(#[from] mimid_store::StoreError),
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("client: {0}")]
    Client(#[from] crate::client::ClientError),
    #[error("server: {0}")]
    Server(String),
}

/// A running provider. Dropping it stops its server, outbox and
/// maintenance at once (the store stays on disk); [`Node::shutdown`] stops
/// them gracefully.
pub struct Node<S: Store = SqliteStore> {
    pub domain: ProviderDomain,
    pub service: Arc<HubService<S>>,
    pub client: Arc<TransportClient>,
    server: RunningServer,
    outbox: Arc<Outbox<S, FederationCourier<S>>>,
    certificate: Arc<CertSlot>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How a graceful stop went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// Every request in flight was answered.
    pub requests: bool,
    /// Every delivery in flight was settled and recorded.
    pub deliveries: bool,
}

/// How often the hub drops expired reservations and old snapshots.
const MAINTENANCE: Duration = Duration::from_secs(60);

impl Node {
    /// Starts a provider on the SQLite database of `s.store_path`.
    pub async fn start(s: NodeSettings) -> Result<Node, NodeError> {
        let store = SqliteStore::open(&s.store_path, s.durability).await?;
        Node::start_with(s, store).await
    }
}

impl<S: Store> Node<S> {
    /// Starts a provider on `store` (PostgreSQL, to run several processes
    /// for one domain).
    pub async fn start_with(s: NodeSettings, store: S) -> Result<Node<S>, NodeError> {
        let service = Arc::new(HubService::new(
            Hub::new(HubConfig::new(s.domain.clone())),
            store,
            ServiceConfig::default(),
        ));
        // One slot for both sides: a reload reaches the server's
        // handshakes and the client certificate of mutual TLS together.
        let certificate = Arc::new(CertSlot::new(s.chain, s.key)?);
        let mut client_config = ClientConfig::new(
            s.domain.clone(),
            s.keys.clone(),
            tls::client_config_with(s.roots.clone(), certificate.clone())?,
        );
        client_config.modes = s.modes.clone();
        client_config.discovery = DiscoveryConfig {
            overrides: s.overrides.clone(),
            well_known_port: s.well_known_port,
            ..DiscoveryConfig::default()
        };
        client_config.resolve = s.resolve.clone();
        client_config.body_limit = s.body_limit;
        client_config.limits = s.limits.clone();
        let client = Arc::new(TransportClient::new(client_config, s.clock.clone())?);

        let mut server_config = ServerConfig::new(s.domain.clone(), s.ds_authority.clone());
        server_config.auth.modes = s.modes.clone();
        server_config.body_limit = s.body_limit;
        server_config.limits = s.limits.clone();
        server_config.rate_limits = s.rate_limits.clone();
        server_config.connections = s.connections.clone();
        server_config.privacy_pass = s.privacy_pass.clone();
        let state = AppState::new(
            service.clone(),
            // One ring for both: a reload reaches the signer and the
            // published keys together.
            client.keys().clone(),
            server_config,
            client.clone(),
            s.clock.clone(),
        );
        let server_tls = tls::server_config_with(
            certificate.clone(),
            s.modes.any_mtls().then(|| s.roots.clone()),
        )?;
        let server = serve(s.listener, server_tls, router(state), s.connections)
            .map_err(|e| NodeError::Server(e.to_string()))?;

        let courier = Arc::new(FederationCourier::new(
            LocalCourier::new(service.clone()),
            client.clone(),
        ));
        let mut outbox_config = s.outbox;
        outbox_config.domain = s.domain.clone();
        // The same after a restart: the process takes its leases back.
        outbox_config.owner = format!("{} {}", s.domain, server.local_addr());
        let outbox = Outbox::new(service.clone(), courier, outbox_config.clone());
        let maintained = service.clone();
        let clock = s.clock.clone();
        // Deliveries are remembered a day longer than any hub retries them.
        let remember = outbox_config
            .delivery_expiry
            .as_secs()
            .saturating_add(86_400);
        let tasks = vec![
            tokio::spawn(outbox.clone().run()),
            tokio::spawn(async move {
                loop {
                    if let Err(e) = maintained.maintain(clock.now()).await {
                        tracing::warn!(error = %e, "maintenance failed");
                    }
                    let before = clock.now().saturating_sub(remember);
                    if let Err(e) = maintained.store().prune_inbound(before).await {
                        tracing::warn!(error = %e, "pruning remembered deliveries failed");
                    }
                    // Expired KeyPackages, and handed-out ones a day later.
                    let now = clock.now();
                    let pruned = maintained
                        .store()
                        .prune_key_packages(now, now.saturating_sub(86_400))
                        .await;
                    if let Err(e) = pruned {
                        tracing::warn!(error = %e, "pruning KeyPackages failed");
                    }
                    if let Err(e) = maintained.store().prune_nonces(now).await {
                        tracing::warn!(error = %e, "pruning request nonces failed");
                    }
                    tokio::time::sleep(MAINTENANCE).await;
                }
            }),
        ];
        Ok(Node {
            domain: s.domain,
            service,
            client,
            server,
            outbox,
            certificate,
            tasks,
        })
    }

    /// The certificate it presents, as server and as client: replace it
    /// there (new connections get the new one).
    pub fn certificate(&self) -> &Arc<CertSlot> {
        &self.certificate
    }

    /// Its signing keys, as published and as used: replace them there.
    pub fn keys(&self) -> &KeyRing {
        self.client.keys()
    }

    /// Stops gracefully, within `grace` in all: stops accepting and lets
    /// the requests in flight finish (those they commit wake the outbox),
    /// then stops the outbox, whose sends in flight finish and are
    /// recorded (a job is completed or still pending, never in between),
    /// then the maintenance. Whatever is still running at the deadline is
    /// cut off, which loses nothing acknowledged: an answered request was
    /// durable before its answer, and a job cut off in flight is sent again
    /// after the next start (the receiver recognises a repeat).
    pub async fn shutdown(&mut self, grace: Duration) -> Stopped {
        let deadline = tokio::time::Instant::now() + grace;
        let requests = self.server.shutdown(grace).await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let deliveries = tokio::time::timeout(left, self.outbox.stop()).await.is_ok();
        for task in &self.tasks {
            task.abort();
        }
        Stopped {
            requests,
            deliveries,
        }
    }

    /// Where the DS listens.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    /// A DS request of one of this provider's own clients (authenticated
    /// by the client API): to this provider's hub for its own groups and
    /// new group ids, else relayed over HTTPS to the group's hub, whose
    /// answer it returns.
    pub async fn submit(
        &self,
        endpoint: DsEndpoint,
        request: &DSRequest,
    ) -> Result<DSResponseBody, DSError> {
        crate::relay::submit(&self.service, &self.client, &self.domain, endpoint, request).await
    }
}

impl<S: Store> Drop for Node<S> {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
