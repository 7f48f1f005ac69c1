//! The writer: the only write connection and the queue of writes in front
//! of it. Steps must be applied in the order they were queued and share
//! transactions (group commit), so every write goes through here; who
//! applies the queue (the `mimid-store` thread, or after an idle spell the
//! waiting caller) is decided here too.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::batch::run_batch;
use super::{BUSY_TIMEOUT, Durability, write_db};
use crate::{Drive, Pending, Step, StoreError};

/// At most this many requests share one transaction.
const MAX_BATCH: usize = 256;

/// Requests waiting for the writer beyond this make `enqueue` wait (back
/// pressure) instead of queueing without bound.
const QUEUE_CAPACITY: usize = 4 * MAX_BATCH;

/// Statements the write connection keeps prepared.
const STATEMENT_CACHE: usize = 64;

/// A write for the writer task.
pub(super) enum Op {
    Commit(Step),
    CompleteJob(i64),
    /// Drop reservations that expired at or before this time.
    PruneReservations(i64),
    /// Drop joiner snapshots created at or before this time.
    PruneSnapshots(i64),
    /// Drop these messages unless a job refers to them.
    DiscardMessages(Vec<[u8; 16]>),
    /// Drop messages written at or before this time that no job refers to.
    PruneMessages(i64),
    /// Forget accepted deliveries received at or before this time.
    PruneInbound(i64),
    /// One more failed attempt of this job.
    RecordAttempt(i64),
    /// Move this job to the dead letters.
    DeadLetter {
        job_id: i64,
        reason: String,
        now: i64,
    },
    /// Add a client to the directory.
    AddClient {
        client_id: String,
        user_id: String,
        now: i64,
    },
    /// Queue an accepted delivery (`Conflict` if its id was seen).
    Deliver(Vec<crate::Inbound>),
    /// Drop a client's queue up to a position.
    Acknowledge {
        client_id: String,
        up_to: i64,
    },
    /// Add a user (`Conflict` if it exists).
    AddUser {
        user_id: String,
        now: i64,
    },
    /// Remove a user with its clients, KeyPackages and connections.
    RemoveUser(String),
    /// Store a client's KeyPackages: (kind, last resort, not after, bytes).
    PublishKeyPackages {
        client_id: String,
        packages: Vec<(i64, bool, i64, Vec<u8>)>,
        now: i64,
    },
    /// Hand out one KeyPackage per client of a user, recorded under `token`.
    ClaimKeyPackages {
        token: [u8; 16],
        user_id: String,
        kind: i64,
        clients: Option<Vec<String>>,
        now: i64,
    },
    /// Drop expired KeyPackages, and handed-out ones claimed before.
    PruneKeyPackages {
        now: i64,
        claimed_before: i64,
    },
    /// Record an enrolment secret's hash.
    AddEnrolment {
        secret_sha256: [u8; 32],
        user_id: String,
        expires_at: i64,
        now: i64,
    },
    /// Spend an enrolment secret on a new client.
    EnrolClient {
        secret_sha256: [u8; 32],
        client_id: String,
        user_id: String,
        public_key: Vec<u8>,
        now: i64,
    },
    /// Store a connection request (`Conflict` if its id was seen).
    ReceiveConnectionRequest(crate::InboundConnectionRequest),
    /// Settle a user's connection request.
    SettleConnectionRequest {
        user_id: String,
        id: i64,
        decision: crate::Decision,
        now: i64,
    },
    /// Record a user's connection with a peer.
    AddConnection {
        user_id: String,
        peer: String,
        now: i64,
    },
    /// Record a redeemed Privacy Pass token (`Conflict` if spent already).
    SpendToken {
        token_key_id: [u8; 32],
        nonce: [u8; 32],
        now: i64,
    },
}

/// A write and where to send its outcome.
pub(super) struct Request {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<(), StoreError>>,
}

/// Opens the write connection (`rusqlite`, so that a batch runs on the
/// thread of whoever applies it).
pub(super) fn open_writer(
    path: &Path,
    durability: Durability,
) -> Result<rusqlite::Connection, StoreError> {
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
pub(super) struct Writer {
    queue: Mutex<Queue>,
    /// Signalled when the writer thread has work (or the store closes).
    work: Condvar,
    /// `None` once the store is closed.
    conn: Mutex<Option<rusqlite::Connection>>,
    transactions: AtomicU64,
    opened: Instant,
    /// When the last transaction ended, in nanoseconds since `opened`.
    idle_since: AtomicU64,
    /// Rung for the recipients of committed deliveries.
    bell: crate::QueueBell,
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
    fn idle(&self) -> bool {
        let idle = self
            .elapsed()
            .saturating_sub(self.idle_since.load(Ordering::Relaxed));
        u128::from(idle) >= IDLE.as_nanos()
    }

    fn drive(&self) {
        // Looked at again: it may have changed since the caller looked.
        if !self.idle() {
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
    /// A writer applying writes with `conn`; nothing applies them until
    /// [`Writer::run`] runs on a thread of its own, or a caller drives it.
    pub(super) fn new(conn: rusqlite::Connection) -> Self {
        Writer {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            conn: Mutex::new(Some(conn)),
            transactions: AtomicU64::new(0),
            opened: Instant::now(),
            idle_since: AtomicU64::new(0),
            bell: crate::QueueBell::default(),
        }
    }

    pub(super) fn bell(&self) -> &crate::QueueBell {
        &self.bell
    }

    /// Number of write transactions committed so far.
    pub(super) fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Takes the write connection, to close it; applying anything later
    /// fails with [`StoreError::Unavailable`].
    pub(super) fn take_conn(&self) -> Option<rusqlite::Connection> {
        lock(&self.conn).take()
    }

    /// Queues one write; returns where its outcome will arrive.
    pub(super) fn queue(self: &Arc<Self>, op: Op) -> Result<Pending, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let queued = {
            let mut queue = lock(&self.queue);
            if queue.closed {
                return Err(StoreError::Unavailable("store closed".into()));
            }
            queue.requests.push_back(Request { op, reply });
            queue.requests.len()
        };
        if queued > QUEUE_CAPACITY {
            // Back pressure: writes queued faster than anyone waits for
            // them are applied before more are taken.
            self.hand_off();
            let writer = Arc::clone(self);
            crate::run_blocking(move || writer.wait_below(QUEUE_CAPACITY));
        }
        let driver: Arc<dyn Drive> = Arc::clone(self) as Arc<dyn Drive>;
        Ok(Pending::driven(outcome, driver))
    }

    fn elapsed(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The writer thread: applies the queue whenever there is work, until
    /// the store is closed and the queue empty.
    pub(super) fn run(&self) {
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
    pub(super) fn close(&self) {
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
            let started = Instant::now();
            match run_batch(conn, &batch) {
                Ok(outcomes) => {
                    self.transactions.fetch_add(1, Ordering::Relaxed);
                    // From BEGIN's return to COMMIT's, sync included.
                    metrics::histogram!(crate::TRANSACTION_SECONDS, "backend" => "sqlite")
                        .record(started.elapsed().as_secs_f64());
                    for (request, outcome) in batch.iter().zip(&outcomes) {
                        if let (Op::Deliver(inbound), Ok(())) = (&request.op, outcome) {
                            self.bell.ring(
                                inbound
                                    .iter()
                                    .flat_map(|i| i.recipients.iter().map(String::as_str)),
                            );
                        }
                    }
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
