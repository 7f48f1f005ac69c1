//! The guest side of `SqliteStore` (client queues as cursors over the inbox)
//! against real SQLite files in a temporary directory.

use std::path::{Path, PathBuf};

use mimid_store::{Durability, Inbound, SqliteStore, Store};
use sqlx::Connection;

mod common;
use common::{at_schema, count, db_path, open, raw};

const BOB: &str = "bob@b.example";
const LAPTOP: &str = "bob-laptop@b.example";
const CAROL: &str = "carol@b.example";

/// A new store in a temporary directory (kept while the directory is).
async fn fresh() -> (tempfile::TempDir, PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path, Durability::Process).await;
    (dir, path, store)
}

async fn rows(path: &Path, table: &str) -> i64 {
    let mut conn = raw(path).await;
    let n = count(&mut conn, table).await;
    conn.close().await.unwrap();
    n
}

/// Delivers message `n` (its body names it) to `recipients`, at time `now`.
async fn deliver(store: &SqliteStore, n: u8, recipients: &[&str], now: u64) {
    let inbound = Inbound {
        sender: "a.example".into(),
        message_id: [n; 16],
        body_sha256: [n; 32],
        answer: vec![0, 0, n],
        group_id: b"group".to_vec(),
        epoch: 1,
        message: format!("message {n}").into_bytes(),
        recipients: recipients.iter().map(|c| c.to_string()).collect(),
        now,
    };
    store.deliver(vec![inbound]).await.unwrap().await.unwrap();
}

/// The messages in `client`'s queue after `after`, as (position, number).
async fn queue(store: &SqliteStore, client: &str, after: u64) -> Vec<(u64, String)> {
    store
        .client_queue(client, after, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|q| (q.seq, String::from_utf8(q.message).unwrap()))
        .collect()
}

fn names(queue: &[(u64, String)]) -> Vec<&str> {
    queue.iter().map(|(_, m)| m.as_str()).collect()
}

async fn ack(store: &SqliteStore, client: &str, up_to: u64) {
    store.acknowledge(client.into(), up_to).await.unwrap();
}

#[tokio::test]
async fn a_delivery_is_stored_once_and_in_each_recipients_queue() {
    let (_dir, path, store) = fresh().await;
    deliver(&store, 1, &[BOB, LAPTOP, CAROL], 10).await;
    deliver(&store, 2, &[BOB, CAROL], 10).await;
    deliver(&store, 3, &[CAROL], 10).await;
    // The same clients in another order (and one twice): the same set, and
    // the message once in each queue.
    deliver(&store, 4, &[CAROL, BOB, LAPTOP, BOB], 10).await;

    let bob = queue(&store, BOB, 0).await;
    assert_eq!(names(&bob), ["message 1", "message 2", "message 4"]);
    let carol = queue(&store, CAROL, 0).await;
    assert_eq!(
        names(&carol),
        ["message 1", "message 2", "message 3", "message 4"]
    );
    assert_eq!(
        names(&queue(&store, LAPTOP, 0).await),
        ["message 1", "message 4"]
    );
    // A message has one position, the same in every queue holding it.
    assert_eq!(bob[1].0, carol[1].0);
    assert!(carol.windows(2).all(|w| w[0].0 < w[1].0));
    // Reading after a position skips what is up to it.
    assert_eq!(
        names(&queue(&store, CAROL, carol[1].0).await),
        ["message 3", "message 4"]
    );
    assert!(queue(&store, "dave@b.example", 0).await.is_empty());

    assert_eq!(rows(&path, "inbox").await, 4);
    assert_eq!(rows(&path, "guest_sets").await, 3);
    assert_eq!(rows(&path, "guest_set_members").await, 3 + 2 + 1);
}

#[tokio::test]
async fn a_message_goes_once_every_queue_holding_it_acknowledged_it() {
    let (_dir, path, store) = fresh().await;
    deliver(&store, 1, &[BOB, LAPTOP, CAROL], 10).await;
    deliver(&store, 2, &[BOB, CAROL], 10).await;
    let carol = queue(&store, CAROL, 0).await;
    let (first, second) = (carol[0].0, carol[1].0);

    ack(&store, BOB, first).await;
    assert_eq!(names(&queue(&store, BOB, 0).await), ["message 2"]);
    // Others still hold both.
    assert_eq!(queue(&store, CAROL, 0).await.len(), 2);
    assert_eq!(rows(&path, "inbox").await, 2);

    ack(&store, CAROL, second).await;
    assert!(queue(&store, CAROL, 0).await.is_empty());
    // Message 1: the laptop has not acknowledged it. Message 2: Bob has not.
    assert_eq!(rows(&path, "inbox").await, 2);

    ack(&store, LAPTOP, first).await;
    assert_eq!(rows(&path, "inbox").await, 1);
    // An acknowledgement never moves a queue back.
    ack(&store, BOB, 0).await;
    assert_eq!(names(&queue(&store, BOB, 0).await), ["message 2"]);
    ack(&store, BOB, second).await;
    assert_eq!(rows(&path, "inbox").await, 0);
    assert!(queue(&store, BOB, 0).await.is_empty());
}

#[tokio::test]
async fn acknowledging_beyond_the_newest_message_does_not_swallow_later_ones() {
    let (_dir, path, store) = fresh().await;
    deliver(&store, 1, &[BOB], 10).await;
    ack(&store, BOB, u64::MAX).await;
    assert!(queue(&store, BOB, 0).await.is_empty());
    assert_eq!(rows(&path, "inbox").await, 0);
    // Acknowledged before anything reached the queue at all.
    ack(&store, CAROL, u64::MAX).await;

    deliver(&store, 2, &[BOB, CAROL], 10).await;
    assert_eq!(names(&queue(&store, BOB, 0).await), ["message 2"]);
    assert_eq!(names(&queue(&store, CAROL, 0).await), ["message 2"]);
}

#[tokio::test]
async fn pruning_drops_old_recipient_sets_that_no_message_uses() {
    let (_dir, path, store) = fresh().await;
    deliver(&store, 1, &[BOB], 10).await;
    deliver(&store, 2, &[CAROL], 10).await;
    deliver(&store, 3, &[BOB, LAPTOP], 500).await;
    ack(&store, BOB, u64::MAX).await;
    ack(&store, LAPTOP, u64::MAX).await;
    // Bob's set (time 10) has no message left; Carol's still has one; Bob's
    // and his laptop's has none either, but is too recent.
    assert_eq!(names(&queue(&store, CAROL, 0).await), ["message 2"]);
    store.prune_inbound(100).await.unwrap();
    assert_eq!(rows(&path, "guest_sets").await, 2);
    assert_eq!(rows(&path, "guest_set_members").await, 1 + 2);
    assert_eq!(rows(&path, "inbound").await, 1);
    assert_eq!(names(&queue(&store, CAROL, 0).await), ["message 2"]);
    // Bob's set comes back with his next message.
    deliver(&store, 4, &[BOB], 600).await;
    assert_eq!(names(&queue(&store, BOB, 0).await), ["message 4"]);
}

/// A database of schema version 4 (one queue row per client and message)
/// keeps every unacknowledged queue entry when this version opens it.
#[tokio::test]
async fn queues_of_schema_version_4_survive_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut conn = at_schema(
        &dir,
        &path,
        &[
            "0001_init.sql",
            "0002_recipient_sets.sql",
            "0003_state_pages.sql",
            "0004_guest.sql",
        ],
    )
    .await;
    // Message 1 for Bob and Carol, message 2 for Bob, message 3 for Carol
    // (who acknowledged it already: no queue row left).
    for n in 1..=3i64 {
        sqlx::query(
            "INSERT INTO inbox (id, sender, message_id, group_id, epoch, message, received_at) \
             VALUES (?1, 'a.example', ?2, x'00', 1, ?3, 10)",
        )
        .bind(n)
        .bind(vec![n as u8; 16])
        .bind(format!("message {n}").into_bytes())
        .execute(&mut conn)
        .await
        .unwrap();
    }
    for (client, inbox_id) in [(BOB, 1), (CAROL, 1), (BOB, 2)] {
        sqlx::query("INSERT INTO client_queue (client_id, inbox_id) VALUES (?1, ?2)")
            .bind(client)
            .bind(inbox_id)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();

    let store = open(&path, Durability::Process).await;
    let bob = queue(&store, BOB, 0).await;
    assert_eq!(names(&bob), ["message 1", "message 2"]);
    assert_eq!(names(&queue(&store, CAROL, 0).await), ["message 1"]);
    assert_eq!(rows(&path, "inbox").await, 2);
    // The migrated queues take new messages and acknowledgements.
    deliver(&store, 4, &[BOB, CAROL], 20).await;
    assert_eq!(
        names(&queue(&store, BOB, 0).await),
        ["message 1", "message 2", "message 4"]
    );
    ack(&store, BOB, bob[1].0).await;
    ack(&store, CAROL, bob[0].0).await;
    assert_eq!(names(&queue(&store, BOB, 0).await), ["message 4"]);
    assert_eq!(rows(&path, "inbox").await, 1);
}

/// A step that creates group `group` (or finds it at `expected`) with a
/// message for the hub's own clients `recipients`.
fn local_step(
    group: &[u8],
    expected: Option<u64>,
    n: u8,
    recipients: &[&str],
) -> mimid_store::Step {
    mimid_store::Step {
        group_id: group.to_vec(),
        expected_version: expected,
        write: match expected {
            None => mimid_store::GroupWrite::Put {
                state: b"state".to_vec(),
                reserved_until: None,
            },
            Some(_) => mimid_store::GroupWrite::Keep,
        },
        snapshot: None,
        prune_snapshots_before: None,
        messages: Vec::new(),
        jobs: Vec::new(),
        local: vec![mimid_store::LocalDelivery {
            hub: "b.example".into(),
            message_id: [n; 16],
            group_id: group.to_vec(),
            epoch: 1,
            message: format!("message {n}").into_bytes(),
            recipients: recipients.iter().map(|c| c.to_string()).collect(),
        }],
        now: 10,
    }
}

#[tokio::test]
async fn a_steps_messages_for_the_hubs_own_clients_are_queued_with_it() {
    let (_dir, path, store) = fresh().await;
    for client in [BOB, CAROL] {
        store
            .add_client(client.into(), client.into(), 0)
            .await
            .unwrap();
    }
    // Queued back to back (mostly one batch), applied in order; the conflicting step
    // queues nothing; the laptop is not in the directory and is skipped.
    let steps = [
        local_step(b"g", None, 1, &[BOB, LAPTOP, CAROL]),
        local_step(b"g", None, 2, &[BOB]),
        local_step(b"g", Some(1), 3, &[CAROL, BOB]),
    ];
    let mut pending = Vec::new();
    for step in steps {
        pending.push(store.enqueue(step).await.unwrap());
    }
    let mut outcomes = Vec::new();
    for p in pending {
        outcomes.push(p.await.map_err(|e| e.to_string()));
    }
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
    assert!(outcomes[1].is_err());
    assert_eq!(
        names(&queue(&store, BOB, 0).await),
        ["message 1", "message 3"]
    );
    assert_eq!(
        names(&queue(&store, CAROL, 0).await),
        ["message 1", "message 3"]
    );
    assert!(queue(&store, LAPTOP, 0).await.is_empty());
    assert_eq!(rows(&path, "inbox").await, 2);
    assert_eq!(rows(&path, "jobs").await, 0);
    assert_eq!(rows(&path, "messages").await, 0);
    let sender: String = {
        let mut conn = raw(&path).await;
        sqlx::query_scalar("SELECT DISTINCT sender FROM inbox")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(sender, "b.example");
}

#[tokio::test]
async fn removing_a_user_releases_what_was_queued_for_its_clients() {
    let (_dir, path, store) = fresh().await;
    for client in [BOB, LAPTOP] {
        store
            .add_client(client.into(), "bob".into(), 10)
            .await
            .unwrap();
    }
    store
        .add_client(CAROL.into(), "carol".into(), 10)
        .await
        .unwrap();
    deliver(&store, 1, &[BOB, LAPTOP], 10).await;
    deliver(&store, 2, &[BOB, CAROL], 10).await;
    deliver(&store, 3, &[CAROL], 10).await;
    store.remove_user("bob".into()).await.unwrap();
    // Only Bob's clients had message 1: gone. Carol still has 2 and 3.
    assert_eq!(rows(&path, "inbox").await, 2);
    assert_eq!(
        names(&queue(&store, CAROL, 0).await),
        ["message 2", "message 3"]
    );
    let users = store.users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].user_id, "carol");
    assert_eq!(users[0].clients, [CAROL]);
    assert!(!store.user_exists("bob").await.unwrap());
    // Carol reads hers: the inbox is empty.
    let last = queue(&store, CAROL, 0).await.last().unwrap().0;
    ack(&store, CAROL, last).await;
    assert_eq!(rows(&path, "inbox").await, 0);
}

#[tokio::test]
async fn key_packages_are_pruned_when_expired_or_handed_out() {
    use mimid_store::{KeyPackageKind, PublishedKeyPackage};
    let (_dir, path, store) = fresh().await;
    store
        .add_client(BOB.into(), "bob".into(), 10)
        .await
        .unwrap();
    let package = |n: u8, last_resort: bool, not_after: u64| PublishedKeyPackage {
        kind: KeyPackageKind::Regular,
        last_resort,
        not_after,
        key_package: vec![n],
    };
    store
        .publish_key_packages(
            BOB.into(),
            vec![
                package(1, false, 1_000),
                package(2, false, 100),
                package(3, true, 1_000),
            ],
            10,
        )
        .await
        .unwrap();
    // At 50 the oldest one-time package goes, then the second, then the
    // last-resort one, and at 200 the second would have expired.
    let claim = |token: u8, now: u64| {
        store.claim_key_packages(
            [token; 16],
            "bob".into(),
            KeyPackageKind::Regular,
            None,
            now,
        )
    };
    assert_eq!(claim(1, 50).await.unwrap(), [(BOB.to_string(), vec![1])]);
    assert_eq!(claim(2, 50).await.unwrap(), [(BOB.to_string(), vec![2])]);
    assert_eq!(claim(3, 50).await.unwrap(), [(BOB.to_string(), vec![3])]);
    assert_eq!(claim(4, 50).await.unwrap(), [(BOB.to_string(), vec![3])]);
    // Nothing for another kind, a client not named, or once expired.
    let none = store
        .claim_key_packages([5; 16], "bob".into(), KeyPackageKind::Connection, None, 50)
        .await
        .unwrap();
    assert!(none.is_empty());
    let none = store
        .claim_key_packages(
            [6; 16],
            "bob".into(),
            KeyPackageKind::Regular,
            Some(vec![]),
            50,
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(claim(7, 1_000).await.unwrap().is_empty());
    // Pruned at 200, handed out before 60: both one-time ones (handed out),
    // the last-resort one stays (not expired, never spent).
    store.prune_key_packages(200, 60).await.unwrap();
    assert_eq!(rows(&path, "key_packages").await, 1);
    assert_eq!(rows(&path, "key_package_claims").await, 0);
    // Once it expires, it goes too.
    store.prune_key_packages(1_001, 60).await.unwrap();
    assert_eq!(rows(&path, "key_packages").await, 0);
}

/// The bell rings for a client once a delivery to it is committed, not for
/// a delivery to another client; it forgets a client when its last
/// listener leaves.
#[tokio::test]
async fn the_bell_rings_for_the_recipients_of_a_committed_delivery() {
    use std::time::Duration;
    let (_dir, _path, store) = fresh().await;
    let bell = store.queue_bell();
    let bob = bell.listen(BOB);
    let carol = bell.listen(CAROL);
    let also_bob = bell.listen(BOB);
    assert_eq!(bell.listening(), 2);
    {
        let bob_rung = bob.notified();
        let also_bob_rung = also_bob.notified();
        let carol_rung = carol.notified();
        tokio::pin!(bob_rung, also_bob_rung, carol_rung);
        for rung in [
            bob_rung.as_mut(),
            also_bob_rung.as_mut(),
            carol_rung.as_mut(),
        ] {
            rung.enable();
        }
        deliver(&store, 1, &[BOB, LAPTOP], 100).await;
        let soon = Duration::from_secs(5);
        tokio::time::timeout(soon, bob_rung)
            .await
            .expect("Bob's listener rung");
        tokio::time::timeout(soon, also_bob_rung)
            .await
            .expect("every listener of Bob rung");
        assert!(
            tokio::time::timeout(Duration::from_millis(200), carol_rung)
                .await
                .is_err(),
            "Carol's listener rung for Bob's message"
        );
    }
    drop(bob);
    assert_eq!(bell.listening(), 2, "Bob still has a listener");
    drop((also_bob, carol));
    assert_eq!(bell.listening(), 0);
}
