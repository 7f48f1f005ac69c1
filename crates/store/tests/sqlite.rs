//! `SqliteStore` against real SQLite files in a temporary directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mimid_store::{
    Durability, GroupWrite, NewJob, NewMessage, Snapshot, SqliteStore, Step, Store, StoreError,
    StoredGroup,
};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

const BOTH: [Durability; 2] = [Durability::Process, Durability::PowerLoss];

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("mimid.sqlite")
}

async fn open(path: &Path, durability: Durability) -> SqliteStore {
    match SqliteStore::open(path, durability).await {
        Ok(store) => store,
        Err(e) => panic!("open {}: {e}", path.display()),
    }
}

fn step(group: &[u8], expected_version: Option<u64>, write: GroupWrite) -> Step {
    Step {
        group_id: group.to_vec(),
        expected_version,
        write,
        snapshot: None,
        prune_snapshots_before: None,
        messages: Vec::new(),
        jobs: Vec::new(),
        now: 1_000,
    }
}

fn put(state: &[u8]) -> GroupWrite {
    GroupWrite::Put {
        state: state.to_vec(),
        reserved_until: None,
    }
}

fn snapshot(epoch: u64, created_at: u64) -> Snapshot {
    Snapshot {
        epoch,
        created_at,
        data: format!("tree+groupinfo of epoch {epoch}").into_bytes(),
    }
}

fn message(id: u8, body: &str) -> NewMessage {
    NewMessage {
        message_id: [id; 16],
        body: body.as_bytes().to_vec(),
    }
}

fn job(destination: &str, message_id: u8, recipients: &str) -> NewJob {
    NewJob {
        destination: destination.into(),
        message_id: [message_id; 16],
        recipients: recipients.as_bytes().to_vec(),
    }
}

async fn group(store: &SqliteStore, id: &[u8]) -> Option<StoredGroup> {
    store.load_group(id).await.expect("load_group")
}

/// A second, plain connection to the same file, to look at rows the store
/// does not expose.
async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("raw connection")
}

async fn count(conn: &mut SqliteConnection, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(conn)
        .await
        .expect("count")
}

fn is_conflict(result: &Result<(), StoreError>) -> bool {
    matches!(result, Err(StoreError::Conflict))
}

#[tokio::test]
async fn create_update_and_conflicts_change_nothing() {
    for durability in BOTH {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = db_path(&dir);
        let store = open(&path, durability).await;
        let g = b"group-1";

        assert_eq!(group(&store, g).await, None);
        assert_eq!(store.group_count().await.expect("count"), 0);

        // Create a reservation, then activate it.
        let mut create = step(
            g,
            None,
            GroupWrite::Put {
                state: Vec::new(),
                reserved_until: Some(5_000),
            },
        );
        create.now = 900;
        store.commit(create).await.expect("create");
        assert_eq!(
            group(&store, g).await,
            Some(StoredGroup {
                version: 1,
                state: Vec::new(),
                reserved_until: Some(5_000),
            })
        );

        let mut update = step(g, Some(1), put(b"state-2"));
        update.snapshot = Some(snapshot(1, 1_000));
        update.messages = vec![message(1, "hello")];
        update.jobs = vec![job("a.example", 1, "alice")];
        store.commit(update).await.expect("update");
        let expected = StoredGroup {
            version: 2,
            state: b"state-2".to_vec(),
            reserved_until: None,
        };
        assert_eq!(group(&store, g).await, Some(expected.clone()));

        // A stale writer: every part of its step must be discarded.
        let mut stale = step(g, Some(1), put(b"stale"));
        stale.snapshot = Some(snapshot(2, 1_100));
        stale.prune_snapshots_before = Some(u64::MAX >> 1);
        stale.messages = vec![message(2, "lost")];
        stale.jobs = vec![job("a.example", 2, "bob"), job("b.example", 1, "carol")];
        assert!(is_conflict(&store.commit(stale).await));

        // Creating an existing slot, updating a missing one, and a Keep with
        // the wrong version are conflicts too.
        assert!(is_conflict(&store.commit(step(g, None, put(b"x"))).await));
        assert!(is_conflict(
            &store.commit(step(b"missing", Some(1), put(b"x"))).await
        ));
        let mut keep = step(g, Some(7), GroupWrite::Keep);
        keep.messages = vec![message(3, "also lost")];
        keep.jobs = vec![job("a.example", 3, "dave")];
        assert!(is_conflict(&store.commit(keep).await));

        assert_eq!(group(&store, g).await, Some(expected));
        assert_eq!(group(&store, b"missing").await, None);
        assert_eq!(store.group_count().await.expect("count"), 1);
        assert_eq!(
            store.load_snapshot(g, 1).await.expect("snapshot"),
            Some(snapshot(1, 1_000))
        );
        assert_eq!(store.load_snapshot(g, 2).await.expect("snapshot"), None);
        let jobs = store.pending_jobs("a.example", 10).await.expect("jobs");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].message_id, [1; 16]);
        assert_eq!(jobs[0].body, b"hello");
        assert_eq!(jobs[0].recipients, b"alice");
        assert_eq!(jobs[0].created_at, 1_000);
        assert_eq!(jobs[0].attempts, 0);
        assert!(
            store
                .pending_jobs("b.example", 10)
                .await
                .expect("jobs")
                .is_empty()
        );

        let mut conn = raw(&path).await;
        assert_eq!(count(&mut conn, "messages").await, 1);
        assert_eq!(count(&mut conn, "jobs").await, 1);
        assert_eq!(count(&mut conn, "snapshots").await, 1);
        conn.close().await.expect("close raw");
        store.close().await.expect("close");
    }
}

#[tokio::test]
async fn keep_stores_a_message_once_and_drops_it_with_its_last_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = open(&path, Durability::Process).await;
    let g = b"group-keep";
    store
        .commit(step(g, None, put(b"s1")))
        .await
        .expect("create");

    // One message to three destinations' jobs (two on the same
    // destination), one more message, and a Keep: the version stays.
    let mut keep = step(g, Some(1), GroupWrite::Keep);
    keep.now = 2_000;
    keep.messages = vec![message(7, "fan-out"), message(8, "other")];
    keep.jobs = vec![
        job("a.example", 7, "alice"),
        job("b.example", 7, "bob"),
        job("a.example", 7, "anne"),
        job("c.example", 8, "carl"),
    ];
    store.commit(keep).await.expect("keep");
    assert_eq!(group(&store, g).await.map(|g| g.version), Some(1));

    // The same message id again (a retried step) is ignored, not duplicated.
    let mut again = step(g, Some(1), GroupWrite::Keep);
    again.messages = vec![message(7, "a different body")];
    store.commit(again).await.expect("keep again");

    let mut conn = raw(&path).await;
    assert_eq!(count(&mut conn, "messages").await, 2);
    assert_eq!(count(&mut conn, "jobs").await, 4);

    // Oldest first, limited, body joined.
    let a = store.pending_jobs("a.example", 10).await.expect("jobs");
    assert_eq!(a.len(), 2);
    assert!(a[0].id < a[1].id);
    assert_eq!(a[0].recipients, b"alice");
    assert_eq!(a[1].recipients, b"anne");
    assert!(
        a.iter()
            .all(|j| j.body == b"fan-out" && j.created_at == 2_000)
    );
    let first = store.pending_jobs("a.example", 1).await.expect("jobs");
    assert_eq!(first, a[..1].to_vec());
    let b = store.pending_jobs("b.example", 10).await.expect("jobs");
    assert_eq!(b.len(), 1);

    // The message stays until its last job is done.
    store.complete_job(a[0].id).await.expect("complete");
    assert_eq!(count(&mut conn, "messages").await, 2);
    store.complete_job(b[0].id).await.expect("complete");
    assert_eq!(count(&mut conn, "messages").await, 2);
    store.complete_job(a[1].id).await.expect("complete");
    assert_eq!(count(&mut conn, "messages").await, 1);
    assert!(
        store
            .pending_jobs("a.example", 10)
            .await
            .expect("jobs")
            .is_empty()
    );
    // Completing twice, or an unknown job, is harmless.
    store.complete_job(a[1].id).await.expect("complete again");
    store.complete_job(9_999).await.expect("complete unknown");
    let c = store.pending_jobs("c.example", 10).await.expect("jobs");
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].body, b"other");
    store.complete_job(c[0].id).await.expect("complete");
    assert_eq!(count(&mut conn, "messages").await, 0);
    assert_eq!(count(&mut conn, "jobs").await, 0);

    // A job whose message exists nowhere fails the step as a whole.
    let mut dangling = step(g, Some(1), put(b"s2"));
    dangling.jobs = vec![job("a.example", 99, "nobody")];
    assert!(matches!(
        store.commit(dangling).await,
        Err(StoreError::Database(_))
    ));
    assert_eq!(group(&store, g).await.map(|g| g.version), Some(1));
    assert_eq!(count(&mut conn, "jobs").await, 0);

    conn.close().await.expect("close raw");
    store.close().await.expect("close");
}

#[tokio::test]
async fn snapshots_are_kept_pruned_and_deleted_with_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(&dir);
    let store = open(&path, Durability::PowerLoss).await;
    let g = b"group-snap";
    let other = b"group-other";

    let mut create = step(g, None, put(b"e1"));
    create.snapshot = Some(snapshot(1, 10));
    store.commit(create).await.expect("create");
    let mut create_other = step(other, None, put(b"o1"));
    create_other.snapshot = Some(snapshot(1, 10));
    store.commit(create_other).await.expect("create other");
    for (version, epoch) in [(1, 2), (2, 3)] {
        let mut next = step(g, Some(version), put(b"next"));
        next.snapshot = Some(snapshot(epoch, epoch * 10));
        store.commit(next).await.expect("next epoch");
    }
    for epoch in 1..=3 {
        assert_eq!(
            store.load_snapshot(g, epoch).await.expect("load"),
            Some(snapshot(epoch, epoch * 10))
        );
    }
    assert_eq!(store.load_snapshot(g, 4).await.expect("load"), None);

    // Same epoch again replaces; pruning drops only this group's old ones.
    let mut replace = step(g, Some(3), put(b"replace"));
    replace.snapshot = Some(Snapshot {
        epoch: 3,
        created_at: 31,
        data: b"replaced".to_vec(),
    });
    replace.prune_snapshots_before = Some(25);
    store.commit(replace).await.expect("replace and prune");
    assert_eq!(store.load_snapshot(g, 1).await.expect("load"), None);
    assert_eq!(store.load_snapshot(g, 2).await.expect("load"), None);
    assert_eq!(
        store.load_snapshot(g, 3).await.expect("load"),
        Some(Snapshot {
            epoch: 3,
            created_at: 31,
            data: b"replaced".to_vec(),
        })
    );
    assert_eq!(
        store.load_snapshot(other, 1).await.expect("load"),
        Some(snapshot(1, 10))
    );

    // Delete needs the right version, and takes the snapshots with it.
    assert!(is_conflict(
        &store.commit(step(g, Some(1), GroupWrite::Delete)).await
    ));
    assert!(group(&store, g).await.is_some());
    store
        .commit(step(g, Some(4), GroupWrite::Delete))
        .await
        .expect("delete");
    assert_eq!(group(&store, g).await, None);
    assert_eq!(store.load_snapshot(g, 3).await.expect("load"), None);
    assert_eq!(store.group_count().await.expect("count"), 1);
    let mut conn = raw(&path).await;
    assert_eq!(count(&mut conn, "snapshots").await, 1);
    conn.close().await.expect("close raw");

    // The slot is free again.
    store
        .commit(step(g, None, put(b"reborn")))
        .await
        .expect("recreate");
    assert_eq!(group(&store, g).await.map(|g| g.version), Some(1));
    store.close().await.expect("close");
}

/// Writes a known set of steps: two groups, snapshots, pending jobs.
async fn write_fixture(store: &SqliteStore) {
    let mut create = step(b"g-a", None, put(b"a1"));
    create.snapshot = Some(snapshot(1, 100));
    store.commit(create).await.expect("create a");
    let mut update = step(b"g-a", Some(1), put(b"a2"));
    update.snapshot = Some(snapshot(2, 200));
    update.messages = vec![message(1, "m1")];
    update.jobs = vec![job("x.example", 1, "r1"), job("y.example", 1, "r2")];
    store.commit(update).await.expect("update a");
    let mut reserve = step(
        b"g-b",
        None,
        GroupWrite::Put {
            state: Vec::new(),
            reserved_until: Some(9_999),
        },
    );
    reserve.messages = vec![message(2, "m2")];
    reserve.jobs = vec![job("x.example", 2, "r3")];
    store.commit(reserve).await.expect("reserve b");
}

/// Checks everything `write_fixture` wrote.
async fn check_fixture(store: &SqliteStore) {
    assert_eq!(store.group_count().await.expect("count"), 2);
    assert_eq!(
        group(store, b"g-a").await,
        Some(StoredGroup {
            version: 2,
            state: b"a2".to_vec(),
            reserved_until: None,
        })
    );
    assert_eq!(
        group(store, b"g-b").await,
        Some(StoredGroup {
            version: 1,
            state: Vec::new(),
            reserved_until: Some(9_999),
        })
    );
    for epoch in [1, 2] {
        assert_eq!(
            store.load_snapshot(b"g-a", epoch).await.expect("load"),
            Some(snapshot(epoch, epoch * 100))
        );
    }
    let x = store.pending_jobs("x.example", 10).await.expect("jobs");
    let x: Vec<_> = x
        .iter()
        .map(|j| (j.recipients.clone(), j.body.clone()))
        .collect();
    assert_eq!(
        x,
        vec![
            (b"r1".to_vec(), b"m1".to_vec()),
            (b"r3".to_vec(), b"m2".to_vec())
        ]
    );
    assert_eq!(
        store
            .pending_jobs("y.example", 10)
            .await
            .expect("jobs")
            .len(),
        1
    );
}

#[tokio::test]
async fn committed_steps_survive_close_drop_and_reopen() {
    for durability in BOTH {
        // Closed cleanly.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = db_path(&dir);
        let store = open(&path, durability).await;
        write_fixture(&store).await;
        store.close().await.expect("close");
        let store = open(&path, durability).await;
        check_fixture(&store).await;
        // Versions continue where they were.
        store
            .commit(step(b"g-a", Some(2), put(b"a3")))
            .await
            .expect("update after reopen");
        store.close().await.expect("close");

        // Just dropped.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = db_path(&dir);
        let store = open(&path, durability).await;
        write_fixture(&store).await;
        drop(store);
        let store = open(&path, durability).await;
        check_fixture(&store).await;
        store.close().await.expect("close");
    }
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
        group(&store, g).await,
        Some(StoredGroup {
            version: 3,
            state: b"v3".to_vec(),
            reserved_until: None,
        })
    );
    assert_eq!(group(&store, b"other").await, None);
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
        let hot = group(&store, b"hot").await.expect("hot group");
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
