//! Decode + re-encode of `/group_operation` bodies next to a plain copy of
//! the same bytes (`docs/performance.md`).
//!
//! Run: `cargo bench -p mimid-bench --bench wire`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mimid_bench::BenchGroup;
use mimid_wire::{DSRequest, DSRequestBody, Limits, MLSGroupUpdate, Wire};
use openmls::prelude::{Extensions, MlsMessageIn, tls_codec::DeserializeBytes};

/// The MLS structs inside a body, as OpenMLS alone would parse them.
enum MlsPart {
    Message(Vec<u8>),
    GroupInfoExtensions(Vec<u8>),
}

fn mls_parts(req: &DSRequest) -> Vec<MlsPart> {
    let update = |u: &MLSGroupUpdate| {
        vec![
            MlsPart::Message(u.commit.as_bytes().to_vec()),
            MlsPart::GroupInfoExtensions(
                u.partial_group_info
                    .group_info_extensions
                    .as_bytes()
                    .to_vec(),
            ),
        ]
    };
    match &req.request_body {
        DSRequestBody::SendMessage(m) => {
            vec![MlsPart::Message(m.application_message.as_bytes().to_vec())]
        }
        DSRequestBody::UpdateClient(u) => update(&u.group_update),
        DSRequestBody::AddUsers(a) => {
            let mut parts = update(&a.group_update);
            parts.extend(
                a.welcome_messages
                    .iter()
                    .map(|w| MlsPart::Message(w.as_bytes().to_vec())),
            );
            parts
        }
        _ => Vec::new(),
    }
}

/// Parses the MLS parts with OpenMLS directly: the floor under our decoder.
fn parse_mls_parts(parts: &[MlsPart]) {
    for part in parts {
        match part {
            MlsPart::Message(b) => {
                black_box(MlsMessageIn::tls_deserialize_exact_bytes(b).expect("mls"));
            }
            MlsPart::GroupInfoExtensions(b) => {
                let ext: Extensions<openmls::messages::group_info::GroupInfo> =
                    Extensions::tls_deserialize_exact_bytes(b).expect("extensions");
                black_box(ext);
            }
        }
    }
}
use std::hint::black_box;

fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut group = BenchGroup::new(100, 3).expect("100-member group");
    let message = group
        .message_request(4096)
        .expect("application message")
        .to_bytes()
        .expect("encode");
    let commit = group
        .update_request()
        .expect("commit")
        .to_bytes()
        .expect("encode");
    let add = group
        .add_request
        .take()
        .expect("add request")
        .to_bytes()
        .expect("encode");
    vec![
        ("send_message_4KiB", message),
        ("update_commit_100_members", commit),
        ("add_users_commit_99_adds", add),
    ]
}

fn wire(c: &mut Criterion) {
    let limits = Limits::default();
    for (name, body) in bodies() {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function("memcpy", |b| b.iter(|| black_box(black_box(&body).clone())));
        let parts = mls_parts(&DSRequest::decode_exact(&body, &limits).expect("decode"));
        g.bench_function("openmls_parse_only", |b| {
            b.iter(|| parse_mls_parts(black_box(&parts)))
        });
        g.bench_function("decode_reencode", |b| {
            b.iter(|| {
                let req = DSRequest::decode_exact(black_box(&body), &limits).expect("decode");
                black_box(req.to_bytes().expect("encode"))
            })
        });
        g.bench_function("decode", |b| {
            b.iter(|| {
                black_box(DSRequest::decode_exact(black_box(&body), &limits).expect("decode"))
            })
        });
        g.finish();
        println!("{name}: {} bytes", body.len());
    }
}

criterion_group!(benches, wire);
criterion_main!(benches);
