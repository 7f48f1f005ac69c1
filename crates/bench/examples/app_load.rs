//! Load of application messages through the hub path, for profiling and
//! for `docs/performance.md`: `cargo run --release -p mimid-bench --example
//! app_load -- [messages] [concurrency]`.

use std::sync::Arc;
use std::time::Instant;

use mimid_bench::{HubFixture, cpu_seconds, memory_kib, seeded_service};
use mimid_core::{DsEndpoint, Origin};
use mimid_store::Durability;
use mimid_wire::{DSRequest, Limits, Wire};

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut fx = HubFixture::new(100, 3)?;
    // Distinct messages: the hub fans out the same bytes once
    // (`docs/protocol.md` 6.3), so a repeated body would measure repeats.
    let bodies = (0..count)
        .map(|_| {
            fx.group
                .message_request(1024)
                .map_err(|e| e.to_string())?
                .to_bytes()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cache = std::num::NonZeroUsize::new(64).ok_or("cache")?;
    let svc = Arc::new(rt.block_on(seeded_service(&fx, Durability::Process, dir.path(), cache))?);
    let bodies = Arc::new(bodies);
    let concurrency = concurrency.max(1);
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..concurrency {
            let (svc, bodies) = (svc.clone(), bodies.clone());
            tasks.push(tokio::spawn(async move {
                for body in bodies.iter().skip(t).step_by(concurrency) {
                    let req = DSRequest::decode_exact(body, &Limits::default())
                        .map_err(|e| e.to_string())?;
                    svc.handle(DsEndpoint::GroupOperation, &req, Origin::Local)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok::<_, String>(())
    })?;
    let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
    let (peak, rss) = memory_kib();
    let (batches, signatures) = svc.signature_batches();
    println!(
        "{count} app messages, {concurrency} concurrent: {wall:.2} s wall, {cpu:.2} s CPU; {:.0}/s, {:.0} per CPU-second; signatures checked in batches of {:.1} on average; {} store transactions; memory peak {peak} KiB, now {rss} KiB",
        count as f64 / wall,
        count as f64 / cpu.max(0.01),
        signatures as f64 / batches.max(1) as f64,
        svc.store().transactions_committed(),
    );
    Ok(())
}
