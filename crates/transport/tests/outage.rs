//! A destination that is down for a minute, over real HTTPS (three
//! providers on loopback, `mimid_transport::loopback`): while c.example is
//! stopped, every message still reaches b.example before the next one is
//! sent; once c.example is back, it receives every message exactly once and
//! in hub order, and the hub's outbox ends empty, with no dead letters.

use std::time::{Duration, Instant};

use mimid_client::MimiClient;
use mimid_core::DsEndpoint;
use mimid_store::Store;
use mimid_transport::auth::AuthMode;
use mimid_transport::loopback::Loopback;
use mimid_transport::{Clock as _, SystemClock};
use mimid_wire::{DSAuthData, DSRequest, DSRequestBody, DSResponseBody, GroupIdField, GroupKind};

const ALICE: &str = "mimi://a.example/d/alice/laptop";
const BOB: &str = "mimi://b.example/d/bob/phone";
const CAROL: &str = "mimi://c.example/d/carol/tablet";

/// How long c.example is down.
const OUTAGE: Duration = Duration::from_secs(60);

/// The messages in a client's queue (read without acknowledging).
async fn queue(f: &Loopback, domain: &str, client: &str) -> Vec<Vec<u8>> {
    let node = f.node(domain).expect("running");
    node.service
        .store()
        .client_queue(client, 0, 1000)
        .await
        .expect("queue")
        .into_iter()
        .map(|q| q.message)
        .collect()
}

/// Waits (up to 30 s) until a client's queue holds `n` messages.
async fn wait_for(f: &Loopback, domain: &str, client: &str, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let queued = queue(f, domain, client).await;
        if queued.len() >= n || Instant::now() > deadline {
            return queued;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_down_for_a_minute_delays_nobody_and_catches_up_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Loopback::start(
        dir.path(),
        &["a.example", "b.example", "c.example"],
        AuthMode::Signature,
    )
    .await
    .unwrap();
    let mut alice = MimiClient::new(ALICE.parse().unwrap()).unwrap();
    let bob = MimiClient::new(BOB.parse().unwrap()).unwrap();
    let carol = MimiClient::new(CAROL.parse().unwrap()).unwrap();
    for (domain, client) in [
        ("a.example", &alice),
        ("b.example", &bob),
        ("c.example", &carol),
    ] {
        f.node(domain)
            .unwrap()
            .service
            .store()
            .add_client(
                client.id().to_string(),
                client.id().user().to_string(),
                SystemClock.now(),
            )
            .await
            .unwrap();
    }

    // A group on a.example with Bob and Carol (whose queues get the
    // Welcome first).
    let hub = f.node("a.example").unwrap();
    let ask = DSRequest {
        version: 1,
        request_body: DSRequestBody::RequestGroupId,
        authentication_data: DSAuthData::Anonymous,
    };
    let DSResponseBody::GroupId(GroupIdField(group)) =
        hub.submit(DsEndpoint::GroupOperation, &ask).await.unwrap()
    else {
        panic!("no group id")
    };
    let create = alice.create_group(&group, GroupKind::Regular).unwrap();
    hub.submit(DsEndpoint::GroupOperation, &create)
        .await
        .unwrap();
    let kps = [
        bob.key_package(false, false).unwrap(),
        carol.key_package(false, false).unwrap(),
    ];
    let add = alice.add(&group, &kps, false).unwrap();
    hub.submit(DsEndpoint::GroupOperation, &add).await.unwrap();
    alice.merge_pending_commit(&group).unwrap();
    assert_eq!(wait_for(&f, "b.example", BOB, 1).await.len(), 1);
    assert_eq!(wait_for(&f, "c.example", CAROL, 1).await.len(), 1);

    let mut sent = Vec::new();
    let mut send = async |f: &Loopback, text: String| {
        let request = alice.send_message(&group, text.as_bytes()).unwrap();
        let DSRequestBody::SendMessage(m) = &request.request_body else {
            unreachable!()
        };
        sent.push(m.application_message.as_bytes().to_vec());
        f.node("a.example")
            .unwrap()
            .submit(DsEndpoint::GroupOperation, &request)
            .await
            .unwrap();
        sent.len()
    };

    // c.example goes down; for a minute Alice keeps sending, and each
    // message reaches Bob before she sends the next.
    f.stop("c.example");
    let down = Instant::now();
    let mut i = 0;
    while down.elapsed() < OUTAGE {
        i += 1;
        let n = send(&f, format!("message {i}")).await;
        let queued = wait_for(&f, "b.example", BOB, n + 1).await;
        assert_eq!(
            queued.len(),
            n + 1,
            "message {i} did not reach b.example while c.example was down"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(i >= 20, "only {i} messages sent during the outage");
    let waiting = hub_jobs(&f, "c.example").await;
    assert_eq!(waiting, sent.len(), "the hub keeps c.example's jobs");

    // Back up: Carol gets every message once, in hub order; Bob got them
    // in the same order.
    f.restart("c.example").await.unwrap();
    let carol_queue = wait_for(&f, "c.example", CAROL, sent.len() + 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let carol_queue_later = queue(&f, "c.example", CAROL).await;
    assert_eq!(carol_queue.len(), sent.len() + 1);
    assert_eq!(carol_queue_later, carol_queue, "nothing delivered twice");
    assert_eq!(carol_queue[1..], sent[..]);
    assert_eq!(queue(&f, "b.example", BOB).await[1..], sent[..]);
    let hub_store = f.node("a.example").unwrap().service.store();
    let deadline = Instant::now() + Duration::from_secs(10);
    while hub_jobs(&f, "c.example").await > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hub_jobs(&f, "c.example").await, 0);
    assert!(hub_store.dead_letters(10).await.unwrap().is_empty());
}

/// The hub's jobs for `destination` not yet delivered.
async fn hub_jobs(f: &Loopback, destination: &str) -> usize {
    f.node("a.example")
        .unwrap()
        .service
        .store()
        .pending_jobs(destination, 10_000)
        .await
        .unwrap()
        .len()
}
