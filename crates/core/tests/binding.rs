//! `binding::acting_client` on requests made by real OpenMLS clients: the
//! creator, the external joiner and the requester are found; requests
//! signed by a member's leaf introduce nobody.

use mimid_client::MimiClient;
use mimid_core::binding::acting_client;
use mimid_wire::*;

fn client(id: &str) -> MimiClient {
    MimiClient::new(id.parse().unwrap()).unwrap()
}

fn actor(request: &DSRequest) -> Option<String> {
    acting_client(request)
        .unwrap()
        .map(|c| c.as_str().to_owned())
}

#[test]
fn the_requests_that_introduce_a_client_name_it_and_the_others_none() {
    let group = GroupId {
        hub_domain: "a.example".parse().unwrap(),
        local_id: [7; 16],
    };
    let mut alice = client("mimi://a.example/d/alice/phone");
    let create = alice.create_group(&group, GroupKind::Regular).unwrap();
    assert_eq!(
        actor(&create).as_deref(),
        Some("mimi://a.example/d/alice/phone")
    );

    let bob = client("mimi://b.example/d/bob/laptop");
    let kp = bob.key_package(false, false).unwrap();
    let add = alice.add(&group, &[kp], false).unwrap();
    assert_eq!(actor(&add), None, "a member's commit introduces nobody");
    alice.merge_pending_commit(&group).unwrap();
    let update = alice.update(&group).unwrap();
    assert_eq!(actor(&update), None);
    alice.clear_pending_commit(&group).unwrap();
    let send = alice.send_message(&group, b"hello").unwrap();
    assert_eq!(actor(&send), None);

    let info = ExternalCommitInfo {
        group_info: alice.group_info(&group).unwrap(),
        ratchet_tree: alice.ratchet_tree(&group).unwrap(),
    };
    let mut carol = client("mimi://c.example/d/carol/desk");
    let join = carol.external_join(&info).unwrap();
    assert_eq!(
        actor(&join).as_deref(),
        Some("mimi://c.example/d/carol/desk")
    );

    let eci = DSRequest {
        version: 1,
        request_body: DSRequestBody::ExternalCommitInformation(ExternalCommitInformationRequest {
            group_id: GroupIdField(group.clone()),
            requester: "mimi://c.example/d/carol/tablet".parse().unwrap(),
        }),
        authentication_data: DSAuthData::Anonymous,
    };
    assert_eq!(
        actor(&eci).as_deref(),
        Some("mimi://c.example/d/carol/tablet")
    );
}
