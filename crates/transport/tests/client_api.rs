//! The client API over real HTTPS (`docs/client-api.md`; three providers on
//! loopback): clients enrol with one-time secrets, publish KeyPackages and
//! read their queues with the SDK (`mimid_client::api`); a client cannot
//! act as another or read another's queue, a replayed request is refused,
//! and a client that reconnects gets exactly what it had not acknowledged.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use mimid_client::MimiClient;
use mimid_client::api::{ApiError, Decision, ProviderApi, SigningKey};
use mimid_store::{KeyPackageKind, Store};
use mimid_transport::auth::AuthMode;
use mimid_transport::loopback::Loopback;
use mimid_transport::{Clock as _, SystemClock};
use mimid_wire::client_api::{
    CLIENT_HEADER, NONCE_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, client_request_content,
};
use mimid_wire::{
    DSAuthData, DSRequest, DSRequestBody, DSResponseBody, ExternalCommitInformationRequest,
    GroupIdField, GroupKind, UserId,
};
use sha2::{Digest, Sha256};

const ALICE: &str = "mimi://a.example/u/alice";
const PHONE: &str = "mimi://a.example/d/alice/phone";
const LAPTOP: &str = "mimi://a.example/d/alice/laptop";

fn http(f: &Loopback) -> reqwest::Client {
    f.client_api_http().unwrap()
}

fn base(f: &Loopback, domain: &str) -> String {
    f.client_api_base(domain)
}

/// Records a one-time secret for a client of `user`.
async fn invite(f: &Loopback, user: &str, secret: &str) {
    let user: UserId = user.parse().unwrap();
    let store = f.node(user.domain().as_str()).unwrap().service.store();
    let now = SystemClock.now();
    store
        .add_enrolment(
            Sha256::digest(secret.as_bytes()).into(),
            user.to_string(),
            now + 3600,
            now,
        )
        .await
        .unwrap();
}

/// Enrols `device` of `user` with `secret`.
async fn enrol_as(
    f: &Loopback,
    user: &str,
    secret: &str,
    device: &str,
) -> Result<ProviderApi, ApiError> {
    let user: UserId = user.parse().unwrap();
    let domain = user.domain();
    ProviderApi::enrol(
        http(f),
        &base(f, domain.as_str()),
        domain.as_str(),
        secret,
        &user,
        device,
        SigningKey::generate().unwrap(),
    )
    .await
}

async fn enrol(f: &Loopback, secret: &str, device: &str) -> Result<ProviderApi, ApiError> {
    enrol_as(f, ALICE, secret, device).await
}

/// A new user with a client enrolled and its MLS client.
async fn user_with_client(f: &Loopback, user: &str, device: &str) -> (ProviderApi, MimiClient) {
    let parsed: UserId = user.parse().unwrap();
    let store = f.node(parsed.domain().as_str()).unwrap().service.store();
    // The user may exist already (another device).
    let _ = store.add_user(user.into(), SystemClock.now()).await;
    let secret = format!("secret of {user} {device}");
    invite(f, user, &secret).await;
    let api = enrol_as(f, user, &secret, device).await.unwrap();
    let mls = MimiClient::new(api.client_id().clone()).unwrap();
    (api, mls)
}

fn refused(result: Result<impl std::fmt::Debug, ApiError>) -> (u16, String) {
    match result {
        Err(ApiError::Refused { status, code, .. }) => (status, code),
        other => panic!("not refused: {other:?}"),
    }
}

/// A signed queue read built by hand: `as_client` in the header, signed
/// with `key`, with the nonce given.
async fn raw_read(
    f: &Loopback,
    as_client: &str,
    key: &ed25519_dalek::SigningKey,
    nonce: [u8; 16],
) -> u16 {
    let path = "/client/v1/queue?after=0&wait=0";
    let timestamp = SystemClock.now();
    let content = client_request_content(
        "a.example",
        as_client,
        "GET",
        path,
        timestamp,
        &nonce,
        &Sha256::digest(b"").into(),
    );
    http(f)
        .get(format!("{}{path}", base(f, "a.example")))
        .header(CLIENT_HEADER, as_client)
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(NONCE_HEADER, hex::encode(nonce))
        .header(
            SIGNATURE_HEADER,
            URL_SAFE_NO_PAD.encode(key.sign(&content).to_bytes()),
        )
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_enrol_publish_and_read_only_their_own_queues() {
    let dir = tempfile::tempdir().unwrap();
    let f = Loopback::start(
        dir.path(),
        &["a.example", "b.example", "c.example"],
        AuthMode::Signature,
    )
    .await
    .unwrap();
    let a = f.node("a.example").unwrap();
    let store = a.service.store();
    store
        .add_user(ALICE.into(), SystemClock.now())
        .await
        .unwrap();

    // Enrolment: a secret is good once, for its user only.
    invite(&f, ALICE, "first secret").await;
    invite(&f, ALICE, "second secret").await;
    let phone_key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let phone_api = ProviderApi::enrol(
        http(&f),
        &base(&f, "a.example"),
        "a.example",
        "first secret",
        &ALICE.parse::<UserId>().unwrap(),
        "phone",
        signing_key(&phone_key),
    )
    .await
    .unwrap();
    assert_eq!(phone_api.client_id().as_str(), PHONE);
    assert_eq!(
        refused(enrol(&f, "first secret", "tablet").await),
        (401, "provider_authentication_failed".into())
    );
    assert_eq!(refused(enrol(&f, "no such secret", "tablet").await).0, 401);
    // The device name is taken: the secret is not spent on it.
    assert_eq!(refused(enrol(&f, "second secret", "phone").await).0, 401);
    let laptop_key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let laptop_api = ProviderApi::enrol(
        http(&f),
        &base(&f, "a.example"),
        "a.example",
        "second secret",
        &ALICE.parse::<UserId>().unwrap(),
        "laptop",
        signing_key(&laptop_key),
    )
    .await
    .unwrap();
    assert_eq!(laptop_api.client_id().as_str(), LAPTOP);

    // KeyPackages: a client publishes its own, not another's.
    let phone = MimiClient::new(PHONE.parse().unwrap()).unwrap();
    let mut laptop = MimiClient::new(LAPTOP.parse().unwrap()).unwrap();
    phone_api
        .publish_key_packages(&[
            phone.key_package(false, false).unwrap(),
            phone.key_package(false, true).unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(
        refused(
            phone_api
                .publish_key_packages(&[laptop.key_package(false, false).unwrap()])
                .await
        ),
        (403, "operation_not_allowed".into())
    );
    let stock = store
        .key_package_stock(PHONE, KeyPackageKind::Regular, SystemClock.now())
        .await
        .unwrap();
    assert_eq!((stock.one_time, stock.last_resort), (1, true));

    // A group on a.example: the laptop creates it and adds the phone; the
    // phone's queue gets the Welcome and three messages.
    let DSResponseBody::GroupId(GroupIdField(group)) =
        laptop_api.submit(&request_group_id()).await.unwrap()
    else {
        panic!("no group id")
    };
    let create = laptop.create_group(&group, GroupKind::Regular).unwrap();
    laptop_api.submit(&create).await.unwrap();
    let add = laptop
        .add(&group, &[phone.key_package(false, false).unwrap()], true)
        .unwrap();
    laptop_api.submit(&add).await.unwrap();
    laptop.merge_pending_commit(&group).unwrap();
    let mut sent = Vec::new();
    for i in 0..3 {
        let request = laptop
            .send_message(&group, format!("hi {i}").as_bytes())
            .unwrap();
        let DSRequestBody::SendMessage(m) = &request.request_body else {
            unreachable!()
        };
        sent.push(m.application_message.as_bytes().to_vec());
        laptop_api.submit(&request).await.unwrap();
    }
    let read = phone_api.queue(0, 0).await.unwrap();
    // One regular one-time package left, and no connection package at all:
    // both are low.
    assert!(read.low_regular_key_packages && read.low_connection_key_packages);
    let queued = read.messages;
    assert_eq!(queued.len(), 4);
    let messages: Vec<Vec<u8>> = queued[1..].iter().map(|q| q.message.clone()).collect();
    assert_eq!(messages, sent);
    assert_eq!(queued[0].group_id, group.to_mls_bytes());
    // The laptop sent them: its own queue is empty. It cannot read the
    // phone's: a request naming the phone, signed with the laptop's key,
    // is refused, as is a replay of the laptop's own request.
    assert!(laptop_api.queue(0, 0).await.unwrap().messages.is_empty());
    assert_eq!(raw_read(&f, PHONE, &laptop_key, [1; 16]).await, 401);
    assert_eq!(raw_read(&f, LAPTOP, &laptop_key, [2; 16]).await, 200);
    assert_eq!(raw_read(&f, LAPTOP, &laptop_key, [2; 16]).await, 401);
    // Nor acknowledge for it: the phone's queue is as it was.
    assert_eq!(phone_api.queue(0, 0).await.unwrap().messages.len(), 4);

    // The phone acknowledges the Welcome and the first message, then
    // reconnects (a new connection, its key kept): it gets exactly the rest.
    phone_api.acknowledge(queued[1].seq).await.unwrap();
    drop(phone_api);
    let phone_api = ProviderApi::resume(
        http(&f),
        &base(&f, "a.example"),
        "a.example",
        PHONE.parse().unwrap(),
        signing_key(&phone_key),
    );
    let again = phone_api.queue(0, 0).await.unwrap().messages;
    assert_eq!(again, queued[2..]);
    // Five more regular packages: that kind is no longer low.
    let more: Vec<_> = (0..5)
        .map(|_| phone.key_package(false, false).unwrap())
        .collect();
    phone_api.publish_key_packages(&more).await.unwrap();
    let read = phone_api.queue(0, 0).await.unwrap();
    assert!(!read.low_regular_key_packages && read.low_connection_key_packages);

    // A waiting read hears of a message as it arrives.
    let phone_api = Arc::new(phone_api);
    let last = again.last().unwrap().seq;
    let waiting = {
        let phone_api = phone_api.clone();
        tokio::spawn(async move { phone_api.queue(last, 20).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let request = laptop.send_message(&group, b"late").unwrap();
    laptop_api.submit(&request).await.unwrap();
    let heard = waiting.await.unwrap().unwrap().messages;
    assert_eq!(heard.len(), 1);
    let DSRequestBody::SendMessage(m) = &request.request_body else {
        unreachable!()
    };
    assert_eq!(heard[0].message, m.application_message.as_bytes());
}

/// The SDK's key from raw bytes (so the test can also sign by hand).
fn request_group_id() -> DSRequest {
    DSRequest {
        version: 1,
        request_body: DSRequestBody::RequestGroupId,
        authentication_data: DSAuthData::Anonymous,
    }
}

fn signing_key(key: &ed25519_dalek::SigningKey) -> SigningKey {
    SigningKey::from_bytes(&key.to_bytes())
}

fn refused_code<T: std::fmt::Debug>(result: Result<T, ApiError>) -> String {
    refused(result).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_connect_across_providers_and_a_blocked_requester_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = Loopback::start(
        dir.path(),
        &["a.example", "b.example", "c.example"],
        AuthMode::Signature,
    )
    .await
    .unwrap();
    let (alice_api, mut alice) = user_with_client(&f, ALICE, "phone").await;
    let (mallory_api, mut mallory) =
        user_with_client(&f, "mimi://a.example/u/mallory", "phone").await;
    let bob = "mimi://b.example/u/bob";
    let (bob_phone_api, bob_phone) = user_with_client(&f, bob, "phone").await;
    let (bob_laptop_api, bob_laptop) = user_with_client(&f, bob, "laptop").await;
    let (carol_api, _) = user_with_client(&f, "mimi://b.example/u/carol", "phone").await;
    let bob: UserId = bob.parse().unwrap();
    for (api, mls) in [(&bob_phone_api, &bob_phone), (&bob_laptop_api, &bob_laptop)] {
        api.publish_key_packages(&[
            mls.key_package(true, false).unwrap(),
            mls.key_package(true, true).unwrap(),
            mls.key_package(false, false).unwrap(),
        ])
        .await
        .unwrap();
    }
    alice_api
        .publish_key_packages(&[alice.key_package(false, false).unwrap()])
        .await
        .unwrap();

    // Alice fetches Bob's connection KeyPackages through a.example (one per
    // client); his regular ones are not hers before they are connected.
    let kps = alice_api.fetch_key_packages(&bob, true, &[]).await.unwrap();
    assert_eq!(kps.len(), 2);
    assert_eq!(
        refused_code(alice_api.fetch_key_packages(&bob, false, &[]).await),
        "not_connected"
    );

    // She makes a connection group on a.example with Bob's clients and asks
    // him to connect, with its Welcome.
    let connect =
        async |api: &ProviderApi, mls: &mut MimiClient, kps: &[mimid_wire::KeyPackage]| {
            let DSResponseBody::GroupId(GroupIdField(group)) =
                api.submit(&request_group_id()).await.unwrap()
            else {
                panic!("no group id")
            };
            let create = mls.create_group(&group, GroupKind::Connection).unwrap();
            api.submit(&create).await.unwrap();
            let add = mls.add(&group, kps, false).unwrap();
            api.submit(&add).await.unwrap();
            mls.merge_pending_commit(&group).unwrap();
            let DSRequestBody::AddUsers(users) = &add.request_body else {
                panic!("not add_users")
            };
            let welcome = users.welcome_messages[0].as_bytes().to_vec();
            api.connect(&bob, &group.to_mls_bytes(), 1, &welcome).await
        };
    connect(&alice_api, &mut alice, &kps).await.unwrap();

    // Both of Bob's clients see the request; Carol's does not.
    let seen = bob_phone_api.connection_requests().await.unwrap();
    assert_eq!(seen, bob_laptop_api.connection_requests().await.unwrap());
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].sender_user, ALICE.parse::<UserId>().unwrap());
    assert!(carol_api.connection_requests().await.unwrap().is_empty());
    // Bob accepts on his laptop: Alice gets his regular KeyPackages, and he
    // hers (she asked: a.example recorded the connection).
    bob_laptop_api
        .settle_connection_request(seen[0].id, Decision::Accept)
        .await
        .unwrap();
    assert!(
        bob_phone_api
            .connection_requests()
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        alice_api
            .fetch_key_packages(&bob, false, &[])
            .await
            .unwrap()
            .len(),
        2
    );
    let alice_id: UserId = ALICE.parse().unwrap();
    assert_eq!(
        bob_phone_api
            .fetch_key_packages(&alice_id, false, &[])
            .await
            .unwrap()
            .len(),
        1
    );

    // Mallory asks too; Bob blocks her; her next request is refused and
    // reaches nobody.
    let kps = mallory_api
        .fetch_key_packages(&bob, true, &[])
        .await
        .unwrap();
    connect(&mallory_api, &mut mallory, &kps).await.unwrap();
    let seen = bob_phone_api.connection_requests().await.unwrap();
    assert_eq!(seen.len(), 1);
    bob_phone_api
        .settle_connection_request(seen[0].id, Decision::Block)
        .await
        .unwrap();
    let kps = mallory_api
        .fetch_key_packages(&bob, true, &[])
        .await
        .unwrap();
    assert_eq!(
        refused(connect(&mallory_api, &mut mallory, &kps).await),
        (403, "blocked".into())
    );
    assert!(
        bob_laptop_api
            .connection_requests()
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        refused_code(mallory_api.fetch_key_packages(&bob, false, &[]).await),
        "not_connected"
    );
    // A request that was settled cannot be settled again.
    assert_eq!(
        refused(
            bob_phone_api
                .settle_connection_request(seen[0].id, Decision::Accept)
                .await
        )
        .0,
        404
    );
}

/// DS requests through the client API: a client creates a group, another
/// provider's client joins it by external commit through its own provider;
/// a client that makes a request acting as another client of its provider
/// (as a group's creator, an external joiner, or the requester of
/// external commit information) is refused before the hub sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_submit_ds_requests_only_as_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let f = Loopback::start(dir.path(), &["a.example", "b.example"], AuthMode::Signature)
        .await
        .unwrap();
    let (alice_api, mut alice) = user_with_client(&f, ALICE, "phone").await;
    let (mallory_api, _) = user_with_client(&f, "mimi://a.example/u/mallory", "phone").await;
    let bob = "mimi://b.example/u/bob";
    let (_, bob_laptop) = user_with_client(&f, bob, "laptop").await;
    let (mallory_b_api, _) = user_with_client(&f, "mimi://b.example/u/mallory", "phone").await;
    let hub = f.node("a.example").unwrap();

    // Mallory makes a group whose creator is Alice's phone (an MLS client
    // with Alice's ClientID and Mallory's key): refused, nothing created.
    let DSResponseBody::GroupId(GroupIdField(group)) =
        mallory_api.submit(&request_group_id()).await.unwrap()
    else {
        panic!("no group id")
    };
    let mut fake_alice = MimiClient::new(PHONE.parse().unwrap()).unwrap();
    let create = fake_alice.create_group(&group, GroupKind::Regular).unwrap();
    assert_eq!(
        refused(mallory_api.submit(&create).await),
        (403, "operation_not_allowed".into())
    );
    assert_eq!(hub.service.group_epoch(&group).await.unwrap(), None);

    // Alice makes it as herself.
    let DSResponseBody::GroupId(GroupIdField(group)) =
        alice_api.submit(&request_group_id()).await.unwrap()
    else {
        panic!("no group id")
    };
    let create = alice.create_group(&group, GroupKind::Regular).unwrap();
    alice_api.submit(&create).await.unwrap();
    // Bob's new tablet asks for external commit information through
    // b.example: the hub refuses while Bob has no client in the group, and
    // another client of b.example cannot ask in the tablet's name at all.
    let eci = |requester: &str| DSRequest {
        version: 1,
        request_body: DSRequestBody::ExternalCommitInformation(ExternalCommitInformationRequest {
            group_id: GroupIdField(group.clone()),
            requester: requester.parse().unwrap(),
        }),
        authentication_data: DSAuthData::Anonymous,
    };
    let (tablet_api, mut tablet) = user_with_client(&f, bob, "tablet").await;
    let tablet_id = "mimi://b.example/d/bob/tablet";
    assert_eq!(
        refused(mallory_b_api.submit(&eci(tablet_id)).await),
        (403, "operation_not_allowed".into())
    );
    assert_eq!(
        refused_code(tablet_api.submit(&eci(tablet_id)).await),
        "operation_not_allowed",
        "the hub's own refusal (Bob is not in the group), relayed"
    );
    // Alice adds Bob's laptop; then an MLS client with the tablet's
    // ClientID but Mallory's key joins by external commit: b.example
    // refuses it; the tablet itself joins.
    let kp = bob_laptop.key_package(false, false).unwrap();
    let add = alice.add(&group, &[kp], false).unwrap();
    alice_api.submit(&add).await.unwrap();
    alice.merge_pending_commit(&group).unwrap();
    let DSResponseBody::ExternalCommitInfo(info) =
        tablet_api.submit(&eci(tablet_id)).await.unwrap()
    else {
        panic!("no external commit information")
    };
    let before = hub.service.group_epoch(&group).await.unwrap();
    let mut fake_tablet = MimiClient::new(tablet_id.parse().unwrap()).unwrap();
    let join = fake_tablet.external_join(&info).unwrap();
    assert_eq!(
        refused(mallory_b_api.submit(&join).await),
        (403, "operation_not_allowed".into())
    );
    assert_eq!(hub.service.group_epoch(&group).await.unwrap(), before);
    let join = tablet.external_join(&info).unwrap();
    tablet_api.submit(&join).await.unwrap();
    tablet.merge_pending_commit(&group).unwrap();
    assert_eq!(
        hub.service.group_epoch(&group).await.unwrap(),
        tablet.epoch_and_tree_hash(&group),
        "the external joiner is at the hub's epoch and tree hash"
    );
}
