//! Memory of the hub against the number of stored groups: seeds `groups`
//! copies of a 100-member group's state, then touches every group through
//! the service (each is loaded from SQLite), printing the process's peak
//! resident memory as it goes.
//!
//! `cargo run --release -p mimid-bench --example memory -- [groups] [cache]`

use std::num::NonZeroUsize;

use mimid_bench::{HubFixture, memory_kib, put_state};
use mimid_core::{Hub, HubConfig};
use mimid_service::{HubService, ServiceConfig};
use mimid_store::{Durability, SqliteStore, Store};
use mimid_wire::GroupId;

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let groups: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let cache: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let fx = HubFixture::new(100, 3)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (base_peak, _) = memory_kib();
    rt.block_on(async {
        let store = SqliteStore::open(&dir.path().join("hub.db"), Durability::Process)
            .await
            .map_err(|e| e.to_string())?;
        let id = |i: usize| GroupId {
            hub_domain: fx.group.group_id.hub_domain.clone(),
            local_id: (i as u128).to_be_bytes(),
        };
        for i in 0..groups {
            let step = put_state(&id(i), fx.state.clone(), None);
            store.enqueue(step).await.map_err(|e| e.to_string())?;
        }
        let hub = Hub::new(HubConfig::new(fx.group.group_id.hub_domain.clone()));
        let cache_groups = NonZeroUsize::new(cache).ok_or("cache must be > 0")?;
        let svc = HubService::new(
            hub,
            store,
            ServiceConfig {
                cache_groups,
                ..Default::default()
            },
        );
        println!(
            "{groups} groups of 100 members stored ({} bytes of state each), cache of {cache}",
            fx.state.len()
        );
        println!("before loading: peak {base_peak} KiB");
        for i in 0..groups {
            svc.group_epoch(&id(i))
                .await
                .map_err(|e| e.to_string())?
                .ok_or("group missing")?;
            if (i + 1) % (groups / 5).max(1) == 0 {
                let (peak, rss) = memory_kib();
                println!(
                    "after {:>6} groups loaded: peak {peak} KiB, now {rss} KiB, cached {}",
                    i + 1,
                    svc.cached_groups()
                );
            }
        }
        Ok::<_, String>(())
    })
}
