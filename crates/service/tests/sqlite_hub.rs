//! The hub through the SQLite store: real OpenMLS clients on three
//! providers, real database files, concurrent requests, a reopened store.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;

use mimid_client::MimiClient;
use mimid_core::{
    Context, DsEndpoint, Hub, HubConfig, HubError, HubGroup, Origin, SignatureCheck, Slot,
    verify_batch,
};
use mimid_service::{HubService, ServiceConfig, ServiceError, decode_recipients};
use mimid_store::{Durability, SqliteStore, Store};
use mimid_wire::*;

const ALICE: &str = "mimi://a.example/d/alice/laptop";
const BOB: &str = "mimi://b.example/d/bob/phone";
const CAROL: &str = "mimi://c.example/d/carol/tablet";

fn client(id: &str) -> MimiClient {
    MimiClient::new(id.parse().unwrap()).unwrap()
}

fn provider(d: &str) -> Origin {
    Origin::Provider(d.parse().unwrap())
}

async fn service(path: &Path, durability: Durability, cache: usize) -> HubService<SqliteStore> {
    service_with(
        path,
        durability,
        ServiceConfig {
            cache_groups: NonZeroUsize::new(cache).unwrap(),
            ..ServiceConfig::default()
        },
    )
    .await
}

async fn service_with(
    path: &Path,
    durability: Durability,
    config: ServiceConfig,
) -> HubService<SqliteStore> {
    let store = SqliteStore::open(path, durability)
        .await
        .expect("open store");
    // Alice is the hub's own client: its steps queue her messages.
    store
        .add_client(ALICE.into(), "mimi://a.example/d/alice".into(), 0)
        .await
        .expect("directory");
    let hub = Hub::new(HubConfig::new("a.example".parse().unwrap()));
    HubService::new(hub, store, config)
}

fn request_id() -> DSRequest {
    DSRequest {
        version: 1,
        request_body: DSRequestBody::RequestGroupId,
        authentication_data: DSAuthData::Anonymous,
    }
}

/// Creates a group for `alice` on the service.
async fn new_group(svc: &HubService<SqliteStore>, alice: &mut MimiClient) -> GroupId {
    let DSResponseBody::GroupId(GroupIdField(g)) = svc
        .handle(DsEndpoint::GroupOperation, &request_id(), Origin::Local)
        .await
        .expect("id")
    else {
        panic!("no id")
    };
    let create = alice.create_group(&g, GroupKind::Regular).unwrap();
    svc.handle(DsEndpoint::GroupOperation, &create, Origin::Local)
        .await
        .expect("create");
    g
}

/// The newest job's message for `destination`, with its recipients.
async fn last_job(
    store: &SqliteStore,
    destination: &str,
) -> (Vec<ClientId>, DeliverMessage, [u8; 16]) {
    let jobs = store.pending_jobs(destination, 1000).await.unwrap();
    let job = jobs.last().expect("a job");
    let body = DeliverMessage::decode_exact(&job.body, &Limits::default()).unwrap();
    (
        decode_recipients(&job.recipients).unwrap(),
        body,
        job.message_id,
    )
}

/// The newest message in Alice's queue on the hub's own provider.
async fn last_for_alice(store: &SqliteStore) -> DeliverableMessage {
    let queued = store.client_queue(ALICE, 0, 1000).await.unwrap();
    let last = queued.last().expect("a message for Alice");
    DeliverableMessage::from_bytes(&last.message).unwrap()
}

struct Conversation {
    group_id: GroupId,
    alice: MimiClient,
    bob: MimiClient,
    carol: MimiClient,
    bob_kp: KeyPackage,
}

/// Alice creates a group and adds Bob and Carol, who join.
async fn conversation(svc: &HubService<SqliteStore>) -> Conversation {
    let mut alice = client(ALICE);
    let mut bob = client(BOB);
    let mut carol = client(CAROL);
    let g = new_group(svc, &mut alice).await;
    let bob_kp = bob.key_package(false, false).unwrap();
    let carol_kp = carol.key_package(false, false).unwrap();
    let add = alice
        .add(&g, &[bob_kp.clone(), carol_kp.clone()], false)
        .unwrap();
    svc.handle(DsEndpoint::GroupOperation, &add, Origin::Local)
        .await
        .expect("add");
    alice.merge_pending_commit(&g).unwrap();
    for (joiner, kp, domain) in [
        (&mut bob, &bob_kp, "b.example"),
        (&mut carol, &carol_kp, "c.example"),
    ] {
        let (recipients, welcome, _) = last_job(svc.store(), domain).await;
        assert_eq!(recipients, vec![joiner.id().clone()]);
        let welcome = WelcomeMessage::from_bytes(welcome.message.as_bytes()).unwrap();
        let ask = joiner.welcome_information_request(&g, 1, kp).unwrap();
        let DSResponseBody::WelcomeInfo(tree) = svc
            .handle(DsEndpoint::WelcomeInformation, &ask, provider(domain))
            .await
            .expect("welcome info")
        else {
            panic!()
        };
        joiner.join(&welcome, &tree).unwrap();
    }
    Conversation {
        group_id: g,
        alice,
        bob,
        carol,
        bob_kp,
    }
}

#[tokio::test]
async fn a_message_is_stored_once_and_queued_per_provider() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&dir.path().join("hub.db"), Durability::Process, 64).await;
    let mut c = conversation(&svc).await;
    svc.handle(
        DsEndpoint::GroupOperation,
        &c.alice.send_message(&c.group_id, b"hello").unwrap(),
        Origin::Local,
    )
    .await
    .expect("send");
    let (to_b, body_b, id_b) = last_job(svc.store(), "b.example").await;
    let (to_c, _, id_c) = last_job(svc.store(), "c.example").await;
    assert_eq!(id_b, id_c, "one stored message for both destinations");
    assert_eq!(
        (to_b, to_c),
        (vec![BOB.parse().unwrap()], vec![CAROL.parse().unwrap()])
    );
    assert_eq!(body_b.epoch, 1);
    let message = DeliverableMessage::from_bytes(body_b.message.as_bytes()).unwrap();
    assert_eq!(
        c.bob.process(&message).unwrap().as_deref(),
        Some(&b"hello"[..])
    );
}

#[tokio::test]
async fn concurrent_commits_for_one_epoch_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Arc::new(service(&dir.path().join("hub.db"), Durability::PowerLoss, 64).await);
    let mut c = conversation(&svc).await;
    let g = c.group_id.clone();
    let from_bob = c.bob.update(&g).unwrap();
    let from_carol = c.carol.update(&g).unwrap();
    let (s1, s2) = (svc.clone(), svc.clone());
    let a = tokio::spawn(async move {
        s1.handle(DsEndpoint::GroupOperation, &from_bob, provider("b.example"))
            .await
    });
    let b = tokio::spawn(async move {
        s2.handle(
            DsEndpoint::GroupOperation,
            &from_carol,
            provider("c.example"),
        )
        .await
    });
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let bob_won = match (&a, &b) {
        (Ok(_), Err(ServiceError::Hub(HubError::WrongEpoch { current: 2 }))) => true,
        (Err(ServiceError::Hub(HubError::WrongEpoch { current: 2 })), Ok(_)) => false,
        other => panic!("expected exactly one accepted commit: {other:?}"),
    };
    // Everyone applies the accepted commit and matches the hub.
    let (winner, loser, loser_domain) = if bob_won {
        (&mut c.bob, &mut c.carol, "c.example")
    } else {
        (&mut c.carol, &mut c.bob, "b.example")
    };
    winner.merge_pending_commit(&g).unwrap();
    loser.clear_pending_commit(&g).unwrap();
    let (_, commit, _) = last_job(svc.store(), loser_domain).await;
    loser.process(&commit.message).unwrap();
    let commit = last_for_alice(svc.store()).await;
    c.alice.process(&commit).unwrap();
    let hub = svc.group_epoch(&g).await.unwrap().expect("group");
    for member in [&c.alice, &c.bob, &c.carol] {
        assert_eq!(
            member.epoch_and_tree_hash(&g),
            Some(hub.clone()),
            "{} out of sync",
            member.id()
        );
    }
}

#[tokio::test]
async fn reopening_keeps_groups_epochs_joiner_state_and_jobs() {
    for durability in [Durability::Process, Durability::PowerLoss] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let svc = service(&path, durability, 64).await;
        let mut c = conversation(&svc).await;
        let g = c.group_id.clone();
        svc.handle(
            DsEndpoint::GroupOperation,
            &c.bob.update(&g).unwrap(),
            provider("b.example"),
        )
        .await
        .unwrap();
        c.bob.merge_pending_commit(&g).unwrap();
        let before = svc.group_epoch(&g).await.unwrap().expect("group");
        let destinations = ["b.example", "c.example"];
        let mut pending = Vec::new();
        for d in destinations {
            pending.push(svc.store().pending_jobs(d, 1000).await.unwrap());
        }
        assert!(pending.iter().all(|p| !p.is_empty()));
        // The hub's own provider has no jobs: Alice's queue has the messages.
        assert!(
            svc.store()
                .pending_jobs("a.example", 1000)
                .await
                .unwrap()
                .is_empty()
        );
        let alices = svc.store().client_queue(ALICE, 0, 1000).await.unwrap();
        assert!(!alices.is_empty());
        svc.into_store().close().await.expect("close");

        let svc = service(&path, durability, 64).await;
        assert_eq!(svc.cached_groups(), 0, "a new process starts cold");
        assert_eq!(svc.group_epoch(&g).await.unwrap(), Some(before.clone()));
        assert_eq!(before.0, 2);
        for (d, p) in destinations.iter().zip(&pending) {
            assert_eq!(
                &svc.store().pending_jobs(d, 1000).await.unwrap(),
                p,
                "jobs for {d}"
            );
        }
        assert_eq!(
            svc.store().client_queue(ALICE, 0, 1000).await.unwrap(),
            alices
        );
        // The joiner state of epoch 1 survived: Bob can still fetch it.
        let ask = c.bob.welcome_information_request(&g, 1, &c.bob_kp).unwrap();
        let answer = svc
            .handle(DsEndpoint::WelcomeInformation, &ask, provider("b.example"))
            .await
            .unwrap();
        assert!(matches!(answer, DSResponseBody::WelcomeInfo(_)));
        // And the group goes on: a message from the old epoch is refused
        // with the current one, Alice catches up and is accepted.
        let stale = c.carol.send_message(&g, b"late").unwrap();
        let err = svc
            .handle(DsEndpoint::GroupOperation, &stale, provider("c.example"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ServiceError::Hub(HubError::WrongEpoch { current: 2 })),
            "{err:?}"
        );
        let commit = last_for_alice(svc.store()).await;
        c.alice.process(&commit).unwrap();
        svc.handle(
            DsEndpoint::GroupOperation,
            &c.alice.send_message(&g, b"hi").unwrap(),
            Origin::Local,
        )
        .await
        .expect("message after reopen");
    }
}

#[tokio::test]
async fn memory_holds_a_bounded_number_of_groups() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&dir.path().join("hub.db"), Durability::Process, 2).await;
    let mut alice = client(ALICE);
    let mut groups = Vec::new();
    for _ in 0..5 {
        groups.push(new_group(&svc, &mut alice).await);
    }
    assert!(svc.cached_groups() <= 2);
    assert_eq!(svc.store().group_count().await.unwrap(), 5);
    // Every group still works when it has to be loaded from the store.
    for g in &groups {
        let bob = client(BOB);
        let kp = bob.key_package(false, false).unwrap();
        svc.handle(
            DsEndpoint::GroupOperation,
            &alice.add(g, &[kp], false).unwrap(),
            Origin::Local,
        )
        .await
        .expect("add after reload");
        alice.merge_pending_commit(g).unwrap();
        assert_eq!(svc.group_epoch(g).await.unwrap().map(|(e, _)| e), Some(1));
        assert!(svc.cached_groups() <= 2);
    }
}

/// Flips one bit of a request's client signature.
fn forge(mut request: DSRequest) -> DSRequest {
    if let DSAuthData::ClientSignature(sig) = &mut request.authentication_data {
        sig.signature.0[0] ^= 1;
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_signatures_accept_the_valid_and_refuse_the_forged() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Arc::new(service(&dir.path().join("hub.db"), Durability::Process, 64).await);
    let mut c = conversation(&svc).await;
    let g = c.group_id.clone();
    // A sender's first accepted request teaches the service its key; from
    // then on its signatures are checked in batches before the step.
    for (sender, origin) in [
        (&mut c.alice, Origin::Local),
        (&mut c.bob, provider("b.example")),
    ] {
        let first = sender.send_message(&g, b"first").unwrap();
        svc.handle(DsEndpoint::GroupOperation, &first, origin)
            .await
            .expect("first message");
    }
    let queued = svc
        .store()
        .pending_jobs("c.example", 1000)
        .await
        .unwrap()
        .len();
    let (batches_before, checked_before) = svc.signature_batches();
    let mut requests = Vec::new();
    for i in 0..24 {
        let a = c
            .alice
            .send_message(&g, format!("a{i}").as_bytes())
            .unwrap();
        let b = c.bob.send_message(&g, format!("b{i}").as_bytes()).unwrap();
        requests.push((a, Origin::Local, true));
        requests.push((b, provider("b.example"), true));
        if i % 3 == 0 {
            // A flipped bit, and a valid signature over another message.
            let forged = forge(c.alice.send_message(&g, b"forged").unwrap());
            let mut swapped = c.bob.send_message(&g, b"swapped").unwrap();
            swapped.authentication_data =
                requests[requests.len() - 1].0.authentication_data.clone();
            requests.push((forged, Origin::Local, false));
            requests.push((swapped, provider("b.example"), false));
        }
    }
    let message_of = |request: &DSRequest| match &request.request_body {
        DSRequestBody::SendMessage(m) => m.application_message.as_bytes().to_vec(),
        _ => unreachable!(),
    };
    let mut expected: Vec<Vec<u8>> = requests
        .iter()
        .filter(|(_, _, valid)| *valid)
        .map(|(request, _, _)| message_of(request))
        .collect();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|(request, origin, valid)| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let result = svc
                    .handle(DsEndpoint::GroupOperation, &request, origin)
                    .await;
                (valid, result)
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        match task.await.unwrap() {
            (true, Ok(_)) => accepted += 1,
            (false, Err(ServiceError::Hub(HubError::ClientSignature(_)))) => {}
            other => panic!("wrong outcome: {other:?}"),
        }
    }
    assert_eq!(accepted, 48);
    let (batches, checked) = svc.signature_batches();
    let (batches, checked) = (batches - batches_before, checked - checked_before);
    assert_eq!(
        checked, 64,
        "every signature of a known signer is checked ahead"
    );
    assert!(batches >= 1 && batches <= checked);
    // Exactly the valid messages are queued, byte for byte.
    let jobs = svc.store().pending_jobs("c.example", 1000).await.unwrap();
    let mut queued_now: Vec<Vec<u8>> = jobs[queued..]
        .iter()
        .map(|job| {
            let body = DeliverMessage::decode_exact(&job.body, &Limits::default()).unwrap();
            body.message.as_bytes().to_vec()
        })
        .collect();
    expected.sort();
    queued_now.sort();
    assert_eq!(queued_now, expected);
}

#[tokio::test]
async fn a_batch_result_vouches_only_for_its_own_request_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&dir.path().join("hub.db"), Durability::Process, 64).await;
    let mut c = conversation(&svc).await;
    let g = c.group_id.clone();
    let stored = svc
        .store()
        .load_group(&g.to_mls_bytes())
        .await
        .unwrap()
        .expect("group");
    let group = HubGroup::from_bytes(&stored.state).unwrap();
    let alice_index = c.alice.leaf_index(&g).unwrap();
    let bob_index = c.bob.leaf_index(&g).unwrap();
    let alice_key = group.signer_key(alice_index).unwrap().unwrap();
    let mut slot = Slot::Active(Box::new(group));
    // A context carrying the batch result for `request` checked with `key`.
    let checked_ahead = |request: &DSRequest, key| {
        let check = SignatureCheck::new(request, key).expect("small request");
        let verified = verify_batch(vec![check]).pop().unwrap();
        assert!(
            verified.is_some(),
            "valid under the key it was checked with"
        );
        Context {
            origin: Origin::Local,
            now: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
            random: [7; 16],
            verified,
            directory: None,
        }
    };
    let hub = svc.hub();
    // Another message carrying the checked one's signature.
    let checked = c.alice.send_message(&g, b"checked").unwrap();
    let mut other = c.alice.send_message(&g, b"other").unwrap();
    other.authentication_data = checked.authentication_data.clone();
    let ctx = checked_ahead(&checked, &alice_key);
    assert!(matches!(
        hub.handle(DsEndpoint::GroupOperation, &other, &mut slot, None, &ctx),
        Err(HubError::ClientSignature(_))
    ));
    assert!(
        hub.handle(DsEndpoint::GroupOperation, &checked, &mut slot, None, &ctx)
            .is_ok()
    );
    // A request claiming Bob's leaf, signed with Alice's key: the batch
    // finds it valid under the (stale) key it was given, the step does not.
    let DSRequestBody::SendMessage(body) = c.bob.send_message(&g, b"bob").unwrap().request_body
    else {
        panic!()
    };
    let claimed = c
        .alice
        .sign_request(DSRequestBody::SendMessage(body), bob_index)
        .unwrap();
    let ctx = checked_ahead(&claimed, &alice_key);
    assert!(matches!(
        hub.handle(DsEndpoint::GroupOperation, &claimed, &mut slot, None, &ctx),
        Err(HubError::ClientSignature(_))
    ));
}

#[tokio::test]
async fn upkeep_drops_expired_reservations_and_old_snapshots_only() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(&dir.path().join("hub.db"), Durability::Process, 64).await;
    let c = conversation(&svc).await;
    let g = c.group_id.to_mls_bytes();
    let DSResponseBody::GroupId(GroupIdField(reserved)) = svc
        .handle(DsEndpoint::GroupOperation, &request_id(), Origin::Local)
        .await
        .unwrap()
    else {
        panic!("no id")
    };
    let reserved = reserved.to_mls_bytes();
    let config = svc.hub().config().clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    svc.maintain(now).await.unwrap();
    assert!(svc.store().load_group(&reserved).await.unwrap().is_some());
    assert!(svc.store().load_snapshot(&g, 1).await.unwrap().is_some());

    // An hour on, the reservation has expired; the snapshot is kept.
    svc.maintain(now + config.reservation_lifetime + 1)
        .await
        .unwrap();
    assert_eq!(svc.store().load_group(&reserved).await.unwrap(), None);
    assert!(svc.store().load_snapshot(&g, 1).await.unwrap().is_some());

    // After the retention, the snapshot goes; the group stays.
    svc.maintain(now + config.welcome_retention + 1)
        .await
        .unwrap();
    assert_eq!(svc.store().load_snapshot(&g, 1).await.unwrap(), None);
    assert_eq!(
        svc.group_epoch(&c.group_id).await.unwrap().map(|e| e.0),
        Some(1)
    );
}

/// Distinct messages the pending jobs of every provider refer to.
async fn referenced_messages(store: &SqliteStore) -> u64 {
    let mut ids = std::collections::BTreeSet::new();
    for destination in ["a.example", "b.example", "c.example"] {
        for job in store.pending_jobs(destination, 1000).await.unwrap() {
            ids.insert(job.message_id);
        }
    }
    ids.len() as u64
}

/// With every commit stored ahead of its step: an accepted commit is one
/// stored message that its jobs refer to; a refused one leaves nothing; a
/// message whose step never came is dropped by the upkeep, late enough.
#[tokio::test]
async fn commits_stored_ahead_are_delivered_once_or_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service_with(
        &dir.path().join("hub.db"),
        Durability::PowerLoss,
        ServiceConfig {
            store_ahead_from: 0,
            ..ServiceConfig::default()
        },
    )
    .await;
    let mut c = conversation(&svc).await;
    let g = c.group_id.clone();
    let store = svc.store();
    assert_eq!(
        store.message_count().await.unwrap(),
        referenced_messages(store).await,
        "every stored message is delivered"
    );

    let update = c.alice.update(&g).unwrap();
    let DSRequestBody::UpdateClient(u) = &update.request_body else {
        panic!("not an update")
    };
    let commit = u.group_update.commit.as_bytes().to_vec();
    svc.handle(DsEndpoint::GroupOperation, &update, Origin::Local)
        .await
        .expect("update");
    c.alice.merge_pending_commit(&g).unwrap();
    let (_, to_bob, id_b) = last_job(store, "b.example").await;
    let (_, _, id_c) = last_job(store, "c.example").await;
    assert_eq!(id_b, id_c, "one stored message for both destinations");
    assert_eq!(to_bob.message.as_bytes(), &commit[..]);
    assert_eq!(to_bob.epoch, 1);
    let stored = store.message_count().await.unwrap();
    assert_eq!(stored, referenced_messages(store).await);

    // Refused commits: one for this epoch with a forged signature, then a
    // stale one.
    let message = DeliverableMessage::from_bytes(to_bob.message.as_bytes()).unwrap();
    c.bob.process(&message).unwrap();
    let forged = forge(c.bob.update(&g).unwrap());
    let refused = svc
        .handle(DsEndpoint::GroupOperation, &forged, provider("b.example"))
        .await;
    assert!(matches!(
        refused,
        Err(ServiceError::Hub(HubError::ClientSignature(_)))
    ));
    let stale = c.carol.update(&g).unwrap();
    let refused = svc
        .handle(DsEndpoint::GroupOperation, &stale, provider("c.example"))
        .await;
    assert!(matches!(
        refused,
        Err(ServiceError::Hub(HubError::WrongEpoch { current: 2 }))
    ));
    // Upkeep is queued after the discards, so it sees them applied.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    svc.maintain(now).await.unwrap();
    assert_eq!(store.message_count().await.unwrap(), stored);

    // A message stored ahead whose step never came (the process stopped).
    let version = store
        .load_group(&g.to_mls_bytes())
        .await
        .unwrap()
        .unwrap()
        .version;
    store
        .commit(mimid_store::Step {
            group_id: g.to_mls_bytes(),
            expected_version: Some(version),
            write: mimid_store::GroupWrite::Keep,
            snapshot: None,
            prune_snapshots_before: None,
            messages: vec![mimid_store::NewMessage {
                message_id: [7; 16],
                body: b"orphan".to_vec(),
            }],
            jobs: Vec::new(),
            local: Vec::new(),
            remember: None,
            forget_digests: None,
            now,
        })
        .await
        .unwrap();
    assert_eq!(store.message_count().await.unwrap(), stored + 1);
    svc.maintain(now + 60).await.unwrap();
    assert_eq!(store.message_count().await.unwrap(), stored + 1);
    svc.maintain(now + 3600).await.unwrap();
    assert_eq!(store.message_count().await.unwrap(), stored);
    assert_eq!(referenced_messages(store).await, stored);
}

/// Two processes on one database file: a process whose cached group the
/// other has committed since never answers from the replaced state, not
/// in a refusal, not in a read-only answer.
#[tokio::test]
async fn a_process_never_answers_from_a_state_another_has_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let one = service(&path, Durability::Process, 16).await;
    let two = service(&path, Durability::Process, 16).await;
    let mut c = conversation(&one).await;
    let g = c.group_id.clone();
    let eci = DSRequest {
        version: 1,
        request_body: DSRequestBody::ExternalCommitInformation(ExternalCommitInformationRequest {
            group_id: GroupIdField(g.clone()),
            requester: "mimi://b.example/d/bob/laptop".parse().unwrap(),
        }),
        authentication_data: DSAuthData::Anonymous,
    };
    let group_info_epoch = |answer: DSResponseBody| {
        let DSResponseBody::ExternalCommitInfo(info) = answer else {
            panic!("no external commit info")
        };
        let openmls::prelude::MlsMessageBodyIn::GroupInfo(gi) = info.group_info.parsed().clone()
        else {
            panic!("not a GroupInfo")
        };
        gi.group_context().epoch().as_u64()
    };
    // `two` caches the group at epoch 1.
    two.handle(
        DsEndpoint::GroupOperation,
        &c.alice.send_message(&g, b"hi").unwrap(),
        Origin::Local,
    )
    .await
    .expect("message at epoch 1");
    assert_eq!(two.cached_groups(), 1);

    // `one` commits epoch 2: `two` answers a message of epoch 2 from it
    // (not `wrong_epoch` with epoch 1).
    one.handle(
        DsEndpoint::GroupOperation,
        &c.bob.update(&g).unwrap(),
        provider("b.example"),
    )
    .await
    .expect("update");
    c.bob.merge_pending_commit(&g).unwrap();
    two.handle(
        DsEndpoint::GroupOperation,
        &c.bob.send_message(&g, b"after").unwrap(),
        provider("b.example"),
    )
    .await
    .expect("answered from the stored state");

    // `one` commits epoch 3: `two` serves the GroupInfo of epoch 3.
    one.handle(
        DsEndpoint::GroupOperation,
        &c.bob.update(&g).unwrap(),
        provider("b.example"),
    )
    .await
    .expect("update");
    c.bob.merge_pending_commit(&g).unwrap();
    let answer = two
        .handle(
            DsEndpoint::ExternalCommitInformation,
            &eci,
            provider("b.example"),
        )
        .await
        .expect("external commit info");
    assert_eq!(group_info_epoch(answer), 3);

    // A refusal of `two`'s, from a cached state that is current, keeps the
    // group cached; one of an absurd epoch too (no store failure).
    let ask = c
        .bob
        .welcome_information_request(&g, u64::MAX, &c.bob_kp)
        .unwrap();
    let err = two
        .handle(DsEndpoint::WelcomeInformation, &ask, provider("b.example"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ServiceError::Hub(HubError::NoWelcomeInformation(u64::MAX))
    ));
    assert_eq!(two.cached_groups(), 1);
}

/// A large commit is stored ahead only once its sender is authenticated:
/// forged ones, or ones from a provider that may not act for the signer,
/// commit no transaction at all (SQLite's `data_version`, seen from a
/// connection of its own, counts the commits of every other connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_commit_is_never_stored_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let svc = service_with(
        &path,
        Durability::PowerLoss,
        ServiceConfig {
            store_ahead_from: 0,
            ..ServiceConfig::default()
        },
    )
    .await;
    let mut c = conversation(&svc).await;
    let g = c.group_id.clone();
    // A commit large enough for the core's parallel signature check.
    let joiners: Vec<_> = (0..80)
        .map(|i| {
            client(&format!("mimi://b.example/d/user{i}/phone"))
                .key_package(false, false)
                .unwrap()
        })
        .collect();
    let large = c.bob.add(&g, &joiners, false).unwrap();
    c.bob.clear_pending_commit(&g).unwrap();
    let DSRequestBody::AddUsers(add) = &large.request_body else {
        panic!("not add_users")
    };
    assert!(add.group_update.commit.as_bytes().len() >= 16 * 1024);
    let small = c.bob.update(&g).unwrap();
    c.bob.clear_pending_commit(&g).unwrap();

    let watcher = rusqlite::Connection::open(&path).unwrap();
    let commits = || {
        watcher
            .query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    let before = commits();
    for request in [&large, &small] {
        let err = svc
            .handle(
                DsEndpoint::GroupOperation,
                &forge(request.clone()),
                provider("b.example"),
            )
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            ServiceError::Hub(HubError::ClientSignature(_))
        ));
        let err = svc
            .handle(DsEndpoint::GroupOperation, request, provider("c.example"))
            .await
            .unwrap_err();
        assert!(matches!(err, ServiceError::Hub(HubError::NotAllowed(_))));
    }
    assert_eq!(commits(), before, "a refused commit was written");
    // The sender's own provider: stored, once.
    svc.handle(DsEndpoint::GroupOperation, &large, provider("b.example"))
        .await
        .expect("add_users");
    assert_ne!(commits(), before);
    let store = svc.store();
    assert_eq!(
        store.message_count().await.unwrap(),
        referenced_messages(store).await
    );
}

/// Remembered application messages, in the hub's own database.
fn digest_rows(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM message_digests", [], |r| r.get(0))
        .unwrap()
}

/// What a message of Bob's adds to: Carol's jobs, Alice's queue, stored
/// messages.
async fn fanned_out(store: &SqliteStore) -> (usize, usize, u64) {
    (
        store.pending_jobs("c.example", 1000).await.unwrap().len(),
        store.client_queue(ALICE, 0, 1000).await.unwrap().len(),
        store.message_count().await.unwrap(),
    )
}

/// The value of `mimid_repeated_messages_total` in this process's
/// Prometheus rendering (the recorder installed on first use).
fn repeats_counted() -> f64 {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    let handle = HANDLE.get_or_init(|| {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("the only recorder of this test binary");
        handle
    });
    handle
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(mimid_service::REPEATED)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The same `SendMessageRequest` again (a relay retrying after a lost
/// answer, or a replay under a fresh provider signature), one after the
/// other or two at once: answered `ok` as the first, fanned out once. With
/// one past epoch accepted, a commit keeps the message remembered (and
/// its repeat answered), the next forgets it (and its repeat is refused
/// as of a past epoch, like any message of that epoch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_message_is_answered_as_the_first_and_fanned_out_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let store = SqliteStore::open(&path, Durability::Process)
        .await
        .expect("open store");
    store
        .add_client(ALICE.into(), "mimi://a.example/d/alice".into(), 0)
        .await
        .expect("directory");
    let mut config = HubConfig::new("a.example".parse().unwrap());
    config.app_message_past_epochs = 1;
    let svc = Arc::new(HubService::new(
        Hub::new(config),
        store,
        ServiceConfig::default(),
    ));
    let mut c = conversation(&svc).await;
    let g = c.group_id.clone();
    let from_b = provider("b.example");
    let before = fanned_out(svc.store()).await;
    let repeats_before = repeats_counted();

    let hello = c.bob.send_message(&g, b"hello").unwrap();
    for _ in 0..2 {
        let answer = svc
            .handle(DsEndpoint::GroupOperation, &hello, from_b.clone())
            .await
            .expect("send");
        assert_eq!(answer, DSResponseBody::Ok);
    }
    let together: Vec<_> = (0..2)
        .map(|_| {
            let (svc, hello, from_b) = (svc.clone(), hello.clone(), from_b.clone());
            tokio::spawn(
                async move { svc.handle(DsEndpoint::GroupOperation, &hello, from_b).await },
            )
        })
        .collect();
    for answer in together {
        assert_eq!(answer.await.unwrap().expect("send"), DSResponseBody::Ok);
    }
    let once = fanned_out(svc.store()).await;
    assert_eq!(once, (before.0 + 1, before.1 + 1, before.2 + 1));
    assert_eq!(digest_rows(&path), 1);
    // Three repeats, each counted for the operator.
    assert_eq!(repeats_counted() - repeats_before, 3.0);

    // Another message goes through.
    let again = c.bob.send_message(&g, b"again").unwrap();
    svc.handle(DsEndpoint::GroupOperation, &again, from_b.clone())
        .await
        .expect("send");
    assert_eq!(fanned_out(svc.store()).await.0, before.0 + 2);
    assert_eq!(digest_rows(&path), 2);
    let jobs = svc.store().pending_jobs("c.example", 1000).await.unwrap();
    let mut texts = Vec::new();
    for job in &jobs[before.0..] {
        let body = DeliverMessage::decode_exact(&job.body, &Limits::default()).unwrap();
        texts.push(c.carol.process(&body.message).unwrap());
    }
    assert_eq!(texts, [Some(b"hello".to_vec()), Some(b"again".to_vec())]);

    // Epoch 2: messages of epoch 1 are still accepted, and remembered.
    let bob_jobs = svc
        .store()
        .pending_jobs("b.example", 1000)
        .await
        .unwrap()
        .len();
    let commit = |alice: &mut MimiClient| alice.update(&g).unwrap();
    let update = commit(&mut c.alice);
    svc.handle(DsEndpoint::GroupOperation, &update, Origin::Local)
        .await
        .expect("commit");
    c.alice.merge_pending_commit(&g).unwrap();
    assert_eq!(digest_rows(&path), 2);
    let at_epoch_2 = fanned_out(svc.store()).await;
    let answer = svc
        .handle(DsEndpoint::GroupOperation, &hello, from_b.clone())
        .await
        .expect("a repeat of epoch 1");
    assert_eq!(answer, DSResponseBody::Ok);
    assert_eq!(fanned_out(svc.store()).await, at_epoch_2);
    assert_eq!(repeats_counted() - repeats_before, 4.0);

    // Epoch 3: epoch 1 is refused, and forgotten.
    let update = commit(&mut c.alice);
    svc.handle(DsEndpoint::GroupOperation, &update, Origin::Local)
        .await
        .expect("commit");
    c.alice.merge_pending_commit(&g).unwrap();
    assert_eq!(digest_rows(&path), 0);
    let err = svc
        .handle(DsEndpoint::GroupOperation, &hello, from_b.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::Hub(HubError::WrongEpoch { current: 3 })),
        "{err:?}"
    );
    // A message of Bob's at epoch 3 (after the two commits) is remembered.
    let commits = svc.store().pending_jobs("b.example", 1000).await.unwrap();
    for job in &commits[bob_jobs..] {
        let body = DeliverMessage::decode_exact(&job.body, &Limits::default()).unwrap();
        c.bob.process(&body.message).unwrap();
    }
    assert_eq!(c.bob.epoch_and_tree_hash(&g).map(|e| e.0), Some(3));
    let later = c.bob.send_message(&g, b"later").unwrap();
    svc.handle(DsEndpoint::GroupOperation, &later, from_b)
        .await
        .expect("send");
    assert_eq!(digest_rows(&path), 1);
}
