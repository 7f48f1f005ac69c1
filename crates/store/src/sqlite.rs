//! The SQLite implementation of [`Store`].
//!
//! # Design
//!
//! * **One writer.** A single tokio task owns the only write connection. Every
//!   write (`commit`, `complete_job`) is sent to it over a bounded channel
//!   together with a one-shot reply channel.
//! * **Group commit.** The writer takes every request waiting in the channel
//!   (up to [`MAX_BATCH`]), opens one `BEGIN IMMEDIATE` transaction, applies
//!   each request inside its own savepoint, commits once and only then answers
//!   every waiter. A step that conflicts or fails is rolled back to its
//!   savepoint and gets its error; the others of the batch still commit. Steps
//!   of one batch run in arrival order inside the same transaction, so two
//!   steps for the same group behave exactly as if they had been committed one
//!   after the other. The cost of making a transaction durable (one `fsync`
//!   with [`Durability::PowerLoss`]) is shared by the whole batch.
//! * **Concurrent readers.** Reads use a separate pool of `query_only`
//!   connections; WAL mode lets them run while the writer writes, and they see
//!   every step whose `commit` has returned.
//! * **Cancellation.** Once a `commit` future has handed its step to the
//!   writer, dropping the future does not withdraw the step: it commits (or
//!   not) as if the caller were still waiting.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{GroupWrite, Job, Snapshot, Step, Store, StoreError, StoredGroup};

/// How long a connection waits for a lock held by another connection (another
/// process using the same file, or a checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many requests share one transaction.
const MAX_BATCH: usize = 256;

/// Requests waiting for the writer beyond this make `commit` wait (back
/// pressure) instead of queueing without bound.
const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;

/// Connections in the read pool.
const READ_CONNECTIONS: u32 = 4;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// What an acknowledged [`Store::commit`] survives.
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

/// A write for the writer task.
enum Op {
    Commit(Step),
    CompleteJob(i64),
}

/// A write and where to send its outcome.
struct Request {
    op: Op,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// [`Store`] on one SQLite database file.
///
/// Share it behind an `Arc`. Call [`SqliteStore::close`] to shut it down and
/// wait for the writer; dropping it also stops the writer (after it has
/// answered whatever was queued), without waiting.
pub struct SqliteStore {
    writer_tx: mpsc::Sender<Request>,
    writer: JoinHandle<Result<(), StoreError>>,
    readers: SqlitePool,
    transactions: Arc<AtomicU64>,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path`, runs the
    /// pending migrations and starts the writer. Must be called inside a
    /// tokio runtime.
    pub async fn open(path: &Path, durability: Durability) -> Result<Self, StoreError> {
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .synchronous(durability.synchronous());

        let write_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let mut conn = SqliteConnection::connect_with(&write_options)
            .await
            .map_err(db)?;
        MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|e| StoreError::Database(format!("migration: {e}")))?;

        // The file exists and is in WAL mode (a persistent setting) by now.
        let read_options = base.pragma("query_only", "ON");
        let readers = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(read_options)
            .await
            .map_err(db)?;

        let transactions = Arc::new(AtomicU64::new(0));
        let (writer_tx, writer_rx) = mpsc::channel(QUEUE_CAPACITY);
        let writer = tokio::spawn(run_writer(conn, writer_rx, Arc::clone(&transactions)));
        Ok(Self {
            writer_tx,
            writer,
            readers,
            transactions,
        })
    }

    /// Stops accepting writes, lets the writer answer every queued request,
    /// and closes all connections.
    pub async fn close(self) -> Result<(), StoreError> {
        let Self {
            writer_tx,
            writer,
            readers,
            ..
        } = self;
        drop(writer_tx);
        let writer_result = writer
            .await
            .map_err(|e| StoreError::Unavailable(format!("writer task: {e}")));
        readers.close().await;
        writer_result?
    }

    /// Number of write transactions committed since this store was opened
    /// (each one may carry many steps). For metrics and tests.
    pub fn transactions_committed(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Hands one write to the writer and waits for its outcome.
    async fn submit(&self, op: Op) -> Result<(), StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.writer_tx
            .send(Request { op, reply })
            .await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?;
        outcome
            .await
            .map_err(|_| StoreError::Unavailable("writer stopped before answering".into()))?
    }
}

impl Store for SqliteStore {
    async fn load_group(&self, group_id: &[u8]) -> Result<Option<StoredGroup>, StoreError> {
        let row =
            sqlx::query("SELECT version, state, reserved_until FROM groups WHERE group_id = ?1")
                .bind(group_id)
                .fetch_optional(&self.readers)
                .await
                .map_err(db)?;
        row.map(|row| {
            Ok(StoredGroup {
                version: get_u64(&row, "version")?,
                state: row.try_get("state").map_err(db)?,
                reserved_until: row
                    .try_get::<Option<i64>, _>("reserved_until")
                    .map_err(db)?
                    .map(to_u64)
                    .transpose()?,
            })
        })
        .transpose()
    }

    async fn load_snapshot(
        &self,
        group_id: &[u8],
        epoch: u64,
    ) -> Result<Option<Snapshot>, StoreError> {
        let row = sqlx::query(
            "SELECT created_at, data FROM snapshots WHERE group_id = ?1 AND epoch = ?2",
        )
        .bind(group_id)
        .bind(to_i64(epoch)?)
        .fetch_optional(&self.readers)
        .await
        .map_err(db)?;
        row.map(|row| {
            Ok(Snapshot {
                epoch,
                created_at: get_u64(&row, "created_at")?,
                data: row.try_get("data").map_err(db)?,
            })
        })
        .transpose()
    }

    async fn commit(&self, step: Step) -> Result<(), StoreError> {
        self.submit(Op::Commit(step)).await
    }

    async fn pending_jobs(&self, destination: &str, limit: u32) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.id, j.destination, j.message_id, j.recipients, m.body, j.attempts, \
                    j.created_at \
             FROM jobs j JOIN messages m ON m.message_id = j.message_id \
             WHERE j.destination = ?1 \
             ORDER BY j.id \
             LIMIT ?2",
        )
        .bind(destination)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await
        .map_err(db)?;
        rows.iter().map(job_from_row).collect()
    }

    /// Completing a job that does not exist (already completed) succeeds.
    async fn complete_job(&self, id: i64) -> Result<(), StoreError> {
        self.submit(Op::CompleteJob(id)).await
    }

    async fn group_count(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM groups")
            .fetch_one(&self.readers)
            .await
            .map_err(db)?;
        to_u64(count)
    }
}

/// The writer task: batches of requests, one transaction per batch, until
/// every sender is gone and the queue is empty.
async fn run_writer(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<Request>,
    transactions: Arc<AtomicU64>,
) -> Result<(), StoreError> {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut outcomes = Vec::with_capacity(batch.len());
        match run_batch(&mut conn, &batch, &mut outcomes).await {
            Ok(()) => {
                transactions.fetch_add(1, Ordering::Relaxed);
                for (request, outcome) in batch.drain(..).zip(outcomes) {
                    // The caller may have gone away; its step stands.
                    let _ = request.reply.send(outcome);
                }
            }
            Err(message) => {
                // Nothing of this batch is committed: every step fails.
                for request in batch.drain(..) {
                    let _ = request
                        .reply
                        .send(Err(StoreError::Database(message.clone())));
                }
            }
        }
    }
    conn.close().await.map_err(db)
}

/// Applies `batch` in one transaction, one savepoint per request, pushing
/// each request's outcome to `outcomes`. `Err` means the transaction as a
/// whole failed (and was rolled back), whatever `outcomes` holds.
async fn run_batch(
    conn: &mut SqliteConnection,
    batch: &[Request],
    outcomes: &mut Vec<Result<(), StoreError>>,
) -> Result<(), String> {
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| format!("begin: {e}"))?;
    for request in batch {
        let mut savepoint = Connection::begin(&mut *tx)
            .await
            .map_err(|e| format!("savepoint: {e}"))?;
        let outcome = match &request.op {
            Op::Commit(step) => apply_step(&mut savepoint, step).await,
            Op::CompleteJob(id) => apply_complete_job(&mut savepoint, *id).await,
        };
        if outcome.is_ok() {
            savepoint
                .commit()
                .await
                .map_err(|e| format!("release savepoint: {e}"))?;
        } else {
            savepoint
                .rollback()
                .await
                .map_err(|e| format!("rollback to savepoint: {e}"))?;
        }
        outcomes.push(outcome);
    }
    tx.commit().await.map_err(|e| format!("commit: {e}"))
}

/// One core step, inside its savepoint. Checks the version before writing
/// anything.
async fn apply_step(conn: &mut SqliteConnection, step: &Step) -> Result<(), StoreError> {
    let current: Option<i64> = sqlx::query_scalar("SELECT version FROM groups WHERE group_id = ?1")
        .bind(&step.group_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    let current = current.map(to_u64).transpose()?;
    if current != step.expected_version {
        return Err(StoreError::Conflict);
    }
    let now = to_i64(step.now)?;

    match &step.write {
        GroupWrite::Keep => {}
        GroupWrite::Put {
            state,
            reserved_until,
        } => {
            let reserved_until = reserved_until.map(to_i64).transpose()?;
            let sql = if current.is_some() {
                "UPDATE groups SET version = version + 1, state = ?2, reserved_until = ?3, \
                 updated_at = ?4 WHERE group_id = ?1"
            } else {
                "INSERT INTO groups (group_id, version, state, reserved_until, updated_at) \
                 VALUES (?1, 1, ?2, ?3, ?4)"
            };
            sqlx::query(sql)
                .bind(&step.group_id)
                .bind(state)
                .bind(reserved_until)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(db)?;
        }
        GroupWrite::Delete => {
            for sql in [
                "DELETE FROM groups WHERE group_id = ?1",
                "DELETE FROM snapshots WHERE group_id = ?1",
            ] {
                sqlx::query(sql)
                    .bind(&step.group_id)
                    .execute(&mut *conn)
                    .await
                    .map_err(db)?;
            }
        }
    }

    if let Some(snapshot) = &step.snapshot {
        sqlx::query(
            "INSERT OR REPLACE INTO snapshots (group_id, epoch, created_at, data) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&step.group_id)
        .bind(to_i64(snapshot.epoch)?)
        .bind(to_i64(snapshot.created_at)?)
        .bind(&snapshot.data)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }

    if let Some(before) = step.prune_snapshots_before {
        sqlx::query("DELETE FROM snapshots WHERE group_id = ?1 AND created_at < ?2")
            .bind(&step.group_id)
            .bind(to_i64(before)?)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }

    for message in &step.messages {
        sqlx::query(
            "INSERT OR IGNORE INTO messages (message_id, group_id, body, created_at) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&message.message_id[..])
        .bind(&step.group_id)
        .bind(&message.body)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }

    for job in &step.jobs {
        sqlx::query(
            "INSERT INTO jobs (destination, message_id, recipients, attempts, created_at) \
             VALUES (?1, ?2, ?3, 0, ?4)",
        )
        .bind(&job.destination)
        .bind(&job.message_id[..])
        .bind(&job.recipients)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// Deletes a job, and its message once no other job refers to it.
async fn apply_complete_job(conn: &mut SqliteConnection, id: i64) -> Result<(), StoreError> {
    let message_id: Option<Vec<u8>> =
        sqlx::query_scalar("DELETE FROM jobs WHERE id = ?1 RETURNING message_id")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
    if let Some(message_id) = message_id {
        sqlx::query(
            "DELETE FROM messages WHERE message_id = ?1 \
             AND NOT EXISTS (SELECT 1 FROM jobs WHERE message_id = ?1)",
        )
        .bind(message_id)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

fn job_from_row(row: &SqliteRow) -> Result<Job, StoreError> {
    let message_id: Vec<u8> = row.try_get("message_id").map_err(db)?;
    let message_id = <[u8; 16]>::try_from(message_id.as_slice()).map_err(|_| {
        StoreError::Database(format!(
            "stored message id has {} bytes, not 16",
            message_id.len()
        ))
    })?;
    let attempts: i64 = row.try_get("attempts").map_err(db)?;
    Ok(Job {
        id: row.try_get("id").map_err(db)?,
        destination: row.try_get("destination").map_err(db)?,
        message_id,
        recipients: row.try_get("recipients").map_err(db)?,
        body: row.try_get("body").map_err(db)?,
        attempts: u32::try_from(attempts).map_err(|_| {
            StoreError::Database(format!("stored attempts {attempts} out of range"))
        })?,
        created_at: get_u64(row, "created_at")?,
    })
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn get_u64(row: &SqliteRow, column: &str) -> Result<u64, StoreError> {
    to_u64(row.try_get::<i64, _>(column).map_err(db)?)
}

/// SQLite integers are signed 64-bit; values the store writes never exceed
/// `i64::MAX`.
fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Database(format!("{value} does not fit an SQLite integer")))
}

fn to_u64(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Database(format!("stored value {value} is negative")))
}
