//! The SQLite implementation of [`Store`].
//!
//! # Design
//!
//! * **One writer.** The only write connection (`rusqlite`, so that
//!   statements run on the thread that applies them) belongs to a
//!   [`Writer`]. Every write (`enqueue`, `complete_job`, pruning) is queued
//!   with a one-shot reply channel; `enqueue` returns once the request is
//!   queued, and requests are applied in queue order.
//! * **Group commit.** Whoever applies the queue takes every request waiting
//!   (up to `MAX_BATCH`), applies them in one `BEGIN IMMEDIATE`
//!   transaction, commits once and only then answers every waiter. The cost of
//!   making a transaction durable (one `fsync` with [`Durability::PowerLoss`])
//!   is shared by the whole batch. That is the writer thread, except after
//!   an idle spell, when the caller waiting for a step applies it on its own
//!   thread: a hand-off to the writer thread and back can cost more than the
//!   transaction (see [`Writer`]). A caller never waits there for another
//!   process's lock: that too is left to the writer thread.
//! * **Set-based batches.** A batch uses a fixed handful of statements,
//!   whatever its size (see [`Script`](script::Script) and
//!   [`Plan`](plan::Plan)). One `SELECT` reads the versions of
//!   all groups of the batch; the steps are then evaluated *in memory, in
//!   order*, with exactly the outcome of committing each on its own (each
//!   version check sees the versions left by the steps before it; a group
//!   may be deleted and created again; snapshots are written and pruned in
//!   step order; a job whose message exists nowhere fails its step). Only
//!   application-message digests are written as each step is evaluated,
//!   one prepared insert each (a repeat is the insert that finds its row,
//!   so the second of two steps with one digest is `Repeated`). A step
//!   that conflicts or cannot be stored gets its error and contributes
//!   nothing; the net effect of the others is written with a few multi-row
//!   statements (chunked to stay within SQLite's limits). Only a failure of
//!   the database itself fails the transaction, and then every request of
//!   the batch gets that error.
//! * **Completed jobs** are deleted set-based too, after the steps they were
//!   queued with. A step queued *after* a completion and touching the same
//!   message starts a new sub-batch (in the same transaction), so the queue
//!   order is kept.
//! * **Recipient lists are stored once.** Consecutive messages of a group go
//!   to the same recipients, so a job refers to its list by SHA-256 (table
//!   `recipient_sets`, hashed once per distinct list per sub-batch) instead
//!   of carrying a copy; a list is removed with the last job that refers to
//!   it. Jobs written before schema version 2 keep their own copy
//!   (`recipient_set` NULL), and [`Store::pending_jobs`] returns either.
//! * **Concurrent readers.** Reads use a separate pool of `query_only`
//!   connections (sqlx, as do the migrations and the checkpointer); WAL
//!   mode lets them run while the writer writes, and they see every step
//!   whose [`Pending`] has resolved.
//! * **Cancellation.** Once `enqueue` has returned (or a `commit` future has
//!   queued its step), dropping the [`Pending`] does not withdraw the step:
//!   the writer thread commits it (or not) as if the caller were still
//!   waiting. A caller applying the queue itself finishes that transaction
//!   before its future can be dropped.
//!
//! # Layout
//!
//! This file opens and closes the store and routes each [`Store`] method;
//! [`writer`] holds the write connection and its queue, [`batch`] applies
//! one transaction's requests, [`plan`] evaluates a batch's steps in memory
//! and writes their net effect (with [`crate::pages`] for the state pages), using
//! [`script`] to build and run the statements; [`reads`] are the reads,
//! [`checkpoint`] the checkpointer and [`migrate`] the migrations.

mod batch;
mod checkpoint;
mod guest;
mod inline;
mod migrate;
mod people;
mod plan;
mod reads;
mod script;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{
    ConnectionRequestEntry, DeadLetter, Decision, Inbound, InboundConnectionRequest, Job,
    KeyPackageKind, KeyPackageStock, Pending, PublishedKeyPackage, Queued, Remembered, Snapshot,
    Step, Store, StoreError, StoredGroup, User,
};
use writer::{Op, Writer};

/// How long a connection waits for a lock held by another connection (another
/// process using the same file, or a checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in the read pool.
const READ_CONNECTIONS: u32 = 4;

/// What a resolved [`Pending`] (a returned [`Store::commit`]) survives.
///
/// The journal is always in WAL mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Durability {
    /// `synchronous=NORMAL`: a committed step survives a crash of the
    /// process (the operating system still has it), but the last steps before
    /// a power loss or kernel crash may be lost. No `fsync` per transaction.
    Process,
    /// `synchronous=FULL`: the write-ahead log is synced before `commit`
    /// returns, so a committed step survives a power loss.
    PowerLoss,
}

impl Durability {
    fn synchronous(self) -> SqliteSynchronous {
        match self {
            Durability::Process => SqliteSynchronous::Normal,
            Durability::PowerLoss => SqliteSynchronous::Full,
        }
    }
}

/// [`Store`] on one SQLite database file.
///
/// Share it behind an `Arc`. Call [`SqliteStore::close`] to shut it down
/// once every write queued so far is applied; dropping it without closing
/// still lets the writer thread apply whatever was queued before it stops.
pub struct SqliteStore {
    writer: Arc<Writer>,
    /// The writer thread, until the store is closed.
    writer_thread: Option<std::thread::JoinHandle<()>>,
    readers: SqlitePool,
    /// Point reads on the caller's thread.
    inline: inline::InlineReader,
    /// Dropped (or sent) to stop the checkpointer.
    stop_checkpoints: Option<oneshot::Sender<()>>,
    checkpointer: Option<JoinHandle<()>>,
}

impl Drop for SqliteStore {
    /// The writer thread applies what is queued, then stops.
    fn drop(&mut self) {
        self.writer.close();
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path`, runs the
    /// pending migrations and opens the write connection. Must be called
    /// inside a tokio runtime.
    pub async fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .synchronous(durability.synchronous());

        let migrate_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        migrate::migrate(&migrate_options).await?;

        // The file exists and is in WAL mode (a persistent setting) by now.
        let inline = inline::InlineReader::new(path);
        let path = path.to_path_buf();
        let writer = tokio::task::spawn_blocking(move || writer::open_writer(&path, durability))
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening the writer: {e}")))??;
        let read_options = base.clone().pragma("query_only", "ON");
        let readers = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(read_options)
            .await
            .map_err(db)?;

        let checkpoints = SqliteConnection::connect_with(&base).await.map_err(db)?;
        let writer = Arc::new(Writer::new(writer));
        let writing = Arc::clone(&writer);
        let writer_thread = std::thread::Builder::new()
            .name("mimid-store".into())
            .spawn(move || writing.run())
            .map_err(|e| StoreError::Unavailable(format!("writer thread: {e}")))?;
        let (stop_checkpoints, stop) = oneshot::channel();
        let checkpointer = tokio::spawn(checkpoint::run_checkpoints(
            checkpoints,
            Arc::clone(&writer),
            stop,
        ));
        Ok(Self {
            writer,
            writer_thread: Some(writer_thread),
            readers,
            inline,
            stop_checkpoints: Some(stop_checkpoints),
            checkpointer: Some(checkpointer),
        })
    }

    /// Stops accepting writes, applies every queued one, and closes all
    /// connections.
    pub async fn close(mut self) -> Result<(), StoreError> {
        self.writer.close();
        let thread = self.writer_thread.take();
        let writer = Arc::clone(&self.writer);
        let closed = tokio::task::spawn_blocking(move || {
            if let Some(thread) = thread {
                // It exits once the queue is empty.
                let _ = thread.join();
            }
            writer.take_conn()
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("closing the writer: {e}")));
        self.stop_checkpoints.take();
        if let Some(checkpointer) = self.checkpointer.take() {
            let _ = checkpointer.await;
        }
        self.readers.close().await;
        match closed? {
            Some(conn) => conn
                .close()
                .map_err(|(_, e)| StoreError::Database(e.to_string())),
            None => Ok(()),
        }
    }

    /// Number of write transactions committed since this store was opened
    /// (each one may carry many steps). For metrics and tests.
    pub fn transactions_committed(&self) -> u64 {
        self.writer.transactions()
    }

    /// Queues one write; returns where its outcome will arrive.
    async fn queue(&self, op: Op) -> Result<Pending, StoreError> {
        self.writer.queue(op)
    }

    /// Queues one write and waits for its outcome, applied by the writer
    /// thread: these writes (outbox bookkeeping, pruning, acknowledgements)
    /// are nobody's critical path.
    async fn submit(&self, op: Op) -> Result<(), StoreError> {
        self.queue(op).await?.via_writer().await
    }
}

impl Store for SqliteStore {
    async fn load_group(&self, group_id: &[u8]) -> Result<Option<StoredGroup>, StoreError> {
        reads::load_group(&self.readers, group_id).await
    }

    async fn group_version(&self, group_id: &[u8]) -> Result<Option<u64>, StoreError> {
        reads::group_version(&self.readers, group_id).await
    }

    async fn load_snapshot(
        &self,
        group_id: &[u8],
        epoch: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        reads::load_snapshot(&self.readers, group_id, epoch).await
    }

    async fn enqueue(&self, step: Step) -> Result<Pending, StoreError> {
        self.queue(Op::Commit(step)).await
    }

    fn enqueue_now(&self, step: Step) -> Result<Pending, StoreError> {
        self.writer.queue(Op::Commit(step))
    }

    async fn pending_jobs_after(
        &self,
        destination: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let from = after.saturating_add(1);
        reads::pending_jobs(&self.readers, destination, None, from, i64::MAX, limit).await
    }

    async fn pending_group_jobs(
        &self,
        destination: &str,
        group_id: &[u8],
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        reads::pending_jobs(&self.readers, destination, Some(group_id), from, to, limit).await
    }

    /// Completing a job that does not exist (already completed) succeeds.
    async fn complete_job(&self, id: i64) -> Result<(), StoreError> {
        self.submit(Op::CompleteJob(id)).await
    }

    /// Queued together, so that the writer takes them in one transaction
    /// (or, in a race with its wake-up, two).
    async fn complete_jobs(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        let mut pending = Vec::with_capacity(ids.len());
        for id in ids {
            pending.push(self.queue(Op::CompleteJob(id)).await?.via_writer());
        }
        for completed in pending {
            completed.await?;
        }
        Ok(())
    }

    async fn prune_reservations(&self, now: u64) -> Result<(), StoreError> {
        self.submit(Op::PruneReservations(last_before(now))).await
    }

    async fn prune_snapshots(&self, before: u64) -> Result<(), StoreError> {
        self.submit(Op::PruneSnapshots(last_before(before))).await
    }

    async fn discard_messages(&self, message_ids: Vec<[u8; 16]>) -> Result<Pending, StoreError> {
        self.queue(Op::DiscardMessages(message_ids)).await
    }

    async fn prune_messages(&self, before: u64) -> Result<(), StoreError> {
        self.submit(Op::PruneMessages(last_before(before))).await
    }

    async fn prune_inbound(&self, before: u64) -> Result<(), StoreError> {
        self.submit(Op::PruneInbound(last_before(before))).await
    }

    async fn job_destinations(&self) -> Result<Vec<String>, StoreError> {
        reads::job_destinations(&self.readers).await
    }

    async fn record_attempt(&self, job_id: i64) -> Result<(), StoreError> {
        self.submit(Op::RecordAttempt(job_id)).await
    }

    async fn dead_letter(&self, job_id: i64, reason: String, now: u64) -> Result<(), StoreError> {
        let now = to_i64(now, "time")?;
        self.submit(Op::DeadLetter {
            job_id,
            reason,
            now,
        })
        .await
    }

    async fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
        reads::dead_letters(&self.readers, limit).await
    }

    async fn add_client(
        &self,
        client_id: String,
        user_id: String,
        now: u64,
    ) -> Result<(), StoreError> {
        let now = to_i64(now, "time")?;
        self.submit(Op::AddClient {
            client_id,
            user_id,
            now,
        })
        .await
    }

    async fn add_user(&self, user_id: String, now: u64) -> Result<(), StoreError> {
        let now = to_i64(now, "time")?;
        self.submit(Op::AddUser { user_id, now }).await
    }

    async fn remove_user(&self, user_id: String) -> Result<(), StoreError> {
        self.submit(Op::RemoveUser(user_id)).await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        people::users(&self.inline)
    }

    async fn clients_of_user(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        people::clients_of_user(&self.inline, user_id)
    }

    async fn user_exists(&self, user_id: &str) -> Result<bool, StoreError> {
        people::exists(
            &self.inline,
            "SELECT 1 FROM users WHERE user_id = ?1",
            &[user_id],
        )
    }

    async fn publish_key_packages(
        &self,
        client_id: String,
        packages: Vec<PublishedKeyPackage>,
        now: u64,
    ) -> Result<(), StoreError> {
        let now = to_i64(now, "time")?;
        let packages = packages
            .into_iter()
            .map(|p| {
                Ok((
                    p.kind.code(),
                    p.last_resort,
                    to_i64(p.not_after, "time")?,
                    p.key_package,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.submit(Op::PublishKeyPackages {
            client_id,
            packages,
            now,
        })
        .await
    }

    async fn claim_key_packages(
        &self,
        token: [u8; 16],
        user_id: String,
        kind: KeyPackageKind,
        clients: Option<Vec<String>>,
        now: u64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let now = to_i64(now, "time")?;
        self.submit(Op::ClaimKeyPackages {
            token,
            user_id,
            kind: kind.code(),
            clients,
            now,
        })
        .await?;
        people::claimed(&self.inline, &token)
    }

    async fn key_package_stock(
        &self,
        client_id: &str,
        kind: KeyPackageKind,
        now: u64,
    ) -> Result<KeyPackageStock, StoreError> {
        people::stock(&self.inline, client_id, kind, to_i64(now, "time")?)
    }

    async fn prune_key_packages(&self, now: u64, claimed_before: u64) -> Result<(), StoreError> {
        self.submit(Op::PruneKeyPackages {
            now: last_before(now),
            claimed_before: last_before(claimed_before),
        })
        .await
    }

    async fn add_connection(
        &self,
        user_id: String,
        peer: String,
        now: u64,
    ) -> Result<(), StoreError> {
        let now = to_i64(now, "time")?;
        self.submit(Op::AddConnection { user_id, peer, now }).await
    }

    async fn add_enrolment(
        &self,
        secret_sha256: [u8; 32],
        user_id: String,
        expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        self.submit(Op::AddEnrolment {
            secret_sha256,
            user_id,
            expires_at: to_i64(expires_at, "time")?,
            now: to_i64(now, "time")?,
        })
        .await
    }

    async fn enrol_client(
        &self,
        secret_sha256: [u8; 32],
        client_id: String,
        user_id: String,
        public_key: Vec<u8>,
        now: u64,
    ) -> Result<(), StoreError> {
        self.submit(Op::EnrolClient {
            secret_sha256,
            client_id,
            user_id,
            public_key,
            now: to_i64(now, "time")?,
        })
        .await
    }

    async fn spend_token(
        &self,
        token_key_id: [u8; 32],
        nonce: [u8; 32],
        now: u64,
    ) -> Result<(), StoreError> {
        self.submit(Op::SpendToken {
            token_key_id,
            nonce,
            now: to_i64(now, "time")?,
        })
        .await
    }

    async fn client_key(&self, client_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        people::client_key(&self.inline, client_id)
    }

    async fn receive_connection_request(
        &self,
        request: InboundConnectionRequest,
    ) -> Result<(), StoreError> {
        self.submit(Op::ReceiveConnectionRequest(request)).await
    }

    async fn connection_requests(
        &self,
        user_id: &str,
    ) -> Result<Vec<ConnectionRequestEntry>, StoreError> {
        people::connection_requests(&self.inline, user_id)
    }

    async fn settle_connection_request(
        &self,
        user_id: String,
        id: i64,
        decision: Decision,
        now: u64,
    ) -> Result<(), StoreError> {
        let now = to_i64(now, "time")?;
        self.submit(Op::SettleConnectionRequest {
            user_id,
            id,
            decision,
            now,
        })
        .await
    }

    async fn blocked(&self, user_id: &str, peer: &str) -> Result<bool, StoreError> {
        people::exists(
            &self.inline,
            "SELECT 1 FROM blocks WHERE user_id = ?1 AND peer = ?2",
            &[user_id, peer],
        )
    }

    async fn connected(&self, user_id: &str, peer: &str) -> Result<bool, StoreError> {
        people::exists(
            &self.inline,
            "SELECT 1 FROM connections WHERE user_id = ?1 AND peer = ?2",
            &[user_id, peer],
        )
    }

    async fn known_clients(&self, client_ids: &[String]) -> Result<Vec<bool>, StoreError> {
        reads::known_clients(&self.inline, client_ids)
    }

    async fn remembered(
        &self,
        sender: &str,
        message_id: [u8; 16],
    ) -> Result<Option<Remembered>, StoreError> {
        reads::remembered(&self.inline, sender, message_id)
    }

    async fn deliver(&self, inbound: Vec<Inbound>) -> Result<Pending, StoreError> {
        self.queue(Op::Deliver(inbound)).await
    }

    fn queue_bell(&self) -> &crate::QueueBell {
        self.writer.bell()
    }

    async fn client_queue(
        &self,
        client_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Queued>, StoreError> {
        reads::client_queue(&self.readers, client_id, after, limit).await
    }

    async fn acknowledge(&self, client_id: String, up_to: u64) -> Result<(), StoreError> {
        // A position beyond every stored one acknowledges all there is.
        let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
        self.submit(Op::Acknowledge { client_id, up_to }).await
    }

    async fn message_count(&self) -> Result<u64, StoreError> {
        reads::count(&self.readers, "messages").await
    }

    async fn inbox_count(&self) -> Result<u64, StoreError> {
        reads::count(&self.readers, "inbox").await
    }

    async fn group_count(&self) -> Result<u64, StoreError> {
        reads::count(&self.readers, "groups").await
    }

    async fn outbox_stats(&self) -> Result<crate::OutboxStats, StoreError> {
        reads::outbox_stats(&self.readers).await
    }
}

fn write_db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// `value` as an SQLite integer (signed 64-bit), to write it as `what`.
/// A value beyond `i64::MAX` cannot be stored: the write is refused with
/// an error naming it (a step then fails alone, changing nothing).
fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Database(format!(
            "{what} {value} cannot be stored: SQLite integers end at {}",
            i64::MAX
        ))
    })
}

/// The last time before `before`, as a cutoff for `<=`: a row is stamped
/// before `before` exactly when its stamp is at most this. Every storable
/// time (`0..=i64::MAX`) is before a `before` beyond `i64::MAX`, so such a
/// cutoff prunes everything rather than failing (it cannot be stored, but
/// need not be); a `before` of 0 gives -1, before every stamp.
fn last_before(before: u64) -> i64 {
    i64::try_from(before).map_or(i64::MAX, |before| before - 1)
}

fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Database(format!("stored value {value} is negative")))
}
