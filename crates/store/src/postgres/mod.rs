//! The PostgreSQL implementation of [`Store`], for a provider that runs
//! several mimid processes on one (replicated) database.
//!
//! # Design
//!
//! * **One writer per process, many processes.** Steps, deliveries and the
//!   outbox's bookkeeping are queued to this process's writer task
//!   ([`writer`]), which applies them in queue order, a batch per
//!   transaction (group commit). Across processes nothing is queued: the
//!   database orders them. A step updates its group's row only at the
//!   version it expects (`UPDATE ... WHERE version = $v`), so of two
//!   processes committing the same epoch exactly one wins and the other gets
//!   [`StoreError::Conflict`].
//! * **Ids that become visible in order.** The outbox reads a destination's
//!   jobs on from the last id it holds, and a client its queue from the last
//!   position it read: an id must never become visible after a larger one.
//!   A transaction inserts jobs and inbox rows last, under
//!   transaction-level advisory locks (one per destination, one for the
//!   inbox) taken in a fixed order, so those inserts commit in id order
//!   across processes and never deadlock with each other.
//! * **Reads and the people's writes** (users, KeyPackages, connections,
//!   acknowledgements) run on the pool directly, each write in a
//!   transaction of its own: their order against steps does not matter, and
//!   their races across processes are settled by row locks (a one-time
//!   KeyPackage is taken `FOR UPDATE SKIP LOCKED`).
//! * **Queue bells across processes.** A transaction that queues messages
//!   for clients notifies channel `mimid_queue` with their ids; every
//!   process listens and rings its own [`QueueBell`], so a long poll on one
//!   process wakes for a message another stored.
//! * **Outages.** While the database cannot be reached, every call fails
//!   with [`StoreError::Unavailable`]; the pool reconnects by itself.

mod people;
mod reads;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{
    ConnectionRequestEntry, DeadLetter, Decision, Inbound, InboundConnectionRequest, Job,
    KeyPackageKind, KeyPackageStock, Pending, PublishedKeyPackage, QueueBell, Queued, Remembered,
    Snapshot, Step, Store, StoreError, StoredGroup, User,
};
use writer::{Op, Request};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations_pg");

/// The channel on which queued messages are announced (payload: client ids,
/// one per line).
const QUEUE_CHANNEL: &str = "mimid_queue";

/// Requests waiting for the writer beyond this make `enqueue` wait.
const QUEUE_CAPACITY: usize = 1024;

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// A `postgres://` URL.
    pub url: String,
    /// Connections in this process's pool (the writer uses one at a time).
    pub max_connections: u32,
    /// How long a caller waits for a free connection (or for the database
    /// to answer a connection attempt) before failing with
    /// [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
}

impl PostgresOptions {
    /// Defaults for `url`: 16 connections, 5 s to get one.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// [`Store`] on a PostgreSQL database, shareable by several processes.
pub struct PostgresStore {
    pool: PgPool,
    writer: mpsc::Sender<Request>,
    bell: Arc<QueueBell>,
    transactions: Arc<AtomicU64>,
    writer_task: Option<JoinHandle<()>>,
    listener_task: JoinHandle<()>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The writer applies what is queued, then stops (its channel
        // closes); the listener has nobody to ring for.
        self.listener_task.abort();
    }
}

impl PostgresStore {
    /// Connects, runs the pending migrations (under PostgreSQL's own lock,
    /// so processes starting together migrate once) and starts the writer
    /// and the listener. Must be called inside a tokio runtime.
    pub async fn connect(options: &PostgresOptions) -> Result<Self, StoreError> {
        let connect: PgConnectOptions = options
            .url
            .parse()
            .map_err(|e| StoreError::Unavailable(format!("database URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(error)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration: {e}")))?;

        let bell = Arc::new(QueueBell::default());
        let mut listener = PgListener::connect_with(&pool).await.map_err(error)?;
        listener.listen(QUEUE_CHANNEL).await.map_err(error)?;
        let listener_task = tokio::spawn(listen(listener, Arc::clone(&bell)));

        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let transactions = Arc::new(AtomicU64::new(0));
        let writer_task = tokio::spawn(writer::run(
            pool.clone(),
            receiver,
            Arc::clone(&bell),
            Arc::clone(&transactions),
        ));
        Ok(PostgresStore {
            pool,
            writer: sender,
            bell,
            transactions,
            writer_task: Some(writer_task),
            listener_task,
        })
    }

    /// Stops accepting writes, applies every queued one, and closes the
    /// pool.
    pub async fn close(mut self) -> Result<(), StoreError> {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.writer, closed));
        if let Some(task) = self.writer_task.take() {
            task.await
                .map_err(|e| StoreError::Unavailable(format!("writer: {e}")))?;
        }
        self.listener_task.abort();
        self.pool.close().await;
        Ok(())
    }

    /// Write transactions committed by this process's writer (each may
    /// carry many requests). For metrics and tests.
    pub fn transactions_committed(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// The pool, for tests that look at what the interface does not show.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn queue(&self, op: Op) -> Result<Pending, StoreError> {
        let (answer, receiver) = oneshot::channel();
        self.writer
            .send(Request { op, answer })
            .await
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        Ok(Pending::new(receiver))
    }

    async fn submit(&self, op: Op) -> Result<(), StoreError> {
        self.queue(op).await?.await
    }
}

/// Rings this process's bell for what any process announced.
async fn listen(mut listener: PgListener, bell: Arc<QueueBell>) {
    loop {
        match listener.recv().await {
            Ok(notification) => bell.ring(notification.payload().lines()),
            // The listener reconnects on the next `recv`; meanwhile long
            // polls still look now and then on their own.
            Err(e) => {
                tracing::debug!(error = %e, "queue notifications interrupted");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

impl Store for PostgresStore {
    async fn enqueue(&self, step: Step) -> Result<Pending, StoreError> {
        self.queue(Op::Commit(step)).await
    }

    async fn load_group(&self, group_id: &[u8]) -> Result<Option<StoredGroup>, StoreError> {
        reads::load_group(&self.pool, group_id).await
    }

    async fn group_version(&self, group_id: &[u8]) -> Result<Option<u64>, StoreError> {
        reads::group_version(&self.pool, group_id).await
    }

    async fn load_snapshot(
        &self,
        group_id: &[u8],
        epoch: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        reads::load_snapshot(&self.pool, group_id, epoch).await
    }

    async fn pending_jobs_after(
        &self,
        destination: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        let from = after.saturating_add(1);
        reads::pending_jobs(&self.pool, destination, None, from, i64::MAX, limit).await
    }

    async fn pending_group_jobs(
        &self,
        destination: &str,
        group_id: &[u8],
        from: i64,
        to: i64,
        limit: u32,
    ) -> Result<Vec<Job>, StoreError> {
        reads::pending_jobs(&self.pool, destination, Some(group_id), from, to, limit).await
    }

    async fn complete_job(&self, id: i64) -> Result<(), StoreError> {
        self.submit(Op::CompleteJobs(vec![id])).await
    }

    async fn complete_jobs(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        self.submit(Op::CompleteJobs(ids)).await
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
        reads::job_destinations(&self.pool).await
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
        reads::dead_letters(&self.pool, limit).await
    }

    async fn add_client(
        &self,
        client_id: String,
        user_id: String,
        now: u64,
    ) -> Result<(), StoreError> {
        people::add_client(&self.pool, &client_id, &user_id, to_i64(now, "time")?).await
    }

    async fn known_clients(&self, client_ids: &[String]) -> Result<Vec<bool>, StoreError> {
        reads::known_clients(&self.pool, client_ids).await
    }

    async fn remembered(
        &self,
        sender: &str,
        message_id: [u8; 16],
    ) -> Result<Option<Remembered>, StoreError> {
        reads::remembered(&self.pool, sender, message_id).await
    }

    async fn deliver(&self, inbound: Vec<Inbound>) -> Result<Pending, StoreError> {
        self.queue(Op::Deliver(inbound)).await
    }

    fn queue_bell(&self) -> &QueueBell {
        &self.bell
    }

    async fn client_queue(
        &self,
        client_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Queued>, StoreError> {
        reads::client_queue(&self.pool, client_id, after, limit).await
    }

    async fn acknowledge(&self, client_id: String, up_to: u64) -> Result<(), StoreError> {
        // A position beyond every stored one acknowledges all there is.
        let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
        people::acknowledge(&self.pool, &client_id, up_to).await
    }

    async fn add_user(&self, user_id: String, now: u64) -> Result<(), StoreError> {
        people::add_user(&self.pool, &user_id, to_i64(now, "time")?).await
    }

    async fn remove_user(&self, user_id: String) -> Result<(), StoreError> {
        people::remove_user(&self.pool, &user_id).await
    }

    async fn users(&self) -> Result<Vec<User>, StoreError> {
        people::users(&self.pool).await
    }

    async fn clients_of_user(&self, user_id: &str) -> Result<Vec<String>, StoreError> {
        people::clients_of_user(&self.pool, user_id).await
    }

    async fn user_exists(&self, user_id: &str) -> Result<bool, StoreError> {
        people::exists(
            &self.pool,
            "SELECT EXISTS (SELECT 1 FROM users WHERE user_id = $1)",
            user_id,
            None,
        )
        .await
    }

    async fn publish_key_packages(
        &self,
        client_id: String,
        packages: Vec<PublishedKeyPackage>,
        now: u64,
    ) -> Result<(), StoreError> {
        people::publish_key_packages(&self.pool, &client_id, &packages, to_i64(now, "time")?).await
    }

    async fn claim_key_packages(
        &self,
        _token: [u8; 16],
        user_id: String,
        kind: KeyPackageKind,
        clients: Option<Vec<String>>,
        now: u64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let now = to_i64(now, "time")?;
        people::claim_key_packages(&self.pool, &user_id, kind, clients.as_deref(), now).await
    }

    async fn key_package_stock(
        &self,
        client_id: &str,
        kind: KeyPackageKind,
        now: u64,
    ) -> Result<KeyPackageStock, StoreError> {
        people::stock(&self.pool, client_id, kind, to_i64(now, "time")?).await
    }

    async fn prune_key_packages(&self, now: u64, claimed_before: u64) -> Result<(), StoreError> {
        people::prune_key_packages(&self.pool, last_before(now), last_before(claimed_before)).await
    }

    async fn add_connection(
        &self,
        user_id: String,
        peer: String,
        now: u64,
    ) -> Result<(), StoreError> {
        people::add_connection(&self.pool, &user_id, &peer, to_i64(now, "time")?).await
    }

    async fn add_enrolment(
        &self,
        secret_sha256: [u8; 32],
        user_id: String,
        expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        people::add_enrolment(
            &self.pool,
            &secret_sha256,
            &user_id,
            to_i64(expires_at, "time")?,
            to_i64(now, "time")?,
        )
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
        people::enrol_client(
            &self.pool,
            &secret_sha256,
            &client_id,
            &user_id,
            &public_key,
            to_i64(now, "time")?,
        )
        .await
    }

    async fn client_key(&self, client_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        people::client_key(&self.pool, client_id).await
    }

    async fn receive_connection_request(
        &self,
        request: InboundConnectionRequest,
    ) -> Result<(), StoreError> {
        people::receive_connection_request(&self.pool, &request).await
    }

    async fn connection_requests(
        &self,
        user_id: &str,
    ) -> Result<Vec<ConnectionRequestEntry>, StoreError> {
        people::connection_requests(&self.pool, user_id).await
    }

    async fn settle_connection_request(
        &self,
        user_id: String,
        id: i64,
        decision: Decision,
        now: u64,
    ) -> Result<(), StoreError> {
        let now = to_i64(now, "time")?;
        people::settle_connection_request(&self.pool, &user_id, id, decision, now).await
    }

    async fn blocked(&self, user_id: &str, peer: &str) -> Result<bool, StoreError> {
        people::exists(
            &self.pool,
            "SELECT EXISTS (SELECT 1 FROM blocks WHERE user_id = $1 AND peer = $2)",
            user_id,
            Some(peer),
        )
        .await
    }

    async fn connected(&self, user_id: &str, peer: &str) -> Result<bool, StoreError> {
        people::exists(
            &self.pool,
            "SELECT EXISTS (SELECT 1 FROM connections WHERE user_id = $1 AND peer = $2)",
            user_id,
            Some(peer),
        )
        .await
    }

    async fn message_count(&self) -> Result<u64, StoreError> {
        reads::count(&self.pool, "SELECT COUNT(*) FROM messages").await
    }

    async fn inbox_count(&self) -> Result<u64, StoreError> {
        reads::count(&self.pool, "SELECT COUNT(*) FROM inbox").await
    }

    async fn group_count(&self) -> Result<u64, StoreError> {
        reads::count(&self.pool, "SELECT COUNT(*) FROM groups").await
    }

    async fn outbox_stats(&self) -> Result<crate::OutboxStats, StoreError> {
        reads::outbox_stats(&self.pool).await
    }

    async fn remember_nonce(
        &self,
        sender: &str,
        nonce: [u8; 16],
        expires_at: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        // An expired entry of the same pair is taken over: its request is
        // outside every window by now.
        let remembered = sqlx::query(
            "INSERT INTO nonces (sender, nonce, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (sender, nonce) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE nonces.expires_at < $4",
        )
        .bind(sender)
        .bind(&nonce[..])
        .bind(to_i64(expires_at, "time")?)
        .bind(to_i64(now, "time")?)
        .execute(&self.pool)
        .await
        .map_err(error)?
        .rows_affected();
        if remembered == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    async fn spend_token(
        &self,
        token_key_id: [u8; 32],
        nonce: [u8; 32],
        now: u64,
    ) -> Result<(), StoreError> {
        let spent = sqlx::query(
            "INSERT INTO spent_tokens (token_key_id, nonce, spent_at) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&token_key_id[..])
        .bind(&nonce[..])
        .bind(to_i64(now, "time")?)
        .execute(&self.pool)
        .await
        .map_err(error)?
        .rows_affected();
        if spent == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    async fn prune_nonces(&self, now: u64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM nonces WHERE expires_at < $1")
            .bind(i64::try_from(now).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(error)?;
        Ok(())
    }

    async fn lease_destination(
        &self,
        destination: &str,
        owner: &str,
        now: u64,
        until: u64,
    ) -> Result<bool, StoreError> {
        let held = sqlx::query(
            "INSERT INTO outbox_leases (destination, owner, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (destination) DO UPDATE SET owner = excluded.owner, \
             expires_at = excluded.expires_at \
             WHERE outbox_leases.owner = excluded.owner OR outbox_leases.expires_at <= $4",
        )
        .bind(destination)
        .bind(owner)
        .bind(to_i64(until, "time")?)
        .bind(to_i64(now, "time")?)
        .execute(&self.pool)
        .await
        .map_err(error)?
        .rows_affected();
        Ok(held == 1)
    }

    async fn release_destination(&self, destination: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM outbox_leases WHERE destination = $1 AND owner = $2")
            .bind(destination)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(error)?;
        Ok(())
    }
}

/// The store's error for a database error: what cannot reach the database
/// (or a connection in time) is [`StoreError::Unavailable`], so that the
/// caller answers "try again later"; the rest is
/// [`StoreError::Database`].
pub(crate) fn error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(format!("database: {e}")),
        sqlx::Error::Database(ref d)
            // Class 08: connection exceptions; 57P01-57P03: the server is
            // shutting down, restarting or not accepting connections yet.
            if d.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")) =>
        {
            StoreError::Unavailable(format!("database: {e}"))
        }
        other => StoreError::Database(other.to_string()),
    }
}

/// Whether the transaction was aborted only to break a deadlock or a
/// serialization conflict between processes, so that running it again is
/// right.
pub(crate) fn retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("40P01" | "40001")))
}

/// `value` as a PostgreSQL `bigint`, to write it as `what`.
fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Database(format!(
            "{what} {value} cannot be stored: bigint ends at {}",
            i64::MAX
        ))
    })
}

/// The last time before `before`, as a cutoff for `<=` (see SQLite's).
fn last_before(before: u64) -> i64 {
    i64::try_from(before).map_or(i64::MAX, |before| before - 1)
}

fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Database(format!("stored value {value} is negative")))
}
