//! The guest side of `SqliteStore` (client queues as cursors over the inbox
//! and its recipient sets) against real SQLite files in a temporary
//! directory: what the store suite (`suite/mod.rs`) cannot see through the
//! interface.

use std::path::{Path, PathBuf};

use mimid_store::{Durability, SqliteStore, Store};
use sqlx::Connection;

mod common;
mod suite;
use common::{Sqlite, at_schema, count, db_path, open, raw};
use suite::{BOB, CAROL, LAPTOP, ack, deliver, names, queue};

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

/// The suite's deliveries: one recipient set per distinct set of clients,
/// whatever their order.
#[tokio::test]
async fn deliveries_store_one_recipient_set_per_set_of_clients() {
    let sqlite = Sqlite::new(Durability::Process);
    suite::a_delivery_is_stored_once_and_in_each_recipients_queue(&sqlite).await;
    assert_eq!(rows(&sqlite.path, "guest_sets").await, 3);
    assert_eq!(rows(&sqlite.path, "guest_set_members").await, 3 + 2 + 1);
}

/// Pruning KeyPackages drops the rows of those handed out (and the records
/// of who got them) and of expired ones (the suite sees that only expired
/// ones are no longer handed out).
#[tokio::test]
async fn pruned_key_packages_leave_no_rows() {
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
    for token in 1..=4 {
        let claimed = store
            .claim_key_packages([token; 16], "bob".into(), KeyPackageKind::Regular, None, 50)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
    }
    assert_eq!(rows(&path, "key_package_claims").await, 4);
    // Pruned at 200, handed out before 60: both one-time ones (handed out),
    // the last-resort one stays (not expired, never spent).
    store.prune_key_packages(200, 60).await.unwrap();
    assert_eq!(rows(&path, "key_packages").await, 1);
    assert_eq!(rows(&path, "key_package_claims").await, 0);
    // Once it expires, it goes too.
    store.prune_key_packages(1_001, 60).await.unwrap();
    assert_eq!(rows(&path, "key_packages").await, 0);
}
