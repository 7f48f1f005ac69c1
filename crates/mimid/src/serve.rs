//! `mimid serve --config FILE` and `mimid dead-letters --config FILE`: a
//! provider started from its configuration (`docs/operations.md`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use mimid_service::outbox::OutboxConfig;
use mimid_store::{PostgresStore, SqliteStore, Store};
use mimid_transport::auth::{AuthMode, PeerModes};
use mimid_transport::discovery::parse_authority;
use mimid_transport::node::{Node, NodeSettings};
use mimid_transport::{Clock as _, ProviderKey, ProviderKeys, SystemClock, tls};

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

/// Starts the provider and serves until interrupted.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let domain = config.domain().map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(config.provider.listen)
        .await
        .with_context(|| {
            format!(
                "provider.listen: cannot listen on {}",
                config.provider.listen
            )
        })?;
    let chain = tls::load_certs(&config.tls.certificate).context("tls.certificate")?;
    let key = tls::load_key(&config.tls.key).context("tls.key")?;
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
        clock: Arc::new(SystemClock),
    };
    match open(&config).await? {
        Opened::Sqlite(store) => run(Node::start_with(settings, store).await?).await,
        Opened::Postgres(store) => run(Node::start_with(settings, store).await?).await,
    }
}

/// Serves until interrupted.
async fn run<S: Store>(node: Node<S>) -> anyhow::Result<()> {
    println!("serving {} on https://{}", node.domain, node.local_addr());
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    drop(node);
    Ok(())
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
