//! The store test suite: every case runs against each backend (SQLite in
//! `tests/sqlite.rs`, PostgreSQL in `tests/postgres.rs`, through
//! [`store_suite!`]) and observes only through the [`Store`] interface.
//! A case opens the stores it needs from its [`Backend`]: two stores of one
//! backend share its database, as two processes of one provider would.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mimid_store::{
    Decision, DestinationBacklog, GroupWrite, Inbound, InboundConnectionRequest, KeyPackageKind,
    KeyPackageStock, LocalDelivery, MessageDigest, NewJob, NewMessage, OutboxStats,
    PublishedKeyPackage, STATE_PAGE, Snapshot, Step, Store, StoreError, StoredGroup,
};

/// A database of one backend, fresh for each case.
pub trait Backend {
    type Store: Store;
    /// A store on the database: every call opens another one, sharing it
    /// as another process would.
    async fn open(&self) -> Self::Store;
    /// Closes a store (applying what it has queued).
    async fn close(&self, store: Self::Store);
}

/// Instantiates every case of the suite as a test of the backend that
/// `$backend` (an expression, awaited in the test) makes.
#[allow(unused_macros)]
macro_rules! store_suite {
    ($backend:expr) => {
        $crate::suite::store_suite!(@cases $backend; ();
            create_update_and_conflicts_change_nothing,
            keep_stores_a_message_once_and_drops_it_with_its_last_job,
            a_message_carried_twice_is_stored_once,
            jobs_are_read_on_from_a_cursor_and_completed_together,
            snapshots_are_kept_pruned_and_deleted_with_the_group,
            committed_steps_survive_close_drop_and_reopen,
            a_patch_rewrites_only_the_pages_that_changed,
            a_bad_patch_fails_alone_and_changes_nothing,
            expired_reservations_are_pruned_in_queue_order,
            old_snapshots_are_pruned_in_queue_order,
            messages_stored_ahead_are_referred_to_discarded_or_pruned,
            group_version_is_the_stored_version,
            values_beyond_i64_find_nothing_or_prune_everything,
            a_step_with_values_beyond_i64,
            a_delivery_is_stored_once_and_in_each_recipients_queue,
            a_message_goes_once_every_queue_holding_it_acknowledged_it,
            acknowledging_beyond_the_newest_message_does_not_swallow_later_ones,
            accepted_deliveries_are_remembered_until_pruned,
            a_steps_messages_for_the_hubs_own_clients_are_queued_with_it,
            removing_a_user_releases_what_was_queued_for_its_clients,
            key_packages_are_handed_out_once_and_pruned,
            the_bell_rings_for_the_recipients_of_a_committed_delivery,
            users_and_their_clients,
            enrolment_secrets_are_spent_once,
            connection_requests_are_remembered_and_settled,
            failed_jobs_are_counted_and_dead_lettered,
            outbox_stats_count_each_destinations_jobs_and_the_dead_letters,
            privacy_pass_tokens_are_spent_once,
            a_repeated_message_changes_nothing_and_is_reported,
            repeated_messages_queued_together_are_applied_once_in_order,
            digests_of_old_epochs_and_of_deleted_groups_are_forgotten,
        );
        $crate::suite::store_suite!(@cases $backend; (flavor = "multi_thread", worker_threads = 2);
            group_version_sees_commits_of_another_store,
            two_stores_committing_one_version_one_wins,
            two_stores_claiming_one_time_key_packages_hand_each_out_once,
            two_stores_accepting_one_delivery_queue_it_once,
            two_stores_acknowledging_the_last_holders_release_the_message,
            two_stores_completing_the_last_jobs_release_the_message,
            jobs_of_two_stores_are_read_on_from_a_cursor_without_gaps,
            two_stores_spending_one_secret_or_request_spend_it_once,
            a_message_carried_again_while_another_store_completes_its_last_job,
            a_message_referred_to_while_another_store_prunes_or_discards_it,
            two_stores_spending_one_token_spend_it_once,
            two_stores_remembering_one_message_apply_it_once,
        );
    };
    (@cases $backend:expr; $flavor:tt; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test $flavor]
            async fn $case() {
                let backend = $backend;
                $crate::suite::$case(&backend).await;
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use store_suite;

// ---------------------------------------------------------------------
// Helpers.

pub fn step(group: &[u8], expected_version: Option<u64>, write: GroupWrite) -> Step {
    Step {
        group_id: group.to_vec(),
        expected_version,
        write,
        snapshot: None,
        prune_snapshots_before: None,
        messages: Vec::new(),
        jobs: Vec::new(),
        local: Vec::new(),
        remember: None,
        forget_digests: None,
        now: 1_000,
    }
}

pub fn put(state: &[u8]) -> GroupWrite {
    GroupWrite::Put {
        state: state.to_vec(),
        reserved_until: None,
    }
}

pub fn snapshot(epoch: u64, created_at: u64) -> Snapshot {
    Snapshot {
        epoch,
        created_at,
        data: format!("tree+groupinfo of epoch {epoch}").into_bytes(),
    }
}

pub fn message(id: u8, body: &str) -> NewMessage {
    NewMessage {
        message_id: [id; 16],
        body: body.as_bytes().to_vec(),
    }
}

pub fn job(destination: &str, message_id: u8, recipients: &str) -> NewJob {
    NewJob {
        destination: destination.into(),
        message_id: [message_id; 16],
        recipients: recipients.as_bytes().to_vec(),
    }
}

pub fn with_snapshot(mut s: Step, epoch: u64, created_at: u64) -> Step {
    s.snapshot = Some(snapshot(epoch, created_at));
    s
}

pub fn with_prune(mut s: Step, before: u64) -> Step {
    s.prune_snapshots_before = Some(before);
    s
}

pub fn with_mail(mut s: Step, messages: Vec<NewMessage>, jobs: Vec<NewJob>) -> Step {
    s.messages = messages;
    s.jobs = jobs;
    s
}

pub fn at(mut s: Step, now: u64) -> Step {
    s.now = now;
    s
}

/// A state of `pages` pages and a bit, each byte telling its page.
pub fn paged_state(pages: usize, seed: u8) -> Vec<u8> {
    (0..pages * STATE_PAGE + 100)
        .map(|i| seed.wrapping_add((i / STATE_PAGE) as u8))
        .collect()
}

pub fn is_conflict(result: &Result<(), StoreError>) -> bool {
    matches!(result, Err(StoreError::Conflict))
}

pub async fn group(store: &impl Store, id: &[u8]) -> Option<StoredGroup> {
    store.load_group(id).await.expect("load_group")
}

pub async fn version(store: &impl Store, id: &[u8]) -> Option<u64> {
    store.group_version(id).await.expect("group_version")
}

pub async fn stored_state(store: &impl Store, id: &[u8]) -> (u64, Vec<u8>) {
    let stored = store.load_group(id).await.expect("load").expect("group");
    (stored.version, stored.state)
}

/// Every pending job of every destination.
pub async fn job_count(store: &impl Store) -> usize {
    let mut count = 0;
    for destination in store.job_destinations().await.expect("job_destinations") {
        count += store
            .pending_jobs(&destination, 100_000)
            .await
            .expect("pending_jobs")
            .len();
    }
    count
}

pub async fn message_count(store: &impl Store) -> u64 {
    store.message_count().await.expect("message_count")
}

pub async fn inbox_count(store: &impl Store) -> u64 {
    store.inbox_count().await.expect("inbox_count")
}

/// Writes a known set of steps: two groups, snapshots, pending jobs.
pub async fn write_fixture(store: &impl Store) {
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
pub async fn check_fixture(store: &impl Store) {
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

pub const BOB: &str = "bob@b.example";
pub const LAPTOP: &str = "bob-laptop@b.example";
pub const CAROL: &str = "carol@b.example";

/// Delivery `n` from a.example (its message names it) to `recipients`, at
/// time `now`.
pub fn inbound(n: u8, recipients: &[&str], now: u64) -> Inbound {
    Inbound {
        sender: "a.example".into(),
        message_id: [n; 16],
        body_sha256: [n; 32],
        answer: vec![0, 0, n],
        group_id: b"group".to_vec(),
        epoch: 1,
        message: format!("message {n}").into_bytes(),
        recipients: recipients.iter().map(|c| c.to_string()).collect(),
        now,
    }
}

/// Delivers message `n` to `recipients`, at time `now`.
pub async fn deliver(store: &impl Store, n: u8, recipients: &[&str], now: u64) {
    store
        .deliver(vec![inbound(n, recipients, now)])
        .await
        .expect("deliver")
        .await
        .expect("delivered");
}

/// The messages in `client`'s queue after `after`, as (position, message).
pub async fn queue(store: &impl Store, client: &str, after: u64) -> Vec<(u64, String)> {
    store
        .client_queue(client, after, 1_000)
        .await
        .expect("client_queue")
        .into_iter()
        .map(|q| (q.seq, String::from_utf8(q.message).expect("utf-8 message")))
        .collect()
}

pub fn names(queue: &[(u64, String)]) -> Vec<&str> {
    queue.iter().map(|(_, m)| m.as_str()).collect()
}

pub async fn ack(store: &impl Store, client: &str, up_to: u64) {
    store
        .acknowledge(client.into(), up_to)
        .await
        .expect("acknowledge");
}

fn key_package(n: u8, last_resort: bool, not_after: u64) -> PublishedKeyPackage {
    PublishedKeyPackage {
        kind: KeyPackageKind::Regular,
        last_resort,
        not_after,
        key_package: vec![n],
    }
}

/// Unwraps a store shared by tasks that have all finished.
fn unshare<S>(store: Arc<S>) -> S {
    match Arc::try_unwrap(store) {
        Ok(store) => store,
        Err(_) => panic!("store still shared"),
    }
}

// ---------------------------------------------------------------------
// Groups, snapshots, messages and jobs.

pub async fn create_update_and_conflicts_change_nothing(backend: &impl Backend) {
    let store = backend.open().await;
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

    // Nothing of the refused steps is stored anywhere.
    assert_eq!(message_count(&store).await, 1);
    assert_eq!(job_count(&store).await, 1);
    assert_eq!(
        store.job_destinations().await.expect("destinations"),
        ["a.example"]
    );
    backend.close(store).await;
}

pub async fn keep_stores_a_message_once_and_drops_it_with_its_last_job(backend: &impl Backend) {
    let store = backend.open().await;
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

    assert_eq!(message_count(&store).await, 2);
    assert_eq!(job_count(&store).await, 4);

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
    assert_eq!(message_count(&store).await, 2);
    store.complete_job(b[0].id).await.expect("complete");
    assert_eq!(message_count(&store).await, 2);
    store.complete_job(a[1].id).await.expect("complete");
    assert_eq!(message_count(&store).await, 1);
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
    assert_eq!(message_count(&store).await, 0);
    assert_eq!(job_count(&store).await, 0);
    assert!(
        store
            .job_destinations()
            .await
            .expect("destinations")
            .is_empty()
    );

    // A job whose message exists nowhere fails the step as a whole.
    let mut dangling = step(g, Some(1), put(b"s2"));
    dangling.jobs = vec![job("a.example", 99, "nobody")];
    assert!(matches!(
        store.commit(dangling).await,
        Err(StoreError::Database(_))
    ));
    assert_eq!(group(&store, g).await.map(|g| g.version), Some(1));
    assert_eq!(job_count(&store).await, 0);
    backend.close(store).await;
}

/// A message carried twice by one step, or by two steps queued together,
/// is stored once, as first carried; every job has it.
pub async fn a_message_carried_twice_is_stored_once(backend: &impl Backend) {
    let store = backend.open().await;
    let g = b"group-twice";
    store
        .commit(step(g, None, put(b"s1")))
        .await
        .expect("create");
    store
        .commit(with_mail(
            step(g, Some(1), GroupWrite::Keep),
            vec![
                message(1, "first"),
                message(2, "other"),
                message(1, "second"),
            ],
            vec![job("a.example", 1, "a"), job("a.example", 2, "a")],
        ))
        .await
        .expect("a step carrying a message twice");
    let mut pending = Vec::new();
    for (body, destination) in [("third", "b.example"), ("fourth", "c.example")] {
        let s = with_mail(
            step(g, Some(1), GroupWrite::Keep),
            vec![message(3, body), message(1, body)],
            vec![job(destination, 3, "r"), job(destination, 1, "r")],
        );
        pending.push(store.enqueue(s).await.expect("enqueue"));
    }
    for p in pending {
        p.await
            .expect("steps carrying one message, queued together");
    }
    assert_eq!(message_count(&store).await, 3);
    let bodies = |jobs: Vec<mimid_store::Job>| -> Vec<Vec<u8>> {
        jobs.into_iter().map(|j| j.body).collect()
    };
    assert_eq!(
        bodies(store.pending_jobs("a.example", 10).await.expect("jobs")),
        [b"first".to_vec(), b"other".to_vec()]
    );
    for destination in ["b.example", "c.example"] {
        assert_eq!(
            bodies(store.pending_jobs(destination, 10).await.expect("jobs")),
            [b"third".to_vec(), b"first".to_vec()],
            "{destination}"
        );
    }
    backend.close(store).await;
}

pub async fn jobs_are_read_on_from_a_cursor_and_completed_together(backend: &impl Backend) {
    let store = backend.open().await;
    let g = b"group-batch";
    store
        .commit(step(g, None, put(b"s1")))
        .await
        .expect("create");
    let mut keep = step(g, Some(1), GroupWrite::Keep);
    keep.messages = vec![message(1, "one"), message(2, "two"), message(3, "three")];
    keep.jobs = vec![
        job("b.example", 1, "bob"),
        job("b.example", 2, "bob"),
        job("c.example", 2, "carl"),
        job("b.example", 3, "bob"),
    ];
    store.commit(keep).await.expect("keep");

    // Reading on from a job: only later ones, of that destination, in order.
    let all = store.pending_jobs("b.example", 10).await.expect("jobs");
    assert_eq!(all.len(), 3);
    let rest = store
        .pending_jobs_after("b.example", all[0].id, 10)
        .await
        .expect("jobs after");
    assert_eq!(rest, all[1..].to_vec());
    let none = store
        .pending_jobs_after("b.example", all[2].id, 10)
        .await
        .expect("jobs after the last");
    assert!(none.is_empty());

    // Completed together (an unknown id among them is harmless): the jobs
    // go, and the messages no other job refers to.
    store
        .complete_jobs(vec![all[0].id, all[1].id, 9_999])
        .await
        .expect("complete");
    assert_eq!(
        store.pending_jobs("b.example", 10).await.expect("jobs"),
        all[2..].to_vec()
    );
    // Message 1 is gone; 2 stays for c.example's job, 3 for b.example's.
    assert_eq!(message_count(&store).await, 2);
    assert_eq!(job_count(&store).await, 2);
    store.complete_jobs(Vec::new()).await.expect("nothing");

    // By group: another group's job to the same destination is not one of
    // them, and `to` bounds the walk.
    let other = b"group-other";
    store
        .commit(step(other, None, put(b"s1")))
        .await
        .expect("create other");
    let mut keep = step(other, Some(1), GroupWrite::Keep);
    keep.messages = vec![message(4, "four")];
    keep.jobs = vec![job("b.example", 4, "bob")];
    store.commit(keep).await.expect("keep other");
    let b = store.pending_jobs("b.example", 10).await.expect("jobs");
    assert_eq!(b.len(), 2);
    let ours = store
        .pending_group_jobs("b.example", g, 0, i64::MAX, 10)
        .await
        .expect("group jobs");
    assert_eq!(ours, all[2..].to_vec());
    let theirs = store
        .pending_group_jobs("b.example", other, 0, i64::MAX, 10)
        .await
        .expect("group jobs");
    assert_eq!(theirs, b[1..].to_vec());
    assert!(
        store
            .pending_group_jobs("b.example", other, 0, b[1].id - 1, 10)
            .await
            .expect("group jobs")
            .is_empty()
    );
    backend.close(store).await;
}

pub async fn snapshots_are_kept_pruned_and_deleted_with_the_group(backend: &impl Backend) {
    let store = backend.open().await;
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
    for epoch in 1..=3 {
        assert_eq!(store.load_snapshot(g, epoch).await.expect("load"), None);
    }
    assert_eq!(store.group_count().await.expect("count"), 1);
    // The other group's snapshot is the one left.
    assert_eq!(
        store.load_snapshot(other, 1).await.expect("load"),
        Some(snapshot(1, 10))
    );

    // The slot is free again, without the old snapshots.
    store
        .commit(step(g, None, put(b"reborn")))
        .await
        .expect("recreate");
    assert_eq!(group(&store, g).await.map(|g| g.version), Some(1));
    assert_eq!(store.load_snapshot(g, 3).await.expect("load"), None);
    backend.close(store).await;
}

/// What a store committed is there for the next store on the database,
/// whether the first was closed or just dropped.
pub async fn committed_steps_survive_close_drop_and_reopen(backend: &impl Backend) {
    // Closed cleanly.
    let store = backend.open().await;
    write_fixture(&store).await;
    backend.close(store).await;
    let store = backend.open().await;
    check_fixture(&store).await;
    // Versions continue where they were.
    store
        .commit(step(b"g-a", Some(2), put(b"a3")))
        .await
        .expect("update after reopen");

    // Just dropped, right after its commits resolved.
    let mut create = step(b"g-c", None, put(b"c1"));
    create.snapshot = Some(snapshot(1, 300));
    store.commit(create).await.expect("create c");
    store
        .commit(with_mail(
            step(b"g-c", Some(1), put(b"c2")),
            vec![message(3, "m3")],
            vec![job("z.example", 3, "r4")],
        ))
        .await
        .expect("update c");
    drop(store);
    let store = backend.open().await;
    assert_eq!(stored_state(&store, b"g-a").await, (3, b"a3".to_vec()));
    assert_eq!(stored_state(&store, b"g-c").await, (2, b"c2".to_vec()));
    assert_eq!(
        store.load_snapshot(b"g-c", 1).await.expect("load"),
        Some(snapshot(1, 300))
    );
    let z = store.pending_jobs("z.example", 10).await.expect("jobs");
    assert_eq!(z.len(), 1);
    assert_eq!(
        (z[0].body.as_slice(), z[0].recipients.as_slice()),
        (&b"m3"[..], &b"r4"[..])
    );
    assert_eq!(store.group_count().await.expect("count"), 3);
    assert_eq!(message_count(&store).await, 3);
    backend.close(store).await;
}

pub async fn a_patch_rewrites_only_the_pages_that_changed(backend: &impl Backend) {
    let store = backend.open().await;
    let g = b"paged";
    let first = paged_state(4, 0);
    store
        .commit(step(g, None, put(&first)))
        .await
        .expect("create");
    assert_eq!(stored_state(&store, g).await, (1, first.clone()));

    // One byte of page 2 changes: one page is written.
    let mut second = first.clone();
    second[2 * STATE_PAGE + 7] ^= 0xff;
    let patch = GroupWrite::patch(&first, &second);
    let GroupWrite::Patch { len, pages } = &patch else {
        panic!("not a patch: {patch:?}")
    };
    assert_eq!(*len, second.len() as u64);
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].0, 2);
    store.commit(step(g, Some(1), patch)).await.expect("patch");
    assert_eq!(stored_state(&store, g).await, (2, second.clone()));

    // Growing, then shrinking: no page is left beyond the end.
    let mut third = second.clone();
    third.extend(paged_state(3, 9));
    store
        .commit(step(g, Some(2), GroupWrite::patch(&second, &third)))
        .await
        .expect("grow");
    assert_eq!(stored_state(&store, g).await, (3, third.clone()));
    let fourth = third[..STATE_PAGE + 5].to_vec();
    store
        .commit(step(g, Some(3), GroupWrite::patch(&third, &fourth)))
        .await
        .expect("shrink");
    assert_eq!(stored_state(&store, g).await, (4, fourth.clone()));
    // Growing again after the shrink: the pages beyond the old end are
    // the new ones, not what was there before.
    let fifth = [fourth.clone(), paged_state(2, 77)].concat();
    store
        .commit(step(g, Some(4), GroupWrite::patch(&fourth, &fifth)))
        .await
        .expect("grow again");
    assert_eq!(stored_state(&store, g).await, (5, fifth.clone()));
    store
        .commit(step(g, Some(5), GroupWrite::patch(&fifth, &fourth)))
        .await
        .expect("shrink again");
    assert_eq!(stored_state(&store, g).await, (6, fourth));
    backend.close(store).await;
}

pub async fn a_bad_patch_fails_alone_and_changes_nothing(backend: &impl Backend) {
    let store = backend.open().await;
    let g = b"paged";
    let first = paged_state(2, 0);
    store
        .commit(step(g, None, put(&first)))
        .await
        .expect("create");
    let bad = [
        // A page shorter than the state says it is.
        GroupWrite::Patch {
            len: first.len() as u64,
            pages: vec![(0, vec![1; 10])],
        },
        // A page beyond the end.
        GroupWrite::Patch {
            len: 10,
            pages: vec![(3, vec![1; 10])],
        },
    ];
    for write in bad {
        assert!(matches!(
            store.commit(step(g, Some(1), write)).await,
            Err(StoreError::Database(_))
        ));
    }
    // No stored state to patch.
    let patch = GroupWrite::patch(&[], b"new");
    assert!(matches!(
        store.commit(step(b"absent", None, patch)).await,
        Err(StoreError::Database(_))
    ));
    assert_eq!(stored_state(&store, g).await, (1, first));
    assert_eq!(group(&store, b"absent").await, None);
    backend.close(store).await;
}

pub async fn expired_reservations_are_pruned_in_queue_order(backend: &impl Backend) {
    let store = backend.open().await;
    let reserve = |until| GroupWrite::Put {
        state: Vec::new(),
        reserved_until: Some(until),
    };
    store
        .commit(step(b"expired", None, reserve(900)))
        .await
        .expect("reserve");
    store
        .commit(step(b"valid", None, reserve(5_000)))
        .await
        .expect("reserve");
    store
        .commit(step(b"group", None, put(b"state")))
        .await
        .expect("create");
    // A step queued before the pruning still finds its reservation.
    let before = store
        .enqueue(step(b"expired", Some(1), reserve(950)))
        .await
        .expect("enqueue");
    store.prune_reservations(1_000).await.expect("prune");
    before.await.expect("the step queued before");
    assert_eq!(group(&store, b"expired").await, None);
    assert!(is_conflict(
        &store.commit(step(b"expired", Some(2), put(b"late"))).await
    ));
    assert_eq!(
        group(&store, b"valid").await.map(|g| g.reserved_until),
        Some(Some(5_000))
    );
    assert_eq!(stored_state(&store, b"group").await, (1, b"state".to_vec()));
    assert_eq!(store.group_count().await.expect("count"), 2);
    backend.close(store).await;
}

pub async fn old_snapshots_are_pruned_in_queue_order(backend: &impl Backend) {
    let store = backend.open().await;
    let g = b"group";
    store
        .commit(with_snapshot(step(g, None, put(b"one")), 1, 100))
        .await
        .expect("one");
    store
        .commit(with_snapshot(step(g, Some(1), put(b"two")), 2, 500))
        .await
        .expect("two");
    // Queued before the pruning: pruned with it.
    let before = store
        .enqueue(with_snapshot(step(g, Some(2), put(b"three")), 3, 150))
        .await
        .expect("enqueue");
    store.prune_snapshots(200).await.expect("prune");
    before.await.expect("three");
    // Queued after: kept.
    store
        .commit(with_snapshot(step(g, Some(3), put(b"four")), 4, 160))
        .await
        .expect("four");
    let mut kept = Vec::new();
    for epoch in 1..=4 {
        if store.load_snapshot(g, epoch).await.expect("load").is_some() {
            kept.push(epoch);
        }
    }
    assert_eq!(kept, [2, 4]);
    assert_eq!(stored_state(&store, g).await, (4, b"four".to_vec()));
    backend.close(store).await;
}

/// A message stored ahead of its step: its step refers to it; discarding
/// or pruning drops it only while no job does, in queue order.
pub async fn messages_stored_ahead_are_referred_to_discarded_or_pruned(backend: &impl Backend) {
    let store = backend.open().await;
    let g = b"group-ahead";
    store
        .commit(step(g, None, put(b"s1")))
        .await
        .expect("create");
    // Three messages ahead (at time 1,000); the step refers to the first.
    let ahead = with_mail(
        step(g, Some(1), GroupWrite::Keep),
        vec![
            message(1, "commit"),
            message(2, "refused"),
            message(3, "lost"),
        ],
        Vec::new(),
    );
    store.commit(ahead).await.expect("store ahead");
    let refers = with_mail(
        step(g, Some(1), put(b"s2")),
        Vec::new(),
        vec![job("b.example", 1, "bob")],
    );
    let pending = store.enqueue(refers).await.expect("enqueue");
    // Queued after the step: message 1 has a job by then and stays.
    let discard = store
        .discard_messages(vec![[1; 16], [2; 16]])
        .await
        .expect("discard");
    pending
        .await
        .expect("step referring to a message stored ahead");
    discard.await.expect("discarded");
    assert_eq!(message_count(&store).await, 2);
    let jobs = store.pending_jobs("b.example", 10).await.expect("jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].body, b"commit");

    // Pruning drops unreferenced messages written before the cutoff only.
    store.prune_messages(1_000).await.expect("prune");
    assert_eq!(message_count(&store).await, 2);
    store.prune_messages(1_001).await.expect("prune");
    assert_eq!(message_count(&store).await, 1);
    assert_eq!(
        store.pending_jobs("b.example", 10).await.expect("jobs")[0].body,
        b"commit"
    );
    backend.close(store).await;
}

/// `group_version` reports the version `load_group` reports, through
/// every kind of write, and `None` for a slot that does not exist.
pub async fn group_version_is_the_stored_version(backend: &impl Backend) {
    let store = backend.open().await;
    let g = b"versioned";
    assert_eq!(version(&store, g).await, None);
    assert_eq!(version(&store, b"").await, None);

    let reserve = GroupWrite::Put {
        state: Vec::new(),
        reserved_until: Some(5_000),
    };
    let old = paged_state(3, 1);
    let new = paged_state(3, 2);
    let steps = [
        step(g, None, reserve),
        step(g, Some(1), put(&old)),
        step(g, Some(2), GroupWrite::patch(&old, &new)),
        with_mail(
            step(g, Some(3), GroupWrite::Keep),
            vec![message(1, "hello")],
            vec![job("b.example", 1, "bob")],
        ),
    ];
    for s in steps {
        store.commit(s).await.expect("step");
        let loaded = group(&store, g).await.map(|g| g.version);
        assert!(loaded.is_some());
        assert_eq!(version(&store, g).await, loaded);
    }
    assert_eq!(version(&store, g).await, Some(3));
    // A refused step changes no version.
    assert!(is_conflict(
        &store.commit(step(g, Some(1), put(b"stale"))).await
    ));
    assert_eq!(version(&store, g).await, Some(3));
    // Other groups are not affected.
    assert_eq!(version(&store, b"other").await, None);
    store
        .commit(step(g, Some(3), GroupWrite::Delete))
        .await
        .expect("delete");
    assert_eq!(version(&store, g).await, None);
    assert_eq!(group(&store, g).await, None);
    backend.close(store).await;
}

/// Two processes sharing one database: a step committed through one store
/// is seen by the other's `group_version` (and so a cached group can be
/// found stale), without reopening anything.
pub async fn group_version_sees_commits_of_another_store(backend: &impl Backend) {
    let first = backend.open().await;
    let second = backend.open().await;
    let g = b"shared-version";
    assert_eq!(version(&first, g).await, None);

    second
        .commit(step(g, None, put(b"one")))
        .await
        .expect("create through the second store");
    assert_eq!(version(&first, g).await, Some(1));

    first
        .commit(step(g, Some(1), put(b"two")))
        .await
        .expect("step through the first store");
    second
        .commit(step(g, Some(2), put(b"three")))
        .await
        .expect("step through the second store");
    assert_eq!(version(&first, g).await, Some(3));
    assert_eq!(version(&second, g).await, Some(3));
    assert_eq!(stored_state(&first, g).await, (3, b"three".to_vec()));
    // The first store's own step, based on what it had seen, now conflicts.
    assert!(is_conflict(
        &first.commit(step(g, Some(2), put(b"stale"))).await
    ));

    second
        .commit(step(g, Some(3), GroupWrite::Delete))
        .await
        .expect("delete through the second store");
    assert_eq!(version(&first, g).await, None);

    backend.close(second).await;
    backend.close(first).await;
}

/// Epochs and times beyond `i64::MAX` (the largest integer SQLite and
/// PostgreSQL store) cannot be stored. A read of such an epoch finds
/// nothing; pruning before such a time prunes everything, however late its
/// stamp.
pub async fn values_beyond_i64_find_nothing_or_prune_everything(backend: &impl Backend) {
    let store = backend.open().await;
    let latest = i64::MAX as u64;
    let g = b"far-future";
    store
        .commit(with_snapshot(step(g, None, put(b"one")), latest, latest))
        .await
        .expect("a snapshot at the last storable epoch and time");
    store
        .commit(with_snapshot(step(g, Some(1), put(b"two")), 1, 100))
        .await
        .expect("step");
    for epoch in [1 << 63, u64::MAX, latest + 1] {
        assert_eq!(
            store.load_snapshot(g, epoch).await.expect("load_snapshot"),
            None,
            "epoch {epoch}"
        );
        assert_eq!(
            store
                .load_snapshot(b"absent", epoch)
                .await
                .expect("load_snapshot"),
            None
        );
    }
    assert_eq!(
        store
            .load_snapshot(g, latest)
            .await
            .expect("load_snapshot")
            .map(|s| (s.epoch, s.created_at)),
        Some((latest, latest))
    );

    // Before the last storable time: the snapshot stamped with it stays.
    store.prune_snapshots(latest).await.expect("prune");
    assert!(store.load_snapshot(g, 1).await.expect("load").is_none());
    assert!(
        store
            .load_snapshot(g, latest)
            .await
            .expect("load")
            .is_some()
    );
    // Before any later time: nothing stays.
    store.prune_snapshots(latest + 1).await.expect("prune");
    assert!(
        store
            .load_snapshot(g, latest)
            .await
            .expect("load")
            .is_none()
    );
    store
        .commit(with_snapshot(step(g, Some(2), put(b"three")), 3, latest))
        .await
        .expect("step");
    store.prune_snapshots(u64::MAX).await.expect("prune");
    assert!(store.load_snapshot(g, 3).await.expect("load").is_none());

    // Reservations expiring at the last storable time expire before any
    // later one.
    let reserve = GroupWrite::Put {
        state: Vec::new(),
        reserved_until: Some(latest),
    };
    store
        .commit(step(b"reserved", None, reserve))
        .await
        .expect("reserve");
    store.prune_reservations(latest).await.expect("prune");
    assert_eq!(version(&store, b"reserved").await, Some(1));
    store.prune_reservations(u64::MAX).await.expect("prune");
    assert_eq!(version(&store, b"reserved").await, None);
    assert_eq!(version(&store, g).await, Some(3));

    // Messages written at the last storable time, that no job refers to.
    store
        .commit(at(
            with_mail(
                step(g, Some(3), GroupWrite::Keep),
                vec![message(1, "ahead"), message(2, "delivered")],
                vec![job("b.example", 2, "bob")],
            ),
            latest,
        ))
        .await
        .expect("messages");
    store.prune_messages(latest).await.expect("prune");
    assert_eq!(message_count(&store).await, 2);
    store.prune_messages(1 << 63).await.expect("prune");
    assert_eq!(message_count(&store).await, 1);
    assert_eq!(
        store.pending_jobs("b.example", 10).await.expect("jobs")[0].body,
        b"delivered"
    );
    backend.close(store).await;
}

/// A step carrying a value that cannot be stored fails alone, with an
/// error naming it, and changes nothing; a step queued with it does not
/// notice. A cutoff beyond storable times prunes every snapshot instead.
pub async fn a_step_with_values_beyond_i64(backend: &impl Backend) {
    let store = backend.open().await;
    let g = b"group";
    store
        .commit(with_snapshot(step(g, None, put(b"one")), 1, 100))
        .await
        .expect("create");
    let late = 1u64 << 63;
    let reserve_late = GroupWrite::Put {
        state: Vec::new(),
        reserved_until: Some(late),
    };
    let bad = [
        (at(step(g, Some(1), put(b"x")), late), "step time"),
        (
            with_snapshot(step(g, Some(1), put(b"x")), late, 100),
            "snapshot epoch",
        ),
        (
            with_snapshot(step(g, Some(1), put(b"x")), 2, late),
            "snapshot time",
        ),
        (step(b"other", None, reserve_late), "reservation expiry"),
        (
            step(
                g,
                Some(1),
                GroupWrite::Patch {
                    len: late,
                    pages: Vec::new(),
                },
            ),
            "state length",
        ),
    ];
    for (bad, what) in bad {
        let good = store
            .enqueue(step(b"neighbour", None, put(b"n")))
            .await
            .expect("enqueue");
        let refused = store.enqueue(bad).await.expect("enqueue").await;
        match refused {
            Err(StoreError::Database(message)) => {
                assert!(message.contains(what), "{message} names the {what}");
                assert!(message.contains(&late.to_string()), "{message}");
            }
            other => panic!("a {what} beyond i64::MAX: {other:?}"),
        }
        good.await.expect("the step batched with it");
        store
            .commit(step(b"neighbour", Some(1), GroupWrite::Delete))
            .await
            .expect("delete");
    }
    assert_eq!(stored_state(&store, g).await, (1, b"one".to_vec()));
    assert_eq!(version(&store, b"other").await, None);
    assert!(store.load_snapshot(g, 1).await.expect("load").is_some());

    // Pruning before a time beyond storable ones: every snapshot goes, the
    // step's own included (it is written, then pruned).
    store
        .commit(with_prune(
            with_snapshot(step(g, Some(1), put(b"two")), 2, i64::MAX as u64),
            u64::MAX,
        ))
        .await
        .expect("step pruning everything");
    assert!(store.load_snapshot(g, 1).await.expect("load").is_none());
    assert!(store.load_snapshot(g, 2).await.expect("load").is_none());
    assert_eq!(stored_state(&store, g).await, (2, b"two".to_vec()));
    backend.close(store).await;
}

// ---------------------------------------------------------------------
// Client queues.

pub async fn a_delivery_is_stored_once_and_in_each_recipients_queue(backend: &impl Backend) {
    let store = backend.open().await;
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
    // What an entry says of its message.
    let entries = store
        .client_queue(LAPTOP, 0, 1)
        .await
        .expect("client_queue");
    let entry = &entries[0];
    assert_eq!(
        (
            entry.sender.as_str(),
            entry.group_id.as_slice(),
            entry.epoch,
            entry.received_at
        ),
        ("a.example", &b"group"[..], 1, 10)
    );
    assert_eq!(inbox_count(&store).await, 4);
    backend.close(store).await;
}

pub async fn a_message_goes_once_every_queue_holding_it_acknowledged_it(backend: &impl Backend) {
    let store = backend.open().await;
    deliver(&store, 1, &[BOB, LAPTOP, CAROL], 10).await;
    deliver(&store, 2, &[BOB, CAROL], 10).await;
    let carol = queue(&store, CAROL, 0).await;
    let (first, second) = (carol[0].0, carol[1].0);

    ack(&store, BOB, first).await;
    assert_eq!(names(&queue(&store, BOB, 0).await), ["message 2"]);
    // Others still hold both.
    assert_eq!(queue(&store, CAROL, 0).await.len(), 2);
    assert_eq!(inbox_count(&store).await, 2);

    ack(&store, CAROL, second).await;
    assert!(queue(&store, CAROL, 0).await.is_empty());
    // Message 1: the laptop has not acknowledged it. Message 2: Bob has not.
    assert_eq!(inbox_count(&store).await, 2);

    ack(&store, LAPTOP, first).await;
    assert_eq!(inbox_count(&store).await, 1);
    // An acknowledgement never moves a queue back.
    ack(&store, BOB, 0).await;
    assert_eq!(names(&queue(&store, BOB, 0).await), ["message 2"]);
    ack(&store, BOB, second).await;
    assert_eq!(inbox_count(&store).await, 0);
    assert!(queue(&store, BOB, 0).await.is_empty());
    backend.close(store).await;
}

pub async fn acknowledging_beyond_the_newest_message_does_not_swallow_later_ones(
    backend: &impl Backend,
) {
    let store = backend.open().await;
    deliver(&store, 1, &[BOB], 10).await;
    ack(&store, BOB, u64::MAX).await;
    assert!(queue(&store, BOB, 0).await.is_empty());
    assert_eq!(inbox_count(&store).await, 0);
    // Acknowledged before anything reached the queue at all.
    ack(&store, CAROL, u64::MAX).await;

    deliver(&store, 2, &[BOB, CAROL], 10).await;
    assert_eq!(names(&queue(&store, BOB, 0).await), ["message 2"]);
    assert_eq!(names(&queue(&store, CAROL, 0).await), ["message 2"]);
    backend.close(store).await;
}

/// An accepted delivery is remembered with its hash and answer; a repeat
/// of it (alone or with new ones) is refused and changes nothing, until
/// it is forgotten; forgetting leaves the queues alone.
pub async fn accepted_deliveries_are_remembered_until_pruned(backend: &impl Backend) {
    let store = backend.open().await;
    deliver(&store, 1, &[BOB], 10).await;
    deliver(&store, 2, &[CAROL], 10).await;
    deliver(&store, 3, &[BOB, LAPTOP], 500).await;
    let remembered = store
        .remembered("a.example", [1; 16])
        .await
        .expect("remembered")
        .expect("delivery 1 remembered");
    assert_eq!(remembered.body_sha256, [1; 32]);
    assert_eq!(remembered.answer, [0, 0, 1]);
    assert_eq!(
        store
            .remembered("other.example", [1; 16])
            .await
            .expect("remembered"),
        None
    );

    // A repeat, and new deliveries with a repeat among them: all refused.
    let repeat = store
        .deliver(vec![inbound(1, &[CAROL], 20)])
        .await
        .expect("deliver")
        .await;
    assert!(is_conflict(&repeat));
    let mixed = store
        .deliver(vec![inbound(4, &[CAROL], 20), inbound(3, &[CAROL], 20)])
        .await
        .expect("deliver")
        .await;
    assert!(is_conflict(&mixed));
    assert_eq!(
        store
            .remembered("a.example", [4; 16])
            .await
            .expect("remembered"),
        None
    );
    assert_eq!(names(&queue(&store, CAROL, 0).await), ["message 2"]);
    assert_eq!(inbox_count(&store).await, 3);

    // Two new ones of one sender in one call: both, in order.
    store
        .deliver(vec![inbound(5, &[CAROL], 200), inbound(6, &[CAROL], 200)])
        .await
        .expect("deliver")
        .await
        .expect("two deliveries");
    assert_eq!(
        names(&queue(&store, CAROL, 0).await),
        ["message 2", "message 5", "message 6"]
    );

    // Forgotten before 100: deliveries 1 and 2 (at 10), not 3 (at 500).
    store.prune_inbound(100).await.expect("prune");
    for (n, kept) in [(1, false), (2, false), (3, true), (5, true)] {
        assert_eq!(
            store
                .remembered("a.example", [n; 16])
                .await
                .expect("remembered")
                .is_some(),
            kept,
            "delivery {n}"
        );
    }
    assert_eq!(
        names(&queue(&store, BOB, 0).await),
        ["message 1", "message 3"]
    );
    // A repeat of a forgotten one is taken as new.
    deliver(&store, 1, &[CAROL], 600).await;
    assert_eq!(
        names(&queue(&store, CAROL, 0).await),
        ["message 2", "message 5", "message 6", "message 1"]
    );
    backend.close(store).await;
}

/// A step that creates group `group` (or finds it at `expected`) with a
/// message for the hub's own clients `recipients`.
pub fn local_step(group: &[u8], expected: Option<u64>, n: u8, recipients: &[&str]) -> Step {
    Step {
        group_id: group.to_vec(),
        expected_version: expected,
        write: match expected {
            None => GroupWrite::Put {
                state: b"state".to_vec(),
                reserved_until: None,
            },
            Some(_) => GroupWrite::Keep,
        },
        snapshot: None,
        prune_snapshots_before: None,
        messages: Vec::new(),
        jobs: Vec::new(),
        local: vec![LocalDelivery {
            hub: "b.example".into(),
            message_id: [n; 16],
            group_id: group.to_vec(),
            epoch: 1,
            message: format!("message {n}").into_bytes(),
            recipients: recipients.iter().map(|c| c.to_string()).collect(),
        }],
        remember: None,
        forget_digests: None,
        now: 10,
    }
}

pub async fn a_steps_messages_for_the_hubs_own_clients_are_queued_with_it(backend: &impl Backend) {
    let store = backend.open().await;
    for client in [BOB, CAROL] {
        store
            .add_client(client.into(), client.into(), 0)
            .await
            .expect("add_client");
    }
    // Queued back to back (mostly one batch), applied in order; the
    // conflicting step queues nothing; the laptop is not in the directory
    // and is skipped.
    let steps = [
        local_step(b"g", None, 1, &[BOB, LAPTOP, CAROL]),
        local_step(b"g", None, 2, &[BOB]),
        local_step(b"g", Some(1), 3, &[CAROL, BOB]),
    ];
    let mut pending = Vec::new();
    for step in steps {
        pending.push(store.enqueue(step).await.expect("enqueue"));
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
    assert_eq!(inbox_count(&store).await, 2);
    assert_eq!(job_count(&store).await, 0);
    assert_eq!(message_count(&store).await, 0);
    let entries = store.client_queue(BOB, 0, 10).await.expect("client_queue");
    assert!(
        entries
            .iter()
            .all(|q| q.sender == "b.example" && q.group_id == b"g" && q.received_at == 10),
        "{entries:?}"
    );
    backend.close(store).await;
}

pub async fn removing_a_user_releases_what_was_queued_for_its_clients(backend: &impl Backend) {
    let store = backend.open().await;
    for client in [BOB, LAPTOP] {
        store
            .add_client(client.into(), "bob".into(), 10)
            .await
            .expect("add_client");
    }
    store
        .add_client(CAROL.into(), "carol".into(), 10)
        .await
        .expect("add_client");
    deliver(&store, 1, &[BOB, LAPTOP], 10).await;
    deliver(&store, 2, &[BOB, CAROL], 10).await;
    deliver(&store, 3, &[CAROL], 10).await;
    store.remove_user("bob".into()).await.expect("remove_user");
    // Only Bob's clients had message 1: gone. Carol still has 2 and 3.
    assert_eq!(inbox_count(&store).await, 2);
    assert_eq!(
        names(&queue(&store, CAROL, 0).await),
        ["message 2", "message 3"]
    );
    let users = store.users().await.expect("users");
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].user_id, "carol");
    assert_eq!(users[0].clients, [CAROL]);
    assert!(!store.user_exists("bob").await.expect("user_exists"));
    // Carol reads hers: the inbox is empty.
    let last = queue(&store, CAROL, 0).await.last().expect("an entry").0;
    ack(&store, CAROL, last).await;
    assert_eq!(inbox_count(&store).await, 0);
    backend.close(store).await;
}

/// The bell rings for a client once a delivery to it is committed, not for
/// a delivery to another client; it forgets a client when its last
/// listener leaves.
pub async fn the_bell_rings_for_the_recipients_of_a_committed_delivery(backend: &impl Backend) {
    let store = backend.open().await;
    {
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
    backend.close(store).await;
}

// ---------------------------------------------------------------------
// People: users, KeyPackages, enrolment, connections.

pub async fn users_and_their_clients(backend: &impl Backend) {
    let store = backend.open().await;
    assert!(store.users().await.expect("users").is_empty());
    store.add_user("dave".into(), 5).await.expect("add_user");
    assert!(matches!(
        store.add_user("dave".into(), 6).await,
        Err(StoreError::Conflict)
    ));
    // A client's user is added with it, once.
    store
        .add_client("bob-phone".into(), "bob".into(), 10)
        .await
        .expect("add_client");
    store
        .add_client("bob-laptop".into(), "bob".into(), 20)
        .await
        .expect("add_client");
    store
        .add_client("bob-phone".into(), "bob".into(), 30)
        .await
        .expect("add_client again");
    let users = store.users().await.expect("users");
    let users: Vec<_> = users
        .iter()
        .map(|u| (u.user_id.as_str(), u.created_at, u.clients.clone()))
        .collect();
    assert_eq!(
        users,
        vec![
            (
                "bob",
                10,
                vec!["bob-laptop".to_string(), "bob-phone".into()]
            ),
            ("dave", 5, Vec::new()),
        ]
    );
    assert_eq!(
        store.clients_of_user("bob").await.expect("clients"),
        ["bob-laptop", "bob-phone"]
    );
    assert!(
        store
            .clients_of_user("eve")
            .await
            .expect("clients")
            .is_empty()
    );
    assert!(store.user_exists("dave").await.expect("exists"));
    assert!(!store.user_exists("eve").await.expect("exists"));
    assert!(matches!(
        store.add_user("bob".into(), 40).await,
        Err(StoreError::Conflict)
    ));
    let asked: Vec<String> = ["bob-phone", "nobody", "bob-laptop", "bob"]
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        store.known_clients(&asked).await.expect("known"),
        [true, false, true, false]
    );
    assert!(store.known_clients(&[]).await.expect("known").is_empty());
    // A client added without a key has none.
    assert_eq!(store.client_key("bob-phone").await.expect("key"), None);

    // Removing a user takes its clients, their KeyPackages and its
    // connections; another user keeps theirs; an unknown user is nothing.
    store
        .add_client("dave-pc".into(), "dave".into(), 40)
        .await
        .expect("add_client");
    for (client, user) in [("bob-phone", "bob"), ("dave-pc", "dave")] {
        store
            .publish_key_packages(client.into(), vec![key_package(1, true, 1_000)], 50)
            .await
            .expect("publish");
        store
            .add_connection(user.into(), "zed@z.example".into(), 50)
            .await
            .expect("connect");
    }
    store.remove_user("bob".into()).await.expect("remove");
    store
        .remove_user("nobody".into())
        .await
        .expect("remove unknown");
    assert!(!store.user_exists("bob").await.expect("exists"));
    assert!(
        store
            .clients_of_user("bob")
            .await
            .expect("clients")
            .is_empty()
    );
    assert_eq!(
        store.known_clients(&asked).await.expect("known"),
        [false, false, false, false]
    );
    assert!(
        !store
            .connected("bob", "zed@z.example")
            .await
            .expect("connected")
    );
    assert_eq!(
        store
            .key_package_stock("bob-phone", KeyPackageKind::Regular, 60)
            .await
            .expect("stock"),
        KeyPackageStock::default()
    );
    assert!(
        store
            .connected("dave", "zed@z.example")
            .await
            .expect("connected")
    );
    assert!(
        store
            .key_package_stock("dave-pc", KeyPackageKind::Regular, 60)
            .await
            .expect("stock")
            .last_resort
    );
    let users: Vec<_> = store
        .users()
        .await
        .expect("users")
        .into_iter()
        .map(|u| (u.user_id, u.clients))
        .collect();
    assert_eq!(
        users,
        vec![("dave".to_string(), vec!["dave-pc".to_string()])]
    );
    backend.close(store).await;
}

pub async fn key_packages_are_handed_out_once_and_pruned(backend: &impl Backend) {
    let store = backend.open().await;
    store
        .add_client(BOB.into(), "bob".into(), 10)
        .await
        .expect("add_client");
    store
        .publish_key_packages(
            BOB.into(),
            vec![
                key_package(1, false, 1_000),
                key_package(2, false, 100),
                key_package(3, true, 1_000),
            ],
            10,
        )
        .await
        .expect("publish");
    let stock = |now: u64| store.key_package_stock(BOB, KeyPackageKind::Regular, now);
    assert_eq!(
        stock(50).await.expect("stock"),
        KeyPackageStock {
            one_time: 2,
            last_resort: true
        }
    );
    // The second expires at 100.
    assert_eq!(stock(100).await.expect("stock").one_time, 1);
    assert_eq!(
        store
            .key_package_stock(BOB, KeyPackageKind::Connection, 50)
            .await
            .expect("stock"),
        KeyPackageStock::default()
    );
    // At 50 the oldest one-time package goes, then the second, then the
    // last-resort one, again and again.
    let claim = |token: u8, now: u64| {
        store.claim_key_packages(
            [token; 16],
            "bob".into(),
            KeyPackageKind::Regular,
            None,
            now,
        )
    };
    let bob = |n: u8| vec![(BOB.to_string(), vec![n])];
    assert_eq!(claim(1, 50).await.expect("claim"), bob(1));
    assert_eq!(claim(2, 50).await.expect("claim"), bob(2));
    assert_eq!(claim(3, 50).await.expect("claim"), bob(3));
    assert_eq!(claim(4, 50).await.expect("claim"), bob(3));
    assert_eq!(
        stock(50).await.expect("stock"),
        KeyPackageStock {
            one_time: 0,
            last_resort: true
        }
    );
    // Nothing for another kind, a client not named, or once expired.
    let none = store
        .claim_key_packages([5; 16], "bob".into(), KeyPackageKind::Connection, None, 50)
        .await
        .expect("claim");
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
        .expect("claim");
    assert!(none.is_empty());
    assert!(claim(7, 1_000).await.expect("claim").is_empty());
    // Named clients: only the user's own.
    let named = store
        .claim_key_packages(
            [8; 16],
            "bob".into(),
            KeyPackageKind::Regular,
            Some(vec![BOB.to_string(), CAROL.to_string()]),
            50,
        )
        .await
        .expect("claim");
    assert_eq!(named, bob(3));
    // Pruned at 200, handed out before 60: the last-resort one stays (not
    // expired, never spent).
    store.prune_key_packages(200, 60).await.expect("prune");
    assert_eq!(claim(9, 50).await.expect("claim"), bob(3));
    // Pruned at the end of its lifetime: not yet expired before it.
    store.prune_key_packages(1_000, 60).await.expect("prune");
    assert_eq!(claim(10, 50).await.expect("claim"), bob(3));
    // Once it expires, it goes too: even asked at an earlier time.
    store.prune_key_packages(1_001, 60).await.expect("prune");
    assert_eq!(stock(50).await.expect("stock"), KeyPackageStock::default());
    assert!(claim(12, 50).await.expect("claim").is_empty());

    // A fresh one-time package published after the pruning is handed out
    // before a fresh last-resort one, each client of the user getting one.
    store
        .add_client(LAPTOP.into(), "bob".into(), 10)
        .await
        .expect("add_client");
    store
        .publish_key_packages(
            BOB.into(),
            vec![key_package(11, true, 5_000), key_package(12, false, 5_000)],
            100,
        )
        .await
        .expect("publish");
    store
        .publish_key_packages(LAPTOP.into(), vec![key_package(21, true, 5_000)], 100)
        .await
        .expect("publish");
    // By client id: the laptop ("bob-laptop@") before the phone ("bob@").
    assert_eq!(
        claim(13, 150).await.expect("claim"),
        [(LAPTOP.to_string(), vec![21]), (BOB.to_string(), vec![12])]
    );
    backend.close(store).await;
}

pub async fn enrolment_secrets_are_spent_once(backend: &impl Backend) {
    let store = backend.open().await;
    let secret = |n: u8| [n; 32];
    for n in 1..=4 {
        store
            .add_enrolment(secret(n), "erin".into(), 100, 10)
            .await
            .expect("add_enrolment");
    }
    store
        .enrol_client(
            secret(1),
            "erin-phone".into(),
            "erin".into(),
            b"key 1".to_vec(),
            20,
        )
        .await
        .expect("enrol");
    assert_eq!(
        store.client_key("erin-phone").await.expect("key"),
        Some(b"key 1".to_vec())
    );
    assert!(store.user_exists("erin").await.expect("exists"));
    assert_eq!(
        store.clients_of_user("erin").await.expect("clients"),
        ["erin-phone"]
    );
    let refused = [
        // Spent.
        (secret(1), "erin-tablet", "erin", 20),
        // Unknown.
        (secret(9), "erin-tablet", "erin", 20),
        // Another user's client.
        (secret(2), "frank-phone", "frank", 20),
        // A client that exists.
        (secret(3), "erin-phone", "erin", 20),
        // Expired.
        (secret(4), "erin-tablet", "erin", 100),
    ];
    for (secret, client, user, now) in refused {
        assert!(
            matches!(
                store
                    .enrol_client(secret, client.into(), user.into(), b"other".to_vec(), now)
                    .await,
                Err(StoreError::Conflict)
            ),
            "{client} of {user} at {now}"
        );
    }
    assert_eq!(store.client_key("erin-tablet").await.expect("key"), None);
    assert_eq!(store.client_key("frank-phone").await.expect("key"), None);
    assert!(!store.user_exists("frank").await.expect("exists"));
    assert_eq!(
        store.client_key("erin-phone").await.expect("key"),
        Some(b"key 1".to_vec())
    );
    // The refused secrets that were good are still good.
    store
        .enrol_client(
            secret(2),
            "erin-tablet".into(),
            "erin".into(),
            b"key 2".to_vec(),
            30,
        )
        .await
        .expect("enrol with a secret refused for another user");
    store
        .enrol_client(
            secret(3),
            "erin-pc".into(),
            "erin".into(),
            b"key 3".to_vec(),
            30,
        )
        .await
        .expect("enrol with a secret refused for an existing client");
    assert_eq!(
        store.clients_of_user("erin").await.expect("clients"),
        ["erin-pc", "erin-phone", "erin-tablet"]
    );
    assert_eq!(
        store.client_key("erin-tablet").await.expect("key"),
        Some(b"key 2".to_vec())
    );
    backend.close(store).await;
}

fn connection_request(n: u8, sender_user: &str, recipient_user: &str) -> InboundConnectionRequest {
    InboundConnectionRequest {
        sender: "a.example".into(),
        message_id: [n; 16],
        body_sha256: [n; 32],
        answer: vec![1, n],
        sender_user: sender_user.into(),
        recipient_user: recipient_user.into(),
        group_id: vec![b'g', n],
        epoch: u64::from(n),
        welcome: format!("welcome {n}").into_bytes(),
        now: 100 + u64::from(n),
    }
}

pub async fn connection_requests_are_remembered_and_settled(backend: &impl Backend) {
    let store = backend.open().await;
    for (n, from, to) in [
        (1, "alice", "bob"),
        (2, "carol", "bob"),
        (3, "alice", "bob"),
        (4, "dave", "bob"),
        (5, "alice", "erin"),
    ] {
        store
            .receive_connection_request(connection_request(n, from, to))
            .await
            .expect("receive");
    }
    // A repeat, or one with the key of an accepted delivery: refused.
    assert!(matches!(
        store
            .receive_connection_request(connection_request(1, "mallory", "bob"))
            .await,
        Err(StoreError::Conflict)
    ));
    deliver(&store, 9, &[BOB], 10).await;
    assert!(matches!(
        store
            .receive_connection_request(connection_request(9, "mallory", "bob"))
            .await,
        Err(StoreError::Conflict)
    ));
    let waiting = store.connection_requests("bob").await.expect("requests");
    let seen: Vec<_> = waiting
        .iter()
        .map(|r| {
            (
                r.sender_user.as_str(),
                r.group_id.clone(),
                r.epoch,
                r.received_at,
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("alice", vec![b'g', 1], 1, 101),
            ("carol", vec![b'g', 2], 2, 102),
            ("alice", vec![b'g', 3], 3, 103),
            ("dave", vec![b'g', 4], 4, 104),
        ]
    );
    assert!(waiting.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(waiting[0].welcome, b"welcome 1");
    let id = |n: usize| waiting[n].id;
    let erin = store.connection_requests("erin").await.expect("requests");
    assert_eq!(erin.len(), 1);

    // Someone else's request, or none: refused, nothing changes.
    for (user, request) in [("bob", erin[0].id), ("erin", id(1)), ("bob", 999_999)] {
        assert!(matches!(
            store
                .settle_connection_request(user.into(), request, Decision::Accept, 200)
                .await,
            Err(StoreError::Conflict)
        ));
    }
    assert_eq!(
        store
            .connection_requests("bob")
            .await
            .expect("requests")
            .len(),
        4
    );

    store
        .settle_connection_request("bob".into(), id(1), Decision::Accept, 200)
        .await
        .expect("accept carol");
    assert!(store.connected("bob", "carol").await.expect("connected"));
    assert!(!store.connected("carol", "bob").await.expect("connected"));
    store
        .settle_connection_request("bob".into(), id(3), Decision::Decline, 200)
        .await
        .expect("decline dave");
    assert!(!store.connected("bob", "dave").await.expect("connected"));
    assert!(!store.blocked("bob", "dave").await.expect("blocked"));
    // Blocking drops every request of the requester.
    store
        .settle_connection_request("bob".into(), id(0), Decision::Block, 200)
        .await
        .expect("block alice");
    assert!(store.blocked("bob", "alice").await.expect("blocked"));
    assert!(!store.connected("bob", "alice").await.expect("connected"));
    assert!(
        store
            .connection_requests("bob")
            .await
            .expect("requests")
            .is_empty()
    );
    assert!(matches!(
        store
            .settle_connection_request("bob".into(), id(2), Decision::Accept, 200)
            .await,
        Err(StoreError::Conflict)
    ));
    // Erin's request from Alice is Erin's: untouched.
    assert_eq!(
        store.connection_requests("erin").await.expect("requests"),
        erin
    );
    assert!(!store.blocked("erin", "alice").await.expect("blocked"));

    // Connections asked for by the user itself, once however often.
    store
        .add_connection("bob".into(), "zed".into(), 300)
        .await
        .expect("connect");
    store
        .add_connection("bob".into(), "zed".into(), 301)
        .await
        .expect("connect again");
    assert!(store.connected("bob", "zed").await.expect("connected"));
    assert!(!store.connected("zed", "bob").await.expect("connected"));
    backend.close(store).await;
}

pub async fn outbox_stats_count_each_destinations_jobs_and_the_dead_letters(
    backend: &impl Backend,
) {
    let store = backend.open().await;
    assert_eq!(
        store.outbox_stats().await.expect("stats"),
        OutboxStats::default()
    );
    let g = b"group-stats";
    store
        .commit(step(g, None, put(b"s1")))
        .await
        .expect("create");
    let mut first = at(step(g, Some(1), GroupWrite::Keep), 1_000);
    first.messages = vec![message(1, "one")];
    first.jobs = vec![job("c.example", 1, "carl"), job("b.example", 1, "bob")];
    store.commit(first).await.expect("first");
    let mut second = at(step(g, Some(1), GroupWrite::Keep), 2_000);
    second.messages = vec![message(2, "two")];
    second.jobs = vec![job("b.example", 2, "bob")];
    store.commit(second).await.expect("second");
    let backlog = |destination: &str, jobs, oldest_created_at| DestinationBacklog {
        destination: destination.into(),
        jobs,
        oldest_created_at,
    };
    assert_eq!(
        store.outbox_stats().await.expect("stats"),
        OutboxStats {
            destinations: vec![
                backlog("b.example", 2, 1_000),
                backlog("c.example", 1, 1_000)
            ],
            dead_letters: 0,
        }
    );

    // b.example's oldest job dies, c.example's is delivered: b.example's
    // oldest is the second step's, c.example has none left.
    let b = store.pending_jobs("b.example", 10).await.expect("jobs");
    let c = store.pending_jobs("c.example", 10).await.expect("jobs");
    store
        .dead_letter(b[0].id, "refused".into(), 3_000)
        .await
        .expect("dead letter");
    store.complete_job(c[0].id).await.expect("complete");
    assert_eq!(
        store.outbox_stats().await.expect("stats"),
        OutboxStats {
            destinations: vec![backlog("b.example", 1, 2_000)],
            dead_letters: 1,
        }
    );
    backend.close(store).await;
}

pub async fn failed_jobs_are_counted_and_dead_lettered(backend: &impl Backend) {
    let store = backend.open().await;
    let g = b"group";
    store
        .commit(step(g, None, put(b"s")))
        .await
        .expect("create");
    store
        .commit(at(
            with_mail(
                step(g, Some(1), GroupWrite::Keep),
                vec![message(1, "one"), message(2, "two")],
                vec![
                    job("x.example", 1, "x1"),
                    job("y.example", 1, "y1"),
                    job("x.example", 2, "x2"),
                ],
            ),
            700,
        ))
        .await
        .expect("mail");
    let mut destinations = store.job_destinations().await.expect("destinations");
    destinations.sort();
    assert_eq!(destinations, ["x.example", "y.example"]);
    let x = store.pending_jobs("x.example", 10).await.expect("jobs");
    let y = store.pending_jobs("y.example", 10).await.expect("jobs");

    store.record_attempt(x[0].id).await.expect("attempt");
    store.record_attempt(x[0].id).await.expect("attempt");
    store.record_attempt(y[0].id).await.expect("attempt");
    store
        .record_attempt(9_999)
        .await
        .expect("attempt on nothing");
    let attempts: Vec<u32> = store
        .pending_jobs("x.example", 10)
        .await
        .expect("jobs")
        .iter()
        .map(|j| j.attempts)
        .collect();
    assert_eq!(attempts, [2, 0]);

    // The job as it was goes to the dead letters; its message stays for the
    // other job that needs it.
    store
        .dead_letter(x[0].id, "refused by x".into(), 800)
        .await
        .expect("dead letter");
    let letters = store.dead_letters(10).await.expect("dead letters");
    assert_eq!(letters.len(), 1);
    let mut died = x[0].clone();
    died.attempts = 2;
    assert_eq!(letters[0].job, died);
    assert_eq!(
        (letters[0].failed_at, letters[0].reason.as_str()),
        (800, "refused by x")
    );
    assert_eq!(
        store.pending_jobs("x.example", 10).await.expect("jobs"),
        x[1..].to_vec()
    );
    assert_eq!(message_count(&store).await, 2);

    // A job that is gone is left alone.
    store.complete_job(x[1].id).await.expect("complete");
    store
        .dead_letter(x[1].id, "too late".into(), 801)
        .await
        .expect("dead letter of a completed job");
    assert_eq!(store.dead_letters(10).await.expect("dead letters").len(), 1);
    assert_eq!(message_count(&store).await, 1);

    // The message goes with its last job, dead or delivered; the letter
    // keeps its body.
    store
        .dead_letter(y[0].id, "refused by y".into(), 900)
        .await
        .expect("dead letter");
    assert_eq!(message_count(&store).await, 0);
    assert_eq!(job_count(&store).await, 0);
    let letters = store.dead_letters(10).await.expect("dead letters");
    assert_eq!(letters.len(), 2);
    assert!(letters[0].id < letters[1].id);
    let mut died = y[0].clone();
    died.attempts = 1;
    assert_eq!(letters[1].job, died);
    assert_eq!(letters[1].job.body, b"one");
    assert_eq!(letters[1].reason, "refused by y");
    assert_eq!(
        store.dead_letters(1).await.expect("dead letters"),
        letters[..1].to_vec()
    );
    assert!(
        store
            .job_destinations()
            .await
            .expect("destinations")
            .is_empty()
    );
    backend.close(store).await;
}

/// A Privacy Pass token (key id and nonce) is spent once: spent again it
/// is a conflict, also after the store is closed and opened again; the
/// same nonce under another key, or another nonce under the same key, is
/// another token.
pub async fn privacy_pass_tokens_are_spent_once(backend: &impl Backend) {
    let store = backend.open().await;
    store
        .spend_token([1; 32], [7; 32], 10)
        .await
        .expect("spend");
    assert!(is_conflict(&store.spend_token([1; 32], [7; 32], 11).await));
    store
        .spend_token([2; 32], [7; 32], 12)
        .await
        .expect("another key");
    store
        .spend_token([1; 32], [8; 32], 13)
        .await
        .expect("another nonce");
    // Beyond i64 is refused before anything is written.
    assert!(!is_conflict(
        &store.spend_token([3; 32], [3; 32], u64::MAX).await
    ));
    backend.close(store).await;
    let store = backend.open().await;
    for (key, nonce) in [(1, 7), (2, 7), (1, 8)] {
        assert!(
            is_conflict(&store.spend_token([key; 32], [nonce; 32], 20).await),
            "{key} {nonce}"
        );
    }
    store
        .spend_token([3; 32], [3; 32], 20)
        .await
        .expect("the refused one was not spent");
    backend.close(store).await;
}

// ---------------------------------------------------------------------
// Two stores on one database, as two processes of one provider.

/// Runs `f(i)` for `i` in `0..n` as tasks released together, and returns
/// their outputs in order.
async fn together<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let work = f(i);
            tokio::spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut outputs = Vec::with_capacity(n);
    for task in tasks {
        outputs.push(task.await.expect("task"));
    }
    outputs
}

/// Opens two stores on the backend's database.
async fn two<B: Backend>(backend: &B) -> [Arc<B::Store>; 2] {
    [
        Arc::new(backend.open().await),
        Arc::new(backend.open().await),
    ]
}

async fn close_both<B: Backend>(backend: &B, stores: [Arc<B::Store>; 2]) {
    for store in stores {
        backend.close(unshare(store)).await;
    }
}

/// Of two stores creating one group, or stepping it from one version, at
/// once, exactly one wins; nothing of the loser's step remains.
pub async fn two_stores_committing_one_version_one_wins<B: Backend>(backend: &B) {
    const ROUNDS: u64 = 20;
    let stores = two(backend).await;
    let g = b"contended";
    let mut winners = Vec::new();
    for round in 0..=ROUNDS {
        let expected = (round > 0).then_some(round);
        let outcomes = together(2, |i| {
            let store = Arc::clone(&stores[i]);
            // Distinct message ids: (round, store).
            let id = (round * 2 + i as u64) as u8;
            let mut s = with_mail(
                step(g, expected, put(format!("{i}:{round}").as_bytes())),
                vec![message(id, &format!("by {i} in {round}"))],
                vec![job("x.example", id, "r")],
            );
            s.snapshot = Some(Snapshot {
                epoch: round,
                created_at: round,
                data: format!("{i}:{round}").into_bytes(),
            });
            async move { store.commit(s).await }
        })
        .await;
        let won: Vec<usize> = (0..2).filter(|&i| outcomes[i].is_ok()).collect();
        assert_eq!(won.len(), 1, "round {round}: {outcomes:?}");
        let lost = 1 - won[0];
        assert!(is_conflict(&outcomes[lost]), "round {round}: {outcomes:?}");
        winners.push(won[0]);
        assert_eq!(
            version(&*stores[lost], g).await,
            Some(round + 1),
            "the loser sees the winner's version"
        );
    }
    let last = winners[ROUNDS as usize];
    assert_eq!(
        stored_state(&*stores[0], g).await,
        (ROUNDS + 1, format!("{last}:{ROUNDS}").into_bytes())
    );
    // Only the winners' messages, jobs and snapshots.
    assert_eq!(message_count(&*stores[1]).await, ROUNDS + 1);
    let jobs = stores[0]
        .pending_jobs("x.example", 1_000)
        .await
        .expect("jobs");
    let bodies: Vec<Vec<u8>> = jobs.into_iter().map(|j| j.body).collect();
    let expected: Vec<Vec<u8>> = winners
        .iter()
        .enumerate()
        .map(|(round, i)| format!("by {i} in {round}").into_bytes())
        .collect();
    assert_eq!(bodies, expected);
    for (round, i) in winners.iter().enumerate() {
        let round = round as u64;
        assert_eq!(
            stores[1].load_snapshot(g, round).await.expect("snapshot"),
            Some(Snapshot {
                epoch: round,
                created_at: round,
                data: format!("{i}:{round}").into_bytes(),
            })
        );
    }
    close_both(backend, stores).await;
}

/// 32 claims at once, half through each store, over 8 one-time packages
/// and a last-resort one: each one-time package is handed out exactly once,
/// the last-resort one to the rest.
pub async fn two_stores_claiming_one_time_key_packages_hand_each_out_once<B: Backend>(backend: &B) {
    const ONE_TIME: u8 = 8;
    const CLAIMS: usize = 32;
    let stores = two(backend).await;
    stores[0]
        .add_client(BOB.into(), "bob".into(), 10)
        .await
        .expect("add_client");
    let mut packages: Vec<_> = (1..=ONE_TIME)
        .map(|n| key_package(n, false, 1_000))
        .collect();
    packages.push(key_package(100, true, 1_000));
    stores[1]
        .publish_key_packages(BOB.into(), packages, 10)
        .await
        .expect("publish");
    let handed = together(CLAIMS, |i| {
        let store = Arc::clone(&stores[i % 2]);
        let token = (i as u128).to_be_bytes();
        async move {
            store
                .claim_key_packages(token, "bob".into(), KeyPackageKind::Regular, None, 50)
                .await
        }
    })
    .await;
    let mut times: BTreeMap<u8, usize> = BTreeMap::new();
    for claim in handed {
        let claim = claim.expect("claim");
        assert_eq!(claim.len(), 1, "{claim:?}");
        assert_eq!(claim[0].0, BOB);
        assert_eq!(claim[0].1.len(), 1);
        *times.entry(claim[0].1[0]).or_default() += 1;
    }
    let mut expected: BTreeMap<u8, usize> = (1..=ONE_TIME).map(|n| (n, 1)).collect();
    expected.insert(100, CLAIMS - usize::from(ONE_TIME));
    assert_eq!(times, expected);
    for store in &stores {
        assert_eq!(
            store
                .key_package_stock(BOB, KeyPackageKind::Regular, 50)
                .await
                .expect("stock"),
            KeyPackageStock {
                one_time: 0,
                last_resort: true
            }
        );
    }
    close_both(backend, stores).await;
}

/// The same delivery (sender, message id) accepted by two stores at once:
/// one accepts it, the other answers `Conflict`; it is queued once.
pub async fn two_stores_accepting_one_delivery_queue_it_once<B: Backend>(backend: &B) {
    const DELIVERIES: u8 = 10;
    let stores = two(backend).await;
    for n in 1..=DELIVERIES {
        let outcomes = together(2, |i| {
            let store = Arc::clone(&stores[i]);
            async move {
                let mut delivery = inbound(n, &[BOB, CAROL], 10);
                // The answer tells who accepted it.
                delivery.answer = vec![i as u8];
                store.deliver(vec![delivery]).await?.await
            }
        })
        .await;
        let accepted: Vec<usize> = (0..2).filter(|&i| outcomes[i].is_ok()).collect();
        assert_eq!(accepted.len(), 1, "delivery {n}: {outcomes:?}");
        assert!(
            is_conflict(&outcomes[1 - accepted[0]]),
            "delivery {n}: {outcomes:?}"
        );
        for store in &stores {
            let remembered = store
                .remembered("a.example", [n; 16])
                .await
                .expect("remembered")
                .expect("remembered delivery");
            assert_eq!(remembered.answer, [accepted[0] as u8]);
        }
    }
    let expected: Vec<String> = (1..=DELIVERIES).map(|n| format!("message {n}")).collect();
    for store in &stores {
        for client in [BOB, CAROL] {
            assert_eq!(names(&queue(&**store, client, 0).await), expected);
        }
    }
    assert_eq!(inbox_count(&*stores[0]).await, u64::from(DELIVERIES));
    close_both(backend, stores).await;
}

/// Two stores acknowledging the last two holders of a message at once:
/// the message goes.
pub async fn two_stores_acknowledging_the_last_holders_release_the_message<B: Backend>(
    backend: &B,
) {
    const MESSAGES: u8 = 20;
    let stores = two(backend).await;
    for n in 1..=MESSAGES {
        deliver(&*stores[usize::from(n % 2)], n, &[BOB, CAROL], 10).await;
    }
    let positions: Vec<u64> = queue(&*stores[0], BOB, 0)
        .await
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    assert_eq!(positions.len(), usize::from(MESSAGES));
    for (done, seq) in positions.iter().enumerate() {
        together(2, |i| {
            let store = Arc::clone(&stores[i]);
            let client = [BOB, CAROL][i];
            let seq = *seq;
            async move { ack(&*store, client, seq).await }
        })
        .await;
        assert_eq!(
            inbox_count(&*stores[0]).await,
            u64::from(MESSAGES) - done as u64 - 1,
            "after both acknowledged position {seq}"
        );
    }
    for client in [BOB, CAROL] {
        assert!(queue(&*stores[1], client, 0).await.is_empty());
    }
    close_both(backend, stores).await;
}

/// Two stores completing the last two jobs of a message at once: the
/// message goes.
pub async fn two_stores_completing_the_last_jobs_release_the_message<B: Backend>(backend: &B) {
    const MESSAGES: u8 = 20;
    let stores = two(backend).await;
    let g = b"group";
    stores[0]
        .commit(step(g, None, put(b"s")))
        .await
        .expect("create");
    for n in 1..=MESSAGES {
        stores[usize::from(n % 2)]
            .commit(with_mail(
                step(g, Some(1), GroupWrite::Keep),
                vec![message(n, "m")],
                vec![job("x.example", n, "x"), job("y.example", n, "y")],
            ))
            .await
            .expect("mail");
    }
    let x = stores[0]
        .pending_jobs("x.example", 100)
        .await
        .expect("jobs");
    let y = stores[1]
        .pending_jobs("y.example", 100)
        .await
        .expect("jobs");
    assert_eq!(
        (x.len(), y.len()),
        (usize::from(MESSAGES), usize::from(MESSAGES))
    );
    for (done, (x, y)) in x.iter().zip(&y).enumerate() {
        assert_eq!(x.message_id, y.message_id);
        together(2, |i| {
            let store = Arc::clone(&stores[i]);
            let id = [x.id, y.id][i];
            async move { store.complete_job(id).await.expect("complete") }
        })
        .await;
        assert_eq!(
            message_count(&*stores[1]).await,
            u64::from(MESSAGES) - done as u64 - 1,
            "after both jobs of message {:?} completed",
            x.message_id[0]
        );
    }
    close_both(backend, stores).await;
}

/// Jobs for one destination written by two stores at once, read on from a
/// cursor meanwhile: the reader never skips one (ids become visible in
/// increasing order).
pub async fn jobs_of_two_stores_are_read_on_from_a_cursor_without_gaps<B: Backend>(backend: &B) {
    const WRITERS: usize = 4;
    const STEPS: usize = 40;
    let stores = two(backend).await;
    for w in 0..WRITERS {
        stores[0]
            .commit(step(format!("g{w}").as_bytes(), None, put(b"s")))
            .await
            .expect("create");
    }
    let writing = Arc::new(std::sync::atomic::AtomicUsize::new(WRITERS));
    let reader = {
        let store = Arc::clone(&stores[0]);
        let writing = Arc::clone(&writing);
        tokio::spawn(async move {
            let mut seen: Vec<i64> = Vec::new();
            let mut cursor = 0;
            loop {
                // Read once more after the writers are done.
                let done = writing.load(std::sync::atomic::Ordering::SeqCst) == 0;
                loop {
                    let jobs = store
                        .pending_jobs_after("d.example", cursor, 7)
                        .await
                        .expect("pending_jobs_after");
                    let Some(last) = jobs.last() else { break };
                    cursor = last.id;
                    seen.extend(jobs.iter().map(|j| j.id));
                }
                if done {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    together(WRITERS, |w| {
        let store = Arc::clone(&stores[w % 2]);
        let writing = Arc::clone(&writing);
        async move {
            let group = format!("g{w}").into_bytes();
            for s in 0..STEPS {
                let message_id = ((w * STEPS + s) as u128).to_be_bytes();
                let mut keep = step(&group, Some(1), GroupWrite::Keep);
                keep.messages = vec![NewMessage {
                    message_id,
                    body: b"body".to_vec(),
                }];
                keep.jobs = (0..2)
                    .map(|r| NewJob {
                        destination: "d.example".into(),
                        message_id,
                        recipients: format!("{w}/{s}/{r}").into_bytes(),
                    })
                    .collect();
                // Several steps of one writer queued at once, so that they
                // share transactions.
                if s % 4 == 3 {
                    store.commit(keep).await.expect("commit");
                } else {
                    store.enqueue(keep).await.expect("enqueue").start();
                }
            }
            // The last commit resolved after the writer's earlier ones.
            writing.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    })
    .await;
    let seen = reader.await.expect("reader");
    let all: Vec<i64> = stores[1]
        .pending_jobs("d.example", 100_000)
        .await
        .expect("jobs")
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(all.len(), WRITERS * STEPS * 2);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let missed: Vec<i64> = all
        .iter()
        .filter(|id| !seen.contains(id))
        .copied()
        .collect();
    assert!(
        missed.is_empty(),
        "the cursor skipped {} of {} jobs: {missed:?}",
        missed.len(),
        all.len()
    );
    assert_eq!(seen, all);
    close_both(backend, stores).await;
}

/// One enrolment secret spent, one user added, one connection request
/// settled by two stores at once: exactly one of each succeeds, the other
/// answers `Conflict`.
pub async fn two_stores_spending_one_secret_or_request_spend_it_once<B: Backend>(backend: &B) {
    const ROUNDS: u8 = 10;
    let stores = two(backend).await;
    let one_won = |what: &str, outcomes: &[Result<(), StoreError>]| {
        let won = outcomes.iter().filter(|o| o.is_ok()).count();
        let lost = outcomes.iter().filter(|o| is_conflict(o)).count();
        assert_eq!((won, lost), (1, 1), "{what}: {outcomes:?}");
        outcomes.iter().position(Result::is_ok).expect("a winner")
    };
    for round in 0..ROUNDS {
        let user = format!("user-{round}");
        stores[0]
            .add_enrolment([round; 32], user.clone(), 1_000, 10)
            .await
            .expect("add_enrolment");
        let outcomes = together(2, |i| {
            let store = Arc::clone(&stores[i]);
            let user = user.clone();
            async move {
                store
                    .enrol_client(
                        [round; 32],
                        format!("{user}-client-{i}"),
                        user,
                        vec![i as u8],
                        20,
                    )
                    .await
            }
        })
        .await;
        let winner = one_won("enrolment", &outcomes);
        assert_eq!(
            stores[1 - winner]
                .clients_of_user(&user)
                .await
                .expect("clients"),
            [format!("{user}-client-{winner}")]
        );

        let added = format!("added-{round}");
        let outcomes = together(2, |i| {
            let store = Arc::clone(&stores[i]);
            let added = added.clone();
            async move { store.add_user(added, 30 + i as u64).await }
        })
        .await;
        one_won("add_user", &outcomes);

        stores[1]
            .receive_connection_request(connection_request(round, "alice", &user))
            .await
            .expect("receive");
        let id = stores[0]
            .connection_requests(&user)
            .await
            .expect("requests")[0]
            .id;
        let outcomes = together(2, |i| {
            let store = Arc::clone(&stores[i]);
            let user = user.clone();
            let decision = [Decision::Accept, Decision::Block][i];
            async move {
                store
                    .settle_connection_request(user, id, decision, 40)
                    .await
            }
        })
        .await;
        let winner = one_won("settling", &outcomes);
        let store = &stores[1 - winner];
        assert_eq!(
            (
                store.connected(&user, "alice").await.expect("connected"),
                store.blocked(&user, "alice").await.expect("blocked")
            ),
            (winner == 0, winner == 1)
        );
        assert!(
            store
                .connection_requests(&user)
                .await
                .expect("requests")
                .is_empty()
        );
    }
    assert_eq!(
        stores[0].users().await.expect("users").len(),
        2 * usize::from(ROUNDS)
    );
    close_both(backend, stores).await;
}

/// Of two stores spending one Privacy Pass token at once (a token replayed
/// to two processes), exactly one accepts it.
pub async fn two_stores_spending_one_token_spend_it_once<B: Backend>(backend: &B) {
    const ROUNDS: u8 = 20;
    let stores = two(backend).await;
    let mut wins = [0; 2];
    for round in 0..ROUNDS {
        let outcomes = together(2, |i| {
            let store = Arc::clone(&stores[i]);
            async move { store.spend_token([9; 32], [round; 32], 50).await }
        })
        .await;
        let won = outcomes.iter().filter(|o| o.is_ok()).count();
        let lost = outcomes.iter().filter(|o| is_conflict(o)).count();
        assert_eq!((won, lost), (1, 1), "round {round}: {outcomes:?}");
        if let Some(winner) = outcomes.iter().position(Result::is_ok) {
            wins[winner] += 1;
        }
        for store in &stores {
            assert!(is_conflict(
                &store.spend_token([9; 32], [round; 32], 60).await
            ));
        }
    }
    assert_eq!(wins[0] + wins[1], ROUNDS);
    close_both(backend, stores).await;
}

/// A step carrying a message that is stored already (a retried step)
/// while another store completes the message's last job: whichever comes
/// first, the step succeeds and its job has its message.
pub async fn a_message_carried_again_while_another_store_completes_its_last_job<B: Backend>(
    backend: &B,
) {
    const ROUNDS: u8 = 30;
    let stores = two(backend).await;
    let g = b"group";
    stores[0]
        .commit(step(g, None, put(b"s")))
        .await
        .expect("create");
    for round in 0..ROUNDS {
        stores[0]
            .commit(with_mail(
                step(g, Some(1), GroupWrite::Keep),
                vec![message(round, "body")],
                vec![job("x.example", round, "x")],
            ))
            .await
            .expect("first step");
        let first = stores[1].pending_jobs("x.example", 10).await.expect("jobs");
        assert_eq!(first.len(), 1);
        let outcomes = together(2, |i| {
            let store = Arc::clone(&stores[i]);
            let first = first[0].id;
            async move {
                if i == 0 {
                    store
                        .commit(with_mail(
                            step(g, Some(1), GroupWrite::Keep),
                            vec![message(round, "body")],
                            vec![job("y.example", round, "y")],
                        ))
                        .await
                } else {
                    store.complete_job(first).await
                }
            }
        })
        .await;
        assert!(
            outcomes.iter().all(Result::is_ok),
            "round {round}: {outcomes:?}"
        );
        let y = stores[1].pending_jobs("y.example", 10).await.expect("jobs");
        assert_eq!(y.len(), 1, "round {round}");
        assert_eq!(y[0].body, b"body");
        assert_eq!(message_count(&*stores[1]).await, 1, "round {round}");
        stores[0].complete_job(y[0].id).await.expect("complete");
        assert_eq!(message_count(&*stores[1]).await, 0, "round {round}");
    }
    close_both(backend, stores).await;
}

/// A step referring to a message stored ahead while another store prunes
/// (or discards) unreferenced messages: the pruning succeeds, and either
/// the step comes first and keeps the message, or the pruning does and the
/// step fails alone; a job never lacks its message.
pub async fn a_message_referred_to_while_another_store_prunes_or_discards_it<B: Backend>(
    backend: &B,
) {
    const ROUNDS: u8 = 40;
    let stores = two(backend).await;
    let g = b"group";
    stores[0]
        .commit(step(g, None, put(b"s")))
        .await
        .expect("create");
    let mut kept = 0;
    for round in 0..ROUNDS {
        stores[0]
            .commit(at(
                with_mail(
                    step(g, Some(1), GroupWrite::Keep),
                    vec![message(round, "ahead")],
                    Vec::new(),
                ),
                1_000,
            ))
            .await
            .expect("store ahead");
        let outcomes = together(2, |i| {
            let store = Arc::clone(&stores[i]);
            async move {
                if i == 0 {
                    store
                        .commit(at(
                            with_mail(
                                step(g, Some(1), GroupWrite::Keep),
                                Vec::new(),
                                vec![job("x.example", round, "x")],
                            ),
                            2_000,
                        ))
                        .await
                } else if round % 2 == 0 {
                    store.prune_messages(1_001).await
                } else {
                    store.discard_messages(vec![[round; 16]]).await?.await
                }
            }
        })
        .await;
        outcomes[1]
            .as_ref()
            .unwrap_or_else(|e| panic!("round {round}: pruning failed: {e}"));
        let jobs = stores[1].pending_jobs("x.example", 10).await.expect("jobs");
        match &outcomes[0] {
            Ok(()) => {
                kept += 1;
                assert_eq!(jobs.len(), 1, "round {round}");
                assert_eq!(jobs[0].body, b"ahead");
                assert_eq!(message_count(&*stores[1]).await, 1, "round {round}");
                stores[0].complete_job(jobs[0].id).await.expect("complete");
            }
            Err(StoreError::Database(_)) => assert!(jobs.is_empty(), "round {round}"),
            Err(e) => panic!("round {round}: {e}"),
        }
        assert_eq!(message_count(&*stores[1]).await, 0, "round {round}");
    }
    println!("{kept} of {ROUNDS} steps came before the pruning");
    close_both(backend, stores).await;
}

// ---------------------------------------------------------------------
// Application messages remembered by digest.

/// An application message `n` of group `group` (at store version
/// `version`) remembered as `digest` of `epoch`: a stored message with a
/// job for x.example, and a copy queued for Bob.
pub fn sent(group: &[u8], version: u64, n: u8, epoch: u64, digest: u8) -> Step {
    let mut s = with_mail(
        local_step(group, Some(version), n, &[BOB]),
        vec![message(n, &format!("message {n}"))],
        vec![job("x.example", n, "r")],
    );
    s.remember = Some(MessageDigest {
        epoch,
        digest: [digest; 32],
    });
    s
}

pub fn is_repeated(result: &Result<(), StoreError>) -> bool {
    matches!(result, Err(StoreError::Repeated))
}

/// What a step of an application message adds to: stored messages, jobs,
/// Bob's queue, the inbox, and the group's version.
async fn fanned_out(store: &impl Store, group: &[u8]) -> (u64, usize, usize, u64, Option<u64>) {
    (
        message_count(store).await,
        job_count(store).await,
        store
            .client_queue(BOB, 0, 10_000)
            .await
            .expect("client_queue")
            .len(),
        inbox_count(store).await,
        version(store, group).await,
    )
}

/// Queues `steps` back to back (mostly one batch), then waits for each.
async fn queued_together(store: &impl Store, steps: Vec<Step>) -> Vec<Result<(), StoreError>> {
    let mut pending = Vec::new();
    for step in steps {
        pending.push(store.enqueue(step).await.expect("enqueue"));
    }
    let mut outcomes = Vec::new();
    for p in pending {
        outcomes.push(p.await);
    }
    outcomes
}

/// A step remembering a digest its group has already fails with
/// `Repeated` and stores nothing of its own (message, job, queue entry),
/// across a reopen too; a stale one is a conflict first; another
/// message, or the same digest in another group, goes through.
pub async fn a_repeated_message_changes_nothing_and_is_reported(backend: &impl Backend) {
    let mut store = backend.open().await;
    store
        .add_client(BOB.into(), "bob".into(), 0)
        .await
        .expect("add_client");
    let g = b"chat";
    store
        .commit(step(g, None, put(b"s")))
        .await
        .expect("create");
    store.commit(sent(g, 1, 1, 1, 0xd1)).await.expect("first");
    let once = fanned_out(&store, g).await;
    assert_eq!(once, (1, 1, 1, 1, Some(1)));

    let again = store.commit(sent(g, 1, 2, 1, 0xd1)).await;
    assert!(is_repeated(&again), "{again:?}");
    assert_eq!(fanned_out(&store, g).await, once);
    let stale = store.commit(sent(g, 7, 3, 1, 0xd1)).await;
    assert!(is_conflict(&stale), "{stale:?}");

    store
        .commit(sent(g, 1, 4, 1, 0xd2))
        .await
        .expect("another message");
    let twice = fanned_out(&store, g).await;
    assert_eq!(twice, (2, 2, 2, 2, Some(1)));

    backend.close(store).await;
    store = backend.open().await;
    for (n, digest) in [(5, 0xd1), (6, 0xd2)] {
        let again = store.commit(sent(g, 1, n, 1, digest)).await;
        assert!(is_repeated(&again), "after reopening: {again:?}");
    }
    assert_eq!(fanned_out(&store, g).await, twice);

    let h = b"other chat";
    store
        .commit(step(h, None, put(b"s")))
        .await
        .expect("create");
    store
        .commit(sent(h, 1, 7, 1, 0xd1))
        .await
        .expect("the same digest in another group");
    assert_eq!(message_count(&store).await, 3);
    backend.close(store).await;
}

/// Steps queued together are applied as one after the other: of two with
/// one digest the first is applied and the second reported; a digest
/// forgotten, or its group deleted and created again, by a step before is
/// taken as new.
pub async fn repeated_messages_queued_together_are_applied_once_in_order(backend: &impl Backend) {
    let store = backend.open().await;
    store
        .add_client(BOB.into(), "bob".into(), 0)
        .await
        .expect("add_client");
    let g = b"chat";
    store
        .commit(step(g, None, put(b"s")))
        .await
        .expect("create");
    store.commit(sent(g, 1, 1, 1, 0xa1)).await.expect("stored");

    let mut commit = step(g, Some(1), put(b"epoch 2"));
    commit.forget_digests = Some(1..2);
    let outcomes = queued_together(
        &store,
        vec![
            sent(g, 1, 2, 1, 0xa1), // stored before: repeated
            sent(g, 1, 3, 1, 0xb1), // new
            sent(g, 1, 4, 1, 0xb1), // repeated within the batch
            commit,                 // forgets epoch 1
            sent(g, 2, 5, 1, 0xa1), // forgotten: new
            sent(g, 2, 6, 1, 0xb1), // forgotten: new
            sent(g, 2, 7, 1, 0xb1), // repeated
            step(g, Some(2), GroupWrite::Delete),
            step(g, None, put(b"again")),
            sent(g, 1, 8, 1, 0xb1), // a new group's: new
            sent(g, 1, 9, 1, 0xb1), // repeated
        ],
    )
    .await;
    let shape: Vec<&str> = outcomes
        .iter()
        .map(|o| match o {
            Ok(()) => "ok",
            Err(StoreError::Repeated) => "repeated",
            Err(_) => "failed",
        })
        .collect();
    assert_eq!(
        shape,
        [
            "repeated", "ok", "repeated", "ok", "ok", "ok", "repeated", "ok", "ok", "ok",
            "repeated"
        ],
        "{outcomes:?}"
    );
    // Messages 1, 3, 5, 6 and 8 (their jobs keep them past the deletion).
    let bodies: Vec<Vec<u8>> = store
        .pending_jobs("x.example", 100)
        .await
        .expect("jobs")
        .into_iter()
        .map(|j| j.body)
        .collect();
    let expected: Vec<Vec<u8>> = [1, 3, 5, 6, 8]
        .iter()
        .map(|n| format!("message {n}").into_bytes())
        .collect();
    assert_eq!(bodies, expected);
    assert_eq!(
        store
            .client_queue(BOB, 0, 100)
            .await
            .expect("client_queue")
            .len(),
        5
    );
    // What the batch left remembered: the new group's digest only.
    let outcomes = queued_together(
        &store,
        vec![sent(g, 1, 10, 1, 0xb1), sent(g, 1, 11, 1, 0xa1)],
    )
    .await;
    assert!(is_repeated(&outcomes[0]), "{outcomes:?}");
    assert!(outcomes[1].is_ok(), "{outcomes:?}");
    backend.close(store).await;
}

/// A step's `forget_digests` forgets the group's digests of those epochs
/// (a repeat of one is new again) and keeps the others and other groups';
/// a range reaching beyond storable epochs forgets up to them, one
/// starting beyond them nothing; a deleted group forgets all of its own.
pub async fn digests_of_old_epochs_and_of_deleted_groups_are_forgotten(backend: &impl Backend) {
    let store = backend.open().await;
    let (g, h) = (&b"chat"[..], &b"other"[..]);
    for group in [g, h] {
        store
            .commit(step(group, None, put(b"s")))
            .await
            .expect("create");
    }
    for epoch in 1..=3u8 {
        store
            .commit(sent(g, 1, epoch, u64::from(epoch), epoch))
            .await
            .expect("sent");
    }
    store.commit(sent(h, 1, 9, 1, 1)).await.expect("sent");
    let mut commit = step(g, Some(1), put(b"epoch 4"));
    commit.forget_digests = Some(2..3);
    store.commit(commit).await.expect("commit");
    // Epoch 2 is forgotten; epochs 1 and 3 and the other group are kept.
    let outcomes = [
        store.commit(sent(g, 2, 11, 1, 1)).await,
        store.commit(sent(g, 2, 12, 2, 2)).await,
        store.commit(sent(g, 2, 13, 3, 3)).await,
        store.commit(sent(h, 1, 14, 1, 1)).await,
    ];
    assert!(outcomes[1].is_ok(), "{outcomes:?}");
    assert!(
        [0, 2, 3].iter().all(|&i| is_repeated(&outcomes[i])),
        "{outcomes:?}"
    );

    let mut commit = step(g, Some(2), put(b"epoch 5"));
    commit.forget_digests = Some(0..u64::MAX);
    store.commit(commit).await.expect("commit");
    for (n, epoch) in [(21, 1), (22, 2), (23, 3)] {
        store
            .commit(sent(g, 3, n, epoch, epoch as u8))
            .await
            .expect("forgotten: new again");
    }
    let mut commit = step(g, Some(3), put(b"epoch 6"));
    commit.forget_digests = Some(u64::MAX - 1..u64::MAX);
    store.commit(commit).await.expect("commit");
    let kept = store.commit(sent(g, 4, 24, 3, 3)).await;
    assert!(is_repeated(&kept), "{kept:?}");

    store
        .commit(step(g, Some(4), GroupWrite::Delete))
        .await
        .expect("delete");
    store
        .commit(step(g, None, put(b"s")))
        .await
        .expect("create again");
    store
        .commit(sent(g, 1, 31, 3, 3))
        .await
        .expect("the deleted group's digest is forgotten");
    let kept = store.commit(sent(h, 1, 32, 1, 1)).await;
    assert!(is_repeated(&kept), "{kept:?}");
    backend.close(store).await;
}

/// Two stores on one database stepping one message at once (two
/// processes taking a retried request each): exactly one applies it, the
/// other reports the repeat; each message is stored, sent and queued once.
pub async fn two_stores_remembering_one_message_apply_it_once<B: Backend>(backend: &B) {
    const ROUNDS: u8 = 20;
    let stores = two(backend).await;
    stores[0]
        .add_client(BOB.into(), "bob".into(), 0)
        .await
        .expect("add_client");
    let g = b"chat";
    stores[0]
        .commit(step(g, None, put(b"s")))
        .await
        .expect("create");
    let mut wins = [0; 2];
    for round in 0..ROUNDS {
        let outcomes = together(2, |i| {
            let store = Arc::clone(&stores[i]);
            let s = sent(g, 1, round * 2 + i as u8, 1, round);
            async move { store.commit(s).await }
        })
        .await;
        let won = outcomes.iter().filter(|o| o.is_ok()).count();
        let repeated = outcomes.iter().filter(|o| is_repeated(o)).count();
        assert_eq!((won, repeated), (1, 1), "round {round}: {outcomes:?}");
        if let Some(winner) = outcomes.iter().position(Result::is_ok) {
            wins[winner] += 1;
        }
    }
    let rounds = usize::from(ROUNDS);
    for store in &stores {
        assert_eq!(
            fanned_out(&**store, g).await,
            (
                u64::from(ROUNDS),
                rounds,
                rounds,
                u64::from(ROUNDS),
                Some(1)
            )
        );
    }
    assert_eq!(wins[0] + wins[1], ROUNDS);
    close_both(backend, stores).await;
}
