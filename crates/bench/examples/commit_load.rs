//! Successive commits of one group, alternately through raw OpenMLS
//! (`PublicGroup::process_message` + `merge_commit`) and through the hub's
//! whole path with SQLite (both durability settings), in rounds of the
//! same chain of commits, so that the ratio holds even when the shared
//! machine's speed drifts during the run:
//! `cargo run --release -p mimid-bench --example commit_load -- [members]
//! [rounds]`.

use std::time::{Duration, Instant};

use mimid_bench::{HubFixture, put_state, seeded_service};
use mimid_core::{DsEndpoint, HubGroup, Origin};
use mimid_store::{Durability, Store};
use mimid_wire::{DSRequest, DSRequestBody, Limits, Wire};
use openmls::prelude::{MlsMessageIn, ProcessedMessageContent, tls_codec::DeserializeBytes as _};
use openmls_rust_crypto::RustCrypto;

const CHAIN: usize = 40;

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let members: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(&e))?;
    let mut fx = HubFixture::new(members, 3)?;
    let chain: Vec<DSRequest> = fx.group.update_chain(CHAIN).map_err(|e| err(&e))?;
    let bodies: Vec<Vec<u8>> = chain
        .iter()
        .map(|r| r.to_bytes().map_err(|e| err(&e)))
        .collect::<Result<_, _>>()?;
    let commits: Vec<Vec<u8>> = chain
        .iter()
        .map(|r| match &r.request_body {
            DSRequestBody::UpdateClient(u) => Ok(u.group_update.commit.as_bytes().to_vec()),
            _ => Err("not an update".to_string()),
        })
        .collect::<Result<_, _>>()?;
    let crypto = RustCrypto::default();
    let dir = tempfile::tempdir().map_err(|e| err(&e))?;
    let cache = std::num::NonZeroUsize::new(64).ok_or("cache")?;
    let mut services = Vec::new();
    for (name, durability) in [
        ("process", Durability::Process),
        ("power loss", Durability::PowerLoss),
    ] {
        let path = dir.path().join(name.replace(' ', "_"));
        std::fs::create_dir(&path).map_err(|e| err(&e))?;
        let svc = rt.block_on(seeded_service(&fx, durability, &path, cache))?;
        services.push((name, svc, 1u64, Duration::ZERO));
    }
    let gid = fx.group.group_id.clone();
    let mut raw = Duration::ZERO;
    for _ in 0..rounds {
        // Raw OpenMLS on the hub's own stored state (loading untimed).
        let (mut public, storage) = HubGroup::from_bytes(&fx.state)
            .map_err(|e| err(&e))?
            .into_parts();
        for commit in &commits {
            let start = Instant::now();
            let message = MlsMessageIn::tls_deserialize_exact_bytes(commit).map_err(|e| err(&e))?;
            let message = message.try_into_protocol_message().map_err(|e| err(&e))?;
            let processed = public
                .process_message(&crypto, message)
                .map_err(|e| err(&e))?;
            let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content()
            else {
                return Err("not a commit".into());
            };
            public
                .merge_commit(&storage, *staged)
                .map_err(|e| err(&e))?;
            raw += start.elapsed();
        }
        // The hub's whole path (decode included), the group warm in the
        // cache as a busy group is; put back at the chain's start (untimed).
        for (_, svc, version, total) in &mut services {
            let restore = put_state(&gid, fx.state.clone(), Some(*version));
            rt.block_on(svc.store().commit(restore))
                .map_err(|e| err(&e))?;
            *version += 1;
            svc.evict(&gid);
            rt.block_on(svc.group_epoch(&gid)).map_err(|e| err(&e))?;
            for body in &bodies {
                let start = Instant::now();
                let req = DSRequest::decode_exact(body, &Limits::default()).map_err(|e| err(&e))?;
                rt.block_on(svc.handle(DsEndpoint::GroupOperation, &req, Origin::Local))
                    .map_err(|e| err(&e))?;
                *total += start.elapsed();
                *version += 1;
            }
        }
    }
    let per = |d: Duration| d.as_secs_f64() * 1e3 / (rounds * CHAIN) as f64;
    println!(
        "{members} members, {rounds} rounds of {CHAIN} commits: raw OpenMLS {:.3} ms",
        per(raw)
    );
    for (name, _, _, total) in &services {
        println!(
            "  hub + SQLite ({name}): {:.3} ms, hub / raw = {:.2}",
            per(*total),
            per(*total) / per(raw)
        );
    }
    Ok(())
}
