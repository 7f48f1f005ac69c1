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
//!   (up to [`MAX_BATCH`]), applies them in one `BEGIN IMMEDIATE`
//!   transaction, commits once and only then answers every waiter. The cost of
//!   making a transaction durable (one `fsync` with [`Durability::PowerLoss`])
//!   is shared by the whole batch. That is the writer thread, except after
//!   an idle spell, when the caller waiting for a step applies it on its own
//!   thread: a hand-off to the writer thread and back can cost more than the
//!   transaction (see [`Writer`]). A caller never waits there for another
//!   process's lock: that too is left to the writer thread.
//! * **Set-based batches.** A batch uses a fixed handful of statements,
//!   whatever its size (see [`Script`]). One `SELECT` reads the versions of
//!   all groups of the batch; the steps are then evaluated *in memory, in
//!   order*, with exactly the outcome of committing each on its own (each
//!   version check sees the versions left by the steps before it; a group
//!   may be deleted and created again; snapshots are written and pruned in
//!   step order; a job whose message exists nowhere fails its step). A step
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
//!   connections (sqlx, as do the migrations and the checkpointer); WAL mode lets them run while the writer writes, and they see
//!   every step whose [`Pending`] has resolved.
//! * **Cancellation.** Once `enqueue` has returned (or a `commit` future has
//!   queued its step), dropping the [`Pending`] does not withdraw the step:
//!   the writer thread commits it (or not) as if the caller were still
//!   waiting. A caller applying the queue itself finishes that transaction
//!   before its future can be dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use rusqlite::types::Value;

use sha2::{Digest, Sha256};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::sql::{List, Statement};
use crate::{
    Drive, GroupWrite, Job, Pending, STATE_PAGE, Snapshot, Step, Store, StoreError, StoredGroup,
};

/// How long a connection waits for a lock held by another connection (another
/// process using the same file, or a checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// At most this many requests share one transaction.
const MAX_BATCH: usize = 256;

/// Requests waiting for the writer beyond this make `enqueue` wait (back
/// pressure) instead of queueing without bound.
const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;

/// At most this many rows per multi-row statement (and values per `IN`
/// list). With at most 5 parameters a row, that stays far below SQLite's
/// bound-parameter limit (32766).
const MAX_ROWS_PER_STATEMENT: usize = 500;

/// At most this many `OR`ed terms per snapshot `DELETE`, far below SQLite's
/// expression depth limit (1000).
const MAX_TERMS_PER_DELETE: usize = 200;

/// A batch's statements stay prepared in the write connection's statement
/// cache only if their SQL is at most this long: small batches have shapes
/// that recur, large ones rarely do.
const CACHED_STATEMENT_LEN: usize = 4096;

/// Statements the write connection keeps prepared.
const STATEMENT_CACHE: usize = 64;

/// Connections in the read pool.
const READ_CONNECTIONS: u32 = 4;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

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

/// A write for the writer task.
enum Op {
    Commit(Step),
    CompleteJob(i64),
    /// Drop reservations that expired before this time.
    PruneReservations(i64),
    /// Drop joiner snapshots created before this time.
    PruneSnapshots(i64),
    /// Drop these messages unless a job refers to them.
    DiscardMessages(Vec<[u8; 16]>),
    /// Drop messages written before this time that no job refers to.
    PruneMessages(i64),
}

/// A write and where to send its outcome.
struct Request {
    op: Op,
    reply: oneshot::Sender<Result<(), StoreError>>,
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
        let mut conn = SqliteConnection::connect_with(&migrate_options)
            .await
            .map_err(db)?;
        MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|e| StoreError::Database(format!("migration: {e}")))?;
        conn.close().await.map_err(db)?;

        // The file exists and is in WAL mode (a persistent setting) by now.
        let path = path.to_path_buf();
        let writer = tokio::task::spawn_blocking(move || open_writer(&path, durability))
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening the writer: {e}")))??;
        let read_options = base.clone().pragma("query_only", "ON");
        let readers = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .connect_with(read_options)
            .await
            .map_err(db)?;

        let checkpoints = SqliteConnection::connect_with(&base).await.map_err(db)?;
        let writer = Arc::new(Writer {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            conn: Mutex::new(Some(writer)),
            transactions: AtomicU64::new(0),
            opened: Instant::now(),
            idle_since: AtomicU64::new(0),
        });
        let writing = Arc::clone(&writer);
        let writer_thread = std::thread::Builder::new()
            .name("mimid-store".into())
            .spawn(move || writing.run())
            .map_err(|e| StoreError::Unavailable(format!("writer thread: {e}")))?;
        let (stop_checkpoints, stop) = oneshot::channel();
        let checkpointer = tokio::spawn(run_checkpoints(checkpoints, Arc::clone(&writer), stop));
        Ok(Self {
            writer,
            writer_thread: Some(writer_thread),
            readers,
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
            lock(&writer.conn).take()
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
        self.writer.transactions.load(Ordering::Relaxed)
    }

    /// Rows in `table`.
    async fn count(&self, table: &'static str) -> Result<u64, StoreError> {
        let count: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&self.readers)
                .await
                .map_err(db)?;
        to_u64(count)
    }

    /// Queues one write; returns where its outcome will arrive.
    async fn queue(&self, op: Op) -> Result<Pending, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let queued = {
            let mut queue = lock(&self.writer.queue);
            if queue.closed {
                return Err(StoreError::Unavailable("store closed".into()));
            }
            queue.requests.push_back(Request { op, reply });
            queue.requests.len()
        };
        if queued > QUEUE_CAPACITY {
            // Back pressure: writes queued faster than anyone waits for
            // them are applied before more are taken.
            self.writer.hand_off();
            let writer = Arc::clone(&self.writer);
            crate::run_blocking(move || writer.wait_below(QUEUE_CAPACITY));
        }
        let driver: Arc<dyn Drive> = Arc::clone(&self.writer) as Arc<dyn Drive>;
        Ok(Pending::driven(outcome, driver))
    }

    /// Queues one write and waits for its outcome.
    async fn submit(&self, op: Op) -> Result<(), StoreError> {
        self.queue(op).await?.await
    }
}

/// Opens the write connection (`rusqlite`, so that a batch runs on the
/// thread of whoever applies it).
fn open_writer(path: &Path, durability: Durability) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open(path).map_err(write_db)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(write_db)?;
    let synchronous = match durability {
        Durability::Process => "NORMAL",
        Durability::PowerLoss => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON;
         PRAGMA synchronous = {synchronous};
         -- A multi-row statement inside the batch's transaction keeps a
         -- statement journal (to undo itself should it fail half-way);
         -- beyond 64 KiB SQLite spills it to a temporary file unless
         -- temporary storage is in memory. It holds at most the pages one
         -- statement touches.
         PRAGMA temp_store = MEMORY;
         -- Checkpoints run beside the writer (`run_checkpoints`), not in its
         -- transactions; this is only the safety net should they fall
         -- behind by 400 MiB of log.
         PRAGMA wal_autocheckpoint = 100000;"
    ))
    .map_err(write_db)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// The write connection and the writes waiting for it.
///
/// Group commit: whoever holds the connection applies every request
/// waiting (up to [`MAX_BATCH`] per transaction), commits once and only then
/// answers them; requests queued meanwhile go in the next transaction. That
/// is the writer thread, except when the store has been idle: then a caller
/// waiting for its step applies it on its own thread ([`Drive`]), sparing
/// the two thread hand-offs (on a virtual machine, waking a thread can cost
/// more than the transaction).
struct Writer {
    queue: Mutex<Queue>,
    /// Signalled when the writer thread has work (or the store closes).
    work: Condvar,
    /// `None` once the store is closed.
    conn: Mutex<Option<rusqlite::Connection>>,
    transactions: AtomicU64,
    opened: Instant,
    /// When the last transaction ended, in nanoseconds since `opened`.
    idle_since: AtomicU64,
}

#[derive(Default)]
struct Queue {
    requests: VecDeque<Request>,
    closed: bool,
}

/// A caller applies its own step only if no transaction ended for this
/// long: steps arriving closer together are left to the writer thread, where
/// they gather into shared transactions.
const IDLE: Duration = Duration::from_micros(100);

/// Locks `mutex`, whether or not a thread panicked holding it: the queue
/// stays consistent (requests are only pushed and drained), and a
/// transaction interrupted by a panic was never committed.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drive for Writer {
    fn drive(&self) {
        let idle = self
            .elapsed()
            .saturating_sub(self.idle_since.load(Ordering::Relaxed));
        if u128::from(idle) < IDLE.as_nanos() {
            return self.hand_off();
        }
        let mut conn = match self.conn.try_lock() {
            Ok(conn) => conn,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // The writer thread is at it.
            Err(TryLockError::WouldBlock) => return self.hand_off(),
        };
        // One transaction at most: a caller blocks for its own step (and
        // those queued with it), not for whatever keeps arriving.
        self.apply(&mut conn, false, 1);
        drop(conn);
        if !lock(&self.queue).requests.is_empty() {
            self.hand_off();
        }
    }

    fn hand_off(&self) {
        self.work.notify_one();
    }
}

impl Writer {
    fn elapsed(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The writer thread: applies the queue whenever there is work, until
    /// the store is closed and the queue empty.
    fn run(&self) {
        loop {
            {
                let mut queue = lock(&self.queue);
                while queue.requests.is_empty() && !queue.closed {
                    queue = self
                        .work
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                if queue.requests.is_empty() {
                    return;
                }
            }
            // Callers computing their steps right now (on this core, if
            // there is only one) go first and join this transaction.
            std::thread::yield_now();
            let mut conn = lock(&self.conn);
            self.apply(&mut conn, true, usize::MAX);
        }
    }

    /// No more requests; the writer thread stops once the queue is empty.
    fn close(&self) {
        lock(&self.queue).closed = true;
        self.work.notify_one();
    }

    /// Blocks until at most `limit` requests are queued.
    fn wait_below(&self, limit: usize) {
        while lock(&self.queue).requests.len() > limit {
            // Whoever applies the queue holds the connection meanwhile.
            drop(lock(&self.conn));
            std::thread::yield_now();
        }
    }

    /// Applies the queued requests with `conn`, a batch per transaction,
    /// until none are left or after `transactions`. Unless `wait`, stops
    /// (leaving the queue to the writer thread) if another connection holds
    /// the database.
    fn apply(&self, conn: &mut Option<rusqlite::Connection>, wait: bool, transactions: usize) {
        for _ in 0..transactions {
            if lock(&self.queue).requests.is_empty() {
                return;
            }
            let Some(conn) = conn.as_mut() else {
                self.fail_batch(&StoreError::Unavailable("store closed".into()));
                continue;
            };
            match begin(conn, wait) {
                Ok(true) => {}
                Ok(false) => return self.hand_off(),
                Err(e) => {
                    self.fail_batch(&StoreError::Database(format!("batch: {e}")));
                    continue;
                }
            }
            let batch = self.take_batch();
            match run_batch(conn, &batch) {
                Ok(outcomes) => {
                    self.transactions.fetch_add(1, Ordering::Relaxed);
                    for (request, outcome) in batch.into_iter().zip(outcomes) {
                        // The caller may have gone away; its step stands.
                        let _ = request.reply.send(outcome);
                    }
                }
                Err(message) => {
                    // Nothing of this batch is committed: every request fails.
                    for request in batch {
                        let _ = request
                            .reply
                            .send(Err(StoreError::Database(message.clone())));
                    }
                }
            }
            self.idle_since.store(self.elapsed(), Ordering::Relaxed);
        }
    }

    /// The next requests, up to [`MAX_BATCH`], in queue order.
    fn take_batch(&self) -> Vec<Request> {
        let mut queue = lock(&self.queue);
        let n = queue.requests.len().min(MAX_BATCH);
        queue.requests.drain(..n).collect()
    }

    /// Answers the next batch with `error`.
    fn fail_batch(&self, error: &StoreError) {
        for request in self.take_batch() {
            let message = error.to_string();
            let _ = request.reply.send(Err(match error {
                StoreError::Unavailable(_) => StoreError::Unavailable(message),
                _ => StoreError::Database(message),
            }));
        }
    }
}

/// `BEGIN IMMEDIATE`; `Ok(false)` if, unless `wait`, another connection
/// holds the write lock.
fn begin(conn: &rusqlite::Connection, wait: bool) -> rusqlite::Result<bool> {
    if wait {
        return conn.execute_batch("BEGIN IMMEDIATE").map(|()| true);
    }
    conn.busy_timeout(Duration::ZERO)?;
    let began = conn.execute_batch("BEGIN IMMEDIATE");
    conn.busy_timeout(BUSY_TIMEOUT)?;
    match began {
        Ok(()) => Ok(true),
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => Ok(false),
        Err(e) => Err(e),
    }
}

impl Store for SqliteStore {
    async fn load_group(&self, group_id: &[u8]) -> Result<Option<StoredGroup>, StoreError> {
        // One statement, so the row and its pages come from one snapshot.
        let rows = sqlx::query(
            "SELECT g.version, g.reserved_until, g.state_len, p.data \
             FROM groups g LEFT JOIN state_pages p ON p.group_id = g.group_id \
             WHERE g.group_id = ?1 ORDER BY p.page",
        )
        .bind(group_id)
        .fetch_all(&self.readers)
        .await
        .map_err(db)?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        // Every row has a length since schema version 3 (its migration set
        // it for the rows before).
        let len: i64 = first.try_get("state_len").map_err(db)?;
        let len = usize::try_from(len).map_err(|_| {
            StoreError::Database(format!("stored state length {len} is out of range"))
        })?;
        let mut state = Vec::with_capacity(len);
        for row in &rows {
            if let Some(page) = row.try_get::<Option<&[u8]>, _>("data").map_err(db)? {
                state.extend_from_slice(page);
            }
        }
        if state.len() != len {
            return Err(StoreError::Database(format!(
                "stored state has {} bytes in its pages, not {len}",
                state.len()
            )));
        }
        Ok(Some(StoredGroup {
            version: get_u64(first, "version")?,
            state,
            reserved_until: first
                .try_get::<Option<i64>, _>("reserved_until")
                .map_err(db)?
                .map(to_u64)
                .transpose()?,
        }))
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

    async fn enqueue(&self, step: Step) -> Result<Pending, StoreError> {
        self.queue(Op::Commit(step)).await
    }

    async fn pending_jobs(&self, destination: &str, limit: u32) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(
            "SELECT j.id, j.destination, j.message_id, \
                    COALESCE(rs.recipients, j.recipients) AS recipients, m.body, j.attempts, \
                    j.created_at \
             FROM jobs j JOIN messages m ON m.message_id = j.message_id \
             LEFT JOIN recipient_sets rs ON rs.hash = j.recipient_set \
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

    async fn prune_reservations(&self, now: u64) -> Result<(), StoreError> {
        self.submit(Op::PruneReservations(to_i64(now)?)).await
    }

    async fn prune_snapshots(&self, before: u64) -> Result<(), StoreError> {
        self.submit(Op::PruneSnapshots(to_i64(before)?)).await
    }

    async fn discard_messages(&self, message_ids: Vec<[u8; 16]>) -> Result<Pending, StoreError> {
        self.queue(Op::DiscardMessages(message_ids)).await
    }

    async fn prune_messages(&self, before: u64) -> Result<(), StoreError> {
        self.submit(Op::PruneMessages(to_i64(before)?)).await
    }

    async fn message_count(&self) -> Result<u64, StoreError> {
        self.count("messages").await
    }

    async fn group_count(&self) -> Result<u64, StoreError> {
        self.count("groups").await
    }
}

/// How often the checkpointer looks for new transactions to checkpoint.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// Copies committed pages from the log into the database file, until the
/// store closes, on a connection (and so a thread) of its own: a checkpoint
/// copies and syncs every page written since the last one, which inside the
/// writer's transactions would add that time to the answer of whichever step
/// triggered it. `PASSIVE` waits for nobody and blocks nobody; once a
/// checkpoint has copied the whole log, the writer starts the log over.
async fn run_checkpoints(
    mut conn: SqliteConnection,
    writer: Arc<Writer>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checkpointed = 0;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        let committed = writer.transactions.load(Ordering::Relaxed);
        if committed == checkpointed {
            continue;
        }
        // A failure (e.g. busy) is retried at the next tick; the writer's
        // own automatic checkpoint is the safety net.
        if sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
            .is_ok()
        {
            checkpointed = committed;
        }
    }
    let _ = conn.close().await;
}

/// The outcome of each request of a batch, in the batch's order.
type Outcomes = Vec<Result<(), StoreError>>;

/// Applies `batch` in the transaction [`begin`] opened, and commits it.
/// `Err` means the transaction as a whole failed (and was rolled back): no
/// request of the batch took effect.
fn run_batch(conn: &mut rusqlite::Connection, batch: &[Request]) -> Result<Outcomes, String> {
    let applied = (|| {
        let mut script = Script::default();
        let outcomes = apply_batch(conn, &mut script, batch)?;
        script.statement().push("COMMIT");
        script.execute(conn)?;
        Ok(outcomes)
    })();
    match applied {
        Ok(outcomes) => Ok(outcomes),
        // The failure may have ended the transaction already.
        Err(message) if conn.is_autocommit() => Err(message),
        Err(message) => match conn.execute_batch("ROLLBACK") {
            Ok(()) => Err(message),
            Err(e) => Err(format!("{message} (rollback: {e})")),
        },
    }
}

/// Statements of a batch, run when their results are needed, or at the end
/// of the batch.
#[derive(Default)]
struct Script<'a> {
    statements: Vec<Statement<'a>>,
}

/// Runs `statement` with `params`, adding the rows it returns to `rows`.
fn query(
    statement: &mut rusqlite::Statement<'_>,
    params: &[crate::sql::Param<'_>],
    rows: &mut Vec<LookupRow>,
) -> rusqlite::Result<()> {
    let columns = statement.column_count();
    let mut found = statement.query(rusqlite::params_from_iter(params.iter()))?;
    while let Some(row) = found.next()? {
        rows.push(
            (0..columns)
                .map(|i| row.get::<_, Value>(i))
                .collect::<Result<_, _>>()?,
        );
    }
    Ok(())
}

/// A lookup's row: its columns, in order.
type LookupRow = Vec<Value>;

impl<'a> Script<'a> {
    /// Starts the next statement; returns it to write.
    fn statement(&mut self) -> &mut Statement<'a> {
        self.statements.push(Statement::default());
        let last = self.statements.len() - 1;
        &mut self.statements[last]
    }

    /// Runs the statements so far and returns the rows they produced. The
    /// statements of small batches (the shapes that recur) stay prepared.
    fn fetch(&mut self, conn: &rusqlite::Connection) -> Result<Vec<LookupRow>, String> {
        let mut rows = Vec::new();
        for statement in self.statements.drain(..) {
            let found = if statement.text.len() <= CACHED_STATEMENT_LEN {
                conn.prepare_cached(&statement.text)
                    .and_then(|mut prepared| query(&mut prepared, &statement.params, &mut rows))
            } else {
                conn.prepare(&statement.text)
                    .and_then(|mut prepared| query(&mut prepared, &statement.params, &mut rows))
            };
            found.map_err(|e| format!("batch: {e}"))?;
        }
        Ok(rows)
    }

    /// Runs the statements so far.
    fn execute(&mut self, conn: &rusqlite::Connection) -> Result<(), String> {
        self.fetch(conn).map(|_| ())
    }
}

/// Applies the requests of `batch` in order, inside the caller's transaction,
/// as one or more consecutive [`SubBatch`]es.
fn apply_batch<'a>(
    conn: &rusqlite::Connection,
    script: &mut Script<'a>,
    batch: &'a [Request],
) -> Result<Outcomes, String> {
    let mut outcomes: Outcomes = batch.iter().map(|_| Ok(())).collect();
    let job_ids: Vec<i64> = batch
        .iter()
        .filter_map(|request| match request.op {
            Op::CompleteJob(id) => Some(id),
            _ => None,
        })
        .collect();
    // The message (and recipient set) of each job to complete. Only jobs
    // stored before this batch can be meant: job ids are learnt from
    // `pending_jobs`, which sees only committed jobs, and a request queued
    // after a commit is in a later batch.
    let mut to_complete = if job_ids.is_empty() {
        HashMap::new()
    } else {
        push_in(
            script,
            &format!("SELECT {FOUND_JOB}, message_id, id, recipient_set FROM jobs WHERE id"),
            "",
            &job_ids,
            |list, id| {
                list.push_bind(*id);
            },
        );
        Found::parse(&script.fetch(conn)?)?.jobs
    };
    let mut sub = SubBatch::default();
    for (index, request) in batch.iter().enumerate() {
        match &request.op {
            Op::Commit(step) => {
                if sub.completions_touch(step) {
                    std::mem::take(&mut sub).apply(conn, script, &mut outcomes)?;
                }
                sub.steps.push((index, step));
            }
            Op::CompleteJob(id) => {
                // Unknown, or completed earlier in this batch: nothing to do.
                if let Some((message_id, recipient_set)) = to_complete.remove(id) {
                    sub.jobs.push(*id);
                    sub.messages.insert(message_id);
                    sub.recipient_sets.extend(recipient_set);
                }
            }
            Op::PruneReservations(before)
            | Op::PruneSnapshots(before)
            | Op::PruneMessages(before) => {
                // After the requests queued before it, before those after.
                std::mem::take(&mut sub).apply(conn, script, &mut outcomes)?;
                let (delete, tail) = match request.op {
                    Op::PruneReservations(_) => (
                        "DELETE FROM groups WHERE reserved_until IS NOT NULL AND reserved_until < ",
                        "",
                    ),
                    Op::PruneSnapshots(_) => ("DELETE FROM snapshots WHERE created_at < ", ""),
                    _ => ("DELETE FROM messages WHERE created_at < ", UNREFERENCED),
                };
                script
                    .statement()
                    .push(delete)
                    .push_bind(*before)
                    .push(tail);
            }
            Op::DiscardMessages(message_ids) => {
                std::mem::take(&mut sub).apply(conn, script, &mut outcomes)?;
                push_in(
                    script,
                    "DELETE FROM messages WHERE message_id",
                    UNREFERENCED,
                    message_ids,
                    |list, message_id| {
                        list.push_bind(message_id.to_vec());
                    },
                );
            }
        }
    }
    sub.apply(conn, script, &mut outcomes)?;
    Ok(outcomes)
}

/// The condition, in a `DELETE FROM messages`, that no job refers to the
/// message.
const UNREFERENCED: &str =
    " AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.message_id = messages.message_id)";

/// Consecutive requests of a batch, applied with a fixed number of
/// statements: first the steps (evaluated in order), then the job
/// completions. That equals applying them in their queue order as long as no
/// step comes after the completion of a job whose message it writes or refers
/// to, which [`apply_batch`] ensures by starting a new sub-batch there.
/// Recipient sets need no such care: the steps only ever add sets (and jobs
/// referring to them), and a set goes only if no job refers to it once the
/// completions are done, in either order.
#[derive(Default)]
struct SubBatch<'a> {
    /// Steps and their index in the batch.
    steps: Vec<(usize, &'a Step)>,
    /// Jobs to complete (all stored before the batch, each once).
    jobs: Vec<i64>,
    /// Their messages.
    messages: BTreeSet<Vec<u8>>,
    /// Their recipient sets (of those written since schema version 2).
    recipient_sets: BTreeSet<Vec<u8>>,
}

impl<'a> SubBatch<'a> {
    /// Whether `step` writes or refers to a message of a job completed in
    /// this sub-batch.
    fn completions_touch(&self, step: &Step) -> bool {
        !self.messages.is_empty()
            && (step
                .messages
                .iter()
                .any(|m| self.messages.contains(&m.message_id[..]))
                || step
                    .jobs
                    .iter()
                    .any(|j| self.messages.contains(&j.message_id[..])))
    }

    /// Adds the sub-batch's statements to `script` (running it once for the
    /// lookups the steps need).
    fn apply(
        self,
        conn: &rusqlite::Connection,
        script: &mut Script<'a>,
        outcomes: &mut Outcomes,
    ) -> Result<(), String> {
        if !self.steps.is_empty() {
            apply_steps(conn, script, &self.steps, outcomes)?;
        }
        push_in(
            script,
            "DELETE FROM jobs WHERE id",
            "",
            &self.jobs,
            |list, id| {
                list.push_bind(*id);
            },
        );
        let messages: Vec<&Vec<u8>> = self.messages.iter().collect();
        push_in(
            script,
            "DELETE FROM messages WHERE message_id",
            UNREFERENCED,
            &messages,
            |list, message_id| {
                list.push_bind(message_id.to_vec());
            },
        );
        let recipient_sets: Vec<&Vec<u8>> = self.recipient_sets.iter().collect();
        push_in(
            script,
            "DELETE FROM recipient_sets WHERE hash",
            " AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.recipient_set = recipient_sets.hash)",
            &recipient_sets,
            |list, hash| {
                list.push_bind(hash.to_vec());
            },
        );
        Ok(())
    }
}

/// Evaluates `steps` in order against the stored versions, records each
/// one's outcome, and adds the net effect of those that succeed to `script`.
fn apply_steps<'a>(
    conn: &rusqlite::Connection,
    script: &mut Script<'a>,
    steps: &[(usize, &'a Step)],
    outcomes: &mut Outcomes,
) -> Result<(), String> {
    let mut group_ids: Vec<&[u8]> = Vec::new();
    let mut seen: HashSet<&[u8]> = HashSet::new();
    // Messages that jobs refer to without their step carrying them.
    let mut referred: Vec<&[u8]> = Vec::new();
    let mut referred_seen: HashSet<&[u8]> = HashSet::new();
    for (_, step) in steps {
        if seen.insert(&step.group_id) {
            group_ids.push(&step.group_id);
        }
        for job in &step.jobs {
            let carried = step.messages.iter().any(|m| m.message_id == job.message_id);
            if !carried && referred_seen.insert(&job.message_id) {
                referred.push(&job.message_id);
            }
        }
    }
    push_in(
        script,
        &format!("SELECT {FOUND_VERSION}, group_id, version FROM groups WHERE group_id"),
        "",
        &group_ids,
        |list, group_id| {
            list.push_bind(*group_id);
        },
    );
    push_in(
        script,
        &format!("SELECT {FOUND_MESSAGE}, message_id, 0 FROM messages WHERE message_id"),
        "",
        &referred,
        |list, message_id| {
            list.push_bind(*message_id);
        },
    );
    let Found {
        versions: stored,
        messages: mut known,
        ..
    } = Found::parse(&script.fetch(conn)?)?;

    let mut plan = Plan::default();
    for &(index, step) in steps {
        let outcome = plan.add(step, &stored, &mut known);
        if let Some(slot) = outcomes.get_mut(index) {
            *slot = outcome;
        }
    }
    plan.write(script);
    Ok(())
}

/// The net effect of the accepted steps of a sub-batch.
#[derive(Default)]
struct Plan<'a> {
    groups: HashMap<&'a [u8], GroupPlan<'a>>,
    messages: Vec<MessageRow<'a>>,
    jobs: Vec<JobRow<'a>>,
    /// The distinct recipient lists of `jobs` and their SHA-256.
    recipient_sets: HashMap<&'a [u8], RecipientSetHash>,
}

/// SHA-256 of a recipient list: its key in `recipient_sets`.
type RecipientSetHash = [u8; 32];

/// What the accepted steps do to one group.
struct GroupPlan<'a> {
    /// The version as left by the accepted steps so far (`None`: absent).
    version: Option<u64>,
    /// The last write to the slot: the only one whose result remains.
    write: Option<FinalWrite>,
    pages: PagePlan<'a>,
    snapshots: SnapshotPlan<'a>,
}

enum FinalWrite {
    Put {
        version: i64,
        /// Length of the state (in `state_pages`).
        state_len: i64,
        reserved_until: Option<i64>,
        updated_at: i64,
    },
    Delete,
}

/// The effect of the accepted steps on one group's state pages.
#[derive(Default)]
struct PagePlan<'a> {
    /// Every stored page goes first (the state was replaced whole, or the
    /// group deleted).
    clear: bool,
    /// Length of the state as the steps leave it (`None`: not written).
    len: Option<u64>,
    /// Pages written by the steps, by number; the last write of each wins.
    written: BTreeMap<u32, &'a [u8]>,
}

/// The number of pages of a state of `len` bytes.
fn page_count(len: u64) -> u64 {
    len.div_ceil(STATE_PAGE as u64)
}

/// What one step does to the state pages (checked before anything changes).
enum PageChange<'a> {
    Replace(&'a [u8]),
    Patch(u64, &'a [(u32, Vec<u8>)]),
    Clear,
}

impl<'a> PageChange<'a> {
    fn check(&self) -> Result<(), StoreError> {
        let bad = |what: String| Err(StoreError::Database(format!("state patch: {what}")));
        match *self {
            PageChange::Replace(state) if page_count(state.len() as u64) > u64::from(u32::MAX) => {
                bad(format!("a state of {} bytes", state.len()))
            }
            PageChange::Patch(len, pages) => {
                for (page, data) in pages {
                    let start = u64::from(*page) * STATE_PAGE as u64;
                    let expected = len.saturating_sub(start).min(STATE_PAGE as u64);
                    if start >= len || data.len() as u64 != expected {
                        return bad(format!(
                            "page {page} has {} bytes; a state of {len} bytes needs {expected}",
                            data.len()
                        ));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn apply(self, plan: &mut PagePlan<'a>) {
        match self {
            PageChange::Replace(state) => {
                plan.clear = true;
                plan.written.clear();
                plan.len = Some(state.len() as u64);
                for (page, data) in (0u32..).zip(state.chunks(STATE_PAGE)) {
                    plan.written.insert(page, data);
                }
            }
            PageChange::Patch(len, pages) => {
                plan.len = Some(len);
                for (page, data) in pages {
                    plan.written.insert(*page, data);
                }
            }
            PageChange::Clear => {
                plan.clear = true;
                plan.written.clear();
                plan.len = Some(0);
            }
        }
    }
}

/// The effect of the accepted steps on one group's snapshots, applied in
/// step order: within a step, the group's deletion first, then the step's
/// snapshot, then its pruning.
#[derive(Default)]
struct SnapshotPlan<'a> {
    /// The group was deleted: every snapshot stored before the batch goes.
    cleared: bool,
    /// Otherwise, stored snapshots created before this go (the largest
    /// cutoff of the steps).
    prune_before: Option<i64>,
    /// Snapshots written by the steps and not pruned since, by epoch:
    /// `(created_at, data)`; they replace a stored one of the same epoch.
    written: BTreeMap<i64, (i64, &'a [u8])>,
    /// Epochs written by the steps and then pruned: the stored row of that
    /// epoch (replaced, then pruned) goes, whatever its own `created_at`.
    dropped: BTreeSet<i64>,
}

impl<'a> SnapshotPlan<'a> {
    fn clear(&mut self) {
        *self = SnapshotPlan {
            cleared: true,
            ..SnapshotPlan::default()
        };
    }

    fn write(&mut self, epoch: i64, created_at: i64, data: &'a [u8]) {
        self.dropped.remove(&epoch);
        self.written.insert(epoch, (created_at, data));
    }

    fn prune(&mut self, before: i64) {
        let Self {
            cleared,
            prune_before,
            written,
            dropped,
        } = self;
        if !*cleared {
            *prune_before = Some(prune_before.map_or(before, |b| b.max(before)));
        }
        written.retain(|epoch, (created_at, _)| {
            let keep = *created_at >= before;
            if !keep && !*cleared {
                dropped.insert(*epoch);
            }
            keep
        });
    }
}

struct MessageRow<'a> {
    message_id: &'a [u8],
    group_id: &'a [u8],
    body: &'a [u8],
    created_at: i64,
}

struct JobRow<'a> {
    destination: &'a str,
    message_id: &'a [u8],
    recipient_set: RecipientSetHash,
    created_at: i64,
}

/// One term of the snapshot `DELETE`.
enum SnapshotDelete<'a> {
    All(&'a [u8]),
    Before(&'a [u8], i64),
    Epoch(&'a [u8], i64),
}

struct SnapshotRow<'a> {
    group_id: &'a [u8],
    epoch: i64,
    created_at: i64,
    data: &'a [u8],
}

struct GroupRow<'a> {
    group_id: &'a [u8],
    version: i64,
    state_len: i64,
    reserved_until: Option<i64>,
    updated_at: i64,
}

impl<'a> Plan<'a> {
    /// Evaluates `step` after the steps added before it. On `Err` (a version
    /// conflict, or a step that cannot be stored) the step changes nothing.
    fn add(
        &mut self,
        step: &'a Step,
        stored: &HashMap<Vec<u8>, u64>,
        known_messages: &mut HashSet<Vec<u8>>,
    ) -> Result<(), StoreError> {
        let group = self
            .groups
            .entry(&step.group_id)
            .or_insert_with(|| GroupPlan {
                version: stored.get(step.group_id.as_slice()).copied(),
                write: None,
                pages: PagePlan::default(),
                snapshots: SnapshotPlan::default(),
            });
        if group.version != step.expected_version {
            return Err(StoreError::Conflict);
        }

        // Check everything before changing anything.
        let now = to_i64(step.now)?;
        let next_version = || match group.version {
            None => Ok(1),
            Some(v) => v
                .checked_add(1)
                .ok_or_else(|| StoreError::Database(format!("version {v} cannot be incremented"))),
        };
        let (version, write, pages) = match &step.write {
            GroupWrite::Keep => (group.version, None, None),
            GroupWrite::Put {
                state,
                reserved_until,
            } => {
                let version = next_version()?;
                let write = FinalWrite::Put {
                    version: to_i64(version)?,
                    state_len: to_i64(state.len() as u64)?,
                    reserved_until: reserved_until.map(to_i64).transpose()?,
                    updated_at: now,
                };
                (Some(version), Some(write), Some(PageChange::Replace(state)))
            }
            GroupWrite::Patch { len, pages } => {
                if group.version.is_none() {
                    return Err(StoreError::Database(
                        "a state patch needs a stored state".into(),
                    ));
                }
                let version = next_version()?;
                let write = FinalWrite::Put {
                    version: to_i64(version)?,
                    state_len: to_i64(*len)?,
                    reserved_until: None,
                    updated_at: now,
                };
                (
                    Some(version),
                    Some(write),
                    Some(PageChange::Patch(*len, pages)),
                )
            }
            GroupWrite::Delete => (None, Some(FinalWrite::Delete), Some(PageChange::Clear)),
        };
        if let Some(change) = &pages {
            change.check()?;
        }
        let snapshot = match &step.snapshot {
            Some(s) => Some((to_i64(s.epoch)?, to_i64(s.created_at)?, s.data.as_slice())),
            None => None,
        };
        let prune = step.prune_snapshots_before.map(to_i64).transpose()?;
        for job in &step.jobs {
            let carried = step.messages.iter().any(|m| m.message_id == job.message_id);
            if !carried && !known_messages.contains(&job.message_id[..]) {
                return Err(StoreError::Database(format!(
                    "FOREIGN KEY constraint failed: a job for {} refers to a message that does \
                     not exist",
                    job.destination
                )));
            }
        }

        group.version = version;
        if let Some(change) = pages {
            change.apply(&mut group.pages);
        }
        if let Some(write) = write {
            if matches!(write, FinalWrite::Delete) {
                group.snapshots.clear();
            }
            group.write = Some(write);
        }
        if let Some((epoch, created_at, data)) = snapshot {
            group.snapshots.write(epoch, created_at, data);
        }
        if let Some(before) = prune {
            group.snapshots.prune(before);
        }
        for message in &step.messages {
            known_messages.insert(message.message_id.to_vec());
            self.messages.push(MessageRow {
                message_id: &message.message_id,
                group_id: &step.group_id,
                body: &message.body,
                created_at: now,
            });
        }
        for job in &step.jobs {
            let recipient_set = *self
                .recipient_sets
                .entry(&job.recipients)
                .or_insert_with(|| Sha256::digest(&job.recipients).into());
            self.jobs.push(JobRow {
                destination: &job.destination,
                message_id: &job.message_id,
                recipient_set,
                created_at: now,
            });
        }
        Ok(())
    }

    /// Adds the statements writing the net effect to `script`: a fixed
    /// number of them (per chunk of rows), whatever the number of steps.
    fn write(self, script: &mut Script<'a>) {
        let mut deleted: Vec<&[u8]> = Vec::new();
        let mut put: Vec<GroupRow<'_>> = Vec::new();
        // (group, first page to delete), and the pages to write.
        let mut page_deletes: Vec<(&[u8], i64)> = Vec::new();
        let mut pages: Vec<(&[u8], u32, &[u8])> = Vec::new();
        let mut snapshot_deletes: Vec<SnapshotDelete<'_>> = Vec::new();
        let mut snapshots: Vec<SnapshotRow<'_>> = Vec::new();
        for (&group_id, group) in &self.groups {
            match group.write {
                None => {}
                Some(FinalWrite::Delete) => deleted.push(group_id),
                Some(FinalWrite::Put {
                    version,
                    state_len,
                    reserved_until,
                    updated_at,
                }) => put.push(GroupRow {
                    group_id,
                    version,
                    state_len,
                    reserved_until,
                    updated_at,
                }),
            }
            if let Some(len) = group.pages.len {
                // Pages beyond the state's end go (all of them if cleared).
                let count = page_count(len);
                let first = if group.pages.clear { 0 } else { count };
                page_deletes.push((group_id, i64::try_from(first).unwrap_or(i64::MAX)));
                for (&page, &data) in group.pages.written.range(..) {
                    if u64::from(page) < count {
                        pages.push((group_id, page, data));
                    }
                }
            }
            let plan = &group.snapshots;
            if plan.cleared {
                snapshot_deletes.push(SnapshotDelete::All(group_id));
            } else {
                if let Some(before) = plan.prune_before {
                    snapshot_deletes.push(SnapshotDelete::Before(group_id, before));
                }
                for &epoch in &plan.dropped {
                    snapshot_deletes.push(SnapshotDelete::Epoch(group_id, epoch));
                }
            }
            for (&epoch, &(created_at, data)) in &plan.written {
                snapshots.push(SnapshotRow {
                    group_id,
                    epoch,
                    created_at,
                    data,
                });
            }
        }

        push_in(
            script,
            "DELETE FROM groups WHERE group_id",
            "",
            &deleted,
            |list, group_id| {
                list.push_bind(*group_id);
            },
        );
        push_values(
            script,
            "INSERT INTO groups (group_id, version, state, state_len, reserved_until, \
             updated_at) ",
            " ON CONFLICT (group_id) DO UPDATE SET version = excluded.version, \
             state = excluded.state, state_len = excluded.state_len, \
             reserved_until = excluded.reserved_until, updated_at = excluded.updated_at",
            &put,
            |mut row, group| {
                row.push_bind(group.group_id)
                    .push_bind(group.version)
                    .push("x''")
                    .push_bind(group.state_len)
                    .push_bind(group.reserved_until)
                    .push_bind(group.updated_at);
            },
        );
        for chunk in page_deletes.chunks(MAX_TERMS_PER_DELETE) {
            let builder = script.statement();
            builder.push("DELETE FROM state_pages WHERE ");
            let mut terms = builder.separated(" OR ");
            for &(group_id, first) in chunk {
                terms
                    .push("(group_id = ")
                    .push_bind_unseparated(group_id)
                    .push_unseparated(" AND page >= ")
                    .push_bind_unseparated(first)
                    .push_unseparated(")");
            }
        }
        push_values(
            script,
            "INSERT INTO state_pages (group_id, page, data) ",
            " ON CONFLICT (group_id, page) DO UPDATE SET data = excluded.data",
            &pages,
            |mut row, &(group_id, page, data)| {
                row.push_bind(group_id)
                    .push_bind(i64::from(page))
                    .push_bind(data);
            },
        );
        for chunk in snapshot_deletes.chunks(MAX_TERMS_PER_DELETE) {
            let builder = script.statement();
            builder.push("DELETE FROM snapshots WHERE ");
            let mut terms = builder.separated(" OR ");
            for term in chunk {
                match *term {
                    SnapshotDelete::All(group_id) => {
                        terms.push("group_id = ").push_bind_unseparated(group_id);
                    }
                    SnapshotDelete::Before(group_id, before) => {
                        terms
                            .push("(group_id = ")
                            .push_bind_unseparated(group_id)
                            .push_unseparated(" AND created_at < ")
                            .push_bind_unseparated(before)
                            .push_unseparated(")");
                    }
                    SnapshotDelete::Epoch(group_id, epoch) => {
                        terms
                            .push("(group_id = ")
                            .push_bind_unseparated(group_id)
                            .push_unseparated(" AND epoch = ")
                            .push_bind_unseparated(epoch)
                            .push_unseparated(")");
                    }
                }
            }
        }
        push_values(
            script,
            "INSERT OR REPLACE INTO snapshots (group_id, epoch, created_at, data) ",
            "",
            &snapshots,
            |mut row, s| {
                row.push_bind(s.group_id)
                    .push_bind(s.epoch)
                    .push_bind(s.created_at)
                    .push_bind(s.data);
            },
        );
        push_values(
            script,
            "INSERT OR IGNORE INTO messages (message_id, group_id, body, created_at) ",
            "",
            &self.messages,
            |mut row, m| {
                row.push_bind(m.message_id)
                    .push_bind(m.group_id)
                    .push_bind(m.body)
                    .push_bind(m.created_at);
            },
        );
        // A list already stored (by an earlier batch) is not written again.
        let recipient_sets: Vec<(&[u8], &RecipientSetHash)> = self
            .recipient_sets
            .iter()
            .map(|(&recipients, hash)| (recipients, hash))
            .collect();
        push_values(
            script,
            "INSERT OR IGNORE INTO recipient_sets (hash, recipients) ",
            "",
            &recipient_sets,
            |mut row, &(recipients, hash)| {
                row.push_bind(hash.to_vec()).push_bind(recipients);
            },
        );
        // Rows of one statement are inserted in order: job ids follow the
        // order of the steps.
        push_values(
            script,
            "INSERT INTO jobs (destination, message_id, recipients, recipient_set, attempts, \
             created_at) ",
            "",
            &self.jobs,
            |mut row, j| {
                row.push_bind(j.destination)
                    .push_bind(j.message_id)
                    .push("x''")
                    .push_bind(j.recipient_set.to_vec())
                    .push("0")
                    .push_bind(j.created_at);
            },
        );
    }
}

/// What the lookups of a [`Script`] found: rows of `(kind, key, value)`, and
/// for jobs their recipient set.
#[derive(Default)]
struct Found {
    /// Group id to stored version.
    versions: HashMap<Vec<u8>, u64>,
    /// Stored message ids.
    messages: HashSet<Vec<u8>>,
    /// Job id to its message id and recipient set (`None` for a job written
    /// before schema version 2).
    jobs: HashMap<i64, (Vec<u8>, Option<Vec<u8>>)>,
}

const FOUND_VERSION: i64 = 0;
const FOUND_MESSAGE: i64 = 1;
const FOUND_JOB: i64 = 2;

impl Found {
    fn parse(rows: &[LookupRow]) -> Result<Found, String> {
        let bad = || "lookup: unexpected row".to_string();
        let mut found = Found::default();
        for row in rows {
            let (Some(Value::Integer(kind)), Some(Value::Blob(key)), Some(Value::Integer(value))) =
                (row.first(), row.get(1), row.get(2))
            else {
                return Err(bad());
            };
            match *kind {
                FOUND_VERSION => {
                    let version = to_u64(*value).map_err(|e| e.to_string())?;
                    found.versions.insert(key.clone(), version);
                }
                FOUND_MESSAGE => {
                    found.messages.insert(key.clone());
                }
                _ => {
                    let recipient_set = match row.get(3) {
                        Some(Value::Blob(set)) => Some(set.clone()),
                        Some(Value::Null) => None,
                        _ => return Err(bad()),
                    };
                    found.jobs.insert(*value, (key.clone(), recipient_set));
                }
            }
        }
        Ok(found)
    }
}

/// Adds `head IN (values) tail` over `values` to `script`, in chunks (nothing
/// for no values).
fn push_in<'a, T>(
    script: &mut Script<'a>,
    head: &str,
    tail: &str,
    values: &[T],
    mut push_value: impl FnMut(&mut List<'_, 'a>, &T),
) {
    for chunk in values.chunks(MAX_ROWS_PER_STATEMENT) {
        let builder = script.statement();
        builder.push(head).push(" IN (");
        let mut list = builder.separated(", ");
        for value in chunk {
            push_value(&mut list, value);
        }
        list.push_unseparated(")");
        builder.push(tail);
    }
}

/// Adds `head VALUES (row), (row)... tail` over `rows` to `script`, in chunks
/// (nothing for no rows). Rows of one statement are inserted in order.
fn push_values<'a, T>(
    script: &mut Script<'a>,
    head: &str,
    tail: &str,
    rows: &[T],
    mut push_row: impl FnMut(List<'_, 'a>, &T),
) {
    for chunk in rows.chunks(MAX_ROWS_PER_STATEMENT) {
        let builder = script.statement();
        builder.push(head);
        builder.push_values(chunk, &mut push_row);
        builder.push(tail);
    }
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

fn write_db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
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
