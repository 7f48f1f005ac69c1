//! Successive commits of one group through the hub path (SQLite), for
//! profiling: `cargo run --release -p mimid-bench --example commit_load --
//! [members] [seconds]`. Prints "ready" once the fixture is built.

use std::time::{Duration, Instant};

use mimid_bench::{HubFixture, put_state, seeded_service};
use mimid_core::{DsEndpoint, Origin};
use mimid_store::{Durability, Store};
use mimid_wire::{DSRequest, Limits, Wire};

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let members: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut fx = HubFixture::new(members, 3)?;
    let chain: Vec<Vec<u8>> = fx
        .group
        .update_chain(40)
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.to_bytes().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cache = std::num::NonZeroUsize::new(64).ok_or("cache")?;
    let svc = rt.block_on(seeded_service(&fx, Durability::Process, dir.path(), cache))?;
    let gid = fx.group.group_id.clone();
    println!("ready");
    let (mut version, mut commits, mut busy) = (1u64, 0u64, Duration::ZERO);
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let restore = put_state(&gid, fx.state.clone(), Some(version));
        rt.block_on(svc.store().commit(restore))
            .map_err(|e| e.to_string())?;
        version += 1;
        svc.evict(&gid);
        for body in &chain {
            let start = Instant::now();
            let req =
                DSRequest::decode_exact(body, &Limits::default()).map_err(|e| e.to_string())?;
            rt.block_on(svc.handle(DsEndpoint::GroupOperation, &req, Origin::Local))
                .map_err(|e| e.to_string())?;
            busy += start.elapsed();
            version += 1;
            commits += 1;
        }
    }
    println!(
        "{commits} commits of a {members}-member group: {:.3} ms each",
        busy.as_secs_f64() * 1e3 / commits as f64
    );
    Ok(())
}
