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

// ---------------------------------------------------------------------------
// 1.4: vectors that hold at least one element
// ---------------------------------------------------------------------------

#[test]
fn recipients_key_packages_keys_and_versions_are_never_empty() {
    let deliver = DeliverMessage {
        group_id: GroupIdField(GroupId::from_mls_bytes(&mimi_group_id()).unwrap()),
        epoch: 1,
        recipients: vec![],
        message: DeliverableMessage::from_bytes(&fixture("application_message")).unwrap(),
    };
    // The rule is on the body a receiver decodes, the request.
    let request = QueueingServiceRequest {
        version: 1,
        sender: "a.example".parse().unwrap(),
        recipient: "b.example".parse().unwrap(),
        message_id: MessageId([0x42; 16]),
        payload: QueueingServicePayload::DeliverMessage(deliver.clone()),
    };
    let err = assert_refused(
        "QueueingServiceRequest",
        &request.to_bytes().unwrap(),
        "QueueingServiceRequest.payload.deliver_message.recipients",
        2 + 10 + 10 + 16 + 1 + mimi_group_id().len() + 1 + 8,
        ErrorCode::MalformedMessage,
    );
    assert_eq!(err.kind, DecodeErrorKind::Empty);
    // A DeliverMessage on its own (a hub's stored template) may list none.
    assert_decodes("DeliverMessage", &deliver.to_bytes().unwrap());

    let kps = KeyPackagesOk {
        target: "mimi://b.example/u/dave".parse().unwrap(),
        key_packages: vec![],
    };
    assert_refused(
        "KeyPackagesOk",
        &kps.to_bytes().unwrap(),
        "KeyPackagesOk.key_packages",
        24,
        ErrorCode::MalformedMessage,
    );

    let keys = VerificationKeyOk {
        provider: "a.example".parse().unwrap(),
        keys: vec![],
    };
    assert_refused(
        "VerificationKeyOk",
        &keys.to_bytes().unwrap(),
        "VerificationKeyOk.keys",
        10,
        ErrorCode::MalformedMessage,
    );

    // code 2, detail of 1 byte: an empty `supported<V>`.
    let err = assert_refused(
        "DSError",
        &[0x00, 0x02, 0x01, 0x00],
        "DSError.detail",
        3,
        ErrorCode::MalformedMessage,
    );
    assert_eq!(err.kind, DecodeErrorKind::Empty);
    // Lists that may be empty still decode.
    assert_decodes("QueueingServiceOk", &[0x00]);
}

// ---------------------------------------------------------------------------
// 1.4: signatures and the provider signature's HTTP fields
// ---------------------------------------------------------------------------

fn provider_signature(signature: Vec<u8>) -> Vec<u8> {
    ProviderSignature {
        sender: "b.example".parse().unwrap(),
        key_id: [1; 8],
        timestamp: 1_795_000_000,
        nonce: [2; 16],
        signature: Bytes(signature),
    }
    .to_bytes()
    .unwrap()
}

#[test]
fn a_provider_signature_has_the_length_of_an_ed25519_signature() {
    assert_decodes("ProviderSignature", &provider_signature(vec![9; 64]));
    for len in [0, 3, 63, 65, 114] {
        assert_refused(
            "ProviderSignature",
            &provider_signature(vec![9; len]),
            "ProviderSignature.signature",
            10 + 8 + 8 + 16,
            ErrorCode::MalformedMessage,
        );
    }
}

#[test]
fn a_client_signature_of_any_length_is_left_to_verification() {
    // The group's signature scheme decides the length; the hub refuses a
    // wrong one with 403 client_signature_invalid (6.1), not the decoder.
    for len in [0usize, 3, 64, 255] {
        let auth = DSAuthData::ClientSignature(ClientSignature {
            sender_index: 0,
            signature: ShortBytes(vec![7; len]),
        });
        assert_decodes("DSAuthData", &auth.to_bytes().unwrap());
    }
}

fn tbs(method: &[u8], path: &[u8]) -> Vec<u8> {
    ProviderSignatureTBS {
        sender: "b.example".parse().unwrap(),
        recipient: "a.example".parse().unwrap(),
        method: Bytes(method.to_vec()),
        path: Bytes(path.to_vec()),
        timestamp: 1,
        nonce: [0; 16],
        body_sha256: [0; 32],
    }
    .to_bytes()
    .unwrap()
}

#[test]
fn provider_signature_tbs_bounds_method_and_path() {
    assert_decodes("ProviderSignatureTBS", &tbs(&[b'P'; 16], &[b'/'; 255]));
    let err = assert_refused(
        "ProviderSignatureTBS",
        &tbs(&[b'P'; 17], b"/group_operation"),
        "ProviderSignatureTBS.method",
        20,
        ErrorCode::MalformedMessage,
    );
    assert_eq!(err.kind, DecodeErrorKind::TooLong { len: 17, max: 16 });
    let err = assert_refused(
        "ProviderSignatureTBS",
        &tbs(b"POST", &[b'/'; 256]),
        "ProviderSignatureTBS.path",
        25,
        ErrorCode::MalformedMessage,
    );
    assert_eq!(err.kind, DecodeErrorKind::TooLong { len: 256, max: 255 });
}

// ---------------------------------------------------------------------------
// 10: error codes
// ---------------------------------------------------------------------------

#[test]
fn error_code_0_is_refused() {
    assert_refused(
        "DSError",
        &[0x00, 0x00, 0x00],
        "DSError.code",
        0,
        ErrorCode::MalformedMessage,
    );
    assert_refused(
        "DSResponse",
        &[0x00, 0x01, 0x01, 0x00, 0x00, 0x00],
        "DSResponse.response_body.error.code",
        3,
        ErrorCode::MalformedMessage,
    );
}

#[test]
fn every_detail_is_bounded_unknown_codes_included() {
    let with_detail =
        |code: u16, len: usize| [code.to_be_bytes().to_vec(), opaque(&vec![b'x'; len])].concat();
    for code in [1u16, 1000, 0xffff] {
        assert_decodes("DSError", &with_detail(code, 1024));
        let err = assert_refused(
            "DSError",
            &with_detail(code, 1025),
            "DSError.detail",
            2,
            ErrorCode::MalformedMessage,
        );
        assert_eq!(
            err.kind,
            DecodeErrorKind::TooLong {
                len: 1025,
                max: 1024
            }
        );
    }
}

// ---------------------------------------------------------------------------
// 2.1: domains
// ---------------------------------------------------------------------------

#[test]
fn a_domain_has_two_labels_and_a_top_label_that_is_not_all_digits() {
    for good in [
        "a.example",
        "1.2.3.example",
        "123.example",
        "a.b1",
        "xn--bcher-kva.example",
        "p0.example",
    ] {
        assert!(good.parse::<ProviderDomain>().is_ok(), "{good}");
    }
    for bad in [
        "example",
        "localhost",
        "192.0.2.1",
        "a.123",
        "10.0.0.1",
        "a.example.",
        "a..example",
    ] {
        assert!(bad.parse::<ProviderDomain>().is_err(), "{bad}");
        assert!(
            format!("mimi://{bad}/u/bob").parse::<UserId>().is_err(),
            "{bad}"
        );
        assert!(
            format!("mimi://{bad}/d/bob/phone")
                .parse::<ClientId>()
                .is_err(),
            "{bad}"
        );
    }
    let body = [&[0x00, 0x01][..], &opaque(b"localhost")].concat();
    let err = assert_refused(
        "VerificationKeyRequest",
        &body,
        "VerificationKeyRequest.provider",
        2,
        ErrorCode::MalformedMessage,
    );
    assert_eq!(err.kind.name(), "invalid");
    let body = [&[0x00, 0x01][..], &opaque(b"192.0.2.1")].concat();
    assert_refused(
        "VerificationKeyRequest",
        &body,
        "VerificationKeyRequest.provider",
        2,
        ErrorCode::MalformedMessage,
    );
}
