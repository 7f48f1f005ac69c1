//! The outbox, with providers in one process (the deterministic half of
//! design.md's federation tests; the HTTPS half is in the transport crate):
//! a hub on a.example, guests on b.example and c.example, each with its own
//! SQLite store. Deliveries reach every queue once and in hub order; a
//! destination that is down delays nobody else and catches up; a job its
//! destination refuses for good, or one that expires, goes to the dead
//! letters and the queue moves on.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mimid_client::MimiClient;
use mimid_core::guest::QsEndpoint;
use mimid_core::{DsEndpoint, Hub, HubConfig, Origin};
use mimid_service::guest::{Guest, LocalCourier};
use mimid_service::outbox::{Courier, Outbox, OutboxConfig, Sent};
use mimid_service::{HubService, ServiceConfig};
use mimid_store::{Durability, SqliteStore, Store};
use mimid_wire::{
    DSAuthData, DSRequest, DSRequestBody, DSResponseBody, GroupId, GroupIdField, GroupKind,
    ProviderDomain, QueueingServicePayload, QueueingServiceRequest,
};

const ALICE: &str = "mimi://a.example/d/alice/laptop";
const DAN: &str = "mimi://a.example/d/dan/desk";
const BOB: &str = "mimi://b.example/d/bob/phone";
const CAROL: &str = "mimi://c.example/d/carol/tablet";

struct Remote {
    store: SqliteStore,
    guest: Guest,
}

/// Carries deliveries between the providers of this process: the hub's
/// own clients through its [`LocalCourier`], the others straight into
/// their guest side, as if over HTTPS. A provider in `down` is unreachable.
struct Federation {
    local: LocalCourier<SqliteStore>,
    remotes: HashMap<String, Remote>,
    down: Mutex<HashSet<String>>,
    /// Groups (by local id) whose deliveries every provider answers with
    /// "try again later" (503), as if their requests failed on the way.
    stalled: Mutex<HashSet<[u8; 16]>>,
    /// Providers that refuse `deliver_messages` for good, as one that
    /// predates it does (400 `malformed_message`).
    unbatched: Mutex<HashSet<String>>,
    /// Messages per request that reached each remote provider's guest side.
    requests: Mutex<HashMap<String, Vec<usize>>>,
    /// Providers whose deliveries take this long on the way.
    slow: Mutex<HashMap<String, Duration>>,
}

impl Courier for Federation {
    async fn send(&self, destination: &ProviderDomain, request: &QueueingServiceRequest) -> Sent {
        if destination.as_str() == "a.example" {
            return self.local.send(request).await;
        }
        if self.down.lock().unwrap().contains(destination.as_str()) {
            return Sent::Retry {
                after: None,
                reason: "connection refused".into(),
            };
        }
        let groups: Vec<[u8; 16]> = match &request.payload {
            QueueingServicePayload::DeliverMessage(d) => vec![d.group_id.0.local_id],
            QueueingServicePayload::DeliverMessages(b) => b
                .messages
                .iter()
                .map(|m| m.deliver_message.group_id.0.local_id)
                .collect(),
            QueueingServicePayload::ConnectionRequest(_) => vec![],
        };
        let stalled = {
            let stalled = self.stalled.lock().unwrap();
            groups.iter().any(|g| stalled.contains(g))
        };
        if stalled {
            return Sent::Retry {
                after: None,
                reason: "503 service unavailable".into(),
            };
        }
        let batch = matches!(request.payload, QueueingServicePayload::DeliverMessages(_));
        if batch
            && self
                .unbatched
                .lock()
                .unwrap()
                .contains(destination.as_str())
        {
            return Sent::Refused("400 malformed_message: unknown request_type 2".into());
        }
        let slow = self.slow.lock().unwrap().get(destination.as_str()).copied();
        if let Some(delay) = slow {
            tokio::time::sleep(delay).await;
        }
        let Some(remote) = self.remotes.get(destination.as_str()) else {
            return Sent::Retry {
                after: None,
                reason: "no such provider".into(),
            };
        };
        self.requests
            .lock()
            .unwrap()
            .entry(destination.to_string())
            .or_default()
            .push(groups.len());
        remote
            .guest
            .deliver_sent(
                &remote.store,
                &"a.example".parse().unwrap(),
                request,
                1_795_000_000,
            )
            .await
    }
}

/// Alice creates a group on the hub and adds `members` (fresh clients).
async fn create_group(
    hub: &HubService<SqliteStore>,
    alice: &mut MimiClient,
    members: &[&str],
) -> GroupId {
    let ask = DSRequest {
        version: 1,
        request_body: DSRequestBody::RequestGroupId,
        authentication_data: DSAuthData::Anonymous,
    };
    let DSResponseBody::GroupId(GroupIdField(group_id)) = hub
        .handle(DsEndpoint::GroupOperation, &ask, Origin::Local)
        .await
        .unwrap()
    else {
        panic!("no group id")
    };
    let create = alice.create_group(&group_id, GroupKind::Regular).unwrap();
    hub.handle(DsEndpoint::GroupOperation, &create, Origin::Local)
        .await
        .unwrap();
    let kps: Vec<_> = members
        .iter()
        .map(|c| {
            MimiClient::new(c.parse().unwrap())
                .unwrap()
                .key_package(false, false)
                .unwrap()
        })
        .collect();
    let add = alice.add(&group_id, &kps, false).unwrap();
    hub.handle(DsEndpoint::GroupOperation, &add, Origin::Local)
        .await
        .unwrap();
    alice.merge_pending_commit(&group_id).unwrap();
    group_id
}

struct Scene {
    hub: Arc<HubService<SqliteStore>>,
    federation: Arc<Federation>,
    group_id: GroupId,
    alice: MimiClient,
    clock: Arc<AtomicU64>,
    _dirs: Vec<tempfile::TempDir>,
}

async fn open(dirs: &mut Vec<tempfile::TempDir>, name: &str) -> SqliteStore {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join(name), Durability::Process)
        .await
        .unwrap();
    dirs.push(dir);
    store
}

/// A group on a.example with Alice, Dan (a.example), Bob (b.example) and
/// Carol (c.example); every client is in its provider's directory.
async fn scene() -> Scene {
    let mut dirs = Vec::new();
    let hub = Arc::new(HubService::new(
        Hub::new(HubConfig::new("a.example".parse().unwrap())),
        open(&mut dirs, "a.db").await,
        ServiceConfig::default(),
    ));
    let mut remotes = HashMap::new();
    for (domain, client) in [("b.example", BOB), ("c.example", CAROL)] {
        let store = open(&mut dirs, domain).await;
        let id: mimid_wire::ClientId = client.parse().unwrap();
        store
            .add_client(id.to_string(), id.user().to_string(), 0)
            .await
            .unwrap();
        remotes.insert(
            domain.to_string(),
            Remote {
                store,
                guest: Guest::new(domain.parse().unwrap()),
            },
        );
    }
    for client in [ALICE, DAN] {
        let id: mimid_wire::ClientId = client.parse().unwrap();
        hub.store()
            .add_client(id.to_string(), id.user().to_string(), 0)
            .await
            .unwrap();
    }
    let mut alice = MimiClient::new(ALICE.parse().unwrap()).unwrap();
    let group_id = create_group(&hub, &mut alice, &[DAN, BOB, CAROL]).await;
    let federation = Arc::new(Federation {
        local: LocalCourier::new(hub.clone()),
        remotes,
        down: Mutex::new(HashSet::new()),
        stalled: Mutex::new(HashSet::new()),
        unbatched: Mutex::new(HashSet::new()),
        requests: Mutex::new(HashMap::new()),
        slow: Mutex::new(HashMap::new()),
    });
    Scene {
        hub,
        federation,
        group_id,
        alice,
        // The hub stamps jobs with the real clock: start the outbox's there.
        clock: Arc::new(AtomicU64::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )),
        _dirs: dirs,
    }
}

impl Scene {
    fn start_outbox(&self, expiry: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.outbox(expiry).run())
    }

    fn outbox(&self, expiry: Duration) -> Arc<Outbox<SqliteStore, Federation>> {
        let clock = self.clock.clone();
        let mut config = OutboxConfig::new("a.example".parse().unwrap());
        config.backoff_start = Duration::from_millis(10);
        config.backoff_max = Duration::from_millis(50);
        config.rescan = Duration::from_millis(200);
        config.delivery_expiry = expiry;
        config.now = Arc::new(move || clock.load(Ordering::SeqCst));
        Outbox::new(self.hub.clone(), self.federation.clone(), config)
    }

    /// Alice sends `n` messages; returns their bytes in hub order.
    async fn send(&mut self, n: usize) -> Vec<Vec<u8>> {
        let group_id = self.group_id.clone();
        self.send_in(&group_id, n).await
    }

    /// Alice sends `n` messages to `group_id`; returns their bytes in hub
    /// order.
    async fn send_in(&mut self, group_id: &GroupId, n: usize) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        for i in 0..n {
            let request = self
                .alice
                .send_message(group_id, format!("message {i}").as_bytes())
                .unwrap();
            let DSRequestBody::SendMessage(m) = &request.request_body else {
                unreachable!()
            };
            sent.push(m.application_message.as_bytes().to_vec());
            self.hub
                .handle(DsEndpoint::GroupOperation, &request, Origin::Local)
                .await
                .unwrap();
        }
        sent
    }

    async fn queued(&self, client: &str) -> Vec<mimid_store::Queued> {
        let store = match client {
            BOB => &self.federation.remotes["b.example"].store,
            CAROL => &self.federation.remotes["c.example"].store,
            _ => self.hub.store(),
        };
        store.client_queue(client, 0, 10_000).await.unwrap()
    }

    async fn queue(&self, client: &str) -> Vec<Vec<u8>> {
        self.queued(client)
            .await
            .into_iter()
            .map(|q| q.message)
            .collect()
    }

    /// Waits (up to 20 s) until `client`'s queue holds `n` messages.
    async fn wait_for(&self, client: &str, n: usize) -> Vec<Vec<u8>> {
        for _ in 0..2000 {
            let queue = self.queue(client).await;
            if queue.len() >= n {
                return queue;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{client} got {} of {n} messages",
            self.queue(client).await.len()
        );
    }

    /// `client`'s queued messages of `group_id`, in queue order.
    async fn queue_of(&self, client: &str, group_id: &GroupId) -> Vec<Vec<u8>> {
        let group = group_id.to_mls_bytes();
        self.queued(client)
            .await
            .into_iter()
            .filter(|q| q.group_id == group)
            .map(|q| q.message)
            .collect()
    }

    /// Waits (up to 30 s) until `client` holds `n` messages of `group_id`.
    async fn wait_for_in(&self, client: &str, group_id: &GroupId, n: usize) {
        for _ in 0..3000 {
            if self.queue_of(client, group_id).await.len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "{client} got {} of {n} messages of the group",
            self.queue_of(client, group_id).await.len()
        );
    }

    /// Skips the Welcomes the add sent: only the application messages.
    async fn messages(&self, client: &str, skip: usize) -> Vec<Vec<u8>> {
        self.queue(client).await.into_iter().skip(skip).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queue_gets_every_message_once_in_hub_order() {
    let mut s = scene().await;
    let outbox = s.start_outbox(Duration::from_secs(3600));
    let sent = s.send(30).await;
    // Dan, Bob and Carol each have their Welcome first.
    for client in [DAN, BOB, CAROL] {
        s.wait_for(client, 31).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(s.messages(client, 1).await, sent, "{client}");
    }
    // Nothing is left to send (a job is recorded done just after its
    // receiver queued it), and nothing died.
    for d in ["a.example", "b.example", "c.example"] {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut pending = s.hub.store().pending_jobs(d, 10).await.unwrap();
        while !pending.is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            pending = s.hub.store().pending_jobs(d, 10).await.unwrap();
        }
        assert!(
            pending.is_empty(),
            "{d}: {} jobs never completed",
            pending.len()
        );
    }
    assert!(s.hub.store().dead_letters(10).await.unwrap().is_empty());
    outbox.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_goes_in_batches_and_one_by_one_to_a_provider_that_refuses_them() {
    let mut s = scene().await;
    // c.example takes no batches.
    s.federation
        .unbatched
        .lock()
        .unwrap()
        .insert("c.example".into());
    // 150 messages wait (with the Welcome, 151 jobs per provider).
    let sent = s.send(150).await;
    let outbox = s.start_outbox(Duration::from_secs(3600));
    s.wait_for(BOB, 151).await;
    s.wait_for(CAROL, 151).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.messages(BOB, 1).await, sent);
    assert_eq!(s.messages(CAROL, 1).await, sent);
    let requests = s.federation.requests.lock().unwrap().clone();
    // b.example: in requests of at most 64, every job once.
    let to_b = &requests["b.example"];
    assert_eq!(to_b.iter().sum::<usize>(), 151, "{to_b:?}");
    assert!(to_b.len() <= 5, "{to_b:?}");
    assert!(to_b.iter().all(|&n| n <= 64), "{to_b:?}");
    // c.example refused the first batch, then got one message per request.
    let to_c = &requests["c.example"];
    assert_eq!(to_c.len(), 151, "{to_c:?}");
    assert!(to_c.iter().all(|&n| n == 1), "{to_c:?}");
    assert!(s.hub.store().dead_letters(10).await.unwrap().is_empty());
    outbox.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_is_down_delays_nobody_and_catches_up_in_order() {
    let mut s = scene().await;
    s.federation.down.lock().unwrap().insert("b.example".into());
    let outbox = s.start_outbox(Duration::from_secs(3600));
    let sent = s.send(20).await;
    // Carol and Dan get everything while Bob's provider is down.
    s.wait_for(CAROL, 21).await;
    s.wait_for(DAN, 21).await;
    assert!(s.queue(BOB).await.is_empty());
    assert!(
        !s.hub
            .store()
            .pending_jobs("b.example", 1)
            .await
            .unwrap()
            .is_empty()
    );
    // Back up: Bob gets every message once, in order.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.federation.down.lock().unwrap().clear();
    s.wait_for(BOB, 21).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.messages(BOB, 1).await, sent);
    assert_eq!(s.messages(CAROL, 1).await, sent);
    outbox.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_refused_for_good_is_a_dead_letter_and_the_queue_moves_on() {
    let mut s = scene().await;
    // The hub commits three messages before its outbox runs.
    let sent = s.send(3).await;
    let jobs = s.hub.store().pending_jobs("b.example", 10).await.unwrap();
    // b.example already accepted another message under the id of the
    // second one (the Welcome's job is first): it refuses that one for
    // good (409 message_id_reuse).
    let poisoned = &jobs[2];
    let b = &s.federation.remotes["b.example"];
    let request = QueueingServiceRequest {
        version: 1,
        sender: "a.example".parse().unwrap(),
        recipient: "b.example".parse().unwrap(),
        message_id: mimid_wire::MessageId(poisoned.message_id),
        payload: mimid_wire::QueueingServicePayload::DeliverMessage(mimid_wire::DeliverMessage {
            group_id: GroupIdField(s.group_id.clone()),
            epoch: 1,
            recipients: vec![BOB.parse().unwrap()],
            message: mimid_wire::DeliverableMessage::from_bytes(&sent[0]).unwrap(),
        }),
    };
    b.guest
        .deliver(
            &b.store,
            &"a.example".parse().unwrap(),
            QsEndpoint::DeliverMessage,
            &request,
            0,
        )
        .await
        .unwrap();
    let outbox = s.start_outbox(Duration::from_secs(3600));
    // The injected message, the Welcome, then messages 0 and 2: 1 is dead.
    s.wait_for(BOB, 4).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let queue = s.queue(BOB).await;
    assert_eq!(queue.len(), 4);
    assert_eq!(queue[0], sent[0]);
    assert_eq!(queue[2..], [sent[0].clone(), sent[2].clone()]);
    let dead = s.hub.store().dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].job.id, poisoned.id);
    assert_eq!(dead[0].job.destination, "b.example");
    assert!(
        dead[0].reason.contains("message_id_reuse"),
        "{}",
        dead[0].reason
    );
    assert_eq!(s.messages(CAROL, 1).await, sent);
    outbox.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_destination_down_past_the_expiry_are_dead_letters() {
    let mut s = scene().await;
    s.federation.down.lock().unwrap().insert("b.example".into());
    let sent = s.send(2).await;
    // An hour later, with an expiry of a minute.
    s.clock.fetch_add(3600, Ordering::SeqCst);
    let outbox = s.start_outbox(Duration::from_secs(60));
    s.wait_for(CAROL, 3).await;
    for _ in 0..2000 {
        if s.hub
            .store()
            .pending_jobs("b.example", 10)
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let dead = s.hub.store().dead_letters(10).await.unwrap();
    // The Welcome and both messages.
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert!(
        dead.iter().all(|d| d.reason.starts_with("expired")),
        "{dead:?}"
    );
    assert!(s.queue(BOB).await.is_empty());
    assert_eq!(s.messages(CAROL, 1).await, sent);
    outbox.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_cannot_be_delivered_holds_back_only_itself() {
    let mut s = scene().await;
    let other = create_group(&s.hub, &mut s.alice, &[BOB]).await;
    let first = s.group_id.clone();
    // Every delivery of the first group fails for now, at every provider.
    s.federation.stalled.lock().unwrap().insert(first.local_id);
    let outbox = s.start_outbox(Duration::from_secs(3600));
    let mut sent_first = Vec::new();
    let mut sent_other = Vec::new();
    for _ in 0..5 {
        sent_first.extend(s.send_in(&first, 2).await);
        sent_other.extend(s.send_in(&other, 2).await);
    }
    // The other group's Welcome and messages reach Bob, in order, while
    // the first group's wait behind its failing deliveries.
    s.wait_for_in(BOB, &other, sent_other.len() + 1).await;
    assert_eq!(s.queue_of(BOB, &other).await[1..], sent_other[..]);
    assert!(s.queue_of(BOB, &first).await.is_empty());
    assert!(s.queue(CAROL).await.is_empty());
    // Once the first group's deliveries go through, Bob and Carol get its
    // Welcome and every message once, in hub order.
    s.federation.stalled.lock().unwrap().clear();
    s.wait_for(CAROL, 11).await;
    s.wait_for_in(BOB, &first, sent_first.len() + 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.queue_of(BOB, &first).await[1..], sent_first[..]);
    assert_eq!(s.messages(CAROL, 1).await, sent_first);
    assert_eq!(s.queue_of(BOB, &other).await[1..], sent_other[..]);
    assert!(s.hub.store().dead_letters(10).await.unwrap().is_empty());
    outbox.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_more_failing_jobs_than_the_outbox_holds_holds_back_nobody() {
    let mut s = scene().await;
    let other = create_group(&s.hub, &mut s.alice, &[BOB]).await;
    let first = s.group_id.clone();
    s.federation.stalled.lock().unwrap().insert(first.local_id);
    // More of the first group's jobs than a worker holds of all groups
    // (256) wait for b.example before the other group's.
    let sent_first = s.send_in(&first, 300).await;
    let sent_other = s.send_in(&other, 5).await;
    let outbox = s.start_outbox(Duration::from_secs(3600));
    s.wait_for_in(BOB, &other, sent_other.len() + 1).await;
    assert_eq!(s.queue_of(BOB, &other).await[1..], sent_other[..]);
    assert!(s.queue_of(BOB, &first).await.is_empty());
    // Then the first group's, every one once, in hub order.
    s.federation.stalled.lock().unwrap().clear();
    s.wait_for_in(BOB, &first, sent_first.len() + 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.queue_of(BOB, &first).await[1..], sent_first[..]);
    s.wait_for(CAROL, 301).await;
    assert_eq!(s.messages(CAROL, 1).await, sent_first);
    assert!(s.hub.store().dead_letters(10).await.unwrap().is_empty());
    outbox.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_outbox_finishes_its_sends_in_flight_and_leaves_the_rest_pending() {
    let mut s = scene().await;
    // c.example answers after a second; b.example is down (retried every
    // 10 to 50 ms, for ever).
    s.federation
        .slow
        .lock()
        .unwrap()
        .insert("c.example".into(), Duration::from_secs(1));
    s.federation.down.lock().unwrap().insert("b.example".into());
    let sent = s.send(3).await;
    let outbox = s.outbox(Duration::from_secs(3600));
    let running = tokio::spawn(outbox.clone().run());
    // The Welcome and the three messages are on their way to c.example.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.queue(CAROL).await.is_empty());
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), outbox.stop())
        .await
        .expect("the outbox stops");
    // It waited for c.example's answer, and completed those jobs.
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(s.messages(CAROL, 1).await, sent);
    assert!(
        s.hub
            .store()
            .pending_jobs("c.example", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // b.example's are pending (not dead): sent after the next start.
    assert_eq!(
        s.hub
            .store()
            .pending_jobs("b.example", 10)
            .await
            .unwrap()
            .len(),
        4
    );
    assert!(s.hub.store().dead_letters(10).await.unwrap().is_empty());
    // Stopped, it sends nothing more.
    s.send(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.queue(CAROL).await.len(), 4);
    assert_eq!(
        s.hub
            .store()
            .pending_jobs("c.example", 10)
            .await
            .unwrap()
            .len(),
        1
    );
    tokio::time::timeout(Duration::from_secs(1), running)
        .await
        .expect("the rescan loop ends")
        .unwrap();
}
