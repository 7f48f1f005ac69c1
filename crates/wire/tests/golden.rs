//! Golden vectors (`crates/wire/vectors/golden.json`, `docs/protocol.md`
//! section 11): every vector decodes to its value and its value encodes to
//! its bytes, and every struct the document defines has a vector.

use std::collections::BTreeSet;

use mimid_wire::{Limits, TYPES, find_type, parse_hex};

const GOLDEN: &str = include_str!("../vectors/golden.json");
const MLS: &str = include_str!("../vectors/mls.json");
const PROTOCOL: &str = include_str!("../../../docs/protocol.md");

fn vectors() -> Vec<serde_json::Value> {
    serde_json::from_str(GOLDEN).expect("golden.json is JSON")
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("vector without {name}: {v}"))
}

#[test]
fn every_vector_decodes_to_its_value() {
    let limits = Limits::default();
    for v in vectors() {
        let name = field(&v, "struct");
        let entry = find_type(name).unwrap_or_else(|| panic!("no Rust type for {name}"));
        let bytes = parse_hex(field(&v, "hex")).expect("hex");
        let decoded = (entry.decode_json)(&bytes, &limits)
            .unwrap_or_else(|e| panic!("{name}/{}: {e}", field(&v, "name")));
        assert_eq!(decoded, v["value"], "{name}/{}", field(&v, "name"));
    }
}

#[test]
fn every_value_encodes_to_its_bytes() {
    for v in vectors() {
        let name = field(&v, "struct");
        let entry = find_type(name).unwrap_or_else(|| panic!("no Rust type for {name}"));
        let encoded = (entry.encode_json)(v["value"].clone())
            .unwrap_or_else(|e| panic!("{name}/{}: {e}", field(&v, "name")));
        assert_eq!(
            mimid_wire::hex_string(&encoded),
            field(&v, "hex"),
            "{name}/{}",
            field(&v, "name")
        );
    }
}

#[test]
fn truncated_and_extended_vectors_fail_with_an_offset() {
    let limits = Limits::default();
    for v in vectors() {
        let name = field(&v, "struct");
        let Some(entry) = find_type(name) else {
            continue;
        };
        let bytes = parse_hex(field(&v, "hex")).expect("hex");
        let short = &bytes[..bytes.len() - 1];
        let err = (entry.decode_json)(short, &limits).expect_err("truncated vector decoded");
        assert!(
            err.offset <= short.len(),
            "{name}: offset {} past the end",
            err.offset
        );
        let mut long = bytes.clone();
        long.push(0);
        let err = (entry.decode_json)(&long, &limits).expect_err("extended vector decoded");
        assert_eq!(err.offset, bytes.len(), "{name}: {err}");
        assert!(err.path().starts_with(name), "{name}: {err}");
    }
}

/// Names of the structs and opaque typedefs declared in the document's code
/// blocks (enums are covered through the structs that hold them).
fn documented_structs() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_code = false;
    let mut opener = "";
    for line in PROTOCOL.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        let trimmed = line.trim_end();
        if trimmed.starts_with("struct {") {
            opener = "struct";
        } else if trimmed.starts_with("enum {") {
            opener = "enum";
        }
        let decl = |rest: &str| {
            rest.split(|c: char| !c.is_alphanumeric())
                .next()
                .map(str::to_owned)
        };
        if let Some(pos) = trimmed.rfind("} ") {
            // `} Name;` closing a struct, or a one-line `struct { ... } Name;`.
            if let Some(name) = decl(&trimmed[pos + 2..])
                && opener == "struct"
                && !name.is_empty()
                && trimmed.contains(';')
                && trimmed.starts_with(['}', 's'])
            {
                names.insert(name);
            }
        } else if let Some(name) = trimmed.strip_prefix("opaque ").and_then(decl) {
            names.insert(name);
        }
    }
    names
}

#[test]
fn every_documented_struct_has_a_type_and_a_vector() {
    let documented = documented_structs();
    // A sanity check on the parser itself: these are certainly declared.
    for must in [
        "DSRequest",
        "DSResponse",
        "QueueingServiceRequest",
        "DSError",
        "ClientID",
        "MessageId",
    ] {
        assert!(
            documented.contains(must),
            "parser missed {must}: {documented:?}"
        );
    }
    let with_vectors: BTreeSet<String> = vectors()
        .iter()
        .map(|v| field(v, "struct").to_owned())
        .collect();
    let types: BTreeSet<&str> = TYPES.iter().map(|t| t.name).collect();
    let missing_type: Vec<_> = documented
        .iter()
        .filter(|n| !types.contains(n.as_str()))
        .collect();
    let missing_vector: Vec<_> = documented
        .iter()
        .filter(|n| !with_vectors.contains(*n))
        .collect();
    assert!(
        missing_type.is_empty(),
        "documented without a Rust type: {missing_type:?}"
    );
    assert!(
        missing_vector.is_empty(),
        "documented without a golden vector: {missing_vector:?}"
    );
    let undocumented: Vec<_> = types.iter().filter(|t| !documented.contains(**t)).collect();
    assert!(
        undocumented.is_empty(),
        "Rust wire types missing from docs/protocol.md: {undocumented:?}"
    );
}

#[test]
fn mls_fixtures_decode_as_their_kinds() {
    use mimid_wire::*;
    let objects: std::collections::BTreeMap<String, String> =
        serde_json::from_str(MLS).expect("mls.json");
    let get = |k: &str| parse_hex(&objects[k]).expect("hex");
    LeafNode::from_bytes(&get("leaf_node")).expect("leaf node");
    GroupInfoMessage::from_bytes(&get("group_info_epoch0")).expect("group info");
    KeyPackage::from_bytes(&get("key_package")).expect("key package");
    PublicMessage::from_bytes(&get("commit_add")).expect("commit");
    WelcomeMessage::from_bytes(&get("welcome")).expect("welcome");
    RatchetTree::from_bytes(&get("ratchet_tree")).expect("tree");
    PrivateMessage::from_bytes(&get("application_message")).expect("application");
    GroupInfoExtensions::from_bytes(&get("group_info_extensions")).expect("extensions");
    // A field refuses the wrong kind of MLSMessage, naming it.
    let err = PublicMessage::from_bytes(&get("application_message"))
        .expect_err("private accepted as public");
    assert!(err.to_string().contains("wire_format"), "{err}");
}

/// A `<V>` length at `at`: (length, header size).
fn varint(b: &[u8], at: usize) -> (usize, usize) {
    match b[at] >> 6 {
        0 => (usize::from(b[at] & 0x3f), 1),
        1 => ((usize::from(b[at] & 0x3f) << 8) | usize::from(b[at + 1]), 2),
        2 => (
            (usize::from(b[at] & 0x3f) << 24)
                | (usize::from(b[at + 1]) << 16)
                | (usize::from(b[at + 2]) << 8)
                | usize::from(b[at + 3]),
            4,
        ),
        _ => panic!("reserved varint prefix"),
    }
}

/// Skips an `opaque x<V>` at `at`.
fn skip_opaque(b: &[u8], at: usize) -> usize {
    let (len, header) = varint(b, at);
    at + header + len
}

/// The sender type and the types of the by-value proposals of a commit
/// in a PublicMessage (RFC 9420 sections 6, 6.2, 12.1, 12.4), read from
/// its bytes. Handles the proposal types these vectors carry.
fn commit_framing(m: &[u8]) -> (u8, Vec<u16>) {
    assert_eq!(&m[..4], &[0, 1, 0, 1], "mls10, mls_public_message");
    let mut at = skip_opaque(m, 4) + 8; // group_id, epoch
    let sender_type = m[at];
    at += 1;
    if matches!(sender_type, 1 | 2) {
        at += 4; // leaf_index or sender_index
    }
    at = skip_opaque(m, at); // authenticated_data
    assert_eq!(m[at], 3, "content_type commit");
    at += 1;
    let (len, header) = varint(m, at);
    at += header;
    let end = at + len;
    let mut types = Vec::new();
    while at < end {
        let kind = m[at];
        at += 1;
        if kind == 2 {
            at = skip_opaque(m, at); // a ProposalRef
            continue;
        }
        assert_eq!(kind, 1, "ProposalOrRefType");
        let proposal_type = u16::from_be_bytes([m[at], m[at + 1]]);
        at += 2;
        at = match proposal_type {
            3 => at + 4,                                 // Remove: leaf index
            6 => skip_opaque(m, at),                     // ExternalInit: kem_output
            5 => skip_opaque(m, skip_opaque(m, at) + 4), // ReInit
            other => panic!("proposal type {other} not expected here"),
        };
        types.push(proposal_type);
    }
    (sender_type, types)
}

fn golden_commit(body_name: &str) -> Vec<u8> {
    use mimid_wire::{DSRequestBody, Wire as _};
    let v = vectors()
        .into_iter()
        .find(|v| field(v, "struct") == "DSRequest" && field(v, "name") == body_name)
        .unwrap_or_else(|| panic!("no DSRequest vector {body_name}"));
    let request = mimid_wire::DSRequest::decode_exact(
        &parse_hex(field(&v, "hex")).expect("hex"),
        &Limits::default(),
    )
    .expect("decodes");
    match request.request_body {
        DSRequestBody::ExternalJoin(r) => r.group_update.commit.as_bytes().to_vec(),
        DSRequestBody::ReInitializeGroup(r) => r.commit.commit.as_bytes().to_vec(),
        other => panic!("{body_name} is a {}", other.name()),
    }
}

#[test]
fn the_external_join_vector_is_an_external_commit() {
    let (sender_type, proposals) = commit_framing(&golden_commit("external_join"));
    assert_eq!(sender_type, 4, "new_member_commit");
    assert!(
        proposals.contains(&6),
        "ExternalInit by value: {proposals:?}"
    );
}

#[test]
fn the_re_initialize_group_vector_commits_a_reinit() {
    let (sender_type, proposals) = commit_framing(&golden_commit("re_initialize_group"));
    assert_eq!(sender_type, 1, "member");
    assert_eq!(proposals, vec![5], "one ReInit by value");
}
