//! Writes `crates/wire/vectors/golden.json` and `mls.json` from a real
//! conversation between OpenMLS clients on three providers.
//!
//! Run: `cargo run -p mimid-client --example gen_vectors`. The output is
//! committed; the tests check it in both directions, so regenerate only when
//! the wire format changes on purpose (the MLS parts are random each run).

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
    let group_info = alice.group_info(&group_id).unwrap();
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
        // Syntax only: an update commit where a ReInit commit would stand.
        (
            "re_initialize_group_syntax",
            DSRequestBody::ReInitializeGroup(ReInitializeGroupRequest {
                commit: update_body.group_update.clone(),
            }),
        ),
        // Syntax only: a member's commit where an external commit would stand.
        (
            "external_join_syntax",
            DSRequestBody::ExternalJoin(ExternalJoinRequest {
                group_update: update_body.group_update.clone(),
            }),
        ),
    ] {
        out.add(label, &alice.sign_request(body.clone(), remover).unwrap());
        match &body {
            DSRequestBody::RemoveUsers(x) => out.add(label, x),
            DSRequestBody::RemoveClients(x) => out.add(label, x),
            DSRequestBody::DeleteGroup(x) => out.add(label, x),
            DSRequestBody::ReInitializeGroup(x) => out.add(label, x),
            DSRequestBody::ExternalJoin(x) => out.add(label, x),
            _ => unreachable!(),
        }
    }
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
        payload: QueueingServicePayload::DeliverMessage(deliver),
    };
    out.add("deliver_message", &qs_deliver);
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

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../wire/vectors");
    let golden = serde_json::to_string_pretty(&out.vectors).unwrap();
    std::fs::write(format!("{dir}/golden.json"), golden + "\n").unwrap();
    let mls_json = serde_json::to_string_pretty(&mls).unwrap();
    std::fs::write(format!("{dir}/mls.json"), mls_json + "\n").unwrap();
    println!(
        "wrote {} vectors and {} MLS objects to {dir}",
        out.vectors.len(),
        mls.len()
    );
}
