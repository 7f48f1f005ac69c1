//! The rules a decoder enforces beyond the TLS syntax (`docs/protocol.md`
//! 1.3 and 1.4), each checked on a body that breaks it: the error names the
//! field path, the offset where that field starts, and the code a receiver
//! answers with.
//!
//! The MLS messages are the real OpenMLS objects of `vectors/mls.json`,
//! or built here byte by byte from RFC 9420's framing where no client would
//! send them (a PublicMessage with application content, a PrivateMessage
//! with a commit).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use mimid_wire::*;

fn limits() -> Limits {
    Limits::default()
}

static MLS: LazyLock<BTreeMap<String, String>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../vectors/mls.json")).expect("mls.json is a map")
});

fn fixture(name: &str) -> Vec<u8> {
    parse_hex(
        MLS.get(name)
            .unwrap_or_else(|| panic!("mls.json lacks {name}")),
    )
    .expect("hex")
}

/// A `<V>` length header.
fn vlen(n: usize) -> Vec<u8> {
    match n {
        0..=0x3f => vec![n as u8],
        0x40..=0x3fff => vec![0x40 | (n >> 8) as u8, n as u8],
        _ => {
            let n = n as u32 | 0x8000_0000;
            n.to_be_bytes().to_vec()
        }
    }
}

fn opaque(bytes: &[u8]) -> Vec<u8> {
    [vlen(bytes.len()), bytes.to_vec()].concat()
}

fn mimi_group_id() -> Vec<u8> {
    GroupId {
        hub_domain: "a.example".parse().unwrap(),
        local_id: [7; 16],
    }
    .to_mls_bytes()
}

const NOT_A_GROUP_ID: &[u8] = b"a group id that is no MIMI GroupId";

/// RFC 9420 `MLSMessage` header: version mls10, then the wire format.
fn mls_header(wire_format: u16) -> Vec<u8> {
    [1u16.to_be_bytes(), wire_format.to_be_bytes()].concat()
}

/// A PublicMessage with application content from member 0 (RFC 9420
/// section 6.2; signature and membership tag are not checked by decoding).
fn public_application(group_id: &[u8]) -> Vec<u8> {
    [
        mls_header(1),
        opaque(group_id),
        1u64.to_be_bytes().to_vec(),
        vec![1, 0, 0, 0, 0], // sender: member, leaf 0
        opaque(b""),         // authenticated_data
        vec![1],             // content_type: application
        opaque(b"hi"),       // application_data
        opaque(&[0x5a; 64]), // signature
        opaque(&[0xa5; 32]), // membership_tag
    ]
    .concat()
}

/// A PrivateMessage with the given content type (RFC 9420 section 6.3:
/// only the content is encrypted, not its type).
fn private_message(group_id: &[u8], content_type: u8) -> Vec<u8> {
    [
        mls_header(2),
        opaque(group_id),
        1u64.to_be_bytes().to_vec(),
        vec![content_type],
        opaque(b""),         // authenticated_data
        opaque(&[0x11; 12]), // encrypted_sender_data
        opaque(&[0x22; 40]), // ciphertext
    ]
    .concat()
}

/// `message` with the `group_id<V>` that starts at `at` replaced.
fn with_group_id(message: &[u8], at: usize, group_id: &[u8]) -> Vec<u8> {
    let (len, header) = match message[at] >> 6 {
        0 => (usize::from(message[at] & 0x3f), 1),
        1 => (
            usize::from(message[at] & 0x3f) << 8 | usize::from(message[at + 1]),
            2,
        ),
        _ => panic!("group ids in the fixtures are short"),
    };
    [
        &message[..at],
        &opaque(group_id)[..],
        &message[at + header + len..],
    ]
    .concat()
}

/// Decodes `bytes` as the named type and returns the error.
fn refused(type_name: &str, bytes: &[u8]) -> DecodeError {
    let entry = find_type(type_name).unwrap_or_else(|| panic!("no type {type_name}"));
    match (entry.decode_json)(bytes, &limits()) {
        Ok(v) => panic!("{type_name} {} decoded as {v}", hex_string(bytes)),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_refused(
    type_name: &str,
    bytes: &[u8],
    path: &str,
    offset: usize,
    code: ErrorCode,
) -> DecodeError {
    let err = refused(type_name, bytes);
    assert_eq!(err.path(), path, "{err}");
    assert_eq!(err.offset, offset, "{err}");
    assert_eq!(err.code(), code, "{err}");
    err
}

#[track_caller]
fn assert_decodes(type_name: &str, bytes: &[u8]) {
    let entry = find_type(type_name).unwrap_or_else(|| panic!("no type {type_name}"));
    if let Err(e) = (entry.decode_json)(bytes, &limits()) {
        panic!("{type_name} {}: {e}", hex_string(bytes));
    }
}

// ---------------------------------------------------------------------------
// 1.3: the version first
// ---------------------------------------------------------------------------

/// Every top-level body and the name of its version field.
const TOP_LEVEL: &[(&str, &str)] = &[
    ("DSRequest", "version"),
    ("DSResponse", "protocol_version"),
    ("QueueingServiceRequest", "version"),
    ("QueueingServiceResponse", "version"),
    ("VerificationKeyRequest", "version"),
    ("VerificationKeyResponse", "version"),
    ("ConnectionKeyPackageRequest", "version"),
    ("ConnectionKeyPackageResponse", "version"),
    ("GroupKeyPackageRequest", "version"),
    ("GroupKeyPackageResponse", "version"),
];

#[test]
fn another_version_is_unsupported_whatever_follows() {
    for (name, field) in TOP_LEVEL {
        for version in [0u16, 2, 0x0100, 0xffff] {
            for rest in [&[][..], &[0xff; 7][..], &[0x00, 0x01, 0x00][..]] {
                let body = [&version.to_be_bytes()[..], rest].concat();
                let err = assert_refused(
                    name,
                    &body,
                    &format!("{name}.{field}"),
                    0,
                    ErrorCode::UnsupportedVersion,
                );
                assert_eq!(err.kind, DecodeErrorKind::UnsupportedVersion(version));
                assert_eq!(err.to_ds_error(), DSError::unsupported_version(vec![1]));
            }
        }
        // Too short to hold a version: malformed.
        let err = assert_refused(
            name,
            &[0x00],
            &format!("{name}.{field}"),
            0,
            ErrorCode::MalformedMessage,
        );
        assert_eq!(err.kind.name(), "truncated");
        // Version 1 followed by garbage: malformed, after the version.
        let err = refused(name, &[0x00, 0x01, 0xff, 0xff, 0xff]);
        assert_eq!(err.code(), ErrorCode::MalformedMessage, "{err}");
        assert!(err.offset >= 2, "{err}");
        assert_eq!(err.to_ds_error().code, ErrorCode::MalformedMessage);
    }
}

#[test]
fn structs_that_are_no_body_keep_their_version_unchecked() {
    // ClientSignatureTBS is rebuilt by the verifier, never received;
    // MimiDsGroup is extension data the hub checks itself (6.3).
    let tbs = ClientSignatureTBS {
        protocol_version: 2,
        request_body: DSRequestBody::RequestGroupId,
        sender_index: 0,
    };
    assert_decodes("ClientSignatureTBS", &tbs.to_bytes().unwrap());
    assert_decodes("MimiDsGroup", &[0x00, 0x02, 0x00]);
}

// ---------------------------------------------------------------------------
// 1.4: embedded MLS messages
// ---------------------------------------------------------------------------

/// `DSRequest` with `ds_update_client` around `commit`, anonymous.
fn update_client_request(commit: &[u8]) -> Vec<u8> {
    [
        vec![0x00, 0x01, 8],
        commit.to_vec(),
        fixture("group_info_extensions"),
        opaque(&[0x33; 64]),
        vec![0],
    ]
    .concat()
}

const UPDATE_COMMIT_PATH: &str = "DSRequest.request_body.update_client.group_update.commit";

#[test]
fn a_commit_field_carries_a_commit() {
    assert_decodes(
        "DSRequest",
        &update_client_request(&fixture("commit_update")),
    );
    for bad in [
        fixture("proposal_self_remove"),
        public_application(&mimi_group_id()),
    ] {
        let err = assert_refused(
            "DSRequest",
            &update_client_request(&bad),
            UPDATE_COMMIT_PATH,
            3,
            ErrorCode::MalformedMessage,
        );
        assert!(err.to_string().contains("content_type"), "{err}");
    }
    // The same rule in every operation that carries an MLSGroupUpdate.
    let mut update = vec![0x00, 0x01, 2];
    update.extend(fixture("proposal_self_remove"));
    update.extend(fixture("group_info_extensions"));
    update.extend(opaque(&[0x33; 64]));
    update.push(0);
    assert_refused(
        "DSRequest",
        &update,
        "DSRequest.request_body.delete_group.group_update.commit",
        3,
        ErrorCode::MalformedMessage,
    );
}

#[test]
fn a_proposal_field_carries_a_proposal() {
    let body = |m: &[u8]| [&[0x00, 0x01, 7][..], m, &[0]].concat();
    assert_decodes("DSRequest", &body(&fixture("proposal_self_remove")));
    for bad in [fixture("commit_add"), public_application(&mimi_group_id())] {
        assert_refused(
            "DSRequest",
            &body(&bad),
            "DSRequest.request_body.self_remove_client.proposal",
            3,
            ErrorCode::MalformedMessage,
        );
    }
}

#[test]
fn an_application_message_is_private_application_content() {
    let body = |m: &[u8]| [&[0x00, 0x01, 10][..], m, &[0]].concat();
    assert_decodes("DSRequest", &body(&fixture("application_message")));
    assert_decodes("DSRequest", &body(&private_message(&mimi_group_id(), 1)));
    for content_type in [2, 3] {
        let err = assert_refused(
            "DSRequest",
            &body(&private_message(&mimi_group_id(), content_type)),
            "DSRequest.request_body.send_message.application_message",
            3,
            ErrorCode::MalformedMessage,
        );
        assert!(err.to_string().contains("content_type"), "{err}");
    }
}

/// `DeliverMessage` for one recipient around `message`, and the offset
/// where `message` starts.
fn deliver(message: &[u8]) -> (Vec<u8>, usize) {
    let head = [
        opaque(&mimi_group_id()),
        1u64.to_be_bytes().to_vec(),
        opaque(&opaque(b"mimi://b.example/d/bob/phone")),
    ]
    .concat();
    let at = head.len();
    ([head, message.to_vec()].concat(), at)
}

#[test]
fn a_deliverable_message_is_public_handshake_private_application_or_welcome() {
    for good in [
        fixture("commit_add"),
        fixture("proposal_self_remove"),
        fixture("application_message"),
        fixture("welcome"),
    ] {
        assert_decodes("DeliverMessage", &deliver(&good).0);
    }
    for bad in [
        public_application(&mimi_group_id()),
        private_message(&mimi_group_id(), 2),
        private_message(&mimi_group_id(), 3),
        fixture("group_info_epoch1"),
    ] {
        let (body, at) = deliver(&bad);
        assert_refused(
            "DeliverMessage",
            &body,
            "DeliverMessage.message",
            at,
            ErrorCode::MalformedMessage,
        );
    }
}

#[test]
fn the_mls_group_id_of_an_embedded_message_is_a_mimi_group_id() {
    // PublicMessage: group_id right after the 4-byte MLSMessage header.
    for bad in [NOT_A_GROUP_ID, &[][..], b"\x09A.example0123456789abcdef"] {
        let commit = with_group_id(&fixture("commit_update"), 4, bad);
        let err = assert_refused(
            "DSRequest",
            &update_client_request(&commit),
            UPDATE_COMMIT_PATH,
            3,
            ErrorCode::MalformedMessage,
        );
        assert!(err.to_string().contains("GroupId"), "{err}");
    }
    // PrivateMessage.
    let body = [
        &[0x00, 0x01, 10][..],
        &private_message(NOT_A_GROUP_ID, 1),
        &[0],
    ]
    .concat();
    assert_refused(
        "DSRequest",
        &body,
        "DSRequest.request_body.send_message.application_message",
        3,
        ErrorCode::MalformedMessage,
    );
    // GroupInfo: group_id after the header and GroupContext's version and
    // cipher_suite.
    let group_id_field = opaque(&mimi_group_id());
    let leaf = fixture("leaf_node");
    let create = |group_info: &[u8]| [&group_id_field[..], &leaf, group_info].concat();
    assert_decodes("CreateGroupRequest", &create(&fixture("group_info_epoch0")));
    let bad = with_group_id(&fixture("group_info_epoch0"), 8, NOT_A_GROUP_ID);
    assert_refused(
        "CreateGroupRequest",
        &create(&bad),
        "CreateGroupRequest.group_info",
        group_id_field.len() + leaf.len(),
        ErrorCode::MalformedMessage,
    );
    // DeliverMessage.
    let (body, at) = deliver(&private_message(NOT_A_GROUP_ID, 1));
    assert_refused(
        "DeliverMessage",
        &body,
        "DeliverMessage.message",
        at,
        ErrorCode::MalformedMessage,
    );
}
