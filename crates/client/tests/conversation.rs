//! Two clients on two providers hold a real MLS conversation through the
//! wire messages the client produces (no server yet: the test hands the
//! messages over, as a hub would after accepting them).

use mimid_client::MimiClient;
use mimid_wire::*;

fn client(id: &str) -> MimiClient {
    MimiClient::new(id.parse().expect("client id")).expect("client")
}

fn round_trip(request: &DSRequest) -> DSRequest {
    // What goes on the wire is what the hub decodes.
    DSRequest::decode_exact(&request.to_bytes().expect("encode"), &Limits::default())
        .expect("decode")
}

#[test]
fn create_add_join_and_talk_across_providers() {
    let group_id = GroupId {
        hub_domain: "a.example".parse().unwrap(),
        local_id: [1; 16],
    };
    let mut alice = client("mimi://a.example/d/alice/laptop");
    let mut bob = client("mimi://b.example/d/bob/phone");

    let create = round_trip(&alice.create_group(&group_id, GroupKind::Regular).unwrap());
    assert!(matches!(create.request_body, DSRequestBody::CreateGroup(_)));

    let bob_kp = bob.key_package(false, false).unwrap();
    let add = round_trip(&alice.add(&group_id, &[bob_kp], false).unwrap());
    alice.merge_pending_commit(&group_id).unwrap();
    let DSRequestBody::AddUsers(add) = add.request_body else {
        panic!("not add_users")
    };
    assert_eq!(add.welcome_messages.len(), 1);
    let tree = alice.ratchet_tree(&group_id).unwrap();
    assert_eq!(bob.join(&add.welcome_messages[0], &tree).unwrap(), group_id);
    assert_eq!(
        alice.epoch_and_tree_hash(&group_id),
        bob.epoch_and_tree_hash(&group_id)
    );

    let send = round_trip(&alice.send_message(&group_id, b"hi bob").unwrap());
    let DSAuthData::ClientSignature(sig) = &send.authentication_data else {
        panic!("unsigned")
    };
    assert_eq!(sig.sender_index, 0);
    let DSRequestBody::SendMessage(m) = send.request_body else {
        panic!("not send_message")
    };
    let delivered = DeliverableMessage::from_bytes(m.application_message.as_bytes()).unwrap();
    assert_eq!(
        bob.process(&delivered).unwrap().as_deref(),
        Some(&b"hi bob"[..])
    );

    // Bob's update commit, applied by Alice, keeps both in sync.
    let update = round_trip(&bob.update(&group_id).unwrap());
    bob.merge_pending_commit(&group_id).unwrap();
    let DSRequestBody::UpdateClient(u) = update.request_body else {
        panic!("not update_client")
    };
    let commit = DeliverableMessage::from_bytes(u.group_update.commit.as_bytes()).unwrap();
    assert_eq!(alice.process(&commit).unwrap(), None);
    let (epoch, hash) = alice.epoch_and_tree_hash(&group_id).unwrap();
    assert_eq!(epoch, 2);
    assert_eq!(bob.epoch_and_tree_hash(&group_id), Some((epoch, hash)));
}
