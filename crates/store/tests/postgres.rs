//! `PostgresStore` against a real PostgreSQL server: the store suite
//! (`suite/mod.rs`), and what only PostgreSQL has (queue bells across
//! processes).
//!
//! The tests of this binary share one throwaway cluster (started by the
//! first, stopped when the last running one ends); each test gets a
//! database of its own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use mimid_store::throwaway::{Sync as ClusterSync, ThrowawayCluster};
use mimid_store::{PostgresOptions, PostgresStore, Store};
use sqlx::Connection;

mod suite;
use suite::{BOB, CAROL, LAPTOP, deliver, local_step};

/// The cluster the running tests share.
static CLUSTER: Mutex<Weak<ThrowawayCluster>> = Mutex::new(Weak::new());
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The store suite's PostgreSQL backend: a fresh database on the shared
/// cluster.
struct Postgres {
    url: String,
    /// Keeps the cluster running while the test does.
    _cluster: Arc<ThrowawayCluster>,
}

impl Postgres {
    async fn new() -> Self {
        let cluster = {
            let mut shared = CLUSTER.lock().unwrap_or_else(PoisonError::into_inner);
            match shared.upgrade() {
                Some(cluster) => cluster,
                None => {
                    let cluster = Arc::new(
                        ThrowawayCluster::start(ClusterSync::Off)
                            .expect("throwaway PostgreSQL cluster"),
                    );
                    *shared = Arc::downgrade(&cluster);
                    cluster
                }
            }
        };
        let name = format!("suite_{}", DATABASES.fetch_add(1, Ordering::Relaxed));
        let mut admin = sqlx::PgConnection::connect(&cluster.url())
            .await
            .expect("connect to the cluster");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test's database");
        admin.close().await.expect("close");
        let url = cluster
            .url()
            .strip_suffix("/postgres")
            .map(|base| format!("{base}/{name}"))
            .expect("a cluster URL ending in /postgres");
        Postgres {
            url,
            _cluster: cluster,
        }
    }
}

impl suite::Backend for Postgres {
    type Store = PostgresStore;

    async fn open(&self) -> PostgresStore {
        PostgresStore::connect(&PostgresOptions::new(self.url.clone()))
            .await
            .expect("connect to the test's database")
    }

    async fn close(&self, store: PostgresStore) {
        store.close().await.expect("close");
    }
}

suite::store_suite!(Postgres::new().await);

/// A message queued by one process rings the bell of another's readers
/// (LISTEN/NOTIFY), for its recipients only: a delivery, and a step's
/// message for the hub's own clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_queued_by_one_store_rings_the_bell_of_the_other() {
    use suite::Backend;
    let postgres = Postgres::new().await;
    let listening = postgres.open().await;
    let storing = postgres.open().await;
    let soon = Duration::from_secs(5);
    {
        let bell = listening.queue_bell();
        let bob = bell.listen(BOB);
        let carol = bell.listen(CAROL);
        for round in 0..2u8 {
            let bob_rung = bob.notified();
            let carol_rung = carol.notified();
            tokio::pin!(bob_rung, carol_rung);
            bob_rung.as_mut().enable();
            carol_rung.as_mut().enable();
            if round == 0 {
                deliver(&storing, 1, &[BOB, LAPTOP], 100).await;
            } else {
                storing
                    .add_client(BOB.into(), "bob".into(), 10)
                    .await
                    .expect("add_client");
                storing
                    .commit(local_step(b"g", None, 2, &[BOB]))
                    .await
                    .expect("step");
            }
            tokio::time::timeout(soon, bob_rung)
                .await
                .unwrap_or_else(|_| panic!("round {round}: Bob's listener not rung"));
            assert!(
                tokio::time::timeout(Duration::from_millis(200), carol_rung)
                    .await
                    .is_err(),
                "round {round}: Carol's listener rung for Bob's message"
            );
            assert_eq!(
                listening
                    .client_queue(BOB, 0, 10)
                    .await
                    .expect("queue")
                    .len(),
                usize::from(round) + 1,
                "round {round}: rung before the message was there to read"
            );
        }
    }
    postgres.close(storing).await;
    postgres.close(listening).await;
}

/// Forgotten digests leave no rows: after the suite's commits and
/// deletion, only the two digests still remembered are stored.
#[tokio::test]
async fn forgotten_digests_leave_no_rows() {
    let postgres = Postgres::new().await;
    suite::digests_of_old_epochs_and_of_deleted_groups_are_forgotten(&postgres).await;
    let mut conn = sqlx::PgConnection::connect(&postgres.url)
        .await
        .expect("connect");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM message_digests")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(rows, 2);
    conn.close().await.expect("close");
}
