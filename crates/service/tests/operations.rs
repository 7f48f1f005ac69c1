//! Every DS operation driven by real OpenMLS clients on three providers
//! (a.example is the hub; b.example and c.example are guests), through the
//! wire format, once on the core alone and once through the service and a
//! real SQLite database (`common/mod.rs`). Every refused request is checked
//! to change nothing that is stored.

mod common;

use common::*;
use mimid_core::{DsEndpoint, HubError, Origin};
use mimid_wire::*;

fn application_messages_fan_out_by_provider<B: Backend>() {
    let mut w = World::<B>::new();
    let outcome = w
        .hub
        .op(
            &w.alice.send_message(&w.group_id, b"hello").unwrap(),
            Origin::Local,
        )
        .unwrap();
    assert!(!outcome.state_written);
    assert_eq!(outcome.messages_stored, 1, "a message is stored once");
    assert_eq!(
        outcome.routes(),
        vec![
            ("b.example".to_string(), vec![BOB.to_string()]),
            ("c.example".to_string(), vec![CAROL.to_string()])
        ]
    );
    assert_eq!(
        w.deliver(&outcome, &[BOB, CAROL]),
        vec![Some(b"hello".to_vec()), Some(b"hello".to_vec())]
    );

    // A guest's client, relayed by its provider: Alice's provider gets it too.
    let outcome = w
        .hub
        .op(
            &w.bob.send_message(&w.group_id, b"hi").unwrap(),
            provider("b.example"),
        )
        .unwrap();
    let dests: Vec<_> = outcome.routes().into_iter().map(|(dest, _)| dest).collect();
    assert_eq!(dests, vec!["a.example", "c.example"]);
}

fn every_operation_in_one_conversation<B: Backend>() {
    let mut w = World::<B>::new();
    let g = w.group_id.clone();

    // update_client by a guest's client.
    let outcome = w
        .hub
        .op(&w.bob.update(&g).unwrap(), provider("b.example"))
        .expect("update");
    w.bob.merge_pending_commit(&g).unwrap();
    w.deliver(&outcome, &[ALICE, CAROL]);
    w.assert_in_sync(&[ALICE, BOB, CAROL]);

    // add_clients: Bob adds his laptop.
    let mut bob_laptop = client("mimi://b.example/d/bob/laptop");
    let kp = bob_laptop.key_package(false, false).unwrap();
    let outcome = w
        .hub
        .op(
            &w.bob.add(&g, std::slice::from_ref(&kp), true).unwrap(),
            provider("b.example"),
        )
        .expect("add_clients");
    w.bob.merge_pending_commit(&g).unwrap();
    w.deliver(&outcome, &[ALICE, CAROL]);
    let epoch = w.hub.group(&w.group_id).epoch();
    let welcome = outcome
        .welcome_for("mimi://b.example/d/bob/laptop")
        .expect("welcome");
    let info = w
        .hub
        .call(
            DsEndpoint::WelcomeInformation,
            &bob_laptop
                .welcome_information_request(&g, epoch, &kp)
                .unwrap(),
            provider("b.example"),
        )
        .expect("welcome info");
    let DSResponseBody::WelcomeInfo(tree) = info.response else {
        panic!()
    };
    bob_laptop.join(&welcome, &tree).unwrap();
    w.assert_in_sync(&[ALICE, BOB, CAROL]);

    // external_join: Carol's new phone joins by external commit.
    let mut carol_phone = client("mimi://c.example/d/carol/phone");
    let info = external_commit_info(&mut w, carol_phone.id().clone());
    let join = carol_phone.external_join(&info).unwrap();
    let outcome = w
        .hub
        .op(&join, provider("c.example"))
        .expect("external join");
    w.deliver(&outcome, &[ALICE, BOB, CAROL]);
    bob_laptop
        .process(
            &outcome
                .delivered_to("mimi://b.example/d/bob/laptop")
                .unwrap(),
        )
        .unwrap();
    w.assert_in_sync(&[ALICE, BOB, CAROL]);
    assert_eq!(
        carol_phone.epoch_and_tree_hash(&g),
        w.alice.epoch_and_tree_hash(&g)
    );

    // self_remove_client: Carol's tablet leaves; the next commit takes it by reference.
    let outcome = w
        .hub
        .op(&w.carol.self_remove(&g).unwrap(), provider("c.example"))
        .expect("self remove");
    for id in [ALICE, BOB] {
        assert_eq!(w.deliver(&outcome, &[id]), vec![None]);
    }
    let proposal = outcome
        .delivered_to("mimi://c.example/d/carol/phone")
        .unwrap();
    carol_phone.process(&proposal).unwrap();
    bob_laptop
        .process(
            &outcome
                .delivered_to("mimi://b.example/d/bob/laptop")
                .unwrap(),
        )
        .unwrap();
    let outcome = w
        .hub
        .op(&w.alice.update(&g).unwrap(), Origin::Local)
        .expect("commit with pending self-remove");
    w.alice.merge_pending_commit(&g).unwrap();
    w.deliver(&outcome, &[BOB, CAROL]);
    carol_phone
        .process(
            &outcome
                .delivered_to("mimi://c.example/d/carol/phone")
                .unwrap(),
        )
        .unwrap();
    bob_laptop
        .process(
            &outcome
                .delivered_to("mimi://b.example/d/bob/laptop")
                .unwrap(),
        )
        .unwrap();
    assert!(
        !w.hub
            .group(&g)
            .members()
            .iter()
            .any(|m| m.client.as_str() == CAROL)
    );
    w.assert_in_sync(&[ALICE, BOB]);

    // remove_clients: Bob removes his laptop.
    let laptop_leaf = bob_laptop.leaf_index(&g).unwrap();
    let (update, sender) = w.bob.remove(&g, &[laptop_leaf]).unwrap();
    let request = w
        .bob
        .sign_request(
            DSRequestBody::RemoveClients(RemoveClientsRequest {
                group_update: update,
            }),
            sender,
        )
        .unwrap();
    let outcome = w
        .hub
        .op(&request, provider("b.example"))
        .expect("remove_clients");
    w.bob.merge_pending_commit(&g).unwrap();
    assert!(
        outcome
            .delivered_to("mimi://b.example/d/bob/laptop")
            .is_some(),
        "a removed client gets its removal"
    );
    w.deliver(&outcome, &[ALICE]);
    carol_phone
        .process(
            &outcome
                .delivered_to("mimi://c.example/d/carol/phone")
                .unwrap(),
        )
        .unwrap();
    w.assert_in_sync(&[ALICE, BOB]);

    // remove_users: Alice removes Carol (her only remaining client).
    let phone_leaf = carol_phone.leaf_index(&g).unwrap();
    let (update, sender) = w.alice.remove(&g, &[phone_leaf]).unwrap();
    let request = w
        .alice
        .sign_request(
            DSRequestBody::RemoveUsers(RemoveUsersRequest {
                group_update: update,
            }),
            sender,
        )
        .unwrap();
    let outcome = w.hub.op(&request, Origin::Local).expect("remove_users");
    w.alice.merge_pending_commit(&g).unwrap();
    w.deliver(&outcome, &[BOB]);
    w.assert_in_sync(&[ALICE, BOB]);

    // delete_group: Alice removes everyone else; the hub drops the group.
    let bob_leaf = w.bob.leaf_index(&g).unwrap();
    let (update, sender) = w.alice.remove(&g, &[bob_leaf]).unwrap();
    let request = w
        .alice
        .sign_request(
            DSRequestBody::DeleteGroup(DeleteGroupRequest {
                group_update: update,
            }),
            sender,
        )
        .unwrap();
    let outcome = w.hub.op(&request, Origin::Local).expect("delete_group");
    assert!(outcome.deleted);
    assert!(outcome.delivered_to(BOB).is_some());
    assert!(w.hub.state(&g).is_none());
    let err = w
        .hub
        .op(
            &w.alice.send_message(&g, b"anyone?").unwrap(),
            Origin::Local,
        )
        .unwrap_err();
    assert_eq!(err, HubError::UnknownGroup);
}

fn non_member_cannot_post<B: Backend>() {
    let mut w = World::<B>::new();
    let g = w.group_id.clone();
    // Dave is not in the group: he signs as if he were leaf 1.
    let mut dave = client("mimi://b.example/d/dave/desk");
    dave.create_group(&g, GroupKind::Regular).unwrap();
    let forged = dave.send_message(&g, b"spam").unwrap();
    let DSRequestBody::SendMessage(m) = forged.request_body else {
        panic!()
    };
    let as_leaf_1 = dave
        .sign_request(DSRequestBody::SendMessage(m.clone()), 1)
        .unwrap();
    w.refused(&as_leaf_1, provider("b.example"), |e| {
        matches!(e, HubError::ClientSignature(_))
    });
    let no_such_leaf = dave.sign_request(DSRequestBody::SendMessage(m), 9).unwrap();
    w.refused(&no_such_leaf, provider("b.example"), |e| {
        matches!(e, HubError::ClientSignature(_))
    });
}

fn forged_client_signature_is_refused<B: Backend>() {
    let mut w = World::<B>::new();
    let mut request = w.bob.send_message(&w.group_id, b"hi").unwrap();
    let DSAuthData::ClientSignature(sig) = &mut request.authentication_data else {
        panic!()
    };
    sig.signature.0[0] ^= 1;
    w.refused(&request, provider("b.example"), |e| {
        matches!(e, HubError::ClientSignature(_))
    });
    // A provider cannot act for another provider's client.
    let request = w.bob.send_message(&w.group_id, b"hi").unwrap();
    w.refused(&request, provider("c.example"), |e| {
        matches!(e, HubError::NotAllowed(_))
    });
}

fn stale_commits_and_replays_name_the_current_epoch<B: Backend>() {
    let mut w = World::<B>::new();
    let g = w.group_id.clone();
    let stale = w.carol.update(&g).unwrap();
    w.carol.clear_pending_commit(&g).unwrap();
    let first = w.bob.update(&g).unwrap();
    let accepted = w
        .hub
        .op(&first, provider("b.example"))
        .expect("first commit");
    w.bob.merge_pending_commit(&g).unwrap();
    let current = w.hub.group(&w.group_id).epoch();
    assert_eq!(current, 2);
    let err = w.refused(&stale, provider("c.example"), |e| {
        *e == HubError::WrongEpoch { current: 2 }
    });
    assert_eq!(err.to_ds_error(), DSError::wrong_epoch(2));
    // The accepted commit, replayed after it was applied.
    w.refused(&first, provider("b.example"), |e| {
        *e == HubError::WrongEpoch { current: 2 }
    });
    w.deliver(&accepted, &[ALICE, CAROL]);
    w.assert_in_sync(&[ALICE, BOB, CAROL]);
}

fn concurrent_commits_for_one_epoch_exactly_one_wins<B: Backend>() {
    let mut w = World::<B>::new();
    let g = w.group_id.clone();
    let from_bob = w.bob.update(&g).unwrap();
    let from_carol = w.carol.update(&g).unwrap();
    let a = w.hub.op(&from_bob, provider("b.example"));
    let b = w.hub.op(&from_carol, provider("c.example"));
    let (winner, loser) = match (&a, &b) {
        (Ok(_), Err(e)) => {
            assert_eq!(*e, HubError::WrongEpoch { current: 2 });
            (BOB, CAROL)
        }
        other => panic!("expected exactly one accepted commit, got {other:?}"),
    };
    let accepted = a.unwrap();
    w.client(winner).merge_pending_commit(&g).unwrap();
    w.client(loser).clear_pending_commit(&g).unwrap();
    w.deliver(&accepted, &[ALICE, loser]);
    w.assert_in_sync(&[ALICE, BOB, CAROL]);
}

fn group_info_signature_must_match<B: Backend>() {
    let mut w = World::<B>::new();
    let mut request = w.bob.update(&w.group_id).unwrap();
    let DSRequestBody::UpdateClient(u) = &mut request.request_body else {
        panic!()
    };
    u.group_update.partial_group_info.signature.0[3] ^= 0x40;
    // Re-sign the request so that only the GroupInfo signature is wrong.
    let index = w.bob.leaf_index(&w.group_id).unwrap();
    let request = w.bob.sign_request(request.request_body, index).unwrap();
    w.refused(&request, provider("b.example"), |e| {
        matches!(e, HubError::InvalidGroupInfo(_))
    });
}

fn self_remove_of_someone_else_is_refused<B: Backend>() {
    let mut w = World::<B>::new();
    let alice_leaf = w.alice.leaf_index(&w.group_id).unwrap();
    let request = w.bob.propose_remove(&w.group_id, alice_leaf).unwrap();
    w.refused(&request, provider("b.example"), |e| {
        matches!(e, HubError::NotAllowed(_))
    });
}

fn commit_must_include_pending_self_remove<B: Backend>() {
    let mut w = World::<B>::new();
    let g = w.group_id.clone();
    w.hub
        .op(&w.carol.self_remove(&g).unwrap(), provider("c.example"))
        .expect("self remove");
    // Bob has not seen the proposal: his commit omits it.
    let request = w.bob.update(&g).unwrap();
    w.refused(&request, provider("b.example"), |e| {
        matches!(e, HubError::MissingPendingProposals(_))
    });
}

fn private_message_for_a_past_epoch_is_refused<B: Backend>() {
    let mut w = World::<B>::new();
    let g = w.group_id.clone();
    let old = w.carol.send_message(&g, b"late").unwrap();
    let outcome = w
        .hub
        .op(&w.bob.update(&g).unwrap(), provider("b.example"))
        .unwrap();
    w.bob.merge_pending_commit(&g).unwrap();
    w.deliver(&outcome, &[ALICE, CAROL]);
    w.refused(&old, provider("c.example"), |e| {
        *e == HubError::WrongEpoch { current: 2 }
    });
}

fn welcome_information_only_for_clients_added_then<B: Backend>() {
    let mut w = World::<B>::new();
    // Alice was not added in epoch 1; she asks with a KeyPackage of Bob's
    // that was not added either. The answer is the one for an epoch with
    // no snapshot at all: nobody learns which epochs added clients.
    let bob_kp = w.bob.key_package(false, false).unwrap();
    let request = w
        .alice
        .welcome_information_request(&w.group_id, 1, &bob_kp)
        .unwrap();
    let err = w
        .hub
        .call(DsEndpoint::WelcomeInformation, &request, Origin::Local)
        .unwrap_err();
    assert_eq!(err, HubError::NoWelcomeInformation(1));
    // No snapshot for an epoch in which nobody was added.
    let request = w
        .alice
        .welcome_information_request(&w.group_id, 0, &bob_kp)
        .unwrap();
    let err = w
        .hub
        .call(DsEndpoint::WelcomeInformation, &request, Origin::Local)
        .unwrap_err();
    assert_eq!(err, HubError::NoWelcomeInformation(0));
    // The right request on the wrong endpoint.
    let err = w
        .hub
        .call(DsEndpoint::GroupOperation, &request, Origin::Local)
        .unwrap_err();
    assert!(matches!(err, HubError::WrongEndpoint(_)));
}

fn groups_of_other_hubs_are_misrouted<B: Backend>() {
    let mut w = World::<B>::new();
    let mut elsewhere = B::new("b.example");
    let err = elsewhere
        .op(
            &w.alice.send_message(&w.group_id, b"x").unwrap(),
            Origin::Local,
        )
        .unwrap_err();
    assert!(matches!(err, HubError::WrongRecipient(_)));
    assert_eq!(err.code(), ErrorCode::WrongRecipient);
}

/// A connection group (G12): connection KeyPackages only, exactly one
/// invited user, whose other devices may then fetch external-commit info.
fn connection_groups_connect_two_users<B: Backend>() {
    let mut hub = B::new("a.example");
    let mut alice = client(ALICE);
    let ask = DSRequest {
        version: 1,
        request_body: DSRequestBody::RequestGroupId,
        authentication_data: DSAuthData::Anonymous,
    };
    let DSResponseBody::GroupId(GroupIdField(g)) = hub.op(&ask, Origin::Local).unwrap().response
    else {
        panic!("no group id")
    };
    hub.op(
        &alice.create_group(&g, GroupKind::Connection).unwrap(),
        Origin::Local,
    )
    .expect("create");
    let bob = client(BOB);
    let carol = client(CAROL);

    // A regular KeyPackage does not go into a connection group.
    let regular = alice
        .add(&g, &[bob.key_package(false, false).unwrap()], false)
        .unwrap();
    alice.clear_pending_commit(&g).unwrap();
    let before = hub.fingerprint(&g);
    assert!(matches!(
        hub.op(&regular, Origin::Local),
        Err(HubError::NotAllowed(_))
    ));
    assert_eq!(hub.fingerprint(&g), before);

    // Two users at once are refused; Bob alone is accepted.
    let both = alice
        .add(
            &g,
            &[
                bob.key_package(true, false).unwrap(),
                carol.key_package(true, false).unwrap(),
            ],
            false,
        )
        .unwrap();
    alice.clear_pending_commit(&g).unwrap();
    assert!(matches!(
        hub.op(&both, Origin::Local),
        Err(HubError::NotAllowed(_))
    ));
    let add = alice
        .add(&g, &[bob.key_package(true, false).unwrap()], false)
        .unwrap();
    let outcome = hub.op(&add, Origin::Local).expect("connection add");
    alice.merge_pending_commit(&g).unwrap();
    assert!(outcome.welcome_for(BOB).is_some());

    // A third user is refused afterwards too.
    let third = alice
        .add(&g, &[carol.key_package(true, false).unwrap()], false)
        .unwrap();
    alice.clear_pending_commit(&g).unwrap();
    assert!(matches!(
        hub.op(&third, Origin::Local),
        Err(HubError::NotAllowed(_))
    ));

    // Bob's other device may ask for external-commit information; Carol may not.
    for (requester, allowed) in [
        ("mimi://b.example/d/bob/laptop", true),
        ("mimi://c.example/d/carol/phone", false),
    ] {
        let request = DSRequest {
            version: 1,
            request_body: DSRequestBody::ExternalCommitInformation(
                ExternalCommitInformationRequest {
                    group_id: GroupIdField(g.clone()),
                    requester: requester.parse().unwrap(),
                },
            ),
            authentication_data: DSAuthData::Anonymous,
        };
        let domain = requester.parse::<ClientId>().unwrap().domain();
        let answer = hub.call(
            DsEndpoint::ExternalCommitInformation,
            &request,
            provider(domain.as_str()),
        );
        assert_eq!(answer.is_ok(), allowed, "{requester}: {answer:?}");
    }

    // And a connection KeyPackage does not go into a regular group.
    let w = World::<B>::new();
    let mut alice = w.alice;
    let dave = client("mimi://b.example/d/dave/desk");
    let add = alice
        .add(
            &w.group_id,
            &[dave.key_package(true, false).unwrap()],
            false,
        )
        .unwrap();
    let mut hub = w.hub;
    assert!(matches!(
        hub.op(&add, Origin::Local),
        Err(HubError::NotAllowed(_))
    ));
}

/// A client that lost its group state rejoins by external commit, removing
/// its own old leaf (resync); a second leaf for the same client without
/// that removal is refused.
fn a_client_resyncs_by_external_commit<B: Backend>() {
    let mut w = World::<B>::new();
    let g = w.group_id.clone();
    let members = |w: &mut World<B>| {
        let group = w.hub.group(&g);
        group
            .members()
            .iter()
            .map(|m| m.client.to_string())
            .collect::<Vec<_>>()
    };
    let before = members(&mut w);

    // Bob's phone again, with a new key and without removing its old leaf.
    let mut twin = client(BOB);
    let info = external_commit_info(&mut w, twin.id().clone());
    let join = twin.external_join(&info).unwrap();
    w.refused(&join, provider("b.example"), |e| {
        matches!(e, HubError::NotAllowed(_))
    });

    // Bob's phone, same key: OpenMLS removes the old leaf in the commit.
    let bob = w.bob.id().clone();
    let info = external_commit_info(&mut w, bob);
    let join = w.bob.external_join(&info).unwrap();
    let outcome = w
        .hub
        .op(&join, provider("b.example"))
        .expect("resync accepted");
    w.deliver(&outcome, &[ALICE, CAROL]);
    w.assert_in_sync(&[ALICE, BOB, CAROL]);
    let mut after = members(&mut w);
    let mut expected = before;
    after.sort();
    expected.sort();
    assert_eq!(after, expected, "Bob is in the group once, at his new leaf");
    // And he takes part as before.
    let outcome = w
        .hub
        .op(
            &w.bob.send_message(&g, b"back").unwrap(),
            provider("b.example"),
        )
        .expect("message after resync");
    assert_eq!(
        w.deliver(&outcome, &[ALICE, CAROL]),
        vec![Some(b"back".to_vec()), Some(b"back".to_vec())]
    );
}

/// A user of the hub's own provider joins with every client its provider's
/// directory has (protocol 6.3): some of them alone, or a client the
/// directory does not know, is refused and changes nothing.
fn own_users_are_added_with_every_client<B: Backend>() {
    let mut hub = B::new("a.example");
    let mut dan = client("mimi://a.example/d/dan/desk");
    let ask = DSRequest {
        version: 1,
        request_body: DSRequestBody::RequestGroupId,
        authentication_data: DSAuthData::Anonymous,
    };
    let DSResponseBody::GroupId(GroupIdField(g)) = hub.op(&ask, Origin::Local).unwrap().response
    else {
        panic!("no group id")
    };
    hub.op(
        &dan.create_group(&g, GroupKind::Regular).unwrap(),
        Origin::Local,
    )
    .expect("create");
    let alices: Vec<&str> = LOCAL_CLIENTS
        .iter()
        .copied()
        .filter(|c| c.contains("/alice/"))
        .collect();
    assert_eq!(alices.len(), 4);
    let kps = |ids: &[&str]| -> Vec<KeyPackage> {
        ids.iter()
            .map(|id| client(id).key_package(false, false).unwrap())
            .collect()
    };
    let before = hub.fingerprint(&g);
    let one = dan.add(&g, &kps(&alices[..1]), false).unwrap();
    dan.clear_pending_commit(&g).unwrap();
    let err = hub.op(&one, Origin::Local).unwrap_err();
    assert!(
        matches!(&err, HubError::NotAllowed(m) if m.contains("every client of")),
        "{err:?}"
    );
    let mut with_ghost = alices.clone();
    with_ghost.push("mimi://a.example/d/alice/ghost");
    let ghost = dan.add(&g, &kps(&with_ghost), false).unwrap();
    dan.clear_pending_commit(&g).unwrap();
    let err = hub.op(&ghost, Origin::Local).unwrap_err();
    assert!(matches!(err, HubError::UnknownClient(_)), "{err:?}");
    assert_eq!(hub.fingerprint(&g), before, "a refusal changed the group");
    // All four, and a guest's user beside them (no directory for it here).
    let mut all = kps(&alices);
    all.push(client(BOB).key_package(false, false).unwrap());
    let add = dan.add(&g, &all, false).unwrap();
    let outcome = hub.op(&add, Origin::Local).expect("every client of Alice");
    for id in alices {
        assert!(outcome.welcome_for(id).is_some(), "no Welcome for {id}");
    }
}

on_both_backends!(
    application_messages_fan_out_by_provider,
    connection_groups_connect_two_users,
    every_operation_in_one_conversation,
    non_member_cannot_post,
    forged_client_signature_is_refused,
    stale_commits_and_replays_name_the_current_epoch,
    concurrent_commits_for_one_epoch_exactly_one_wins,
    group_info_signature_must_match,
    self_remove_of_someone_else_is_refused,
    commit_must_include_pending_self_remove,
    private_message_for_a_past_epoch_is_refused,
    welcome_information_only_for_clients_added_then,
    groups_of_other_hubs_are_misrouted,
    a_client_resyncs_by_external_commit,
    own_users_are_added_with_every_client
);
