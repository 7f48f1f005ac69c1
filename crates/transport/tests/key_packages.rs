//! `/connection_key_packages` and `/group_key_packages` over real HTTPS
//! (three providers on loopback, both authentication modes): a.example asks
//! b.example for Bob's KeyPackages, published by real OpenMLS clients; one
//! per client, a one-time package once, regular packages only once Bob has a
//! connection with the requester, and each refusal with its status.

use mimid_client::MimiClient;
use mimid_service::people::{People, PeopleConfig};
use mimid_store::{KeyPackageKind, Store};
use mimid_transport::auth::AuthMode;
use mimid_transport::loopback::Loopback;
use mimid_transport::{Clock as _, SystemClock};
use mimid_wire::{
    ClientId, ConnectionKeyPackageRequest, ConnectionKeyPackageResponse, ErrorCode,
    GroupKeyPackageRequest, GroupKeyPackageResponse, KeyPackagesOk, KeyPackagesResult, Limits,
    UserId, Wire,
};

const BOB: &str = "mimi://b.example/u/bob";
const BOB_PHONE: &str = "mimi://b.example/d/bob/phone";
const BOB_LAPTOP: &str = "mimi://b.example/d/bob/laptop";
const ALICE: &str = "mimi://a.example/u/alice";

fn uid(u: &str) -> UserId {
    u.parse().unwrap()
}

fn cid(c: &str) -> ClientId {
    c.parse().unwrap()
}

/// An answer: its status and either the packages or the error's code.
type Answer = (u16, Result<KeyPackagesOk, ErrorCode>);

fn result(status: u16, result: KeyPackagesResult) -> Answer {
    match result {
        KeyPackagesResult::Ok(ok) => (status, Ok(ok)),
        KeyPackagesResult::Error(e) => (status, Err(e.code)),
    }
}

/// a.example asks b.example, as `from` (a.example unless another provider
/// is named), for `target`'s connection KeyPackages.
async fn connection(f: &Loopback, from: &str, requester: &str, target: &str) -> Answer {
    let body = ConnectionKeyPackageRequest {
        version: 1,
        requester: uid(requester),
        target: uid(target),
    }
    .to_bytes()
    .unwrap();
    let reply = f
        .node(from)
        .unwrap()
        .client
        .post(
            &"b.example".parse().unwrap(),
            "/connection_key_packages",
            body,
        )
        .await
        .unwrap();
    let answer = ConnectionKeyPackageResponse::decode_exact(&reply.body, &Limits::default())
        .expect("a ConnectionKeyPackageResponse");
    result(reply.status, answer.result)
}

async fn group(f: &Loopback, requester: &str, target: &str, clients: &[&str]) -> Answer {
    let body = GroupKeyPackageRequest {
        version: 1,
        requester: uid(requester),
        target: uid(target),
        clients: clients.iter().map(|c| cid(c)).collect(),
    }
    .to_bytes()
    .unwrap();
    let reply = f
        .node("a.example")
        .unwrap()
        .client
        .post(&"b.example".parse().unwrap(), "/group_key_packages", body)
        .await
        .unwrap();
    let answer = GroupKeyPackageResponse::decode_exact(&reply.body, &Limits::default())
        .expect("a GroupKeyPackageResponse");
    result(reply.status, answer.result)
}

fn packages(answer: Answer) -> Vec<Vec<u8>> {
    match answer {
        (200, Ok(ok)) => {
            assert_eq!(ok.target, uid(BOB));
            ok.key_packages
                .iter()
                .map(|k| k.as_bytes().to_vec())
                .collect()
        }
        other => panic!("not served: {other:?}"),
    }
}

async fn key_packages_over_https(mode: AuthMode) {
    let dir = tempfile::tempdir().unwrap();
    let f = Loopback::start(dir.path(), &["a.example", "b.example", "c.example"], mode)
        .await
        .unwrap();
    let b = f.node("b.example").unwrap();
    let store = b.service.store();
    let now = SystemClock.now();
    let people = People::new(b.domain.clone(), PeopleConfig::default());
    let phone = MimiClient::new(cid(BOB_PHONE)).unwrap();
    let laptop = MimiClient::new(cid(BOB_LAPTOP)).unwrap();
    let mut published = Vec::new();
    for client in [&phone, &laptop] {
        store
            .add_client(client.id().to_string(), BOB.into(), now)
            .await
            .unwrap();
        let mine = vec![
            client.key_package(true, false).unwrap(),
            client.key_package(true, true).unwrap(),
            client.key_package(false, false).unwrap(),
        ];
        people
            .publish(store, client.id(), &mine, now)
            .await
            .unwrap();
        published.push(mine);
    }
    let bytes = |client: usize, i: usize| published[client][i].as_bytes().to_vec();

    // A connection package per client: the one-time ones first, then the
    // last-resort ones, again and again.
    let first = packages(connection(&f, "a.example", ALICE, BOB).await);
    assert_eq!(first.len(), 2);
    assert!(first.contains(&bytes(0, 0)) && first.contains(&bytes(1, 0)));
    for _ in 0..2 {
        let again = packages(connection(&f, "a.example", ALICE, BOB).await);
        assert_eq!(again.len(), 2);
        assert!(again.contains(&bytes(0, 1)) && again.contains(&bytes(1, 1)));
    }

    // Regular packages: not before Bob has a connection with Alice.
    assert_eq!(
        group(&f, ALICE, BOB, &[]).await,
        (403, Err(ErrorCode::NotConnected))
    );
    store
        .add_connection(BOB.into(), ALICE.into(), now)
        .await
        .unwrap();
    assert_eq!(
        packages(group(&f, ALICE, BOB, &[BOB_LAPTOP]).await),
        vec![bytes(1, 2)]
    );
    assert_eq!(
        packages(group(&f, ALICE, BOB, &[]).await),
        vec![bytes(0, 2)]
    );
    assert_eq!(
        group(&f, ALICE, BOB, &[]).await,
        (404, Err(ErrorCode::NoKeyPackages))
    );

    // Refusals, each with its status.
    assert_eq!(
        connection(&f, "a.example", ALICE, "mimi://b.example/u/nobody").await,
        (404, Err(ErrorCode::UnknownUser))
    );
    assert_eq!(
        connection(&f, "a.example", ALICE, "mimi://c.example/u/carol").await,
        (421, Err(ErrorCode::WrongRecipient))
    );
    // c.example asking for a user of a.example.
    assert_eq!(
        connection(&f, "c.example", ALICE, BOB).await,
        (403, Err(ErrorCode::OperationNotAllowed))
    );
    assert_eq!(
        group(&f, ALICE, BOB, &["mimi://b.example/d/eve/phone"]).await,
        (400, Err(ErrorCode::MalformedMessage))
    );
    // None of the refusals handed anything out.
    let stock = store
        .key_package_stock(BOB_PHONE, KeyPackageKind::Connection, now)
        .await
        .unwrap();
    assert_eq!(stock.one_time, 0);
    assert!(stock.last_resort);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_packages_over_https_with_signatures() {
    key_packages_over_https(AuthMode::Signature).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_packages_over_https_with_mutual_tls() {
    key_packages_over_https(AuthMode::Mtls).await;
}
