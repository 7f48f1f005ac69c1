//! `SqliteStore` against real SQLite files in a temporary directory: the
//! store suite (`suite/mod.rs`), and what only SQLite has (durability
//! modes, a crashing process, group commit's transactions, the rows of its
//! tables, migrations from older schemas).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mimid_store::{
    Durability, GroupWrite, NewJob, NewMessage, STATE_PAGE, SqliteStore, Step, Store, StoreError,
    StoredGroup,
};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

mod common;
mod suite;
use common::{Sqlite, at_schema, count, db_path, open, raw};
use suite::{
    at, check_fixture, group, is_conflict, job, message, paged_state, put, snapshot, step,
    stored_state, with_mail, with_prune, with_snapshot, write_fixture,
};

const BOTH: [Durability; 2] = [Durability::Process, Durability::PowerLoss];

suite::store_suite!(Sqlite::new(Durability::Process));

/// The suite's cases that are about what is durable, with the other
/// durability mode too.
#[tokio::test]
async fn create_update_and_conflicts_change_nothing_power_loss() {
    suite::create_update_and_conflicts_change_nothing(&Sqlite::new(Durability::PowerLoss)).await;
}

#[tokio::test]
async fn committed_steps_survive_close_drop_and_reopen_power_loss() {
    suite::committed_steps_survive_close_drop_and_reopen(&Sqlite::new(Durability::PowerLoss)).await;
}

/// After the suite's patches, growing and shrinking a state: no page row
/// is left beyond its end.
#[tokio::test]
async fn a_patched_state_keeps_no_page_beyond_its_end() {
    let sqlite = Sqlite::new(Durability::Process);
    suite::a_patch_rewrites_only_the_pages_that_changed(&sqlite).await;
    let mut conn = raw(&sqlite.path).await;
    assert_eq!(count(&mut conn, "state_pages").await, 2);
    conn.close().await.expect("close raw");
}

const CRASH_DB: &str = "MIMID_STORE_CRASH_DB";
const CRASH_DURABILITY: &str = "MIMID_STORE_CRASH_DURABILITY";

/// Helper for `committed_steps_survive_a_process_crash`: only does something
/// in the child process that test starts (and then aborts that process).
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CRASH_DB) else {
        return;
    };
    let durability = match std::env::var(CRASH_DURABILITY).as_deref() {
        Ok("power-loss") => Durability::PowerLoss,
        _ => Durability::Process,
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = open(Path::new(&path), durability).await;
        write_fixture(&store).await;
        // Acknowledged: now die without closing anything.
        std::process::abort();
    });
}

#[test]
fn committed_steps_survive_a_process_crash() {
    for (durability, name) in [
        (Durability::Process, "process"),
        (Durability::PowerLoss, "power-loss"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = db_path(&dir);
        let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CRASH_DB, &path)
            .env(CRASH_DURABILITY, name)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("run child");
        assert!(!status.success(), "the child must have aborted");
        // The commits are only in the write-ahead log: recovery must use it.
        let mut wal = path.clone().into_os_string();
        wal.push("-wal");
        assert!(Path::new(&wal).exists(), "no WAL left by the crashed child");

        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let store = open(&path, durability).await;
            check_fixture(&store).await;
            store.close().await.expect("close");
        });
    }
}

/// Steps queued together share one transaction and still behave as if
/// committed one after the other, in order; a failing step does not take
/// the others of its batch down.
#[tokio::test(flavor = "current_thread")]
async fn steps_of_one_batch_are_sequential() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(&db_path(&dir), Durability::PowerLoss).await);
    let g = b"seq";
    let mut dangling = step(b"other", None, put(b"x"));
    dangling.jobs = vec![job("a.example", 42, "nobody")];
    let steps = vec![
        step(g, None, put(b"v1")),
        step(g, None, put(b"again")), // the slot exists by now
        step(g, Some(1), put(b"v2")),
        dangling,
        step(g, Some(2), put(b"v3")),
        step(g, Some(2), put(b"stale")),
        step(g, Some(3), GroupWrite::Keep),
    ];
    let before = store.transactions_committed();
    // On the current-thread runtime the tasks run in spawn order, and all
    // queue their step before the writer task runs again.
    let tasks: Vec<_> = steps
        .into_iter()
        .map(|s| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.commit(s).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    assert!(results[0].is_ok());
    assert!(is_conflict(&results[1]));
    assert!(results[2].is_ok());
    assert!(matches!(results[3], Err(StoreError::Database(_))));
    assert!(results[4].is_ok());
    assert!(is_conflict(&results[5]));
    assert!(results[6].is_ok());
    assert_eq!(store.transactions_committed() - before, 1);
    assert_eq!(
        group(&*store, g).await,
        Some(StoredGroup {
            version: 3,
            state: b"v3".to_vec(),
            reserved_until: None,
        })
    );
    assert_eq!(group(&*store, b"other").await, None);
}

/// Two steps of one application message in one transaction (two identical
/// requests of one group commit): one is applied, the other reported, and
/// the transaction's other steps are not held back; one digest row each.
#[tokio::test(flavor = "current_thread")]
async fn a_repeat_in_the_same_transaction_is_applied_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = Arc::new(open(&path, Durability::PowerLoss).await);
    let g = b"chat";
    store
        .commit(step(g, None, put(b"s")))
        .await
        .expect("create");
    let steps = vec![
        suite::sent(g, 1, 1, 1, 0xd1),
        suite::sent(g, 1, 2, 1, 0xd1),
        suite::sent(g, 1, 3, 1, 0xd2),
        suite::sent(g, 1, 4, 2, 0xd1),
    ];
    let before = store.transactions_committed();
    // On the current-thread runtime the tasks run in spawn order, and all
    // queue their step before the writer applies any.
    let tasks: Vec<_> = steps
        .into_iter()
        .map(|s| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.commit(s).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.expect("task"));
    }
    assert_eq!(store.transactions_committed() - before, 1);
    assert!(results[0].is_ok(), "{results:?}");
    assert!(suite::is_repeated(&results[1]), "{results:?}");
    assert!(results[2].is_ok() && results[3].is_ok(), "{results:?}");
    let mut conn = raw(&path).await;
    assert_eq!(count(&mut conn, "message_digests").await, 3);
    assert_eq!(count(&mut conn, "messages").await, 3);
    assert_eq!(count(&mut conn, "jobs").await, 3);
    conn.close().await.expect("close raw");
}

/// Forgotten digests leave no rows: after the suite's commits and
/// deletion, only the two digests still remembered are stored.
#[tokio::test]
async fn forgotten_digests_leave_no_rows() {
    let sqlite = Sqlite::new(Durability::Process);
    suite::digests_of_old_epochs_and_of_deleted_groups_are_forgotten(&sqlite).await;
    let mut conn = raw(&sqlite.path).await;
    assert_eq!(count(&mut conn, "message_digests").await, 2);
    conn.close().await.expect("close raw");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_share_transactions() {
    const GROUPS: usize = 200;
    const RACERS: usize = 50;
    for durability in BOTH {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = db_path(&dir);
        let store = Arc::new(open(&path, durability).await);
        store
            .commit(step(b"hot", None, put(b"v1")))
            .await
            .expect("create hot group");
        let before = store.transactions_committed();

        // Hold the database's write lock from another connection while the
        // steps are queued, so that batching does not depend on how fast
        // the tasks get scheduled: the writer's first transaction waits
        // (busy timeout) for the lock and everything else queues behind it.
        let mut blocker = raw(&path).await;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut blocker)
            .await
            .expect("take the write lock");

        let started = Instant::now();
        let mut creates = Vec::new();
        for i in 0..GROUPS {
            let store = Arc::clone(&store);
            creates.push(tokio::spawn(async move {
                let mut s = step(format!("group-{i}").as_bytes(), None, put(b"s"));
                s.messages = vec![message((i % 250) as u8, "m")];
                s.jobs = vec![job("a.example", (i % 250) as u8, "r")];
                store.commit(s).await
            }));
        }
        let mut racers = Vec::new();
        for i in 0..RACERS {
            let store = Arc::clone(&store);
            racers.push(tokio::spawn(async move {
                let state = format!("winner-{i}").into_bytes();
                store.commit(step(b"hot", Some(1), put(&state))).await
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        sqlx::query("ROLLBACK")
            .execute(&mut blocker)
            .await
            .expect("release the write lock");

        for task in creates {
            task.await.expect("task").expect("create");
        }
        let mut won = 0;
        let mut lost = 0;
        for task in racers {
            match task.await.expect("task") {
                Ok(()) => won += 1,
                Err(StoreError::Conflict) => lost += 1,
                Err(e) => panic!("racer failed: {e}"),
            }
        }
        let elapsed = started.elapsed();
        let transactions = store.transactions_committed() - before;
        let steps = GROUPS + RACERS;
        println!(
            "{durability:?}: {steps} concurrent steps in {transactions} transactions, \
             {elapsed:?} (200 ms of it with the write lock held elsewhere)"
        );
        assert_eq!((won, lost), (1, RACERS - 1));
        assert!(transactions >= 1);
        assert!(
            (transactions as usize) < steps,
            "{steps} steps needed {transactions} transactions: no batching"
        );
        assert_eq!(
            store.group_count().await.expect("count"),
            (GROUPS + 1) as u64
        );
        let hot = group(&*store, b"hot").await.expect("hot group");
        assert_eq!(hot.version, 2);
        assert!(hot.state.starts_with(b"winner-"));
        assert_eq!(
            store
                .pending_jobs("a.example", 1_000)
                .await
                .expect("jobs")
                .len(),
            GROUPS
        );

        blocker.close().await.expect("close raw");
        match Arc::try_unwrap(store) {
            Ok(store) => store.close().await.expect("close"),
            Err(_) => panic!("store still shared"),
        }
    }
}

/// Without anything holding the lock: how many transactions plain
/// concurrency gives (printed; only the outcome is asserted).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_unassisted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(&db_path(&dir), Durability::PowerLoss).await);
    let started = Instant::now();
    let tasks: Vec<_> = (0..250)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .commit(step(format!("g{i}").as_bytes(), None, put(b"s")))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("commit");
    }
    println!(
        "PowerLoss, unassisted: 250 concurrent steps in {} transactions, {:?}",
        store.transactions_committed(),
        started.elapsed()
    );
    assert_eq!(store.group_count().await.expect("count"), 250);

    // For comparison: the same number of steps one after the other, each
    // its own synced transaction.
    let before = store.transactions_committed();
    let started = Instant::now();
    for i in 0..250 {
        store
            .commit(step(format!("s{i}").as_bytes(), None, put(b"s")))
            .await
            .expect("commit");
    }
    println!(
        "PowerLoss, sequential: 250 steps in {} transactions, {:?}",
        store.transactions_committed() - before,
        started.elapsed()
    );
}

/// A step handed to the writer stays committed even if its caller stops
/// waiting, and `close` finishes the queue before it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_finishes_queued_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = open(&path, Durability::PowerLoss).await;

    // Keep the writer waiting for the lock so the steps stay queued.
    let mut blocker = raw(&path).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .expect("take the write lock");
    for i in 0..20 {
        let commit = store.commit(step(format!("g{i}").as_bytes(), None, put(b"s")));
        // The caller gives up after its step was queued.
        let gave_up = tokio::time::timeout(Duration::from_millis(5), commit).await;
        assert!(gave_up.is_err(), "committed while the lock was held");
    }
    let release = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sqlx::query("ROLLBACK")
            .execute(&mut blocker)
            .await
            .expect("release the write lock");
    };
    let (closed, ()) = tokio::join!(store.close(), release);
    closed.expect("close");
    blocker.close().await.expect("close raw");

    let store = open(&path, Durability::PowerLoss).await;
    assert_eq!(store.group_count().await.expect("count"), 20);
    store.close().await.expect("close");
}

/// A request for the writer, for the batch tests.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
enum Request {
    Commit(Step),
    Complete(i64),
}

/// The kind of an outcome, comparable across stores.
fn kind(result: &Result<(), StoreError>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(StoreError::Conflict) => "conflict",
        Err(StoreError::Repeated) => "repeated",
        Err(StoreError::Database(_)) => "database",
        Err(StoreError::Unavailable(_)) => "unavailable",
    }
}

type GroupRow = (Vec<u8>, i64, Vec<u8>, Option<i64>, i64);
type PageRow = (Vec<u8>, i64, Vec<u8>);
/// A `groups` row: its state is in `state_pages`, `state_len` bytes.
type StoredGroupRow = (Vec<u8>, i64, i64, Option<i64>, i64);
type SnapshotRow = (Vec<u8>, i64, i64, Vec<u8>);
type MessageRow = (Vec<u8>, Vec<u8>, Vec<u8>, i64);
type JobRow = (i64, String, Vec<u8>, Vec<u8>, i64, i64);
type RecipientSetRow = (Vec<u8>, Vec<u8>);
type DigestRow = (Vec<u8>, i64, Vec<u8>);

/// Every row of every table, in a fixed order (a job with its full
/// recipient list, wherever it is stored).
#[derive(Debug, PartialEq, Eq)]
struct Dump {
    groups: Vec<GroupRow>,
    pages: Vec<PageRow>,
    snapshots: Vec<SnapshotRow>,
    messages: Vec<MessageRow>,
    jobs: Vec<JobRow>,
    recipient_sets: Vec<RecipientSetRow>,
    digests: Vec<DigestRow>,
}

async fn dump(path: &Path) -> Dump {
    let mut conn = raw(path).await;
    let pages: Vec<PageRow> =
        sqlx::query_as("SELECT group_id, page, data FROM state_pages ORDER BY group_id, page")
            .fetch_all(&mut conn)
            .await
            .expect("pages");
    let rows: Vec<StoredGroupRow> = sqlx::query_as(
        "SELECT group_id, version, state_len, reserved_until, updated_at FROM groups \
         ORDER BY group_id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("groups");
    // A group's state is its pages, in order, exactly `state_len` bytes.
    let groups = rows
        .into_iter()
        .map(
            |(group_id, version, state_len, reserved_until, updated_at)| {
                let state: Vec<u8> = pages
                    .iter()
                    .filter(|(g, _, _)| *g == group_id)
                    .flat_map(|(_, _, data)| data.iter().copied())
                    .collect();
                assert_eq!(state.len() as i64, state_len, "pages of {group_id:?}");
                (group_id, version, state, reserved_until, updated_at)
            },
        )
        .collect();
    let dump = Dump {
        groups,
        pages,
        snapshots: sqlx::query_as(
            "SELECT group_id, epoch, created_at, data FROM snapshots ORDER BY group_id, epoch",
        )
        .fetch_all(&mut conn)
        .await
        .expect("snapshots"),
        messages: sqlx::query_as(
            "SELECT message_id, group_id, body, created_at FROM messages ORDER BY message_id",
        )
        .fetch_all(&mut conn)
        .await
        .expect("messages"),
        jobs: sqlx::query_as(
            "SELECT j.id, j.destination, j.message_id, COALESCE(rs.recipients, j.recipients), \
                    j.attempts, j.created_at \
             FROM jobs j LEFT JOIN recipient_sets rs ON rs.hash = j.recipient_set \
             ORDER BY j.id",
        )
        .fetch_all(&mut conn)
        .await
        .expect("jobs"),
        recipient_sets: sqlx::query_as("SELECT hash, recipients FROM recipient_sets ORDER BY hash")
            .fetch_all(&mut conn)
            .await
            .expect("recipient_sets"),
        digests: sqlx::query_as(
            "SELECT group_id, epoch, digest FROM message_digests ORDER BY group_id, epoch, digest",
        )
        .fetch_all(&mut conn)
        .await
        .expect("message_digests"),
    };
    conn.close().await.expect("close raw");
    dump
}

async fn close(store: Arc<SqliteStore>) {
    match Arc::try_unwrap(store) {
        Ok(store) => store.close().await.expect("close"),
        Err(_) => panic!("store still shared"),
    }
}

/// Runs `setup` one request at a time, then `batch` twice: queued all at
/// once (one transaction) on one store, and one request at a time on
/// another. Asserts that both give the same outcomes and the same rows, and
/// returns them. Must run on a current-thread runtime.
async fn batched_equals_sequential(
    setup: &[Request],
    batch: &[Request],
) -> (Vec<&'static str>, Dump) {
    let dir = tempfile::tempdir().expect("tempdir");
    let batched_path = dir.path().join("batched.sqlite");
    let sequential_path = dir.path().join("sequential.sqlite");
    let batched = Arc::new(open(&batched_path, Durability::Process).await);
    let sequential = Arc::new(open(&sequential_path, Durability::Process).await);
    for store in [&batched, &sequential] {
        for request in setup {
            match request.clone() {
                Request::Commit(s) => store.commit(s).await.expect("setup commit"),
                Request::Complete(id) => store.complete_job(id).await.expect("setup complete"),
            }
        }
    }

    // On the current-thread runtime the tasks run in spawn order, and all
    // queue their request before the writer task runs again.
    let before = batched.transactions_committed();
    let tasks: Vec<_> = batch
        .iter()
        .cloned()
        .map(|request| {
            let store = Arc::clone(&batched);
            tokio::spawn(async move {
                match request {
                    Request::Commit(s) => store.commit(s).await,
                    Request::Complete(id) => store.complete_job(id).await,
                }
            })
        })
        .collect();
    let mut batched_outcomes = Vec::new();
    for task in tasks {
        batched_outcomes.push(kind(&task.await.expect("task")));
    }
    assert_eq!(
        batched.transactions_committed() - before,
        1,
        "the batch was not one transaction"
    );

    let mut sequential_outcomes = Vec::new();
    for request in batch.iter().cloned() {
        let outcome = match request {
            Request::Commit(s) => sequential.commit(s).await,
            Request::Complete(id) => sequential.complete_job(id).await,
        };
        sequential_outcomes.push(kind(&outcome));
    }
    close(batched).await;
    close(sequential).await;

    let batched_rows = dump(&batched_path).await;
    let sequential_rows = dump(&sequential_path).await;
    assert_eq!(batched_outcomes, sequential_outcomes);
    assert_eq!(batched_rows, sequential_rows);
    (batched_outcomes, batched_rows)
}

/// Application messages remembered, repeated, forgotten by commits (one
/// beyond storable epochs), stale and unstorable, and a group deleted and
/// created again, in one batch with another group interleaved: exactly the
/// outcome of committing one by one, digest rows included.
#[tokio::test(flavor = "current_thread")]
async fn a_batch_of_remembered_messages_equals_its_steps_one_by_one() {
    use Request::Commit;
    let (g, h) = (&b"g"[..], &b"h"[..]);
    let forgetting = |version, state: &[u8], epochs| {
        let mut s = step(g, Some(version), put(state));
        s.forget_digests = Some(epochs);
        Commit(s)
    };
    let mut unstorable = suite::sent(g, 2, 90, 1, 0x90);
    if let Some(m) = &mut unstorable.remember {
        m.epoch = u64::MAX;
    }
    let setup = [
        Commit(step(g, None, put(b"g1"))),
        Commit(step(h, None, put(b"h1"))),
        Commit(suite::sent(g, 1, 1, 1, 0x01)),
        Commit(suite::sent(g, 1, 2, 2, 0x02)),
        Commit(suite::sent(h, 1, 3, 1, 0x01)),
    ];
    let batch = [
        Commit(suite::sent(g, 1, 10, 1, 0x01)), // stored: repeated
        Commit(suite::sent(g, 1, 11, 2, 0x03)),
        Commit(suite::sent(g, 1, 12, 2, 0x03)), // repeated in the batch
        Commit(suite::sent(g, 9, 13, 2, 0x04)), // stale: a conflict first
        Commit(suite::sent(h, 1, 14, 2, 0x03)), // another group's
        forgetting(1, b"g2", 1..2),             // epoch 1 forgotten
        Commit(suite::sent(g, 2, 15, 1, 0x01)), // new again
        Commit(suite::sent(g, 2, 16, 2, 0x02)), // kept: repeated
        Commit(unstorable),
        forgetting(2, b"g3", 0..u64::MAX),      // every epoch
        Commit(suite::sent(g, 3, 17, 2, 0x03)), // new again
        Commit(suite::sent(g, 3, 18, 5, 0x05)),
        Commit(step(g, Some(3), GroupWrite::Delete)),
        Commit(step(g, None, put(b"g-reborn"))),
        Commit(suite::sent(g, 1, 19, 5, 0x05)), // new in the new group
        Commit(suite::sent(h, 1, 20, 1, 0x01)), // still h's: repeated
    ];
    let (outcomes, rows) = batched_equals_sequential(&setup, &batch).await;
    assert_eq!(
        outcomes,
        [
            "repeated", "ok", "repeated", "conflict", "ok", "ok", "ok", "repeated", "database",
            "ok", "ok", "ok", "ok", "ok", "ok", "repeated"
        ]
    );
    let row = |group: &[u8], epoch: i64, digest: u8| (group.to_vec(), epoch, vec![digest; 32]);
    assert_eq!(
        rows.digests,
        [row(g, 5, 0x05), row(h, 1, 0x01), row(h, 2, 0x03)]
    );
}

/// One group created, written to, deleted, created again and written to in
/// one batch, with conflicting and invalid steps in between and another
/// group interleaved: exactly the outcome of committing one by one.
#[tokio::test(flavor = "current_thread")]
async fn a_batch_equals_its_steps_one_by_one() {
    use Request::Commit;
    let g = b"g";
    let h = b"h";
    let setup = [Commit(step(h, None, put(b"h1")))];
    let batch = [
        Commit(at(
            with_snapshot(
                step(
                    g,
                    None,
                    GroupWrite::Put {
                        state: b"g1".to_vec(),
                        reserved_until: Some(50),
                    },
                ),
                1,
                10,
            ),
            101,
        )),
        Commit(at(
            with_mail(
                step(g, Some(1), GroupWrite::Keep),
                vec![message(1, "one")],
                vec![job("x.example", 1, "r1"), job("y.example", 1, "r2")],
            ),
            102,
        )),
        // Stale: nothing of it may remain.
        Commit(with_prune(
            with_snapshot(
                with_mail(
                    step(g, Some(5), put(b"stale")),
                    vec![message(2, "lost")],
                    vec![job("x.example", 2, "r3")],
                ),
                9,
                9,
            ),
            u64::MAX >> 1,
        )),
        Commit(at(
            with_prune(with_snapshot(step(g, Some(1), put(b"g2")), 2, 20), 15),
            103,
        )),
        Commit(at(step(h, Some(1), put(b"h2")), 104)),
        Commit(at(
            with_mail(
                step(g, Some(2), GroupWrite::Delete),
                vec![message(3, "bye")],
                vec![job("x.example", 3, "r4")],
            ),
            105,
        )),
        Commit(step(g, Some(2), GroupWrite::Keep)), // deleted by now
        Commit(at(
            with_snapshot(step(g, None, put(b"g-reborn")), 1, 30),
            106,
        )),
        // A job whose message exists nowhere: this step fails alone.
        Commit(with_mail(
            step(g, Some(1), put(b"dangling")),
            Vec::new(),
            vec![job("x.example", 99, "nobody")],
        )),
        Commit(at(
            with_mail(
                step(g, Some(1), put(b"g-final")),
                vec![message(4, "four")],
                vec![job("x.example", 4, "r5"), job("z.example", 4, "r6")],
            ),
            107,
        )),
        Commit(step(g, None, put(b"exists"))),
    ];
    let (outcomes, rows) = batched_equals_sequential(&setup, &batch).await;
    assert_eq!(
        outcomes,
        [
            "ok", "ok", "conflict", "ok", "ok", "ok", "conflict", "ok", "database", "ok",
            "conflict"
        ]
    );
    assert_eq!(
        rows.groups,
        vec![
            (g.to_vec(), 2, b"g-final".to_vec(), None, 107),
            (h.to_vec(), 2, b"h2".to_vec(), None, 104),
        ]
    );
    assert_eq!(
        rows.snapshots,
        vec![(g.to_vec(), 1, 30, snapshot(1, 30).data)]
    );
    let messages: Vec<_> = rows.messages.iter().map(|m| (m.0[0], m.3)).collect();
    assert_eq!(messages, vec![(1, 102), (3, 105), (4, 107)]);
    let jobs: Vec<_> = rows
        .jobs
        .iter()
        .map(|j| (j.0, j.1.as_str(), j.2[0], j.5))
        .collect();
    assert_eq!(
        jobs,
        vec![
            (1, "x.example", 1, 102),
            (2, "y.example", 1, 102),
            (3, "x.example", 3, 105),
            (4, "x.example", 4, 107),
            (5, "z.example", 4, 107),
        ]
    );
}

/// Snapshots written and pruned by several steps of one batch: a snapshot
/// is pruned only by its own step or later ones, a pruned rewrite takes the
/// stored row of its epoch with it, and a deleted group's snapshots go
/// except those written after the deletion.
#[tokio::test(flavor = "current_thread")]
async fn snapshot_writes_and_prunes_of_one_batch_keep_their_order() {
    use Request::Commit;
    let g = b"g";
    let d = b"d";
    let k = b"k";
    let setup = [
        Commit(with_snapshot(step(g, None, put(b"1")), 1, 10)),
        Commit(with_snapshot(step(g, Some(1), put(b"2")), 2, 20)),
        Commit(with_snapshot(step(g, Some(2), put(b"3")), 3, 100)),
        Commit(with_snapshot(step(g, Some(3), put(b"4")), 6, 1_000)),
        Commit(with_snapshot(step(d, None, put(b"1")), 1, 10)),
        Commit(with_snapshot(step(k, None, put(b"1")), 1, 10)),
    ];
    let batch = [
        // Its own snapshot is older than its own cutoff: gone, with epoch 1.
        Commit(with_prune(
            with_snapshot(step(g, Some(4), put(b"5")), 4, 5),
            15,
        )),
        // Rewrites epoch 3 (stored with created_at 100) as created at 30...
        Commit(with_snapshot(step(g, Some(5), put(b"6")), 3, 30)),
        // ...so this prune takes epoch 3 (and 2), not only rows before 50.
        Commit(with_prune(step(g, Some(6), put(b"7")), 50)),
        // Written after that prune: stays...
        Commit(with_snapshot(step(g, Some(7), put(b"8")), 5, 40)),
        // ...until this later, smaller cutoff.
        Commit(with_prune(step(g, Some(8), put(b"9")), 45)),
        // Older than the last cutoff, but written after it: stays.
        Commit(with_snapshot(step(g, Some(9), put(b"10")), 7, 44)),
        // Stale: its prune must not happen.
        Commit(with_prune(
            step(g, Some(3), GroupWrite::Keep),
            u64::MAX >> 1,
        )),
        // Deleted group: the snapshot written by the deleting step stays.
        Commit(with_snapshot(step(d, Some(1), put(b"2")), 2, 20)),
        Commit(with_snapshot(step(d, Some(2), GroupWrite::Delete), 3, 5)),
        // A Keep's snapshot pruned by its own step, with the stored one.
        Commit(with_prune(
            with_snapshot(step(k, Some(1), GroupWrite::Keep), 2, 50),
            60,
        )),
    ];
    let (outcomes, rows) = batched_equals_sequential(&setup, &batch).await;
    assert_eq!(
        outcomes,
        [
            "ok", "ok", "ok", "ok", "ok", "ok", "conflict", "ok", "ok", "ok"
        ]
    );
    let snapshots: Vec<_> = rows
        .snapshots
        .iter()
        .map(|s| (s.0.as_slice(), s.1, s.2))
        .collect();
    assert_eq!(
        snapshots,
        vec![(&d[..], 3, 5), (&g[..], 6, 1_000), (&g[..], 7, 44),]
    );
    let versions: Vec<_> = rows.groups.iter().map(|r| (r.0.as_slice(), r.1)).collect();
    assert_eq!(versions, vec![(&g[..], 10), (&k[..], 1)]);
}

/// Job completions queued between steps: a step after a completion sees
/// its effect (a message deleted with its last job), steps before it do not
/// (a message kept by a new job), and completing twice or an unknown job is
/// harmless.
#[tokio::test(flavor = "current_thread")]
async fn completions_and_steps_of_one_batch_keep_their_order() {
    use Request::{Commit, Complete};
    let g = b"g";
    let setup = [
        Commit(step(g, None, put(b"1"))),
        Commit(at(
            with_mail(
                step(g, Some(1), GroupWrite::Keep),
                vec![message(1, "m1"), message(2, "m2"), message(3, "m3")],
                vec![
                    job("x.example", 1, "j1"),
                    job("x.example", 2, "j2"),
                    job("y.example", 2, "j3"),
                    job("x.example", 3, "j4"),
                ],
            ),
            500,
        )),
    ];
    let batch = [
        // Message 1 goes with its last job...
        Complete(1),
        // ...and comes back, as new, with this step.
        Commit(at(
            with_mail(
                step(g, Some(1), GroupWrite::Keep),
                vec![message(1, "m1 again")],
                vec![job("z.example", 1, "j5")],
            ),
            600,
        )),
        // A new job for message 2 (stored, not carried)...
        Commit(at(
            with_mail(
                step(g, Some(1), GroupWrite::Keep),
                Vec::new(),
                vec![job("z.example", 2, "j6")],
            ),
            601,
        )),
        // ...keeps it when its old jobs complete.
        Complete(2),
        Complete(3),
        // Message 3 goes with its last job...
        Complete(4),
        // ...so a job for it now refers to nothing.
        Commit(with_mail(
            step(g, Some(1), GroupWrite::Keep),
            Vec::new(),
            vec![job("x.example", 3, "j7")],
        )),
        Complete(4),
        Complete(999),
        Commit(at(step(g, Some(1), put(b"2")), 602)),
    ];
    let (outcomes, rows) = batched_equals_sequential(&setup, &batch).await;
    assert_eq!(
        outcomes,
        [
            "ok", "ok", "ok", "ok", "ok", "ok", "database", "ok", "ok", "ok"
        ]
    );
    let messages: Vec<_> = rows
        .messages
        .iter()
        .map(|m| (m.0[0], m.2.as_slice(), m.3))
        .collect();
    assert_eq!(
        messages,
        vec![(1, &b"m1 again"[..], 600), (2, &b"m2"[..], 500)]
    );
    let jobs: Vec<_> = rows.jobs.iter().map(|j| (j.0, j.2[0], j.5)).collect();
    assert_eq!(jobs, vec![(5, 1, 600), (6, 2, 601)]);
    let recipients: Vec<_> = rows.jobs.iter().map(|j| j.3.as_slice()).collect();
    assert_eq!(recipients, vec![&b"j5"[..], &b"j6"[..]]);
    // The lists of the completed jobs went with them.
    let mut sets: Vec<_> = rows.recipient_sets.iter().map(|r| r.1.as_slice()).collect();
    sets.sort();
    assert_eq!(sets, vec![&b"j5"[..], &b"j6"[..]]);
    assert_eq!(rows.groups.first().map(|r| r.1), Some(2));
}

/// When the database itself fails a statement, the whole batch fails and
/// leaves nothing behind; the store goes on working.
#[tokio::test(flavor = "current_thread")]
async fn a_database_failure_fails_the_whole_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = Arc::new(open(&path, Durability::PowerLoss).await);
    store
        .commit(step(b"g", None, put(b"1")))
        .await
        .expect("create");
    // Something the store cannot foresee: the database refuses a row.
    let mut conn = raw(&path).await;
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON jobs WHEN NEW.destination = 'refused' \
         BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END",
    )
    .execute(&mut conn)
    .await
    .expect("trigger");

    let before = store.transactions_committed();
    let mut pending = Vec::new();
    for s in [
        step(b"g", Some(1), put(b"2")),
        with_mail(
            step(b"h", None, put(b"1")),
            vec![message(1, "m")],
            vec![job("refused", 1, "r")],
        ),
        step(b"i", None, put(b"1")),
    ] {
        pending.push(store.enqueue(s).await.expect("enqueue"));
    }
    for p in pending {
        match p.await {
            Err(StoreError::Database(e)) => assert!(e.contains("refused by trigger"), "{e}"),
            other => panic!("expected the batch to fail, got {other:?}"),
        }
    }
    assert_eq!(store.transactions_committed(), before);
    assert_eq!(group(&*store, b"g").await.map(|g| g.version), Some(1));
    assert_eq!(group(&*store, b"h").await, None);
    assert_eq!(group(&*store, b"i").await, None);
    assert_eq!(count(&mut conn, "messages").await, 0);

    store
        .commit(step(b"g", Some(1), put(b"2")))
        .await
        .expect("commit after a failed batch");
    assert_eq!(group(&*store, b"g").await.map(|g| g.version), Some(2));
    conn.close().await.expect("close raw");
    close(store).await;
}

/// `enqueue` returns once the step is queued; its `Pending` resolves once
/// the step is durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_returns_before_the_step_is_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = open(&path, Durability::PowerLoss).await;
    let mut blocker = raw(&path).await;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .expect("take the write lock");
    let mut pending = tokio::time::timeout(
        Duration::from_secs(1),
        store.enqueue(step(b"g", None, put(b"1"))),
    )
    .await
    .expect("enqueue waited for the write lock")
    .expect("enqueue");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), &mut pending)
            .await
            .is_err(),
        "durable while the write lock was held elsewhere"
    );
    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("release the write lock");
    pending.await.expect("durable");
    assert_eq!(group(&store, b"g").await.map(|g| g.version), Some(1));
    blocker.close().await.expect("close raw");
    store.close().await.expect("close");
}

/// Many small steps (one 1.3 KiB message, three jobs) queued at once share
/// few transactions. Not a timing test: the time is only printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_steps_share_few_transactions() {
    const STEPS: usize = 2_000;
    for durability in BOTH {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = db_path(&dir);
        let store = open(&path, durability).await;
        let g = b"busy group";
        store
            .commit(step(g, None, put(b"state")))
            .await
            .expect("create");
        let body = vec![0x5a; 1_300];
        let before = store.transactions_committed();
        let started = Instant::now();
        let mut pending = Vec::with_capacity(STEPS);
        for i in 0..STEPS {
            let message_id = (i as u128).to_be_bytes();
            let mut s = step(g, Some(1), GroupWrite::Keep);
            s.messages = vec![NewMessage {
                message_id,
                body: body.clone(),
            }];
            s.jobs = (0..3)
                .map(|d| NewJob {
                    destination: format!("d{d}.example"),
                    message_id,
                    recipients: b"recipients".to_vec(),
                })
                .collect();
            pending.push(store.enqueue(s).await.expect("enqueue"));
        }
        for p in pending {
            p.await.expect("durable");
        }
        let elapsed = started.elapsed();
        let transactions = store.transactions_committed() - before;
        println!(
            "{durability:?}: {STEPS} steps (1 message of 1.3 KiB, 3 jobs) in {transactions} \
             transactions, {elapsed:?}, {:.0} steps/s",
            STEPS as f64 / elapsed.as_secs_f64()
        );
        assert!(
            transactions <= 50,
            "{STEPS} steps needed {transactions} transactions"
        );
        let mut conn = raw(&path).await;
        assert_eq!(count(&mut conn, "messages").await, STEPS as i64);
        assert_eq!(count(&mut conn, "jobs").await, 3 * STEPS as i64);
        conn.close().await.expect("close raw");
        assert_eq!(group(&store, g).await.map(|g| g.version), Some(1));
        store.close().await.expect("close");
    }
}

/// A recipient list as the service encodes it: newline-separated ClientIDs
/// (about 1 KiB for 20 members).
fn recipient_list(destination: &str, members: usize) -> Vec<u8> {
    (0..members)
        .map(|m| format!("{m:04}-0123456789abcdef0123456789abcdef@{destination}"))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

/// `(hash, recipients)` of every stored recipient list, by hash.
async fn recipient_sets(conn: &mut SqliteConnection) -> Vec<(Vec<u8>, Vec<u8>)> {
    sqlx::query_as("SELECT hash, recipients FROM recipient_sets ORDER BY hash")
        .fetch_all(conn)
        .await
        .expect("recipient_sets")
}

/// The recipients of each pending job of `destination`, oldest first.
async fn pending_recipients(store: &SqliteStore, destination: &str) -> Vec<Vec<u8>> {
    store
        .pending_jobs(destination, 10_000)
        .await
        .expect("pending_jobs")
        .into_iter()
        .map(|j| j.recipients)
        .collect()
}

/// Steps of one group repeating the same recipient lists store each list
/// once (keyed by its SHA-256), whether the steps share a transaction or
/// not; jobs keep only the hash, and `pending_jobs` returns the full lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_recipient_lists_are_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = open(&path, Durability::Process).await;
    let g = b"group";
    store
        .commit(step(g, None, put(b"state")))
        .await
        .expect("create");
    let here = recipient_list("here.example", 20);
    assert!(here.len() > 1_000);
    let mail = |i: u32, jobs: Vec<(&str, &[u8])>| {
        let message_id = u128::from(i).to_be_bytes();
        let mut s = step(g, Some(1), GroupWrite::Keep);
        s.messages = vec![NewMessage {
            message_id,
            body: vec![0x5a; 1_400],
        }];
        s.jobs = jobs
            .into_iter()
            .map(|(destination, recipients)| NewJob {
                destination: destination.into(),
                message_id,
                recipients: recipients.to_vec(),
            })
            .collect();
        s
    };

    // 100 steps with the same list: half queued at once (few transactions),
    // half one by one (one transaction each).
    let mut pending = Vec::new();
    for i in 0..50 {
        pending.push(
            store
                .enqueue(mail(i, vec![("here.example", &here)]))
                .await
                .expect("enqueue"),
        );
    }
    for p in pending {
        p.await.expect("durable");
    }
    for i in 50..100 {
        store
            .commit(mail(i, vec![("here.example", &here)]))
            .await
            .expect("commit");
    }
    let mut conn = raw(&path).await;
    assert_eq!(count(&mut conn, "jobs").await, 100);
    assert_eq!(
        recipient_sets(&mut conn).await,
        vec![(sha256(&here), here.clone())]
    );
    let (copies, hashes): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE length(recipients) > 0), \
                COUNT(*) FILTER (WHERE recipient_set = ?1) FROM jobs",
    )
    .bind(sha256(&here))
    .fetch_one(&mut conn)
    .await
    .expect("job rows");
    assert_eq!((copies, hashes), (0, 100));
    assert_eq!(
        pending_recipients(&store, "here.example").await,
        vec![here.clone(); 100]
    );

    // Distinct lists are distinct rows, the same list on two destinations
    // one row; an empty list is a list like any other.
    let there = recipient_list("there.example", 20);
    let few = recipient_list("there.example", 2);
    let mut pending = Vec::new();
    for i in 100..110 {
        pending.push(
            store
                .enqueue(mail(
                    i,
                    vec![
                        ("here.example", &here),
                        ("there.example", &there),
                        ("elsewhere.example", &few),
                        ("empty.example", b""),
                    ],
                ))
                .await
                .expect("enqueue"),
        );
    }
    for p in pending {
        p.await.expect("durable");
    }
    store
        .commit(mail(110, vec![("elsewhere.example", &there)]))
        .await
        .expect("commit");
    let mut expected = vec![
        (sha256(&here), here.clone()),
        (sha256(&there), there.clone()),
        (sha256(&few), few.clone()),
        (sha256(b""), Vec::new()),
    ];
    expected.sort();
    assert_eq!(recipient_sets(&mut conn).await, expected);
    assert_eq!(
        pending_recipients(&store, "here.example").await,
        vec![here.clone(); 110]
    );
    assert_eq!(
        pending_recipients(&store, "there.example").await,
        vec![there.clone(); 10]
    );
    let mut elsewhere = vec![few.clone(); 10];
    elsewhere.push(there.clone());
    assert_eq!(
        pending_recipients(&store, "elsewhere.example").await,
        elsewhere
    );
    assert_eq!(
        pending_recipients(&store, "empty.example").await,
        vec![Vec::<u8>::new(); 10]
    );
    conn.close().await.expect("close raw");
    store.close().await.expect("close");
}

/// A recipient list stays while a job refers to it and goes with the last
/// one, however the completions are batched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_list_goes_with_its_last_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = open(&path, Durability::PowerLoss).await;
    let g = b"g";
    store
        .commit(step(g, None, put(b"1")))
        .await
        .expect("create");
    store
        .commit(with_mail(
            step(g, Some(1), GroupWrite::Keep),
            vec![message(1, "m1"), message(2, "m2")],
            vec![
                job("x.example", 1, "shared"),
                job("y.example", 1, "own"),
                job("x.example", 2, "shared"),
            ],
        ))
        .await
        .expect("mail 1");
    store
        .commit(with_mail(
            step(g, Some(1), GroupWrite::Keep),
            vec![message(3, "m3")],
            vec![job("x.example", 3, "shared")],
        ))
        .await
        .expect("mail 2");
    let mut conn = raw(&path).await;
    assert_eq!(count(&mut conn, "recipient_sets").await, 2);

    // Some of the jobs of "shared" complete: it stays.
    store.complete_job(1).await.expect("complete 1");
    store.complete_job(3).await.expect("complete 3");
    assert_eq!(count(&mut conn, "recipient_sets").await, 2);
    assert_eq!(
        pending_recipients(&store, "x.example").await,
        vec![b"shared".to_vec()]
    );

    // Its last job completes (with another job, and again): it goes, "own"
    // stays.
    let mut pending = Vec::new();
    for id in [4, 4, 999] {
        pending.push(store.complete_job(id));
    }
    for p in pending {
        p.await.expect("complete");
    }
    assert_eq!(
        recipient_sets(&mut conn).await,
        vec![(sha256(b"own"), b"own".to_vec())]
    );
    assert_eq!(
        pending_recipients(&store, "x.example").await,
        Vec::<Vec<u8>>::new()
    );
    assert_eq!(
        pending_recipients(&store, "y.example").await,
        vec![b"own".to_vec()]
    );
    store.complete_job(2).await.expect("complete 2");
    assert_eq!(count(&mut conn, "recipient_sets").await, 0);
    assert_eq!(count(&mut conn, "jobs").await, 0);
    assert_eq!(count(&mut conn, "messages").await, 0);
    conn.close().await.expect("close raw");
    store.close().await.expect("close");
}

/// A list whose last job completes and that a later step of the same batch
/// uses again is stored again: exactly the outcome of one by one.
#[tokio::test(flavor = "current_thread")]
async fn recipient_lists_of_one_batch_keep_their_order() {
    use Request::{Commit, Complete};
    let g = b"g";
    let setup = [
        Commit(step(g, None, put(b"1"))),
        Commit(with_mail(
            step(g, Some(1), GroupWrite::Keep),
            vec![message(1, "m1"), message(2, "m2")],
            vec![
                job("x.example", 1, "a"),
                job("x.example", 2, "a"),
                job("y.example", 1, "b"),
            ],
        )),
    ];
    let batch = [
        Complete(1),
        Complete(2),
        // "a" has no job left here, and is used again.
        Commit(with_mail(
            step(g, Some(1), GroupWrite::Keep),
            vec![message(3, "m3")],
            vec![job("x.example", 3, "a"), job("y.example", 3, "c")],
        )),
        // "b" goes for good.
        Complete(3),
        // A step that fails stores no list.
        Commit(with_mail(
            step(g, Some(7), GroupWrite::Keep),
            vec![message(4, "m4")],
            vec![job("x.example", 4, "d")],
        )),
    ];
    let (outcomes, rows) = batched_equals_sequential(&setup, &batch).await;
    assert_eq!(outcomes, ["ok", "ok", "ok", "ok", "conflict"]);
    let mut sets: Vec<_> = rows.recipient_sets.iter().map(|r| r.1.as_slice()).collect();
    sets.sort();
    assert_eq!(sets, vec![&b"a"[..], &b"c"[..]]);
    let jobs: Vec<_> = rows.jobs.iter().map(|j| (j.0, j.3.as_slice())).collect();
    assert_eq!(jobs, vec![(4, &b"a"[..]), (5, &b"c"[..])]);
}

/// A database written before recipient lists were stored apart (schema
/// version 1) is migrated on open; its jobs keep their own lists and
/// complete as before, next to new jobs; reopening changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_from_before_recipient_sets_keep_working() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);

    // Schema version 1 only, with one group, a message and two jobs.
    let migrations = dir.path().join("migrations-v1");
    std::fs::create_dir(&migrations).expect("mkdir");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/0001_init.sql"),
        migrations.join("0001_init.sql"),
    )
    .expect("copy 0001");
    let old_list = recipient_list("x.example", 20);
    {
        let mut conn = SqliteConnection::connect_with(
            &SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .expect("connect");
        sqlx::migrate::Migrator::new(migrations)
            .await
            .expect("migrator v1")
            .run(&mut conn)
            .await
            .expect("migrate to v1");
        sqlx::query(
            "INSERT INTO groups (group_id, version, state, updated_at) VALUES (?1, 1, ?2, 10)",
        )
        .bind(&b"g"[..])
        .bind(&b"state"[..])
        .execute(&mut conn)
        .await
        .expect("group");
        sqlx::query(
            "INSERT INTO messages (message_id, group_id, body, created_at) \
             VALUES (?1, ?2, ?3, 10)",
        )
        .bind(vec![1u8; 16])
        .bind(&b"g"[..])
        .bind(&b"old body"[..])
        .execute(&mut conn)
        .await
        .expect("message");
        for (destination, recipients) in [("x.example", &old_list[..]), ("y.example", b"y")] {
            sqlx::query(
                "INSERT INTO jobs (destination, message_id, recipients, created_at) \
                 VALUES (?1, ?2, ?3, 10)",
            )
            .bind(destination)
            .bind(vec![1u8; 16])
            .bind(recipients)
            .execute(&mut conn)
            .await
            .expect("job");
        }
        conn.close().await.expect("close v1");
    }

    let store = open(&path, Durability::PowerLoss).await;
    let mut conn = raw(&path).await;
    let nulls: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE recipient_set IS NULL")
        .fetch_one(&mut conn)
        .await
        .expect("old jobs");
    assert_eq!(nulls, 2);
    let old = store.pending_jobs("x.example", 10).await.expect("pending");
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].recipients, old_list);
    assert_eq!(old[0].body, b"old body");

    // A new job with the same list as an old one stores it apart.
    store
        .commit(with_mail(
            step(b"g", Some(1), GroupWrite::Keep),
            vec![message(2, "new body")],
            vec![NewJob {
                destination: "x.example".into(),
                message_id: [2; 16],
                recipients: old_list.clone(),
            }],
        ))
        .await
        .expect("new mail");
    assert_eq!(
        pending_recipients(&store, "x.example").await,
        vec![old_list.clone(), old_list.clone()]
    );
    assert_eq!(count(&mut conn, "recipient_sets").await, 1);

    // The old jobs complete as before, and leave the new list alone.
    store.complete_job(old[0].id).await.expect("complete old x");
    assert_eq!(count(&mut conn, "recipient_sets").await, 1);
    assert_eq!(count(&mut conn, "messages").await, 2);
    store.close().await.expect("close");

    // Reopening (nothing to migrate) changes nothing.
    let store = open(&path, Durability::PowerLoss).await;
    assert_eq!(
        pending_recipients(&store, "x.example").await,
        vec![old_list.clone()]
    );
    assert_eq!(
        pending_recipients(&store, "y.example").await,
        vec![b"y".to_vec()]
    );
    for destination in ["x.example", "y.example"] {
        for job in store.pending_jobs(destination, 10).await.expect("pending") {
            store.complete_job(job.id).await.expect("complete");
        }
    }
    assert_eq!(count(&mut conn, "recipient_sets").await, 0);
    assert_eq!(count(&mut conn, "jobs").await, 0);
    assert_eq!(count(&mut conn, "messages").await, 0);
    conn.close().await.expect("close raw");
    store.close().await.expect("close");
}

/// Puts, patches and a deletion of one group in one batch: exactly the
/// pages of committing them one by one.
#[tokio::test(flavor = "current_thread")]
async fn patches_in_a_batch_equal_their_steps_one_by_one() {
    use Request::Commit;
    let g = b"g";
    let a = paged_state(3, 0);
    let mut b = a.clone();
    b[10] ^= 1;
    b.extend(paged_state(1, 7));
    let c = b[..STATE_PAGE].to_vec();
    let d = paged_state(2, 40);
    let batch = [
        Commit(step(g, Some(1), GroupWrite::patch(&a, &b))),
        Commit(step(g, Some(2), GroupWrite::patch(&b, &c))),
        // Stale: its pages must not appear.
        Commit(step(g, Some(2), GroupWrite::patch(&b, &d))),
        Commit(step(g, Some(3), GroupWrite::Delete)),
        Commit(step(g, None, put(&d))),
        Commit(step(g, Some(1), GroupWrite::patch(&d, &a))),
    ];
    let (outcomes, rows) =
        batched_equals_sequential(&[Commit(step(g, None, put(&a)))], &batch).await;
    assert_eq!(outcomes, ["ok", "ok", "conflict", "ok", "ok", "ok"]);
    assert_eq!(rows.groups.len(), 1);
    assert_eq!((rows.groups[0].1, &rows.groups[0].2), (2, &a));
}

/// A database of schema version 2 (states stored inline) keeps every state
/// when it is opened by this version, which moves them into pages.
#[tokio::test]
async fn states_stored_before_pages_survive_the_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let mut conn = at_schema(&dir, &path, &["0001_init.sql", "0002_recipient_sets.sql"]).await;
    let big = paged_state(5, 3);
    for (group, version, state, reserved) in [
        (&b"big"[..], 7, big.clone(), None),
        (&b"small"[..], 2, b"tiny".to_vec(), None),
        (&b"reserved"[..], 1, Vec::new(), Some(5_000i64)),
    ] {
        sqlx::query(
            "INSERT INTO groups (group_id, version, state, reserved_until, updated_at) \
             VALUES (?1, ?2, ?3, ?4, 1)",
        )
        .bind(group)
        .bind(version)
        .bind(state)
        .bind(reserved)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let store = open(&path, Durability::Process).await;
    assert_eq!(stored_state(&store, b"big").await, (7, big.clone()));
    assert_eq!(stored_state(&store, b"small").await, (2, b"tiny".to_vec()));
    let reserved = store.load_group(b"reserved").await.unwrap().unwrap();
    assert_eq!(
        (reserved.state, reserved.reserved_until),
        (Vec::new(), Some(5_000))
    );
    // And the migrated state takes patches like any other.
    let mut next = big.clone();
    next[4 * STATE_PAGE] ^= 1;
    store
        .commit(step(b"big", Some(7), GroupWrite::patch(&big, &next)))
        .await
        .unwrap();
    assert_eq!(stored_state(&store, b"big").await, (8, next));
}

/// The writer remembers versions between its transactions; a commit by
/// another connection (another process on the same file) must still be
/// seen by the version check.
#[tokio::test]
async fn a_commit_by_another_connection_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = open(&path, Durability::Process).await;
    let g = b"shared";
    store.commit(step(g, None, put(b"one"))).await.unwrap();
    store.commit(step(g, Some(1), put(b"two"))).await.unwrap();
    store.commit(step(g, Some(2), put(b"three"))).await.unwrap();
    let mut other = raw(&path).await;
    sqlx::query("UPDATE groups SET version = 9 WHERE group_id = ?1")
        .bind(&g[..])
        .execute(&mut other)
        .await
        .unwrap();
    assert!(matches!(
        store.commit(step(g, Some(3), put(b"stale"))).await,
        Err(StoreError::Conflict)
    ));
    store.commit(step(g, Some(9), put(b"ten"))).await.unwrap();
    assert_eq!(stored_state(&store, g).await, (10, b"ten".to_vec()));
    // A group the other connection created is seen too.
    sqlx::query(
        "INSERT INTO groups (group_id, version, state, state_len, updated_at) \
         VALUES (x'6e6577', 4, x'', 0, 1)",
    )
    .execute(&mut other)
    .await
    .unwrap();
    assert!(matches!(
        store.commit(step(b"new", None, put(b"mine"))).await,
        Err(StoreError::Conflict)
    ));
    store
        .commit(step(g, Some(10), put(b"eleven")))
        .await
        .unwrap();
    assert_eq!(stored_state(&store, g).await, (11, b"eleven".to_vec()));
}
