//! Defects an outside review found in the hub (issue 8), each shown with
//! real OpenMLS clients on both backends (the core alone, and the service
//! on a real SQLite file). Every refused request is checked to change
//! nothing stored.

mod common;

use common::*;
use mimid_client::MimiClient;
use mimid_core::{DsEndpoint, HubError, Origin};
use mimid_wire::*;

/// A fresh group id from the hub, for its own client.
fn new_group<B: Backend>(hub: &mut B, creator: &mut MimiClient, kind: GroupKind) -> GroupId {
    let ask = DSRequest {
        version: 1,
        request_body: DSRequestBody::RequestGroupId,
        authentication_data: DSAuthData::Anonymous,
    };
    let DSResponseBody::GroupId(GroupIdField(g)) = hub.op(&ask, Origin::Local).unwrap().response
    else {
        panic!("no group id")
    };
    hub.op(&creator.create_group(&g, kind).unwrap(), Origin::Local)
        .expect("create");
    g
}

fn eci_request(g: &GroupId, requester: &str) -> DSRequest {
    DSRequest {
        version: 1,
        request_body: DSRequestBody::ExternalCommitInformation(ExternalCommitInformationRequest {
            group_id: GroupIdField(g.clone()),
            requester: requester.parse().unwrap(),
        }),
        authentication_data: DSAuthData::Anonymous,
    }
}

fn leaf_of<B: Backend>(hub: &mut B, g: &GroupId, client: &str) -> u32 {
    hub.group(g)
        .members()
        .iter()
        .find(|m| m.client.as_str() == client)
        .map(|m| m.leaf_index)
        .unwrap_or_else(|| panic!("{client} is not a member"))
}

fn remove_users(c: &mut MimiClient, g: &GroupId, leaves: &[u32]) -> DSRequest {
    let (group_update, sender) = c.remove(g, leaves).unwrap();
    c.sign_request(
        DSRequestBody::RemoveUsers(RemoveUsersRequest { group_update }),
        sender,
    )
    .unwrap()
}

fn delete_group(c: &mut MimiClient, g: &GroupId, leaves: &[u32]) -> DSRequest {
    let (group_update, sender) = c.remove(g, leaves).unwrap();
    c.sign_request(
        DSRequestBody::DeleteGroup(DeleteGroupRequest { group_update }),
        sender,
    )
    .unwrap()
}

/// Defect 1: after Alice removes Bob from their connection group, Bob's
/// provider can neither fetch external-commit information nor join a new
/// client of Bob by external commit.
fn a_user_removed_from_a_connection_group_cannot_rejoin<B: Backend>() {
    let mut hub = B::new("a.example");
    let mut alice = client(ALICE);
    let g = new_group(&mut hub, &mut alice, GroupKind::Connection);
    let bob = client(BOB);
    let add = alice
        .add(&g, &[bob.key_package(true, false).unwrap()], false)
        .unwrap();
    hub.op(&add, Origin::Local).expect("invite Bob");
    alice.merge_pending_commit(&g).unwrap();
    // While Bob is in the group, his other device may ask.
    hub.call(
        DsEndpoint::ExternalCommitInformation,
        &eci_request(&g, "mimi://b.example/d/bob/laptop"),
        provider("b.example"),
    )
    .expect("Bob's laptop while Bob is a member");

    let bob_leaf = leaf_of(&mut hub, &g, BOB);
    hub.op(&remove_users(&mut alice, &g, &[bob_leaf]), Origin::Local)
        .expect("remove Bob");
    alice.merge_pending_commit(&g).unwrap();

    let before = hub.fingerprint(&g);
    let err = hub
        .call(
            DsEndpoint::ExternalCommitInformation,
            &eci_request(&g, "mimi://b.example/d/bob/laptop"),
            provider("b.example"),
        )
        .unwrap_err();
    assert!(matches!(err, HubError::NotAllowed(_)), "{err:?}");
    // With the GroupInfo and tree from elsewhere, the join is refused too.
    let info = ExternalCommitInfo {
        group_info: alice.group_info(&g).unwrap(),
        ratchet_tree: alice.ratchet_tree(&g).unwrap(),
    };
    let mut laptop = client("mimi://b.example/d/bob/laptop");
    let join = laptop.external_join(&info).unwrap();
    let err = hub.op(&join, provider("b.example")).unwrap_err();
    assert!(matches!(err, HubError::NotAllowed(_)), "{err:?}");
    assert_eq!(hub.fingerprint(&g), before, "a refusal changed the state");
    // Nor can Alice invite him (or anyone) again: the invitation was used.
    let again = alice
        .add(&g, &[client(BOB).key_package(true, false).unwrap()], false)
        .unwrap();
    alice.clear_pending_commit(&g).unwrap();
    let err = hub.op(&again, Origin::Local).unwrap_err();
    assert!(matches!(err, HubError::NotAllowed(_)), "{err:?}");
}

/// Defect 2: one member cannot block every commit with several
/// self-removes of its leaf. A retry of the same proposal is answered as
/// the first (nothing stored or sent again); another proposal removing the
/// same leaf is refused; the next commit goes through.
fn at_most_one_pending_remove_per_leaf<B: Backend>() {
    let mut w = World::<B>::new();
    let g = w.group_id.clone();
    let first = w.carol.self_remove(&g).unwrap();
    let outcome = w
        .hub
        .op(&first, provider("c.example"))
        .expect("self remove");
    w.deliver(&outcome, &[ALICE, BOB]);
    let before = w.hub.fingerprint(&g);
    let retry = w.hub.op(&first, provider("c.example")).expect("retry");
    assert_eq!(retry.response, DSResponseBody::Ok);
    assert!(retry.sent.is_empty(), "a retry is not delivered twice");
    assert_eq!(w.hub.fingerprint(&g), before);
    let second = w.carol.self_remove_with_aad(&g, b"again").unwrap();
    w.refused(&second, provider("c.example"), |e| {
        matches!(e, HubError::NotAllowed(_))
    });
    // The group is not blocked: a commit taking the first by reference.
    let outcome = w
        .hub
        .op(&w.bob.update(&g).unwrap(), provider("b.example"))
        .expect("commit after the self-remove");
    w.bob.merge_pending_commit(&g).unwrap();
    w.deliver(&outcome, &[ALICE]);
    w.assert_in_sync(&[ALICE, BOB]);
}

/// Defect 2: a pending self-remove counts toward `ds_delete_group`'s rule
/// (everyone but the committer is removed).
fn a_pending_self_remove_counts_for_delete_group<B: Backend>() {
    let mut w = World::<B>::new();
    let g = w.group_id.clone();
    let outcome = w
        .hub
        .op(&w.carol.self_remove(&g).unwrap(), provider("c.example"))
        .expect("self remove");
    w.deliver(&outcome, &[ALICE, BOB]);
    // Alice removes Bob by value; Carol's leaf goes by reference.
    let bob_leaf = w.bob.leaf_index(&g).unwrap();
    let request = delete_group(&mut w.alice, &g, &[bob_leaf]);
    let outcome = w.hub.op(&request, Origin::Local).expect("delete_group");
    assert!(outcome.deleted);
}

/// Defect 2: a pending self-remove counts toward `ds_remove_users`'s rule
/// (every client of a removed user goes), and does not make its own user
/// "removed".
fn a_pending_self_remove_counts_for_remove_users<B: Backend>() {
    let mut w = World::<B>::new();
    let g = w.group_id.clone();
    // Carol's phone joins by external commit: Carol has two clients.
    let mut phone = client("mimi://c.example/d/carol/phone");
    let info = external_commit_info(&mut w, phone.id().clone());
    let outcome = w
        .hub
        .op(&phone.external_join(&info).unwrap(), provider("c.example"))
        .expect("external join");
    w.deliver(&outcome, &[ALICE, BOB, CAROL]);
    // Her phone leaves by self-remove; Alice then removes Carol's tablet by
    // value, the phone by reference.
    let outcome = w
        .hub
        .op(&phone.self_remove(&g).unwrap(), provider("c.example"))
        .expect("self remove");
    w.deliver(&outcome, &[ALICE, BOB, CAROL]);
    let tablet = w.carol.leaf_index(&g).unwrap();
    let request = remove_users(&mut w.alice, &g, &[tablet]);
    w.hub
        .op(&request, Origin::Local)
        .expect("remove_users with the user's other client pending");
    w.alice.merge_pending_commit(&g).unwrap();
    let members = w.hub.group(&g).members().to_vec();
    assert!(
        members
            .iter()
            .all(|m| m.client.user().as_str() != "mimi://c.example/u/carol")
    );
}

/// Defect 3: the hub's own clients (`Origin::Local`) act for the hub's
/// domain only, like a provider acts for its own.
fn local_requests_act_for_the_hubs_domain_only<B: Backend>() {
    let mut w = World::<B>::new();
    let g = w.group_id.clone();
    // External-commit information for another provider's client.
    let err = w
        .hub
        .call(
            DsEndpoint::ExternalCommitInformation,
            &eci_request(&g, "mimi://b.example/d/bob/laptop"),
            Origin::Local,
        )
        .unwrap_err();
    assert!(matches!(err, HubError::NotAllowed(_)), "{err:?}");
    // A member's request for another provider's client.
    let as_bob = w.bob.send_message(&g, b"as Bob").unwrap();
    w.refused(&as_bob, Origin::Local, |e| {
        matches!(e, HubError::NotAllowed(_))
    });
    // An external join as a device of another provider's user.
    let info = external_commit_info(&mut w, "mimi://b.example/d/bob/laptop".parse().unwrap());
    let mut laptop = client("mimi://b.example/d/bob/laptop");
    w.refused(&laptop.external_join(&info).unwrap(), Origin::Local, |e| {
        matches!(e, HubError::NotAllowed(_))
    });
    // A group created under another provider's ClientID.
    let mut hub = B::new("a.example");
    let ask = DSRequest {
        version: 1,
        request_body: DSRequestBody::RequestGroupId,
        authentication_data: DSAuthData::Anonymous,
    };
    let DSResponseBody::GroupId(GroupIdField(g2)) = hub.op(&ask, Origin::Local).unwrap().response
    else {
        panic!("no group id")
    };
    let mut mallory = client("mimi://b.example/d/mallory/desk");
    let before = hub.fingerprint(&g2);
    let err = hub
        .op(
            &mallory.create_group(&g2, GroupKind::Regular).unwrap(),
            Origin::Local,
        )
        .unwrap_err();
    assert!(matches!(err, HubError::NotAllowed(_)), "{err:?}");
    assert_eq!(hub.fingerprint(&g2), before);
}

/// Defect 3: welcome information for another provider's client is not
/// served to a local request either.
fn local_welcome_information_only_for_local_joiners<B: Backend>() {
    let mut hub = B::new("a.example");
    let mut alice = client(ALICE);
    let g = new_group(&mut hub, &mut alice, GroupKind::Regular);
    let bob = client(BOB);
    let kp = bob.key_package(false, false).unwrap();
    hub.op(
        &alice.add(&g, std::slice::from_ref(&kp), false).unwrap(),
        Origin::Local,
    )
    .expect("add Bob");
    let ask = bob.welcome_information_request(&g, 1, &kp).unwrap();
    let err = hub
        .call(DsEndpoint::WelcomeInformation, &ask, Origin::Local)
        .unwrap_err();
    assert!(matches!(err, HubError::NotAllowed(_)), "{err:?}");
    hub.call(DsEndpoint::WelcomeInformation, &ask, provider("b.example"))
        .expect("Bob's provider may");
}

/// Defect 6: an epoch beyond what a store can hold is no store failure but
/// the documented 404.
fn an_absurd_epoch_has_no_welcome_information<B: Backend>() {
    let mut w = World::<B>::new();
    let kp = w.bob.key_package(false, false).unwrap();
    for epoch in [1u64 << 63, u64::MAX] {
        let ask = w
            .bob
            .welcome_information_request(&w.group_id, epoch, &kp)
            .unwrap();
        let err = w
            .hub
            .call(DsEndpoint::WelcomeInformation, &ask, provider("b.example"))
            .unwrap_err();
        assert_eq!(err, HubError::NoWelcomeInformation(epoch));
    }
}

/// The `auth_type` is the one the operation takes (`docs/protocol.md` 5.3),
/// checked with the endpoint, before the group is looked at.
fn auth_type_must_match_the_operation<B: Backend>() {
    let mut w = World::<B>::new();
    let g = w.group_id.clone();
    // A client signature on an anonymous operation.
    for body in [
        DSRequestBody::RequestGroupId,
        eci_request(&g, ALICE).request_body,
    ] {
        let endpoint = match body {
            DSRequestBody::RequestGroupId => DsEndpoint::GroupOperation,
            _ => DsEndpoint::ExternalCommitInformation,
        };
        let signed = w.alice.sign_request(body, 0).unwrap();
        let before = w.hub.fingerprint(&g);
        let err = w.hub.call(endpoint, &signed, Origin::Local).unwrap_err();
        assert!(matches!(err, HubError::Malformed(_)), "{err:?}");
        assert_eq!(w.hub.fingerprint(&g), before);
    }
    // No signature on an operation that needs one, even for a group that
    // does not exist.
    let mut message = w.alice.send_message(&g, b"x").unwrap();
    message.authentication_data = DSAuthData::Anonymous;
    w.refused(&message, Origin::Local, |e| {
        matches!(e, HubError::ClientSignature(_))
    });
    let err = B::new("a.example").op(&message, Origin::Local).unwrap_err();
    assert!(matches!(err, HubError::ClientSignature(_)), "{err:?}");
}

/// A group id reserved for one provider cannot be used by another (with
/// `allow_foreign_groups`), nor by the hub's own clients.
fn a_reservation_belongs_to_its_provider<B: Backend>() {
    let mut config = mimid_core::HubConfig::new("a.example".parse().unwrap());
    config.allow_foreign_groups = true;
    let mut hub = B::with_config(config);
    let ask = DSRequest {
        version: 1,
        request_body: DSRequestBody::RequestGroupId,
        authentication_data: DSAuthData::Anonymous,
    };
    let DSResponseBody::GroupId(GroupIdField(g)) =
        hub.op(&ask, provider("b.example")).unwrap().response
    else {
        panic!("no group id")
    };
    let before = hub.fingerprint(&g);
    let mut carol = client(CAROL);
    let err = hub
        .op(
            &carol.create_group(&g, GroupKind::Regular).unwrap(),
            provider("c.example"),
        )
        .unwrap_err();
    assert!(matches!(err, HubError::NotAllowed(_)), "{err:?}");
    let mut alice = client(ALICE);
    let err = hub
        .op(
            &alice.create_group(&g, GroupKind::Regular).unwrap(),
            Origin::Local,
        )
        .unwrap_err();
    assert!(matches!(err, HubError::NotAllowed(_)), "{err:?}");
    assert_eq!(hub.fingerprint(&g), before);
    let mut bob = client(BOB);
    hub.op(
        &bob.create_group(&g, GroupKind::Regular).unwrap(),
        provider("b.example"),
    )
    .expect("the provider that reserved it");
}

/// `ds_add_clients` adds devices of the committer's own user only.
fn add_clients_only_for_the_committers_user<B: Backend>() {
    let mut w = World::<B>::new();
    let g = w.group_id.clone();
    // Alice tries to give Bob (another provider's user) a new device.
    let fake = client("mimi://b.example/d/bob/fake");
    let add = w
        .alice
        .add(&g, &[fake.key_package(false, false).unwrap()], true)
        .unwrap();
    w.alice.clear_pending_commit(&g).unwrap();
    w.refused(&add, Origin::Local, |e| {
        matches!(e, HubError::NotAllowed(_))
    });
    // Bob's own new device is fine.
    let laptop = client("mimi://b.example/d/bob/laptop");
    let add = w
        .bob
        .add(&g, &[laptop.key_package(false, false).unwrap()], true)
        .unwrap();
    w.hub
        .op(&add, provider("b.example"))
        .expect("Bob adds his laptop");
}

/// No committing operation may change its committer's ClientID, not even
/// `ds_delete_group`.
fn delete_group_keeps_the_committers_identity<B: Backend>() {
    let mut w = World::<B>::new();
    let g = w.group_id.clone();
    let others: Vec<u32> = [BOB, CAROL]
        .iter()
        .map(|c| leaf_of(&mut w.hub, &g, c))
        .collect();
    let (group_update, sender) = w
        .alice
        .remove_as(
            &g,
            &others,
            &"mimi://a.example/d/alice/other".parse().unwrap(),
        )
        .unwrap();
    let request = w
        .alice
        .sign_request(
            DSRequestBody::DeleteGroup(DeleteGroupRequest { group_update }),
            sender,
        )
        .unwrap();
    w.alice.clear_pending_commit(&g).unwrap();
    w.refused(
        &request,
        Origin::Local,
        |e| matches!(e, HubError::NotAllowed(m) if m.contains("ClientID")),
    );
    w.hub
        .op(&delete_group(&mut w.alice, &g, &others), Origin::Local)
        .expect("the same without the new identity");
}

on_both_backends!(
    a_user_removed_from_a_connection_group_cannot_rejoin,
    at_most_one_pending_remove_per_leaf,
    a_pending_self_remove_counts_for_delete_group,
    a_pending_self_remove_counts_for_remove_users,
    local_requests_act_for_the_hubs_domain_only,
    local_welcome_information_only_for_local_joiners,
    an_absurd_epoch_has_no_welcome_information,
    auth_type_must_match_the_operation,
    a_reservation_belongs_to_its_provider,
    add_clients_only_for_the_committers_user,
    delete_group_keeps_the_committers_identity,
);
