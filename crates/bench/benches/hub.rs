//! The hub's whole path against raw OpenMLS on the same work
//! (`docs/performance.md`).
//!
//! Run: `cargo bench -p mimid-bench --bench hub`.
//!
//! - `commit_N/raw_openmls`: `PublicGroup::process_message` + `merge_commit`
//!   of one commit (with a fresh update path) in an N-member group.
//! - `commit_N/hub_core`: decode the `/group_operation` body, authenticate
//!   the client signature, validate with OpenMLS, check the operation's
//!   rules, rebuild and verify the GroupInfo, merge, serialize the state.
//! - `commit_N/hub_sqlite_{process,powerloss}`: the same through the
//!   service, committed to SQLite (both durability settings) before the
//!   answer.
//! - `app_message`: `ds_send_message` of a 1 KiB message in a 100-member
//!   group on 3 providers: decode, authenticate, epoch check, fan-out, and
//!   a durable enqueue (the message once, one job per provider).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mimid_bench::{HubFixture, cpu_seconds, memory_kib, now, put_state, seeded_service};
use mimid_core::state::GroupStorage;
use mimid_core::{Context, DsEndpoint, HubGroup, Origin, SignatureCheck, Slot, verify_batch};
use mimid_service::HubService;
use mimid_store::{Durability, SqliteStore, Store};
use mimid_wire::{DSRequest, DSRequestBody, Limits, Wire};
use openmls::prelude::{
    MlsMessageBodyIn, MlsMessageIn, ProcessedMessageContent, ProposalStore, PublicGroup,
    tls_codec::{DeserializeBytes, Serialize as _},
};
use openmls_rust_crypto::RustCrypto;

/// Successive commits per chain in the service benchmarks.
const CHAIN: usize = 40;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Opens a store holding the fixture's state at version 1.
fn service(
    rt: &tokio::runtime::Runtime,
    fx: &HubFixture,
    durability: Durability,
    dir: &std::path::Path,
) -> HubService<SqliteStore> {
    let cache = std::num::NonZeroUsize::new(64).expect("non-zero");
    rt.block_on(seeded_service(fx, durability, dir, cache))
        .expect("service")
}

fn commit_path(c: &mut Criterion) {
    let rt = runtime();
    let crypto = RustCrypto::default();
    for n in [10usize, 100, 1000] {
        let mut fx = HubFixture::new(n, 3).expect("fixture");
        let request = fx.group.update_request().expect("commit");
        let body = request.to_bytes().expect("encode");
        let DSRequestBody::UpdateClient(update) = &request.request_body else {
            unreachable!()
        };
        let commit = update.group_update.commit.as_bytes().to_vec();
        println!(
            "N={n}: stored state {} bytes, commit body {} bytes",
            fx.state.len(),
            body.len()
        );
        let ctx = Context {
            origin: Origin::Local,
            now: now(),
            random: [2; 16],
            verified: None,
            directory: None,
        };

        let mut g = c.benchmark_group(format!("commit_{n}"));
        g.sample_size(if n >= 1000 { 10 } else { 20 });
        g.measurement_time(Duration::from_secs(if n >= 1000 { 8 } else { 4 }));
        g.bench_function("raw_openmls", |b| {
            b.iter_batched(
                || HubGroup::from_bytes(&fx.state).expect("load").into_parts(),
                |(mut public, storage)| {
                    let message =
                        MlsMessageIn::tls_deserialize_exact_bytes(&commit).expect("parse");
                    let message = message.try_into_protocol_message().expect("protocol");
                    let processed = public.process_message(&crypto, message).expect("process");
                    let ProcessedMessageContent::StagedCommitMessage(staged) =
                        processed.into_content()
                    else {
                        unreachable!()
                    };
                    public.merge_commit(&storage, *staged).expect("merge");
                    black_box(public)
                },
                BatchSize::PerIteration,
            )
        });
        g.bench_function("hub_core", |b| {
            b.iter_batched(
                || Slot::Active(Box::new(HubGroup::from_bytes(&fx.state).expect("load"))),
                |mut slot| {
                    let req = DSRequest::decode_exact(&body, &Limits::default()).expect("decode");
                    black_box(
                        fx.hub
                            .handle(DsEndpoint::GroupOperation, &req, &mut slot, None, &ctx)
                            .expect("accepted"),
                    )
                },
                BatchSize::PerIteration,
            )
        });
        // Through the service: a chain of successive commits, as a busy
        // group sees them; when the chain runs out the group is put back
        // at the first commit's epoch (untimed), so restores are rare.
        let chain: Vec<Vec<u8>> = fx
            .group
            .update_chain(CHAIN)
            .expect("chain")
            .iter()
            .map(|r| r.to_bytes().expect("encode"))
            .collect();
        for (name, durability) in [
            ("hub_sqlite_process", Durability::Process),
            ("hub_sqlite_powerloss", Durability::PowerLoss),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let svc = service(&rt, &fx, durability, dir.path());
            let gid = fx.group.group_id.clone();
            let mut version = 1u64;
            let mut next = 0usize;
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        if next == chain.len() {
                            let restore = put_state(&gid, fx.state.clone(), Some(version));
                            rt.block_on(svc.store().commit(restore)).expect("restore");
                            version += 1;
                            next = 0;
                        }
                        if next == 0 {
                            svc.evict(&gid);
                            rt.block_on(svc.group_epoch(&gid)).expect("warm");
                        }
                        let start = Instant::now();
                        let req = DSRequest::decode_exact(&chain[next], &Limits::default())
                            .expect("decode");
                        rt.block_on(svc.handle(DsEndpoint::GroupOperation, &req, Origin::Local))
                            .expect("accepted");
                        total += start.elapsed();
                        version += 1;
                        next += 1;
                    }
                    total
                })
            });
        }
        // Loading the group: the hub's stored state against rebuilding it
        // from GroupInfo + tree, which re-validates every leaf.
        let loaded = HubGroup::from_bytes(&fx.state).expect("load");
        let tree_bytes = loaded
            .public_group()
            .export_ratchet_tree()
            .tls_serialize_detached()
            .expect("tree");
        let tree = mimid_wire::RatchetTree::from_bytes(&tree_bytes)
            .expect("tree")
            .parsed()
            .clone();
        let MlsMessageBodyIn::GroupInfo(group_info) =
            mimid_wire::GroupInfoMessage::from_bytes(&loaded.meta().group_info)
                .expect("group info")
                .parsed()
                .clone()
        else {
            unreachable!()
        };
        g.bench_function("load_stored_state", |b| {
            b.iter(|| black_box(HubGroup::from_bytes(&fx.state).expect("load")))
        });
        g.bench_function("load_from_external", |b| {
            b.iter(|| {
                black_box(
                    PublicGroup::from_external(
                        &crypto,
                        &GroupStorage::default(),
                        tree.clone(),
                        group_info.clone(),
                        ProposalStore::new(),
                    )
                    .expect("from_external"),
                )
            })
        });
        g.finish();
    }
}

fn crypto_verify(tbs: &[u8], key: &[u8], signature: &[u8]) -> bool {
    use openmls::prelude::{SignContent, tls_codec::Serialize as _};
    use openmls_traits::crypto::OpenMlsCrypto;
    let content = SignContent::new(mimid_wire::CLIENT_SIGNATURE_LABEL, tbs.to_vec().into())
        .tls_serialize_detached()
        .expect("content");
    RustCrypto::default()
        .verify_signature(
            openmls_traits::types::SignatureScheme::ED25519,
            &content,
            key,
            signature,
        )
        .is_ok()
}

fn app_messages(c: &mut Criterion) {
    let rt = runtime();
    let mut fx = HubFixture::new(100, 3).expect("fixture");
    let body = fx
        .group
        .message_request(1024)
        .expect("message")
        .to_bytes()
        .expect("encode");
    let dir = tempfile::tempdir().expect("tempdir");
    let svc = service(&rt, &fx, Durability::Process, dir.path());
    let send = |svc: &HubService<SqliteStore>, body: Vec<u8>| {
        let req = DSRequest::decode_exact(&body, &Limits::default()).expect("decode");
        rt.block_on(svc.handle(DsEndpoint::GroupOperation, &req, Origin::Local))
            .expect("accepted")
    };

    let mut g = c.benchmark_group("app_message_100_members_3_providers");
    g.throughput(Throughput::Elements(1));
    // The core alone on a loaded group (no store): decode, authenticate,
    // epoch check, fan-out.
    let ctx = Context {
        origin: Origin::Local,
        now: now(),
        random: [3; 16],
        verified: None,
        directory: None,
    };
    let mut slot = Slot::Active(Box::new(HubGroup::from_bytes(&fx.state).expect("load")));
    g.bench_function("hub_core", |b| {
        b.iter(|| {
            let req = DSRequest::decode_exact(&body, &Limits::default()).expect("decode");
            black_box(
                fx.hub
                    .handle(DsEndpoint::GroupOperation, &req, &mut slot, None, &ctx)
                    .expect("accepted"),
            )
        })
    });
    // The raw cost under it: one Ed25519 verification of the request.
    let request = DSRequest::decode_exact(&body, &Limits::default()).expect("decode");
    let mimid_wire::DSAuthData::ClientSignature(sig) = &request.authentication_data else {
        unreachable!()
    };
    let key = fx.group.creator.signature_public_key();
    let tbs = request.client_signature_tbs(sig.sender_index).expect("tbs");
    g.bench_function("raw_ed25519_verify", |b| {
        b.iter(|| assert!(crypto_verify(black_box(&tbs), &key, &sig.signature.0)))
    });
    // A new message each time (made outside the timing): the hub fans out
    // the same bytes once (`docs/protocol.md` 6.3).
    g.bench_function("hub_sqlite_process", |b| {
        b.iter_batched(
            || {
                fx.group
                    .message_request(1024)
                    .expect("message")
                    .to_bytes()
                    .expect("encode")
            },
            |body| black_box(send(&svc, body)),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // Client signatures of 32 concurrent messages checked as one batch (as
    // the service does), per signature, against one by one.
    let group = HubGroup::from_bytes(&fx.state).expect("load");
    let signer = group.signer_key(0).expect("leaf 0").expect("key");
    let requests: Vec<DSRequest> = (0..32)
        .map(|_| fx.group.message_request(1024).expect("message"))
        .collect();
    let mut g = c.benchmark_group("client_signatures_32_messages");
    g.throughput(Throughput::Elements(32));
    g.bench_function("one_by_one", |b| {
        b.iter(|| {
            for request in &requests {
                let check = SignatureCheck::new(request, &signer).expect("check");
                assert!(verify_batch(vec![check]).iter().all(Option::is_some));
            }
        })
    });
    g.bench_function("one_batch", |b| {
        b.iter(|| {
            let checks = requests
                .iter()
                .map(|r| SignatureCheck::new(r, &signer).expect("check"))
                .collect();
            assert!(verify_batch(checks).iter().all(Option::is_some));
        })
    });
    g.finish();

    // Messages per CPU-second of the whole process (the writer included).
    let count = 20_000;
    let bodies: Vec<Vec<u8>> = (0..count)
        .map(|_| {
            fx.group
                .message_request(1024)
                .expect("message")
                .to_bytes()
                .expect("encode")
        })
        .collect();
    let (cpu0, wall0) = (cpu_seconds(), Instant::now());
    for body in bodies {
        send(&svc, body);
    }
    let (cpu, wall) = (cpu_seconds() - cpu0, wall0.elapsed().as_secs_f64());
    println!(
        "app messages: {count} in {wall:.2} s wall, {cpu:.2} s CPU: {:.0} per second, {:.0} per CPU-second",
        count as f64 / wall,
        count as f64 / cpu.max(0.01)
    );
    let (peak, rss) = memory_kib();
    println!("process memory: peak {peak} KiB, now {rss} KiB");
}

criterion_group!(benches, commit_path, app_messages);
criterion_main!(benches);
