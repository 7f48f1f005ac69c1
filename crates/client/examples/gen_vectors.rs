//! Writes `crates/wire/vectors/golden.json` and `mls.json` from a real
//! conversation between OpenMLS clients on three providers.
//!
//! Run: `cargo run -p mimid-client --example gen_vectors`. The output is
//! committed; the tests check it in both directions, so regenerate only when
//! the wire format changes on purpose (the MLS parts are random each run).
//!
//! It also writes `negative.json`: bodies a receiver must refuse, each with
//! the code, field path and offset of the refusal (`docs/protocol.md`
//! section 11), built from the same MLS objects. Each expectation is
//! written here from the document's rules, and the generator stops if the
//! decoder disagrees.

use std::collections::BTreeMap;

use mimid_client::MimiClient;
use mimid_wire::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::{signatures::Signer, types::SignatureScheme};
use serde_json::json;
use sha2::{Digest, Sha256};

struct Out {
    vectors: Vec<serde_json::Value>,
}

impl Out {
    fn add<T: Wire + serde::Serialize>(&mut self, name: &str, value: &T) {
        let bytes = value.to_bytes().expect("encode");
        // Every vector must decode back to itself before it is written.
        let back = T::decode_exact(&bytes, &Limits::default()).expect("decode");
        assert!(
            back.to_bytes().expect("re-encode") == bytes,
            "{} {name} is not an exact inverse",
            T::NAME
        );
        self.vectors.push(json!({
            "struct": T::NAME,
            "name": name,
            "hex": hex_string(&bytes),
            "value": serde_json::to_value(value).expect("json"),
        }));
    }
}

fn cid(s: &str) -> ClientId {
    s.parse().expect("client id")
}

fn uid(s: &str) -> UserId {
    s.parse().expect("user id")
}

fn dom(s: &str) -> ProviderDomain {
    s.parse().expect("domain")
}

fn main() {
    let mut out = Out {
        vectors: Vec::new(),
    };
    let mut mls = BTreeMap::new();
    let a = dom("a.example");
    let b = dom("b.example");
    let group_id = GroupId {
        hub_domain: a.clone(),
        local_id: *b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",
    };
    let gid = GroupIdField(group_id.clone());

    let mut alice = MimiClient::new(cid("mimi://a.example/d/alice/laptop")).unwrap();
    let mut bob = MimiClient::new(cid("mimi://b.example/d/bob/phone")).unwrap();
    let carol = MimiClient::new(cid("mimi://c.example/d/carol/tablet")).unwrap();
    let dave = MimiClient::new(cid("mimi://b.example/d/dave/desk")).unwrap();

    // Group creation and an add of two users on two other providers.
    let create = alice.create_group(&group_id, GroupKind::Regular).unwrap();
    let bob_kp = bob.key_package(false, false).unwrap();
    let carol_kp = carol.key_package(false, true).unwrap();
    let dave_conn_kp = dave.key_package(true, false).unwrap();
    let add = alice
        .add(&group_id, &[bob_kp.clone(), carol_kp.clone()], false)
        .unwrap();
    alice.merge_pending_commit(&group_id).unwrap();
    let DSRequestBody::AddUsers(add_body) = &add.request_body else {
        panic!("add_users")
    };
    let welcome = add_body.welcome_messages[0].clone();
    let tree_epoch1 = alice.ratchet_tree(&group_id).unwrap();
    bob.join(&welcome, &tree_epoch1).unwrap();

    // Application message, self-remove proposal, update, remove.
    let send = alice
        .send_message(&group_id, b"hello from a.example")
        .unwrap();
    let self_remove = bob.self_remove(&group_id).unwrap();
    let update = alice.update(&group_id).unwrap();
    alice.clear_pending_commit(&group_id).unwrap();
    let (remove_update, remover) = alice.remove(&group_id, &[2]).unwrap();
    alice.clear_pending_commit(&group_id).unwrap();
    // A real ReInit commit (profile 1 hubs refuse it, but its bytes are
    // defined), naming a successor group on the same hub.
    let successor = GroupId {
        hub_domain: a.clone(),
        local_id: [0x5e; 16],
    };
    let (reinit, reinit_next_context) = reinit::request(&alice, &group_id, &successor);
    let group_info = alice.group_info(&group_id).unwrap();
    // A real external commit: a new device of bob joins from the GroupInfo
    // and tree of epoch 1 (what /external_commit_information serves).
    let mut bob_laptop = MimiClient::new(cid("mimi://b.example/d/bob/laptop")).unwrap();
    let external = bob_laptop
        .external_join(&ExternalCommitInfo {
            group_info: group_info.clone(),
            ratchet_tree: tree_epoch1.clone(),
        })
        .unwrap();
    let DSRequestBody::ReInitializeGroup(reinit_body) = &reinit.request_body else {
        panic!("re_initialize_group")
    };
    let DSRequestBody::ExternalJoin(external_body) = &external.request_body else {
        panic!("external_join")
    };
    let DSRequestBody::CreateGroup(create_body) = &create.request_body else {
        panic!("create")
    };
    let DSRequestBody::SendMessage(send_body) = &send.request_body else {
        panic!("send")
    };
    let DSRequestBody::SelfRemoveClient(self_remove_body) = &self_remove.request_body else {
        panic!("self remove")
    };
    let DSRequestBody::UpdateClient(update_body) = &update.request_body else {
        panic!("update")
    };
    let DSAuthData::ClientSignature(client_sig) = &send.authentication_data else {
        panic!("sig")
    };

    for (name, bytes) in [
        ("leaf_node", create_body.leaf_node.as_bytes()),
        ("group_info_epoch0", create_body.group_info.as_bytes()),
        ("group_info_epoch1", group_info.as_bytes()),
        ("key_package", bob_kp.as_bytes()),
        ("key_package_last_resort", carol_kp.as_bytes()),
        ("key_package_connection", dave_conn_kp.as_bytes()),
        ("commit_add", add_body.group_update.commit.as_bytes()),
        (
            "group_info_extensions",
            add_body
                .group_update
                .partial_group_info
                .group_info_extensions
                .as_bytes(),
        ),
        ("welcome", welcome.as_bytes()),
        ("ratchet_tree", tree_epoch1.as_bytes()),
        (
            "application_message",
            send_body.application_message.as_bytes(),
        ),
        ("proposal_self_remove", self_remove_body.proposal.as_bytes()),
        ("commit_update", update_body.group_update.commit.as_bytes()),
        ("commit_remove", remove_update.commit.as_bytes()),
        (
            "commit_external_join",
            external_body.group_update.commit.as_bytes(),
        ),
        ("commit_reinit", reinit_body.commit.commit.as_bytes()),
    ] {
        mls.insert(name, hex_string(bytes));
    }

    // Identifiers.
    out.add("domain", &a);
    out.add("user", &uid("mimi://b.example/u/bob"));
    out.add("client", &cid("mimi://b.example/d/bob/phone"));
    out.add("group", &group_id);
    out.add("message", &MessageId([0x42; 16]));

    // Provider keys and a real provider signature with that key.
    let provider_key = SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
    let vkey = VerificationKey::new(
        ProviderKeyAlgorithm::Ed25519,
        provider_key.public().to_vec(),
        1_790_000_000,
        1_800_000_000,
    )
    .unwrap();
    out.add(
        "ed25519",
        &VerificationKeyId {
            algorithm: ProviderKeyAlgorithm::Ed25519,
            public_key: vkey.public_key.clone(),
        },
    );
    out.add("ed25519", &vkey);
    out.add(
        "b_asks_a",
        &VerificationKeyRequest {
            version: 1,
            provider: a.clone(),
        },
    );
    let vk_ok = VerificationKeyOk {
        provider: a.clone(),
        keys: vec![vkey.clone()],
    };
    out.add("one_key", &vk_ok);
    out.add(
        "ok",
        &VerificationKeyResponse {
            version: 1,
            result: VerificationKeyResult::Ok(vk_ok),
        },
    );
    out.add(
        "wrong_recipient",
        &VerificationKeyResponse {
            version: 1,
            result: VerificationKeyResult::Error(DSError::text(
                ErrorCode::WrongRecipient,
                "this is b.example",
            )),
        },
    );

    let body = send.to_bytes().unwrap();
    let tbs = ProviderSignatureTBS {
        sender: b.clone(),
        recipient: a.clone(),
        method: Bytes(b"POST".to_vec()),
        path: Bytes(b"/group_operation".to_vec()),
        timestamp: 1_795_000_000,
        nonce: [0x11; 16],
        body_sha256: Sha256::digest(&body).into(),
    };
    out.add("b_to_a_group_operation", &tbs);
    let content = ProviderSignContent {
        label: Bytes(PROVIDER_SIGNATURE_LABEL.to_vec()),
        content: Bytes(tbs.to_bytes().unwrap()),
    };
    out.add("b_to_a_group_operation", &content);
    let signature = provider_key.sign(&content.to_bytes().unwrap()).unwrap();
    out.add(
        "b_to_a_group_operation",
        &ProviderSignature {
            sender: b.clone(),
            key_id: vkey.key_id,
            timestamp: 1_795_000_000,
            nonce: [0x11; 16],
            signature: Bytes(signature),
        },
    );

    // DS requests: one per operation.
    out.add("request_group_id", &DSRequestBody::RequestGroupId);
    out.add("anonymous", &DSAuthData::Anonymous);
    out.add("client_signature", &send.authentication_data);
    out.add(
        "request_group_id",
        &DSRequest {
            version: 1,
            request_body: DSRequestBody::RequestGroupId,
            authentication_data: DSAuthData::Anonymous,
        },
    );
    out.add("create_group", &create);
    out.add("create_group", create_body);
    out.add("add_users", &add);
    out.add("add_users", add_body);
    out.add("add_commit", &add_body.group_update);
    out.add("add_commit", &add_body.group_update.partial_group_info);
    out.add("send_message", &send);
    out.add("send_message", send_body);
    out.add(
        "send_message",
        &ClientSignatureTBS {
            protocol_version: 1,
            request_body: send.request_body.clone(),
            sender_index: client_sig.sender_index,
        },
    );
    out.add("self_remove_client", &self_remove);
    out.add("self_remove_client", self_remove_body);
    out.add("update_client", &update);
    out.add("update_client", update_body);
    let add_clients = AddClientsRequest {
        group_update: add_body.group_update.clone(),
        welcome_messages: add_body.welcome_messages.clone(),
    };
    out.add("add_clients", &add_clients);
    out.add(
        "add_clients",
        &alice
            .sign_request(DSRequestBody::AddClients(add_clients), 0)
            .unwrap(),
    );
    for (label, body) in [
        (
            "remove_users",
            DSRequestBody::RemoveUsers(RemoveUsersRequest {
                group_update: remove_update.clone(),
            }),
        ),
        (
            "remove_clients",
            DSRequestBody::RemoveClients(RemoveClientsRequest {
                group_update: remove_update.clone(),
            }),
        ),
        (
            "delete_group",
            DSRequestBody::DeleteGroup(DeleteGroupRequest {
                group_update: remove_update.clone(),
            }),
        ),
    ] {
        out.add(label, &alice.sign_request(body.clone(), remover).unwrap());
        match &body {
            DSRequestBody::RemoveUsers(x) => out.add(label, x),
            DSRequestBody::RemoveClients(x) => out.add(label, x),
            DSRequestBody::DeleteGroup(x) => out.add(label, x),
            _ => unreachable!(),
        }
    }
    out.add("re_initialize_group", &reinit);
    out.add("re_initialize_group", reinit_body);
    out.add("external_join", &external);
    out.add("external_join", external_body);
    let welcome_request = bob
        .welcome_information_request(&group_id, 1, &bob_kp)
        .unwrap();
    let DSRequestBody::WelcomeInformation(welcome_info) = &welcome_request.request_body else {
        panic!("welcome info")
    };
    out.add("epoch_1", welcome_info);
    out.add("welcome_information", &welcome_request);
    let ext_info = ExternalCommitInformationRequest {
        group_id: gid.clone(),
        requester: cid("mimi://b.example/d/bob/laptop"),
    };
    out.add("bob_new_laptop", &ext_info);
    out.add(
        "external_commit_information",
        &DSRequest {
            version: 1,
            request_body: DSRequestBody::ExternalCommitInformation(ext_info),
            authentication_data: DSAuthData::Anonymous,
        },
    );

    // DS responses.
    out.add("ok", &DSResponseBody::Ok);
    out.add(
        "ok",
        &DSResponse {
            protocol_version: 1,
            response_body: DSResponseBody::Ok,
        },
    );
    out.add(
        "wrong_epoch",
        &DSResponse {
            protocol_version: 1,
            response_body: DSResponseBody::Error(DSError::wrong_epoch(7)),
        },
    );
    out.add(
        "group_id",
        &DSResponse {
            protocol_version: 1,
            response_body: DSResponseBody::GroupId(gid.clone()),
        },
    );
    out.add(
        "welcome_info",
        &DSResponse {
            protocol_version: 1,
            response_body: DSResponseBody::WelcomeInfo(tree_epoch1.clone()),
        },
    );
    out.add(
        "external_commit_info",
        &DSResponse {
            protocol_version: 1,
            response_body: DSResponseBody::ExternalCommitInfo(ExternalCommitInfo {
                group_info: group_info.clone(),
                ratchet_tree: tree_epoch1.clone(),
            }),
        },
    );

    // Errors: one per detail form.
    out.add("wrong_epoch", &DSError::wrong_epoch(7));
    out.add(
        "unsupported_version",
        &DSError::unsupported_version(vec![1]),
    );
    out.add("rate_limited", &DSError::rate_limited(30));
    out.add(
        "payload_too_large",
        &DSError {
            code: ErrorCode::PayloadTooLarge,
            detail: ErrorDetail::LimitBytes(4_194_304),
        },
    );
    out.add(
        "unknown_group",
        &DSError::text(ErrorCode::UnknownGroup, "no such group"),
    );
    out.add(
        "unregistered_code",
        &DSError {
            code: ErrorCode::Unknown(1000),
            detail: ErrorDetail::Opaque(Bytes(vec![1, 2, 3])),
        },
    );

    // Queueing.
    let deliver = DeliverMessage {
        group_id: gid.clone(),
        epoch: 1,
        recipients: vec![cid("mimi://b.example/d/bob/phone")],
        message: DeliverableMessage::from_bytes(send_body.application_message.as_bytes()).unwrap(),
    };
    out.add("application_for_bob", &deliver);
    let qs_deliver = QueueingServiceRequest {
        version: 1,
        sender: a.clone(),
        recipient: b.clone(),
        message_id: MessageId([0x42; 16]),
        payload: QueueingServicePayload::DeliverMessage(deliver.clone()),
    };
    out.add("deliver_message", &qs_deliver);
    // Two messages of the group in one request, each under its own id.
    let first = BatchedMessage {
        message_id: MessageId([0x43; 16]),
        deliver_message: deliver.clone(),
    };
    out.add("first_of_two", &first);
    let second_message = DeliverMessage {
        recipients: vec![
            cid("mimi://b.example/d/bob/phone"),
            cid("mimi://b.example/d/bob/laptop"),
        ],
        ..deliver.clone()
    };
    let batch = DeliverMessages {
        messages: vec![
            first,
            BatchedMessage {
                message_id: MessageId([0x44; 16]),
                deliver_message: second_message,
            },
        ],
    };
    out.add("two_messages", &batch);
    out.add(
        "deliver_messages",
        &QueueingServiceRequest {
            message_id: MessageId([0x43; 16]),
            payload: QueueingServicePayload::DeliverMessages(batch),
            ..qs_deliver.clone()
        },
    );
    let conn = ConnectionRequest {
        sender_user: uid("mimi://a.example/u/alice"),
        recipient_user: uid("mimi://b.example/u/bob"),
        group_id: gid.clone(),
        epoch: 1,
        welcome: welcome.clone(),
    };
    out.add("alice_to_bob", &conn);
    out.add(
        "connection_request",
        &QueueingServiceRequest {
            version: 1,
            sender: a.clone(),
            recipient: b.clone(),
            message_id: MessageId([0x43; 16]),
            payload: QueueingServicePayload::ConnectionRequest(conn),
        },
    );
    let qs_ok = QueueingServiceOk {
        unknown_recipients: vec![cid("mimi://b.example/d/bob/old-phone")],
    };
    out.add("one_unknown", &qs_ok);
    out.add(
        "ok",
        &QueueingServiceResponse {
            version: 1,
            message_id: MessageId([0x42; 16]),
            result: QueueingServiceResult::Ok(qs_ok),
        },
    );
    out.add(
        "blocked",
        &QueueingServiceResponse {
            version: 1,
            message_id: MessageId([0x43; 16]),
            result: QueueingServiceResult::Error(DSError::text(ErrorCode::Blocked, "")),
        },
    );

    // KeyPackages.
    out.add(
        "alice_asks_dave",
        &ConnectionKeyPackageRequest {
            version: 1,
            requester: uid("mimi://a.example/u/alice"),
            target: uid("mimi://b.example/u/dave"),
        },
    );
    out.add(
        "all_clients",
        &GroupKeyPackageRequest {
            version: 1,
            requester: uid("mimi://a.example/u/alice"),
            target: uid("mimi://b.example/u/bob"),
            clients: vec![],
        },
    );
    out.add(
        "one_client",
        &GroupKeyPackageRequest {
            version: 1,
            requester: uid("mimi://a.example/u/alice"),
            target: uid("mimi://b.example/u/bob"),
            clients: vec![cid("mimi://b.example/d/bob/phone")],
        },
    );
    let conn_ok = KeyPackagesOk {
        target: uid("mimi://b.example/u/dave"),
        key_packages: vec![dave_conn_kp.clone()],
    };
    out.add("dave_connection", &conn_ok);
    out.add(
        "ok",
        &ConnectionKeyPackageResponse {
            version: 1,
            result: KeyPackagesResult::Ok(conn_ok),
        },
    );
    out.add(
        "unknown_user",
        &ConnectionKeyPackageResponse {
            version: 1,
            result: KeyPackagesResult::Error(DSError::text(ErrorCode::UnknownUser, "")),
        },
    );
    out.add(
        "ok",
        &GroupKeyPackageResponse {
            version: 1,
            result: KeyPackagesResult::Ok(KeyPackagesOk {
                target: uid("mimi://b.example/u/bob"),
                key_packages: vec![bob_kp.clone()],
            }),
        },
    );
    out.add(
        "not_connected",
        &GroupKeyPackageResponse {
            version: 1,
            result: KeyPackagesResult::Error(DSError::text(ErrorCode::NotConnected, "")),
        },
    );

    out.add(
        "regular",
        &MimiDsGroup {
            version: 1,
            kind: GroupKind::Regular,
        },
    );
    out.add(
        "connection",
        &MimiDsGroup {
            version: 1,
            kind: GroupKind::Connection,
        },
    );

    // The hand-built ReInit commit is valid: a member processes it with
    // OpenMLS (signature, membership tag, confirmation tag) and reaches the
    // GroupContext whose GroupInfo the PartialGroupInfo signs.
    let reinit_commit =
        DeliverableMessage::from_bytes(reinit_body.commit.commit.as_bytes()).unwrap();
    bob.process(&reinit_commit)
        .expect("a member processes the ReInit commit");
    {
        use openmls::prelude::tls_codec::Serialize as _;
        let bob_context = bob
            .mls_group(&group_id)
            .unwrap()
            .public_group()
            .group_context()
            .tls_serialize_detached()
            .unwrap();
        assert_eq!(hex_string(&bob_context), hex_string(&reinit_next_context));
    }

    let negatives = negative_vectors(&Parts {
        alice: &alice,
        send: &send,
        update_body,
        self_remove_body,
        create_body,
        welcome: &welcome,
        qs_deliver: &qs_deliver,
        gid: &gid,
    });

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../wire/vectors");
    let golden = serde_json::to_string_pretty(&out.vectors).unwrap();
    std::fs::write(format!("{dir}/golden.json"), golden + "\n").unwrap();
    let mls_json = serde_json::to_string_pretty(&mls).unwrap();
    std::fs::write(format!("{dir}/mls.json"), mls_json + "\n").unwrap();
    let negative = serde_json::to_string_pretty(&negatives).unwrap();
    std::fs::write(format!("{dir}/negative.json"), negative + "\n").unwrap();
    println!(
        "wrote {} vectors, {} MLS objects and {} negative vectors to {dir}",
        out.vectors.len(),
        mls.len(),
        negatives.len()
    );
}

/// `ds_re_initialize_group` with a real ReInit commit.
///
/// OpenMLS 0.9 drops ReInit proposals from the commits it builds, so this
/// builds the commit as RFC 9420 defines it, from the committer's epoch
/// secrets (read from its OpenMLS storage) and signature key: one ReInit
/// proposal by value, no path (RFC 9420 12.4: a ReInit needs none),
/// signature, membership tag and the confirmation tag of the next epoch's
/// key schedule (sections 6.1, 6.2, 8, 8.2). A member (bob) processes it
/// with OpenMLS at the end of `main`, which checks all three.
mod reinit {
    use super::*;
    use openmls::prelude::{Ciphersuite, tls_codec::Serialize as _};
    use openmls_traits::{OpenMlsProvider, crypto::OpenMlsCrypto, types::HashType};

    const NH: usize = 32; // SHA-256

    fn hash(alice: &MimiClient, data: &[u8]) -> Vec<u8> {
        alice
            .openmls_provider()
            .crypto()
            .hash(HashType::Sha2_256, data)
            .unwrap()
    }

    fn extract(alice: &MimiClient, salt: &[u8], ikm: &[u8]) -> Vec<u8> {
        alice
            .openmls_provider()
            .crypto()
            .hkdf_extract(HashType::Sha2_256, salt, ikm)
            .unwrap()
            .as_slice()
            .to_vec()
    }

    /// RFC 9420 5.1: HMAC is HKDF-Extract with the key as salt.
    fn mac(alice: &MimiClient, key: &[u8], data: &[u8]) -> Vec<u8> {
        extract(alice, key, data)
    }

    /// RFC 9420 8: ExpandWithLabel.
    fn expand_with_label(
        alice: &MimiClient,
        secret: &[u8],
        label: &str,
        context: &[u8],
    ) -> Vec<u8> {
        let info = [
            (NH as u16).to_be_bytes().to_vec(),
            opaque(format!("MLS 1.0 {label}").as_bytes()),
            opaque(context),
        ]
        .concat();
        alice
            .openmls_provider()
            .crypto()
            .hkdf_expand(HashType::Sha2_256, secret, &info, NH)
            .unwrap()
            .as_slice()
            .to_vec()
    }

    /// RFC 9420 5.1.2: SignWithLabel.
    fn sign_with_label(alice: &MimiClient, label: &str, content: &[u8]) -> Vec<u8> {
        use openmls_traits::signatures::Signer as _;
        let sign_content = [
            opaque(format!("MLS 1.0 {label}").as_bytes()),
            opaque(content),
        ]
        .concat();
        alice.signer().sign(&sign_content).unwrap()
    }

    /// The byte string stored under `path` in a JSON value of OpenMLS
    /// storage (its secrets are serialized as arrays of numbers, possibly
    /// wrapped in objects).
    fn secret_at(value: &serde_json::Value, path: &[&str]) -> Vec<u8> {
        let mut v = value;
        for key in path {
            v = v.get(*key).unwrap_or_else(|| panic!("no {key} in {v}"));
        }
        fn bytes(v: &serde_json::Value) -> Option<Vec<u8>> {
            match v {
                serde_json::Value::Array(items)
                    if !items.is_empty() && items.iter().all(|i| i.is_u64()) =>
                {
                    items
                        .iter()
                        .map(|i| i.as_u64().and_then(|n| u8::try_from(n).ok()))
                        .collect()
                }
                serde_json::Value::Array(items) => items.iter().find_map(bytes),
                serde_json::Value::Object(map) => map.values().find_map(bytes),
                _ => None,
            }
        }
        bytes(v).unwrap_or_else(|| panic!("no bytes under {path:?}: {v}"))
    }

    /// The stored JSON value whose storage key starts with `label`.
    fn stored(alice: &MimiClient, label: &[u8]) -> serde_json::Value {
        let values = alice.openmls_provider().storage().values.read().unwrap();
        let (_, value) = values
            .iter()
            .find(|(k, _)| k.starts_with(label))
            .unwrap_or_else(|| panic!("nothing stored under {}", String::from_utf8_lossy(label)));
        serde_json::from_slice(value).unwrap()
    }

    /// The request and the encoded GroupContext of the epoch it starts.
    pub fn request(
        alice: &MimiClient,
        group_id: &GroupId,
        successor: &GroupId,
    ) -> (DSRequest, Vec<u8>) {
        let group = alice.mls_group(group_id).unwrap();
        assert!(group.pending_commit().is_none(), "no commit may be pending");
        let context = group.public_group().group_context();
        let context_bytes = context.tls_serialize_detached().unwrap();
        let committer = group.own_leaf_index().u32();
        let cs = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
        assert_eq!(context.ciphersuite(), cs);

        // The ReInit proposal (RFC 9420 12.1.5): the successor group, same
        // version and ciphersuite, and its mimi_ds_group extension.
        let ext_data = enc(&MimiDsGroup {
            version: 1,
            kind: GroupKind::Regular,
        });
        let extensions = opaque(&[&0xF0A0u16.to_be_bytes()[..], &opaque(&ext_data)].concat());
        let reinit = [
            opaque(&successor.to_mls_bytes()),
            1u16.to_be_bytes().to_vec(),
            u16::from(cs).to_be_bytes().to_vec(),
            extensions,
        ]
        .concat();
        // Commit { ProposalOrRef proposals<V>; optional<UpdatePath> path; }
        let proposal_or_ref = [&[1u8][..], &5u16.to_be_bytes(), &reinit].concat();
        let commit = [opaque(&proposal_or_ref), vec![0]].concat();
        // FramedContent (RFC 9420 6).
        let framed_content = [
            opaque(&group_id.to_mls_bytes()),
            context.epoch().as_u64().to_be_bytes().to_vec(),
            [&[1u8][..], &committer.to_be_bytes()].concat(), // member
            opaque(b""),                                     // authenticated_data
            vec![3],                                         // commit
            commit,
        ]
        .concat();
        let wire_format = 1u16.to_be_bytes().to_vec(); // mls_public_message
        // FramedContentTBS: version, wire_format, content, group context.
        let tbs = [
            1u16.to_be_bytes().to_vec(),
            wire_format.clone(),
            framed_content.clone(),
            context_bytes.clone(),
        ]
        .concat();
        let signature = sign_with_label(alice, "FramedContentTBS", &tbs);

        // Transcript hashes (RFC 9420 8.2).
        let confirmation_tag_now = group.confirmation_tag().tls_serialize_detached().unwrap();
        let interim = hash(
            alice,
            &[
                context.confirmed_transcript_hash(),
                &confirmation_tag_now[..],
            ]
            .concat(),
        );
        let confirmed = hash(
            alice,
            &[
                &interim[..],
                &wire_format,
                &framed_content,
                &opaque(&signature),
            ]
            .concat(),
        );
        // The next GroupContext: same tree (no path, no membership change).
        let next_context = [
            1u16.to_be_bytes().to_vec(),
            u16::from(cs).to_be_bytes().to_vec(),
            opaque(&group_id.to_mls_bytes()),
            (context.epoch().as_u64() + 1).to_be_bytes().to_vec(),
            opaque(context.tree_hash()),
            opaque(&confirmed),
            context.extensions().tls_serialize_detached().unwrap(),
        ]
        .concat();

        // Key schedule (RFC 9420 8): no path, so commit_secret is zero;
        // no PSK, so psk_secret is zero.
        let init_secret = secret_at(&stored(alice, b"EpochSecrets"), &["init_secret"]);
        let zero = [0u8; NH];
        let joiner = expand_with_label(
            alice,
            &extract(alice, &init_secret, &zero),
            "joiner",
            &next_context,
        );
        let epoch_secret = expand_with_label(
            alice,
            &extract(alice, &joiner, &zero),
            "epoch",
            &next_context,
        );
        let confirmation_key = expand_with_label(alice, &epoch_secret, "confirm", b"");
        let confirmation_tag = mac(alice, &confirmation_key, &confirmed);

        // Membership tag with this epoch's membership key (RFC 9420 6.2).
        let membership_key = secret_at(
            &stored(alice, b"MessageSecrets"),
            &["message_secrets", "membership_key"],
        );
        let auth_data = [opaque(&signature), opaque(&confirmation_tag)].concat();
        let membership_tag = mac(alice, &membership_key, &[&tbs[..], &auth_data].concat());

        let message = [
            1u16.to_be_bytes().to_vec(),
            wire_format,
            framed_content,
            auth_data,
            opaque(&membership_tag),
        ]
        .concat();

        // The next epoch's GroupInfo, signed by the committer (RFC 9420
        // 12.4.3), without extensions: a group being re-initialized takes
        // no external joins.
        let group_info_extensions = opaque(b"");
        let group_info_tbs = [
            next_context.clone(),
            group_info_extensions.clone(),
            opaque(&confirmation_tag),
            committer.to_be_bytes().to_vec(),
        ]
        .concat();
        let group_info_signature = sign_with_label(alice, "GroupInfoTBS", &group_info_tbs);
        let commit = MLSGroupUpdate {
            commit: PublicMessage::from_bytes(&message).unwrap(),
            partial_group_info: PartialGroupInfo {
                group_info_extensions: GroupInfoExtensions::from_bytes(&group_info_extensions)
                    .unwrap(),
                signature: Bytes(group_info_signature),
            },
        };
        let request = alice
            .sign_request(
                DSRequestBody::ReInitializeGroup(ReInitializeGroupRequest { commit }),
                committer,
            )
            .unwrap();
        (request, next_context)
    }
}

/// What the negative vectors are built from.
struct Parts<'a> {
    alice: &'a MimiClient,
    send: &'a DSRequest,
    update_body: &'a UpdateClientRequest,
    self_remove_body: &'a SelfRemoveClientRequest,
    create_body: &'a CreateGroupRequest,
    welcome: &'a WelcomeMessage,
    qs_deliver: &'a QueueingServiceRequest,
    gid: &'a GroupIdField,
}

/// One body a receiver must refuse, and how (`docs/protocol.md` 11).
struct Neg<'a> {
    ty: &'a str,
    name: &'a str,
    bytes: Vec<u8>,
    code: ErrorCode,
    kind: &'a str,
    path: &'a str,
    offset: usize,
    section: &'a str,
    description: &'a str,
}

#[derive(Default)]
struct Negatives(Vec<serde_json::Value>);

impl Negatives {
    /// Records `n` after checking that the decoder refuses it exactly as
    /// expected.
    fn add(&mut self, n: Neg<'_>) {
        let entry = find_type(n.ty).unwrap_or_else(|| panic!("no type {}", n.ty));
        let err = match (entry.decode_json)(&n.bytes, &Limits::default()) {
            Ok(v) => panic!("negative vector {} {} decodes as {v}", n.ty, n.name),
            Err(e) => e,
        };
        let got = (err.code(), err.kind.name(), err.path(), err.offset);
        let want = (n.code, n.kind, n.path.to_owned(), n.offset);
        assert_eq!(got, want, "negative vector {} {}: {err}", n.ty, n.name);
        self.0.push(json!({
            "struct": n.ty,
            "name": n.name,
            "hex": hex_string(&n.bytes),
            "code": n.code.name(),
            "status": n.code.http_status(),
            "path": n.path,
            "offset": n.offset,
            "kind": n.kind,
            "section": n.section,
            "description": n.description,
        }));
    }
}

fn enc<T: Wire>(v: &T) -> Vec<u8> {
    v.to_bytes().expect("encode")
}

fn opaque(b: &[u8]) -> Vec<u8> {
    enc(&Bytes(b.to_vec()))
}

/// `message` with the `opaque group_id<V>` that starts at `at` replaced:
/// at 4 in a PublicMessage or PrivateMessage (after the MLSMessage
/// version and wire_format), at 8 in a GroupInfo (after GroupContext's
/// version and cipher_suite too).
fn with_group_id(message: &[u8], at: usize, group_id: &[u8]) -> Vec<u8> {
    let limits = Limits::default();
    let mut r = Reader::new(&message[at..], &limits);
    Bytes::decode(&mut r).expect("group_id<V>");
    let used = r.offset();
    [&message[..at], &opaque(group_id), &message[at + used..]].concat()
}

/// An `MLSMessage` holding a GroupInfo with its `extensions<V>` replaced:
/// after version, wire_format, and the GroupContext (version, cipher_suite,
/// group_id, epoch, tree_hash, confirmed_transcript_hash, extensions).
fn with_extensions(group_info: &[u8], extensions: &[u8]) -> Vec<u8> {
    let limits = Limits::default();
    let skip = |at: usize| {
        let mut r = Reader::new(&group_info[at..], &limits);
        Bytes::decode(&mut r).expect("a <V> vector");
        at + r.offset()
    };
    // 8 bytes of versions and suites, then group_id, the 8-byte epoch, two
    // hashes and the context's extensions.
    let after_group_id = skip(8);
    let context_end = skip(skip(skip(after_group_id + 8)));
    let extensions_end = skip(context_end);
    [
        &group_info[..context_end],
        extensions,
        &group_info[extensions_end..],
    ]
    .concat()
}

/// A PublicMessage with application content (RFC 9420 6.2), which no
/// client sends: signature and membership tag are filler, decoding does
/// not check them.
fn public_application(group_id: &[u8]) -> Vec<u8> {
    [
        vec![0, 1, 0, 1], // mls10, mls_public_message
        opaque(group_id),
        1u64.to_be_bytes().to_vec(),
        vec![1, 0, 0, 0, 0], // sender: member 0
        opaque(b""),         // authenticated_data
        vec![1],             // content_type: application
        opaque(b"hello"),
        opaque(&[0x5a; 64]), // signature
        opaque(&[0xa5; 32]), // membership_tag
    ]
    .concat()
}

fn negative_vectors(p: &Parts<'_>) -> Vec<serde_json::Value> {
    use ErrorCode::{MalformedMessage as Malformed, UnsupportedVersion as Unsupported};
    let mut neg = Negatives::default();
    let send = enc(p.send);
    let group_id = p.gid.0.to_mls_bytes();
    let gid_field = enc(p.gid);
    const NOT_A_GROUP_ID: &[u8] = b"not a MIMI GroupId";

    // 1.3: the version first.
    neg.add(Neg {
        ty: "DSRequest",
        name: "version_2_then_garbage",
        bytes: [&[0x00, 0x02][..], &[0xff; 8]].concat(),
        code: Unsupported,
        kind: "unsupported_version",
        path: "DSRequest.version",
        offset: 0,
        section: "1.3",
        description: "version 2: unsupported_version, although the rest decodes as nothing",
    });
    let mut v2 = send.clone();
    v2[1] = 2;
    neg.add(Neg {
        ty: "DSRequest",
        name: "version_2_of_a_valid_request",
        bytes: v2,
        code: Unsupported,
        kind: "unsupported_version",
        path: "DSRequest.version",
        offset: 0,
        section: "1.3",
        description: "the golden send_message request with version 2",
    });
    neg.add(Neg {
        ty: "DSResponse",
        name: "version_0",
        bytes: vec![0x00, 0x00, 0x00],
        code: Unsupported,
        kind: "unsupported_version",
        path: "DSResponse.protocol_version",
        offset: 0,
        section: "1.3",
        description: "version 0 in a response",
    });
    let mut qs_v2 = enc(p.qs_deliver);
    qs_v2[1] = 2;
    neg.add(Neg {
        ty: "QueueingServiceRequest",
        name: "version_2",
        bytes: qs_v2,
        code: Unsupported,
        kind: "unsupported_version",
        path: "QueueingServiceRequest.version",
        offset: 0,
        section: "1.3",
        description: "the golden deliver_message request with version 2",
    });
    neg.add(Neg {
        ty: "DSRequest",
        name: "version_truncated",
        bytes: vec![0x00],
        code: Malformed,
        kind: "truncated",
        path: "DSRequest.version",
        offset: 0,
        section: "1.3",
        description: "one byte cannot hold a version: malformed_message",
    });

    // 1: the encoding.
    let mut non_minimal = vec![0x00, 0x01, 0x40, 0x09];
    non_minimal.extend_from_slice(b"a.example");
    neg.add(Neg {
        ty: "VerificationKeyRequest",
        name: "non_minimal_length",
        bytes: non_minimal,
        code: Malformed,
        kind: "bad_vector_length",
        path: "VerificationKeyRequest.provider",
        offset: 2,
        section: "1",
        description: "the length 9 in two bytes",
    });
    let mut reserved_prefix = vec![0x00, 0x01, 0xc0, 0, 0, 0, 0, 0, 0, 9];
    reserved_prefix.extend_from_slice(b"a.example");
    neg.add(Neg {
        ty: "VerificationKeyRequest",
        name: "reserved_length_prefix",
        bytes: reserved_prefix,
        code: Malformed,
        kind: "bad_vector_length",
        path: "VerificationKeyRequest.provider",
        offset: 2,
        section: "1",
        description: "a length with the reserved prefix 11",
    });
    neg.add(Neg {
        ty: "DSResponse",
        name: "trailing_byte",
        bytes: vec![0x00, 0x01, 0x00, 0xff],
        code: Malformed,
        kind: "trailing_bytes",
        path: "DSResponse",
        offset: 3,
        section: "1",
        description: "an ok response and one more byte",
    });
    neg.add(Neg {
        ty: "DSRequest",
        name: "reserved_request_type_11",
        bytes: vec![0x00, 0x01, 11, 0x00],
        code: Malformed,
        kind: "unknown_value",
        path: "DSRequest.request_body.request_type",
        offset: 2,
        section: "5",
        description: "ds_signature_public_key (11) is reserved",
    });

    // 1.1: GroupInfo extensions beyond their bound: one extension of a
    // private-use type (0xF0F0) whose data alone is the whole bound.
    let big_extensions = opaque(
        &[
            &0xF0F0u16.to_be_bytes()[..],
            &opaque(&[0x2a; DEFAULT_GROUP_INFO_EXTENSIONS]),
        ]
        .concat(),
    );
    neg.add(Neg {
        ty: "PartialGroupInfo",
        name: "group_info_extensions_over_the_bound",
        bytes: [big_extensions.clone(), opaque(&[0x5a; 64])].concat(),
        code: Malformed,
        kind: "too_long",
        path: "PartialGroupInfo.group_info_extensions",
        offset: 0,
        section: "1.1",
        description: "GroupInfo extensions of 65 546 bytes, over the default bound of 64 KiB",
    });

    // 1.4: embedded MLS messages.
    let commit_as_proposal = p
        .alice
        .sign_request(
            DSRequestBody::UpdateClient(UpdateClientRequest {
                group_update: MLSGroupUpdate {
                    commit: p.self_remove_body.proposal.clone(),
                    partial_group_info: p.update_body.group_update.partial_group_info.clone(),
                },
            }),
            0,
        )
        .unwrap();
    neg.add(Neg {
        ty: "DSRequest",
        name: "commit_field_carrying_a_proposal",
        bytes: enc(&commit_as_proposal),
        code: Malformed,
        kind: "invalid",
        path: "DSRequest.request_body.update_client.group_update.commit",
        offset: 3,
        section: "1.4",
        description: "ds_update_client whose commit is the golden self-remove proposal",
    });
    let proposal_as_commit = p
        .alice
        .sign_request(
            DSRequestBody::SelfRemoveClient(SelfRemoveClientRequest {
                proposal: p.update_body.group_update.commit.clone(),
            }),
            0,
        )
        .unwrap();
    neg.add(Neg {
        ty: "DSRequest",
        name: "proposal_field_carrying_a_commit",
        bytes: enc(&proposal_as_commit),
        code: Malformed,
        kind: "invalid",
        path: "DSRequest.request_body.self_remove_client.proposal",
        offset: 3,
        section: "1.4",
        description: "ds_self_remove_client whose proposal is the golden update commit",
    });
    // The content_type of the PrivateMessage follows group_id<V> and epoch.
    let content_type_at = 3 + 4 + opaque(&group_id).len() + 8;
    let mut private_commit = send.clone();
    assert_eq!(private_commit[content_type_at], 1, "application content");
    private_commit[content_type_at] = 3;
    neg.add(Neg {
        ty: "DSRequest",
        name: "application_message_with_commit_content",
        bytes: private_commit,
        code: Malformed,
        kind: "invalid",
        path: "DSRequest.request_body.send_message.application_message",
        offset: 3,
        section: "1.4",
        description: "the golden send_message with the PrivateMessage's content_type set to commit",
    });
    neg.add(Neg {
        ty: "DSRequest",
        name: "application_message_that_is_a_welcome",
        bytes: [&[0x00, 0x01, 10][..], p.welcome.as_bytes(), &[0x00]].concat(),
        code: Malformed,
        kind: "invalid",
        path: "DSRequest.request_body.send_message.application_message",
        offset: 3,
        section: "1.2",
        description: "wire_format mls_welcome where mls_private_message is required",
    });
    let deliver_head = [
        gid_field.clone(),
        1u64.to_be_bytes().to_vec(),
        opaque(&opaque(b"mimi://b.example/d/bob/phone")),
    ]
    .concat();
    neg.add(Neg {
        ty: "DeliverMessage",
        name: "public_application_message",
        bytes: [deliver_head.clone(), public_application(&group_id)].concat(),
        code: Malformed,
        kind: "invalid",
        path: "DeliverMessage.message",
        offset: deliver_head.len(),
        section: "1.4",
        description: "a PublicMessage with content_type application",
    });
    let commit = p.update_body.group_update.commit.as_bytes();
    let foreign_commit = with_group_id(commit, 4, NOT_A_GROUP_ID);
    let rest = enc(&p.update_body.group_update.partial_group_info);
    neg.add(Neg {
        ty: "DSRequest",
        name: "commit_with_a_non_mimi_group_id",
        bytes: [&[0x00, 0x01, 8][..], &foreign_commit, &rest, &[0x00]].concat(),
        code: Malformed,
        kind: "invalid",
        path: "DSRequest.request_body.update_client.group_update.commit",
        offset: 3,
        section: "1.4",
        description: "the golden update commit whose MLS group_id is not a GroupId",
    });
    let leaf = p.create_body.leaf_node.as_bytes();
    let foreign_group_info = with_group_id(p.create_body.group_info.as_bytes(), 8, NOT_A_GROUP_ID);
    neg.add(Neg {
        ty: "CreateGroupRequest",
        name: "group_info_with_a_non_mimi_group_id",
        bytes: [&gid_field[..], leaf, &foreign_group_info].concat(),
        code: Malformed,
        kind: "invalid",
        path: "CreateGroupRequest.group_info",
        offset: gid_field.len() + leaf.len(),
        section: "1.4",
        description: "the golden GroupInfo of epoch 0 with a group_id that is not a GroupId",
    });
    let big_group_info = with_extensions(p.create_body.group_info.as_bytes(), &big_extensions);
    neg.add(Neg {
        ty: "CreateGroupRequest",
        name: "group_info_with_extensions_over_the_bound",
        bytes: [&gid_field[..], leaf, &big_group_info].concat(),
        code: Malformed,
        kind: "too_long",
        path: "CreateGroupRequest.group_info",
        offset: gid_field.len() + leaf.len(),
        section: "1.1",
        description: "the golden GroupInfo of epoch 0 with extensions of 65 546 bytes",
    });
    neg.add(Neg {
        ty: "ExternalCommitInformationRequest",
        name: "group_id_with_a_trailing_byte",
        bytes: [
            opaque(&[&group_id[..], &[0x00]].concat()),
            opaque(b"mimi://b.example/d/bob/laptop"),
        ]
        .concat(),
        code: Malformed,
        kind: "trailing_bytes",
        path: "ExternalCommitInformationRequest.group_id",
        offset: 1 + group_id.len(),
        section: "2.2",
        description: "group_id<V> holds a GroupId and one more byte",
    });

    // 1.4: vectors that hold at least one element.
    let message = DeliverableMessage::from_bytes(p.send.request_body_message()).unwrap();
    let no_recipients = DeliverMessage {
        group_id: p.gid.clone(),
        epoch: 1,
        recipients: vec![],
        message,
    };
    let qs_empty = QueueingServiceRequest {
        payload: QueueingServicePayload::DeliverMessage(no_recipients),
        ..p.qs_deliver.clone()
    };
    neg.add(Neg {
        ty: "QueueingServiceRequest",
        name: "no_recipients",
        bytes: enc(&qs_empty),
        code: Malformed,
        kind: "empty",
        path: "QueueingServiceRequest.payload.deliver_message.recipients",
        offset: 2 + 10 + 10 + 16 + 1 + gid_field.len() + 8,
        section: "1.4",
        description: "a deliver_message request for no recipient",
    });
    let batched = |recipients: Vec<ClientId>| BatchedMessage {
        message_id: MessageId([0x45; 16]),
        deliver_message: DeliverMessage {
            group_id: p.gid.clone(),
            epoch: 1,
            recipients,
            message: DeliverableMessage::from_bytes(p.send.request_body_message()).unwrap(),
        },
    };
    let with_bob = batched(vec![cid("mimi://b.example/d/bob/phone")]);
    let qs_batch = |messages: Vec<BatchedMessage>| QueueingServiceRequest {
        payload: QueueingServicePayload::DeliverMessages(DeliverMessages { messages }),
        ..p.qs_deliver.clone()
    };
    neg.add(Neg {
        ty: "QueueingServiceRequest",
        name: "no_messages",
        bytes: enc(&qs_batch(vec![])),
        code: Malformed,
        kind: "empty",
        path: "QueueingServiceRequest.payload.deliver_messages.messages",
        offset: 2 + 10 + 10 + 16 + 1,
        section: "1.4",
        description: "a deliver_messages request without messages",
    });
    // The tag, the length of `messages` (2 bytes: more than 63), the
    // first message, then the second's id, group_id and epoch.
    let at = 2 + 10 + 10 + 16 + 1 + 2 + enc(&with_bob).len() + 16 + gid_field.len() + 8;
    neg.add(Neg {
        ty: "QueueingServiceRequest",
        name: "batched_message_without_recipients",
        bytes: enc(&qs_batch(vec![with_bob.clone(), batched(vec![])])),
        code: Malformed,
        kind: "empty",
        path: "QueueingServiceRequest.payload.deliver_messages.messages[1].deliver_message.recipients",
        offset: at,
        section: "1.4",
        description: "a deliver_messages request whose second message names no recipient",
    });
    neg.add(Neg {
        ty: "KeyPackagesOk",
        name: "no_key_packages",
        bytes: enc(&KeyPackagesOk {
            target: "mimi://b.example/u/dave".parse().unwrap(),
            key_packages: vec![],
        }),
        code: Malformed,
        kind: "empty",
        path: "KeyPackagesOk.key_packages",
        offset: 24,
        section: "1.4",
        description: "an ok answer without KeyPackages (the answer is 404 no_key_packages)",
    });
    neg.add(Neg {
        ty: "VerificationKeyOk",
        name: "no_keys",
        bytes: enc(&VerificationKeyOk {
            provider: "a.example".parse().unwrap(),
            keys: vec![],
        }),
        code: Malformed,
        kind: "empty",
        path: "VerificationKeyOk.keys",
        offset: 10,
        section: "1.4",
        description: "a key answer without keys",
    });

    // 2.1: identifiers.
    neg.add(Neg {
        ty: "DeliverMessage",
        name: "recipient_with_a_single_label_domain",
        bytes: [
            gid_field.clone(),
            1u64.to_be_bytes().to_vec(),
            opaque(&opaque(b"mimi://localhost/d/bob/phone")),
            p.send.request_body_message().to_vec(),
        ]
        .concat(),
        code: Malformed,
        kind: "invalid",
        path: "DeliverMessage.recipients[0]",
        offset: gid_field.len() + 8 + 1,
        section: "2.1",
        description: "a ClientID on the single-label domain localhost",
    });
    for (name, domain, description) in [
        (
            "single_label_domain",
            &b"localhost"[..],
            "a provider domain of one label",
        ),
        (
            "ipv4_address",
            b"192.0.2.1",
            "an IPv4 address: its top label is all digits",
        ),
        (
            "upper_case_domain",
            b"A.example",
            "upper case is not folded",
        ),
    ] {
        neg.add(Neg {
            ty: "VerificationKeyRequest",
            name,
            bytes: [&[0x00, 0x01][..], &opaque(domain)].concat(),
            code: Malformed,
            kind: "invalid",
            path: "VerificationKeyRequest.provider",
            offset: 2,
            section: "2.1",
            description,
        });
    }
    neg.add(Neg {
        ty: "UserID",
        name: "all_digit_top_label",
        bytes: opaque(b"mimi://a.123/u/bob"),
        code: Malformed,
        kind: "invalid",
        path: "UserID",
        offset: 0,
        section: "2.1",
        description: "the domain's top label is all digits",
    });

    // 1.4 and 4: the provider signature.
    for (name, len) in [("signature_of_3_bytes", 3), ("empty_signature", 0)] {
        neg.add(Neg {
            ty: "ProviderSignature",
            name,
            bytes: enc(&ProviderSignature {
                sender: "b.example".parse().unwrap(),
                key_id: [0x11; 8],
                timestamp: 1_795_000_000,
                nonce: [0x11; 16],
                signature: Bytes(vec![0x22; len]),
            }),
            code: Malformed,
            kind: "invalid",
            path: "ProviderSignature.signature",
            offset: 10 + 8 + 8 + 16,
            section: "1.4",
            description: "an Ed25519 signature (the only ProviderKeyAlgorithm) is 64 bytes",
        });
    }
    let tbs = |method: &[u8], path: &[u8]| {
        enc(&ProviderSignatureTBS {
            sender: "b.example".parse().unwrap(),
            recipient: "a.example".parse().unwrap(),
            method: Bytes(method.to_vec()),
            path: Bytes(path.to_vec()),
            timestamp: 1_795_000_000,
            nonce: [0x11; 16],
            body_sha256: [0; 32],
        })
    };
    neg.add(Neg {
        ty: "ProviderSignatureTBS",
        name: "method_of_17_bytes",
        bytes: tbs(&[b'P'; 17], b"/group_operation"),
        code: Malformed,
        kind: "too_long",
        path: "ProviderSignatureTBS.method",
        offset: 20,
        section: "1.1",
        description: "method is at most 16 bytes",
    });
    let long_path = [b"/".as_slice(), &[b'a'; 255]].concat();
    neg.add(Neg {
        ty: "ProviderSignatureTBS",
        name: "path_of_256_bytes",
        bytes: tbs(b"POST", &long_path),
        code: Malformed,
        kind: "too_long",
        path: "ProviderSignatureTBS.path",
        offset: 25,
        section: "1.1",
        description: "path is at most 255 bytes",
    });

    // 10: errors.
    neg.add(Neg {
        ty: "DSError",
        name: "code_0",
        bytes: vec![0x00, 0x00, 0x00],
        code: Malformed,
        kind: "invalid",
        path: "DSError.code",
        offset: 0,
        section: "10",
        description: "code 0 is reserved and never sent",
    });
    neg.add(Neg {
        ty: "DSResponse",
        name: "error_code_0",
        bytes: vec![0x00, 0x01, 0x01, 0x00, 0x00, 0x00],
        code: Malformed,
        kind: "invalid",
        path: "DSResponse.response_body.error.code",
        offset: 3,
        section: "10",
        description: "a DSResponse whose error has code 0",
    });
    neg.add(Neg {
        ty: "DSError",
        name: "unsupported_version_listing_nothing",
        bytes: vec![0x00, 0x02, 0x01, 0x00],
        code: Malformed,
        kind: "empty",
        path: "DSError.detail",
        offset: 3,
        section: "10",
        description: "supported<V> is empty",
    });
    neg.add(Neg {
        ty: "DSError",
        name: "wrong_epoch_detail_of_7_bytes",
        bytes: [&[0x00, 0x16, 0x07][..], &[0; 7]].concat(),
        code: Malformed,
        kind: "truncated",
        path: "DSError.detail",
        offset: 3,
        section: "10",
        description: "current_epoch is a uint64: exactly 8 bytes",
    });
    neg.add(Neg {
        ty: "DSError",
        name: "text_detail_not_utf8",
        bytes: vec![0x00, 0x0f, 0x01, 0xff],
        code: Malformed,
        kind: "invalid",
        path: "DSError.detail",
        offset: 2,
        section: "10",
        description: "an unknown_group text that is not UTF-8",
    });
    neg.add(Neg {
        ty: "DSError",
        name: "unregistered_code_detail_of_1025_bytes",
        bytes: [&[0x03, 0xe8][..], &opaque(&[0xab; 1025])].concat(),
        code: Malformed,
        kind: "too_long",
        path: "DSError.detail",
        offset: 2,
        section: "10",
        description: "the detail of every code, unregistered ones too, is at most 1 024 bytes",
    });
    neg.0
}

/// The application message inside a golden `ds_send_message`.
trait SendMessageBytes {
    fn request_body_message(&self) -> &[u8];
}

impl SendMessageBytes for DSRequest {
    fn request_body_message(&self) -> &[u8] {
        match &self.request_body {
            DSRequestBody::SendMessage(m) => m.application_message.as_bytes(),
            _ => panic!("not a send_message"),
        }
    }
}
