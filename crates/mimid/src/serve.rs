//! `mimid serve --config FILE` and `mimid dead-letters --config FILE`: a
//! provider started from its configuration (`docs/operations.md`).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mimid_service::outbox::OutboxConfig;
use mimid_store::{PostgresStore, SqliteStore, Store};
use mimid_transport::auth::{AuthMode, PeerModes};
use mimid_transport::discovery::parse_authority;
use mimid_transport::node::{Node, NodeSettings};
use mimid_transport::{Clock as _, ProviderKey, ProviderKeys, SystemClock, tls};

use tokio::signal::unix::{SignalKind, signal};

use crate::config::{Backend, Config, Durability, ProviderAuth};

fn mode(auth: ProviderAuth) -> AuthMode {
    match auth {
        ProviderAuth::Signature => AuthMode::Signature,
        ProviderAuth::Mtls => AuthMode::Mtls,
        ProviderAuth::Both => AuthMode::Both,
    }
}

fn durability(d: Durability) -> mimid_store::Durability {
    match d {
        Durability::Process => mimid_store::Durability::Process,
        Durability::PowerLoss => mimid_store::Durability::PowerLoss,
    }
}

/// The configured store, opened.
enum Opened {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

async fn open(config: &Config) -> anyhow::Result<Opened> {
    Ok(match config.store.backend() {
        Backend::Sqlite(path) => Opened::Sqlite(
            SqliteStore::open(path, durability(config.store.durability))
                .await
                .context("store.path")?,
        ),
        Backend::Postgres(options) => Opened::Postgres(
            PostgresStore::connect(&options)
                .await
                .context("store.postgres_url")?,
        ),
    })
}

/// Runs `$body` with `$store` bound to the configured store (whichever
/// backend), then closes the store.
macro_rules! with_store {
    ($config:expr, |$store:ident| $body:expr) => {
        match open(&$config).await? {
            Opened::Sqlite($store) => {
                let outcome = $body;
                $store.close().await?;
                outcome
            }
            Opened::Postgres($store) => {
                let outcome = $body;
                $store.close().await?;
                outcome
            }
        }
    };
}

/// Starts the provider and serves until SIGTERM or SIGINT, then stops
/// gracefully; reloads the certificate and provider keys on SIGHUP.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let domain = config.domain().map_err(anyhow::Error::msg)?;
    // Bound first, like the DS: a taken address fails the start.
    let ops_listener = match config.ops.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("ops.listen: cannot listen on {addr}"))?,
        ),
        None => None,
    };
    let recorder = match ops_listener {
        Some(_) => Some(crate::ops::install_recorder().context("ops: metrics")?),
        None => None,
    };
    // Signal handlers before the first connection: a SIGTERM from then on
    // is a graceful stop, not the default death.
    let signals = Signals {
        terminate: signal(SignalKind::terminate())?,
        interrupt: signal(SignalKind::interrupt())?,
        hangup: signal(SignalKind::hangup())?,
    };
    let listener = tokio::net::TcpListener::bind(config.provider.listen)
        .await
        .with_context(|| {
            format!(
                "provider.listen: cannot listen on {}",
                config.provider.listen
            )
        })?;
    let (chain, key) = certificate(&config)?;
    let mut anchors = Vec::new();
    for path in &config.tls.trust_anchors {
        anchors.extend(tls::load_certs(path).context("tls.trust_anchors")?);
    }
    let roots = tls::root_store(&anchors, config.tls.webpki_roots).context("tls.trust_anchors")?;
    let keys = if config.federation.provider_keys.is_empty() {
        // Mutual TLS only: nothing is signed, but the key set is never
        // empty; an ephemeral key is published and unused.
        let now = SystemClock.now();
        ProviderKeys::new(vec![
            ProviderKey::generate(now, now + 86_400).map_err(anyhow::Error::msg)?,
        ])?
    } else {
        ProviderKeys::load(&config.federation.provider_keys).context("federation.provider_keys")?
    };
    let mut modes = PeerModes {
        default: mode(config.federation.provider_auth),
        peers: HashMap::new(),
    };
    let mut overrides = HashMap::new();
    for (peer, settings) in &config.federation.peers {
        let peer_domain: mimid_wire::ProviderDomain = peer.parse().map_err(anyhow::Error::msg)?;
        if let Some(auth) = settings.provider_auth {
            modes.peers.insert(peer_domain.clone(), mode(auth));
        }
        if let Some(authority) = &settings.ds_authority {
            let authority = parse_authority(authority)
                .with_context(|| format!("federation.peers.\"{peer}\".ds_authority"))?;
            overrides.insert(peer_domain, authority);
        }
    }
    let mut limits = mimid_wire::Limits::default();
    limits.max_vector_bytes = config.limits.body_bytes;
    limits.max_group_info_extensions = config.limits.group_info_extensions_bytes;
    let mut outbox = OutboxConfig::new(domain.clone());
    outbox.delivery_expiry = Duration::from_secs(config.delivery.expiry_seconds);
    outbox.backoff_start = Duration::from_millis(config.delivery.backoff_start_ms);
    outbox.backoff_max = Duration::from_secs(config.delivery.backoff_max_seconds);
    outbox.lanes = config.delivery.lanes;
    let ds_authority = config
        .provider
        .ds_authority
        .clone()
        .unwrap_or_else(|| domain.to_string());
    let privacy_pass = config
        .privacy_pass
        .to_settings(&domain)
        .map_err(|e| anyhow::anyhow!("privacy_pass: {e}"))?;
    let privacy_pass = mimid_transport::privacy_pass::PrivacyPass::new(&privacy_pass, &domain)
        .context("privacy_pass")?;
    let settings = NodeSettings {
        domain: domain.clone(),
        listener,
        ds_authority,
        store_path: config.store.path.clone().unwrap_or_default(),
        durability: durability(config.store.durability),
        chain,
        key,
        roots: Arc::clone(&roots),
        keys,
        modes,
        overrides,
        resolve: Vec::new(),
        well_known_port: 443,
        body_limit: config.limits.body_bytes,
        limits,
        outbox,
        rate_limits: config.rate_limits.to_limits(),
        connections: config.connections.to_limits(),
        privacy_pass,
        clock: Arc::new(SystemClock),
    };
    match open(&config).await? {
        Opened::Sqlite(store) => {
            let node = Node::start_with(settings, store).await?;
            run(node, &config, ops_listener, recorder, signals).await
        }
        Opened::Postgres(store) => {
            let node = Node::start_with(settings, store).await?;
            run(node, &config, ops_listener, recorder, signals).await
        }
    }
}

/// The signals `mimid serve` handles.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

/// Serves until SIGTERM or SIGINT, then stops gracefully.
async fn run<S: Store>(
    mut node: Node<S>,
    config: &Config,
    ops_listener: Option<tokio::net::TcpListener>,
    recorder: Option<metrics_exporter_prometheus::PrometheusHandle>,
    mut signals: Signals,
) -> anyhow::Result<()> {
    let domain = node.domain.clone();
    let mut ops_tasks = Vec::new();
    let ops = match (ops_listener, recorder) {
        (Some(listener), Some(recorder)) => {
            let ops = crate::ops::Ops::new(&node, recorder);
            tracing::info!(address = %listener.local_addr()?, "operator endpoints listening");
            ops_tasks = ops.serve(listener);
            Some(ops)
        }
        _ => None,
    };
    // For whoever started it; a closed standard output is no reason to stop.
    let _ = writeln!(
        std::io::stdout(),
        "serving {domain} on https://{}",
        node.local_addr()
    );
    tracing::info!(%domain, address = %node.local_addr(), "serving");
    let signal = loop {
        tokio::select! {
            _ = signals.terminate.recv() => break "SIGTERM",
            _ = signals.interrupt.recv() => break "SIGINT",
            _ = signals.hangup.recv() => reload(config, &node),
        }
    };
    let grace = Duration::from_secs(config.ops.shutdown_grace_seconds);
    tracing::info!(signal, grace_seconds = grace.as_secs(), "stopping");
    if let Some(ops) = &ops {
        ops.stopping();
    }
    let stopped = node.shutdown(grace).await;
    if stopped.requests && stopped.deliveries {
        tracing::info!("stopped: every request and delivery in flight finished");
    } else {
        tracing::warn!(
            requests_finished = stopped.requests,
            deliveries_finished = stopped.deliveries,
            "stopped at the end of the grace period; what was cut off is retried by its sender, \
             or sent again after the next start"
        );
    }
    for task in ops_tasks {
        task.abort();
    }
    Ok(())
}

/// The configured certificate chain and key.
fn certificate(
    config: &Config,
) -> anyhow::Result<(
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
)> {
    let chain = tls::load_certs(&config.tls.certificate).context("tls.certificate")?;
    let key = tls::load_key(&config.tls.key).context("tls.key")?;
    Ok((chain, key))
}

/// SIGHUP: reads the certificate, its key and the provider key files
/// again (the paths configured at start) and puts each in force if it is
/// good; a bad one leaves the one in force and says why. Connections
/// already made keep their certificate.
fn reload<S: Store>(config: &Config, node: &Node<S>) {
    let outcome = certificate(config).and_then(|(chain, key)| {
        node.certificate()
            .replace(chain, key)
            .context("tls.certificate and tls.key")
    });
    reloaded("certificate", outcome);
    if !config.federation.provider_keys.is_empty() {
        let outcome = ProviderKeys::load(&config.federation.provider_keys)
            .context("federation.provider_keys")
            .map(|keys| node.keys().replace(keys));
        reloaded("provider_keys", outcome);
    }
}

fn reloaded(what: &'static str, outcome: anyhow::Result<()>) {
    let label = match &outcome {
        Ok(()) => {
            tracing::info!(what, "reloaded");
            "ok"
        }
        Err(e) => {
            tracing::warn!(
                what,
                error = format!("{e:#}"),
                "reload failed, the old one stays in force"
            );
            "failed"
        }
    };
    metrics::counter!(crate::ops::RELOADS, "what" => what, "outcome" => label).increment(1);
}

/// Prints the dead letters of the configured store.
pub async fn dead_letters(config: Config) -> anyhow::Result<()> {
    with_store!(config, |store| print_dead_letters(&store).await)
}

async fn print_dead_letters(store: &impl Store) -> anyhow::Result<()> {
    let letters = store.dead_letters(10_000).await?;
    if letters.is_empty() {
        println!("no dead letters");
    }
    for l in letters {
        println!(
            "{} job {} to {} message {} attempts {} created {} failed {}: {}",
            l.id,
            l.job.id,
            l.job.destination,
            mimid_wire::hex_string(&l.job.message_id),
            l.job.attempts,
            l.job.created_at,
            l.failed_at,
            l.reason
        );
    }
    Ok(())
}

/// What `mimid user` does.
pub enum UserAction {
    Add(String),
    Remove(String),
    List,
    /// A user and the hours its secret is good for.
    Invite(String, u64),
}

/// `mimid user`: the provider's users, on its store.
pub async fn users(config: Config, action: UserAction) -> anyhow::Result<()> {
    with_store!(config, |store| manage_users(&store, &config, action).await)
}

async fn manage_users(
    store: &impl Store,
    config: &Config,
    action: UserAction,
) -> anyhow::Result<()> {
    let domain = &config.provider.domain;
    let user_id = |name: &str| -> anyhow::Result<mimid_wire::UserId> {
        let id = if name.contains("://") {
            name.to_owned()
        } else {
            format!("mimi://{domain}/u/{name}")
        };
        let id: mimid_wire::UserId = id
            .parse()
            .map_err(|e| anyhow::anyhow!("{name:?} is no user name or UserID: {e}"))?;
        anyhow::ensure!(
            id.domain().as_str() == domain.as_str(),
            "{id} is not a user of this provider ({domain})"
        );
        Ok(id)
    };
    match action {
        UserAction::Add(name) => {
            let id = user_id(&name)?;
            use mimid_transport::Clock as _;
            match store
                .add_user(id.to_string(), mimid_transport::SystemClock.now())
                .await
            {
                Ok(()) => {
                    println!("added {id}");
                    Ok(())
                }
                Err(mimid_store::StoreError::Conflict) => {
                    Err(anyhow::anyhow!("{id} exists already"))
                }
                Err(e) => Err(e.into()),
            }
        }
        UserAction::Remove(name) => {
            let id = user_id(&name)?;
            if store.user_exists(id.as_str()).await? {
                store.remove_user(id.to_string()).await?;
                println!("removed {id}");
                Ok(())
            } else {
                Err(anyhow::anyhow!("no user {id}"))
            }
        }
        UserAction::Invite(name, hours) => {
            let id = user_id(&name)?;
            if store.user_exists(id.as_str()).await? {
                use mimid_transport::Clock as _;
                let now = mimid_transport::SystemClock.now();
                let valid_for = hours.saturating_mul(3600);
                let secret =
                    mimid_transport::server::client_api::invite(store, &id, valid_for, now).await?;
                let expires = now.saturating_add(valid_for);
                println!("enrolment secret for one client of {id}, good until {expires}:");
                println!("{secret}");
                Ok(())
            } else {
                Err(anyhow::anyhow!("no user {id}"))
            }
        }
        UserAction::List => {
            let users = store.users().await?;
            if users.is_empty() {
                println!("no users");
            }
            for user in users {
                println!("{} (since {})", user.user_id, user.created_at);
                for client in user.clients {
                    println!("  {client}");
                }
            }
            Ok(())
        }
    }
}
