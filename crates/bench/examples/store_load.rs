//! The hub's throughput on each store, in one run on one machine: SQLite
//! (both durability settings), PostgreSQL with one process, and PostgreSQL
//! with two processes sharing the database (two hub services in this
//! process, each with its own connection pool, writer and group cache, as
//! two `mimid serve` have; requests alternate between them). PostgreSQL is a
//! throwaway cluster with its default durability (`fsync` on).
//!
//! For each: application messages per second (`concurrency` senders), and
//! successive commits of one group of `members` per second, timed beside
//! raw OpenMLS processing the same commits (`hub / raw`), in rounds:
//! `cargo run --release -p mimid-bench --example store_load -- [members]
//! [rounds] [messages] [concurrency]`.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mimid_bench::{HubFixture, put_state, seeded_service, seeded_service_on};
use mimid_core::{DsEndpoint, HubGroup, Origin};
use mimid_service::HubService;
use mimid_store::throwaway::{Sync, ThrowawayCluster};
use mimid_store::{Durability, PostgresOptions, PostgresStore, Store};
use mimid_wire::{DSRequest, DSRequestBody, Limits, Wire};
use openmls::prelude::{MlsMessageIn, ProcessedMessageContent, tls_codec::DeserializeBytes as _};
use openmls_rust_crypto::RustCrypto;

const CHAIN: usize = 40;

type Err = String;

fn err(e: impl std::fmt::Display) -> Err {
    e.to_string()
}

/// One configuration: its services (one per process) and what was timed.
struct Backend<S: Store> {
    name: &'static str,
    services: Vec<Arc<HubService<S>>>,
    version: u64,
    commits: Duration,
}

impl<S: Store> Backend<S> {
    fn new(name: &'static str, services: Vec<HubService<S>>) -> Self {
        Backend {
            name,
            services: services.into_iter().map(Arc::new).collect(),
            version: 1,
            commits: Duration::ZERO,
        }
    }

    /// Application messages, each of `bodies` once, `concurrency` senders
    /// spread over the services; messages per second.
    async fn messages(&self, bodies: &Arc<Vec<Vec<u8>>>, concurrency: usize) -> Result<f64, Err> {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for t in 0..concurrency {
            let svc = self.services[t % self.services.len()].clone();
            let bodies = bodies.clone();
            tasks.push(tokio::spawn(async move {
                for body in bodies.iter().skip(t).step_by(concurrency) {
                    let req = DSRequest::decode_exact(body, &Limits::default()).map_err(err)?;
                    svc.handle(DsEndpoint::GroupOperation, &req, Origin::Local)
                        .await
                        .map_err(err)?;
                }
                Ok::<_, Err>(())
            }));
        }
        for t in tasks {
            t.await.map_err(err)??;
        }
        Ok(bodies.len() as f64 / start.elapsed().as_secs_f64())
    }

    /// The chain of commits once, from the fixture's state, alternating
    /// services.
    async fn commit_chain(&mut self, fx: &HubFixture, bodies: &[Vec<u8>]) -> Result<(), Err> {
        let gid = fx.group.group_id.clone();
        let first = &self.services[0];
        first
            .store()
            .commit(put_state(&gid, fx.state.clone(), Some(self.version)))
            .await
            .map_err(err)?;
        self.version += 1;
        for svc in &self.services {
            svc.evict(&gid);
            svc.group_epoch(&gid).await.map_err(err)?;
        }
        for (i, body) in bodies.iter().enumerate() {
            let svc = &self.services[i % self.services.len()];
            let start = Instant::now();
            let req = DSRequest::decode_exact(body, &Limits::default()).map_err(err)?;
            svc.handle(DsEndpoint::GroupOperation, &req, Origin::Local)
                .await
                .map_err(err)?;
            self.commits += start.elapsed();
            self.version += 1;
        }
        Ok(())
    }
}

async fn postgres(
    fx: &HubFixture,
    url: &str,
    processes: usize,
    cache: NonZeroUsize,
) -> Result<Vec<HubService<PostgresStore>>, Err> {
    let mut services = Vec::new();
    for p in 0..processes {
        let store = PostgresStore::connect(&PostgresOptions::new(url))
            .await
            .map_err(err)?;
        services.push(seeded_service_on(fx, store, p == 0, cache).await?);
    }
    Ok(services)
}

fn main() -> Result<(), Err> {
    let mut args = std::env::args().skip(1);
    let members: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let messages: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(err)?;
    let mut fx = HubFixture::new(members, 3)?;
    // Distinct messages: the hub fans out the same bytes once
    // (`docs/protocol.md` 6.3), so a repeated body would measure repeats.
    let sends = Arc::new(
        (0..messages)
            .map(|_| {
                fx.group
                    .message_request(1024)
                    .map_err(err)?
                    .to_bytes()
                    .map_err(err)
            })
            .collect::<Result<Vec<_>, _>>()?,
    );
    let chain: Vec<DSRequest> = fx.group.update_chain(CHAIN).map_err(err)?;
    let bodies: Vec<Vec<u8>> = chain
        .iter()
        .map(|r| r.to_bytes().map_err(err))
        .collect::<Result<_, _>>()?;
    let commits: Vec<Vec<u8>> = chain
        .iter()
        .map(|r| match &r.request_body {
            DSRequestBody::UpdateClient(u) => Ok(u.group_update.commit.as_bytes().to_vec()),
            _ => Err("not an update".to_string()),
        })
        .collect::<Result<_, _>>()?;

    let cache = NonZeroUsize::new(64).ok_or("cache")?;
    let dir = tempfile::tempdir().map_err(err)?;
    let one = ThrowawayCluster::start(Sync::On)?;
    let two = ThrowawayCluster::start(Sync::On)?;
    let (mut sqlite, mut pg) = rt.block_on(async {
        let mut sqlite = Vec::new();
        for (name, durability) in [
            ("SQLite (power loss)", Durability::PowerLoss),
            ("SQLite (process)", Durability::Process),
        ] {
            let path = dir.path().join(name.len().to_string());
            std::fs::create_dir(&path).map_err(err)?;
            let svc = seeded_service(&fx, durability, &path, cache).await?;
            sqlite.push(Backend::new(name, vec![svc]));
        }
        let pg = vec![
            Backend::new(
                "PostgreSQL, 1 process",
                postgres(&fx, &one.url(), 1, cache).await?,
            ),
            Backend::new(
                "PostgreSQL, 2 processes",
                postgres(&fx, &two.url(), 2, cache).await?,
            ),
        ];
        Ok::<_, Err>((sqlite, pg))
    })?;

    println!("{members} members; {messages} application messages of 1 KiB, {concurrency} senders:");
    rt.block_on(async {
        for b in &sqlite {
            let rate = b.messages(&sends, concurrency.max(1)).await?;
            println!("  {}: {rate:.0} messages/s", b.name);
        }
        for b in &pg {
            let rate = b.messages(&sends, concurrency.max(1)).await?;
            println!("  {}: {rate:.0} messages/s", b.name);
        }
        Ok::<_, Err>(())
    })?;

    let crypto = RustCrypto::default();
    let mut raw = Duration::ZERO;
    for _ in 0..rounds {
        let (mut public, storage) = HubGroup::from_bytes(&fx.state).map_err(err)?.into_parts();
        for commit in &commits {
            let start = Instant::now();
            let message = MlsMessageIn::tls_deserialize_exact_bytes(commit).map_err(err)?;
            let message = message.try_into_protocol_message().map_err(err)?;
            let processed = public.process_message(&crypto, message).map_err(err)?;
            let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content()
            else {
                return Err("not a commit".into());
            };
            public.merge_commit(&storage, *staged).map_err(err)?;
            raw += start.elapsed();
        }
        rt.block_on(async {
            for b in &mut sqlite {
                b.commit_chain(&fx, &bodies).await?;
            }
            for b in &mut pg {
                b.commit_chain(&fx, &bodies).await?;
            }
            Ok::<_, Err>(())
        })?;
    }
    let per = |d: Duration| d.as_secs_f64() * 1e3 / (rounds * CHAIN) as f64;
    println!(
        "{rounds} rounds of {CHAIN} successive commits of one group: raw OpenMLS {:.3} ms each",
        per(raw)
    );
    let report = |name: &str, total: Duration| {
        println!(
            "  {name}: {:.3} ms each, {:.0} commits/s, hub / raw = {:.2}",
            per(total),
            1e3 / per(total),
            per(total) / per(raw)
        );
    };
    for b in &sqlite {
        report(b.name, b.commits);
    }
    for b in &pg {
        report(b.name, b.commits);
    }
    Ok(())
}
