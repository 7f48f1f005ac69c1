//! `mimid-store`: the one storage interface of mimid and its
//! implementations.
//!
//! The store knows nothing of MLS: a group's state is an opaque blob produced
//! by the core, versioned so that only one writer per group can win. A core
//! step (new state, joiner snapshot, messages and delivery jobs) commits in
//! one transaction, or not at all.

mod bell;
mod pages;
mod postgres;
mod sql;
mod sqlite;
pub mod throwaway;

pub use bell::{Listener, QueueBell};
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::{Durability, SqliteStore};

/// Seconds each write transaction took, by `backend` (a metric).
pub const TRANSACTION_SECONDS: &str = "mimid_store_transaction_seconds";

/// Errors of the store. `Conflict` is the expected outcome of a lost race
/// and `Repeated` of a repeated message; everything else is an operational
/// failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The group's version was not the expected one (another writer won),
    /// or a slot that had to be absent exists.
    #[error("conflicting write to group")]
    Conflict,
    /// The step's [`Step::remember`] digest is remembered for its group
    /// already (by an earlier step, this process's or another's): the
    /// message was accepted and fanned out before, and this step changed
    /// nothing.
    #[error("application message accepted before")]
    Repeated,
    /// The database failed.
    #[error("database: {0}")]
    Database(String),
    /// The store is closed or its writer stopped.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// A group slot as stored: a reservation (from `ds_request_group_id`) or an
/// active group. `version` increments with every committed step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredGroup {
    pub version: u64,
    /// Opaque core state; empty for a reservation.
    pub state: Vec<u8>,
    /// `Some(expiry)` (seconds since the Unix epoch) while only reserved.
    pub reserved_until: Option<u64>,
}

/// What a step does to the group slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupWrite {
    /// Leave the slot as it is (read-only steps that still enqueue nothing
    /// need no commit at all; this is for steps that only add messages).
    Keep,
    /// Write this state (and reservation expiry, if still only reserved).
    Put {
        state: Vec<u8>,
        reserved_until: Option<u64>,
    },
    /// Write a new state of an active group as the pages (of
    /// [`STATE_PAGE`] bytes) that differ from its stored state, which the
    /// step's `expected_version` names: what [`GroupWrite::patch`] computes.
    /// A commit changes a few tree nodes, so it rewrites a few pages instead
    /// of the whole state.
    Patch {
        /// Length of the new state.
        len: u64,
        /// (page number, the page's new bytes).
        pages: Vec<(u32, Vec<u8>)>,
    },
    /// Delete the group, its snapshots included.
    Delete,
}

/// Size of the pages a group's state is stored in. Close to SQLite's 4 KiB
/// database page, so that one rewritten state page costs about one database
/// page.
pub const STATE_PAGE: usize = 3840;

impl GroupWrite {
    /// The write turning the stored state `old` of an active group into
    /// `new`: only the pages of `new` that differ from `old`'s.
    pub fn patch(old: &[u8], new: &[u8]) -> GroupWrite {
        let mut old_pages = old.chunks(STATE_PAGE);
        let mut pages = Vec::new();
        for (index, page) in new.chunks(STATE_PAGE).enumerate() {
            if old_pages.next() == Some(page) {
                continue;
            }
            let Ok(index) = u32::try_from(index) else {
                // Beyond 16 TB: not a state anyone stores; write it whole.
                return GroupWrite::Put {
                    state: new.to_vec(),
                    reserved_until: None,
                };
            };
            pages.push((index, page.to_vec()));
        }
        GroupWrite::Patch {
            len: new.len() as u64,
            pages,
        }
    }
}

/// The tree and GroupInfo joiners of one epoch need (opaque to the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub epoch: u64,
    pub created_at: u64,
    pub data: Vec<u8>,
}

/// A message stored once, however many recipients it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage {
    pub message_id: [u8; 16],
    pub body: Vec<u8>,
}

/// One delivery job: a message for the recipients on one other
/// provider (the hub's own clients get theirs in the step, [`LocalDelivery`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    pub destination: String,
    pub message_id: [u8; 16],
    /// Encoded recipient list (opaque to the store).
    pub recipients: Vec<u8>,
}

/// A committed delivery job, as the delivery workers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub destination: String,
    pub message_id: [u8; 16],
    pub recipients: Vec<u8>,
    pub body: Vec<u8>,
    pub attempts: u32,
    pub created_at: u64,
}

/// A message of a step for clients of the hub's own provider: queued in the
/// step's own transaction, in the order of the steps, which is hub order,
/// for those of `recipients` that are in the provider's client directory
/// (the others are skipped, as a delivery skips unknown recipients). It
/// needs no delivery job, no `DeliverMessage` and no remembering: nothing
/// can repeat it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalDelivery {
    /// The hub's domain, as the sender of the queued message.
    pub hub: String,
    /// The `message_id` of the message in the queues.
    pub message_id: [u8; 16],
    pub group_id: Vec<u8>,
    pub epoch: u64,
    /// The `MLSMessage`.
    pub message: Vec<u8>,
    /// Local clients whose queues get the message.
    pub recipients: Vec<String>,
}

/// A delivery a guest accepted (`docs/protocol.md` 7): remembered by
/// `(sender, message_id)` with its body hash and answer, and stored once
/// for the set of its recipients, in one transaction: it is then in the
/// queue of each of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inbound {
    pub sender: String,
    pub message_id: [u8; 16],
    pub body_sha256: [u8; 32],
    /// The encoded answer, repeated to a repeat of the request.
    pub answer: Vec<u8>,
    pub group_id: Vec<u8>,
    pub epoch: u64,
    /// The delivered `MLSMessage`.
    pub message: Vec<u8>,
    /// Local clients whose queues get the message, in order.
    pub recipients: Vec<String>,
    pub now: u64,
}

/// The two kinds of KeyPackage a client publishes (`docs/protocol.md` 9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyPackageKind {
    /// For groups (`/group_key_packages`).
    Regular,
    /// Marked `mimi_connection_key_package`, for connection groups
    /// (`/connection_key_packages`).
    Connection,
}

impl KeyPackageKind {
    /// The value stored for the kind.
    pub fn code(self) -> i64 {
        match self {
            KeyPackageKind::Regular => 0,
            KeyPackageKind::Connection => 1,
        }
    }
}

/// A KeyPackage a client published, validated, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedKeyPackage {
    pub kind: KeyPackageKind,
    /// Handed out whenever no one-time package of its kind is left, and
    /// kept; a one-time package is handed out once.
    pub last_resort: bool,
    /// End of its lifetime (seconds since the Unix epoch): never handed
    /// out after.
    pub not_after: u64,
    /// The bare RFC 9420 `KeyPackage`.
    pub key_package: Vec<u8>,
}

/// A user of this provider and its clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub user_id: String,
    pub created_at: u64,
    pub clients: Vec<String>,
}

/// How many KeyPackages of a kind a client has left to hand out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyPackageStock {
    /// Unexpired one-time packages not handed out yet.
    pub one_time: u64,
    /// Whether an unexpired last-resort package is there.
    pub last_resort: bool,
}

/// A connection request a user of this provider received (`docs/protocol.md`
/// 7), to store: remembered like a delivery, by `(sender, message_id)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundConnectionRequest {
    /// The initiator's provider.
    pub sender: String,
    pub message_id: [u8; 16],
    pub body_sha256: [u8; 32],
    /// The encoded answer, repeated to a repeat.
    pub answer: Vec<u8>,
    pub sender_user: String,
    pub recipient_user: String,
    pub group_id: Vec<u8>,
    pub epoch: u64,
    /// The Welcome into the connection group.
    pub welcome: Vec<u8>,
    pub now: u64,
}

/// A connection request waiting for its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionRequestEntry {
    pub id: i64,
    pub sender_user: String,
    pub group_id: Vec<u8>,
    pub epoch: u64,
    pub welcome: Vec<u8>,
    pub received_at: u64,
}

/// What a user does with a connection request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Connect: the requester may fetch the user's regular KeyPackages.
    Accept,
    /// Drop the request.
    Decline,
    /// Drop it and every request of the requester, and refuse later ones.
    Block,
}

/// What a guest remembers of an accepted delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remembered {
    pub body_sha256: Vec<u8>,
    pub answer: Vec<u8>,
}

/// One entry of a client's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// Position in the queue: increasing, not contiguous (the message's id
    /// in the provider's inbox, the same in every queue holding it).
    pub seq: u64,
    /// The hub that delivered it.
    pub sender: String,
    pub group_id: Vec<u8>,
    pub epoch: u64,
    pub message: Vec<u8>,
    pub received_at: u64,
}

/// An outbox job that could not be delivered, kept for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    /// The job as it was when it died (its `id` is the job's).
    pub job: Job,
    pub failed_at: u64,
    pub reason: String,
}

/// One destination's delivery jobs, for the operator's metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestinationBacklog {
    pub destination: String,
    /// Jobs not yet delivered (nor dead).
    pub jobs: u64,
    /// When its oldest job was committed (seconds since the Unix epoch).
    pub oldest_created_at: u64,
}

/// What the outbox holds, for the operator's metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Each destination with jobs, by name.
    pub destinations: Vec<DestinationBacklog>,
    /// Dead letters kept.
    pub dead_letters: u64,
}

/// An accepted application message, as a group remembers it: its epoch
/// and the SHA-256 of its `MLSMessage` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageDigest {
    pub epoch: u64,
    pub digest: [u8; 32],
}

/// The epochs of `range` a store holding signed 64-bit integers can have,
/// as the first and last of them (`None`: none).
pub(crate) fn storable_epochs(range: &std::ops::Range<u64>) -> Option<(i64, i64)> {
    let first = i64::try_from(range.start).ok()?;
    let last = i64::try_from(range.end.checked_sub(1)?).unwrap_or(i64::MAX);
    (first <= last).then_some((first, last))
}

/// Everything one core step writes, committed atomically.
///
/// A step carrying a value the store cannot hold (SQLite: a time, epoch,
/// expiry or length beyond `i64::MAX`) fails alone with
/// [`StoreError::Database`] naming it, and changes nothing. A
/// `prune_snapshots_before` beyond every storable time is not such a value:
/// every snapshot of the group was created before it; nor is a
/// `forget_digests` range reaching beyond every storable epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub group_id: Vec<u8>,
    /// `None`: the slot must not exist yet. `Some(v)`: it must be at `v`.
    pub expected_version: Option<u64>,
    pub write: GroupWrite,
    pub snapshot: Option<Snapshot>,
    /// Drop this group's snapshots created before this time.
    pub prune_snapshots_before: Option<u64>,
    pub messages: Vec<NewMessage>,
    pub jobs: Vec<NewJob>,
    /// Messages for the hub's own clients, queued with the step.
    pub local: Vec<LocalDelivery>,
    /// Remember this digest for the group, once: if it is remembered
    /// already, the step fails with [`StoreError::Repeated`] and changes
    /// nothing (checked after the version check, so a stale step still
    /// gets [`StoreError::Conflict`]). Of two such steps, in one batch or
    /// in two processes, exactly one is applied.
    pub remember: Option<MessageDigest>,
    /// Forget the group's digests of these epochs. A step's digest is
    /// remembered first, then the group's deletion (which forgets all its
    /// digests) and this apply. A commit forgets the epoch that leaves the
    /// accepted window, not everything below it: a range with no lower
    /// bound would make PostgreSQL walk the index entries of every epoch
    /// forgotten before, until vacuum removes them (4 ms a commit after
    /// 20,000 messages, `docs/performance.md`).
    pub forget_digests: Option<std::ops::Range<u64>>,
    /// Time of the step (seconds since the Unix epoch), for `created_at`.
    pub now: u64,
}

/// A queued step: resolves when the step is durable, or with why it is not.
pub struct Pending {
    answer: tokio::sync::oneshot::Receiver<Result<(), StoreError>>,
    /// Who applies queued writes when the caller waits (see [`Drive`]).
    driver: Option<std::sync::Arc<dyn Drive>>,
    /// Whether the caller has let other ready tasks run once (see `poll`).
    yielded: bool,
    answered: bool,
    /// The caller may apply the write on its own thread (see
    /// [`Pending::via_writer`]).
    may_drive: bool,
}

/// A store that may apply a waiting caller's write on the caller's own
/// thread: when the store is idle, the hand-off to a writer thread and back
/// costs more than a small transaction itself.
pub(crate) trait Drive: Send + Sync {
    /// Whether a caller would apply the queued writes itself now: a cheap
    /// look, so that a caller that would not never leaves its async
    /// context (moving a tokio worker's tasks to another thread costs a
    /// thread wake-up, and under load a new thread, every time).
    fn idle(&self) -> bool;
    /// Applies the queued writes here if that is the quickest way to an
    /// answer (blocking while it writes); else leaves them to the writer.
    fn drive(&self);
    /// Leaves the queued writes to the writer.
    fn hand_off(&self);
}

impl Pending {
    /// A step answered on `receiver` by a writer of its own.
    pub fn new(receiver: tokio::sync::oneshot::Receiver<Result<(), StoreError>>) -> Self {
        Pending {
            answer: receiver,
            driver: None,
            yielded: false,
            answered: false,
            may_drive: true,
        }
    }

    pub(crate) fn driven(
        receiver: tokio::sync::oneshot::Receiver<Result<(), StoreError>>,
        driver: std::sync::Arc<dyn Drive>,
    ) -> Self {
        Pending {
            answer: receiver,
            driver: Some(driver),
            yielded: false,
            answered: false,
            may_drive: true,
        }
    }

    /// Leaves the write to the store's own writer, never to the caller's
    /// thread: for a caller with company (other steps being computed
    /// beside it join the writer's transaction) or in no hurry. Applying a
    /// write on the caller's thread means leaving its async worker
    /// (`block_in_place`), which under concurrent load cost more than the
    /// two thread hand-offs it spares (`docs/performance.md`, issue 9).
    pub fn via_writer(mut self) -> Self {
        self.may_drive = false;
        self
    }

    /// Asks the store to apply the step now, though nobody waits for it
    /// yet: a step written ahead (e.g. a large message, while the step
    /// that delivers it is being computed).
    pub fn start(&self) {
        if let Some(driver) = &self.driver {
            driver.hand_off();
        }
    }

    fn answer(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), StoreError>> {
        let answer = std::pin::Pin::new(&mut self.answer).poll(cx).map(|answer| {
            answer.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "writer stopped before answering".into(),
                ))
            })
        });
        self.answered = answer.is_ready();
        answer
    }
}

/// Runs `f`, which blocks, on this thread; in a multi-threaded tokio
/// runtime the worker's other tasks move to another thread meanwhile.
pub(crate) fn run_blocking(f: impl FnOnce()) {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

impl Future for Pending {
    type Output = Result<(), StoreError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if let std::task::Poll::Ready(answer) = self.answer(cx) {
            return std::task::Poll::Ready(answer);
        }
        let Some(driver) = self.driver.clone() else {
            return std::task::Poll::Pending;
        };
        if !self.yielded {
            // Tasks ready to run now may be about to queue steps: let them
            // first, so that the store sees it is busy.
            self.yielded = true;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        if self.may_drive && driver.idle() {
            run_blocking(|| driver.drive());
        } else {
            driver.hand_off();
        }
        // Answered now, or by whoever is applying the queue (who wakes us).
        self.answer(cx)
    }
}

impl Drop for Pending {
    /// A step is applied even if nobody waits for it.
    fn drop(&mut self) {
        if let (false, Some(driver)) = (self.answered, &self.driver) {
            driver.hand_off();
        }
    }
}

/// The storage interface. Implementations must make a step atomic and
/// durable before its [`Pending`] resolves, must apply queued steps in the
/// order they were queued, and must reject a step whose `expected_version`
/// does not match (as left by the steps queued before it) with
/// [`StoreError::Conflict`], and one whose [`Step::remember`] digest the
/// group has already with [`StoreError::Repeated`], changing nothing.
pub trait Store: Send + Sync + 'static {
    /// Queues a step. Returns once it is queued (in order after every step
    /// queued before); the [`Pending`] resolves once it is durable. Queueing
    /// under a group's lock and waiting outside it lets several steps of one
    /// group share a transaction (group commit) without reordering them.
    fn enqueue(&self, step: Step) -> impl Future<Output = Result<Pending, StoreError>> + Send;

    /// [`Store::enqueue`] for a caller that cannot wait: a hook the hub's
    /// core calls from its own thread while it validates a commit
    /// (`mimid_core::Hub::handle_with`). It may block for back pressure,
    /// never for IO. A store that cannot queue without awaiting keeps this
    /// default, and its callers do without.
    fn enqueue_now(&self, step: Step) -> Result<Pending, StoreError> {
        drop(step);
        Err(StoreError::Unavailable(
            "this store queues steps only asynchronously".into(),
        ))
    }

    /// Queues a step and waits until it is durable.
    fn commit(&self, step: Step) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move { self.enqueue(step).await?.await }
    }

    fn load_group(
        &self,
        group_id: &[u8],
    ) -> impl Future<Output = Result<Option<StoredGroup>, StoreError>> + Send;

    /// The stored version of the group's slot (`None` if there is none),
    /// read without its state. A process that caches groups checks with it,
    /// before answering from its cache, that no other process sharing the
    /// database has committed a newer version. It sees every step whose
    /// [`Pending`] has resolved, in this process or another.
    fn group_version(
        &self,
        group_id: &[u8],
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// The joiner snapshot of `epoch`, if stored. The epoch may come from a
    /// peer: one the store cannot hold (SQLite: beyond `i64::MAX`) has no
    /// snapshot, so `Ok(None)`.
    fn load_snapshot(
        &self,
        group_id: &[u8],
        epoch: u64,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;

    /// Jobs for `destination`, oldest first.
    fn pending_jobs(
        &self,
        destination: &str,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Job>, StoreError>> + Send {
        self.pending_jobs_after(destination, 0, limit)
    }

    /// Jobs for `destination` with an id above `after`, oldest first: the
    /// outbox reads on from the last job it holds. Ids of one destination
    /// must become visible in increasing order (one writer commits them in
    /// order), or a reader past a later id would miss an earlier one until
    /// it reads from the start again.
    fn pending_jobs_after(
        &self,
        destination: &str,
        after: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Job>, StoreError>> + Send;

    /// Jobs for `destination` of the group `group_id` (MLS bytes) with ids
    /// from `from` to `to`, both included, oldest first: the outbox reads a
    /// group's jobs again that it had to leave unread.
    fn pending_group_jobs(
        &self,
        destination: &str,
        group_id: &[u8],
        from: i64,
        to: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Job>, StoreError>> + Send;

    /// Removes a delivered job (and its message once no job refers to it).
    fn complete_job(&self, id: i64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// [`Store::complete_job`] for several jobs, in as few transactions as
    /// the store can: the outbox completes what it delivered in batches.
    /// On an error some of them may be completed.
    fn complete_jobs(&self, ids: Vec<i64>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Drops group-id reservations that expired before `now` (seconds
    /// since the Unix epoch), in order with the steps queued before. A
    /// reservation nobody turned into a group would otherwise stay forever.
    /// A `now` beyond every storable time (SQLite: `i64::MAX`) drops them
    /// all.
    fn prune_reservations(&self, now: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Drops joiner snapshots created before `before`, in order with the
    /// steps queued before. A group's own steps prune its snapshots too, but
    /// a group that never commits again would keep them forever. A `before`
    /// beyond every storable time drops them all.
    fn prune_snapshots(&self, before: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Drops these messages unless a job refers to them, in order with the
    /// steps queued before: a message written ahead of the step meant to
    /// deliver it ([`Pending::start`]), when that step does not happen.
    fn discard_messages(
        &self,
        message_ids: Vec<[u8; 16]>,
    ) -> impl Future<Output = Result<Pending, StoreError>> + Send;

    /// Drops messages written before `before` that no job refers to: those
    /// written ahead of a step that never came (the process stopped in
    /// between). In order with the steps queued before. A `before` beyond
    /// every storable time drops all of them.
    fn prune_messages(&self, before: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets accepted deliveries received before `before` (a repeat of
    /// one after that is taken as new: keep them longer than any sender
    /// retries, `docs/protocol.md` 7). A `before` beyond every storable
    /// time forgets them all.
    fn prune_inbound(&self, before: u64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The destinations that have delivery jobs.
    fn job_destinations(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Records one more failed delivery attempt of a job.
    fn record_attempt(&self, job_id: i64) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Moves a job to the dead letters with why (its message goes with its
    /// last job, as for [`Store::complete_job`]). A job that does not exist
    /// (completed meanwhile) is left alone.
    fn dead_letter(
        &self,
        job_id: i64,
        reason: String,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The dead letters, oldest first.
    fn dead_letters(
        &self,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send;

    /// Adds a client of this provider to its directory (nothing if it is
    /// there already).
    fn add_client(
        &self,
        client_id: String,
        user_id: String,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// For each client id, whether the directory has it.
    fn known_clients(
        &self,
        client_ids: &[String],
    ) -> impl Future<Output = Result<Vec<bool>, StoreError>> + Send;

    /// The accepted delivery with this `(sender, message_id)`, if any.
    fn remembered(
        &self,
        sender: &str,
        message_id: [u8; 16],
    ) -> impl Future<Output = Result<Option<Remembered>, StoreError>> + Send;

    /// Queues accepted deliveries of one sender, in order, in one
    /// transaction: all or none. Fails with [`StoreError::Conflict`],
    /// changing nothing, if a delivery with one of their `(sender,
    /// message_id)` was accepted before (a repeat, or a concurrent one).
    fn deliver(
        &self,
        inbound: Vec<Inbound>,
    ) -> impl Future<Output = Result<Pending, StoreError>> + Send;

    /// Rings for a client once messages for it are durable in its queue
    /// (those this process stored).
    fn queue_bell(&self) -> &QueueBell;

    /// The client's queue after position `after` (and after what it
    /// acknowledged), oldest first.
    fn client_queue(
        &self,
        client_id: &str,
        after: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Queued>, StoreError>> + Send;

    /// Drops the client's queue entries up to and including `up_to`, never
    /// beyond the newest stored (a later message is not acknowledged by a
    /// larger `up_to`); a message goes once every queue holding it has
    /// dropped it.
    fn acknowledge(
        &self,
        client_id: String,
        up_to: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds a user of this provider; [`StoreError::Conflict`] if it is
    /// there already.
    fn add_user(
        &self,
        user_id: String,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes a user with its clients, their KeyPackages and its
    /// connections (nothing if there is no such user). What is queued for
    /// its clients goes as their queues are pruned.
    fn remove_user(&self, user_id: String) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The users with their clients, by user id.
    fn users(&self) -> impl Future<Output = Result<Vec<User>, StoreError>> + Send;

    /// The clients of a user, in ClientID order (none for an unknown user):
    /// the provider's client directory.
    fn clients_of_user(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Whether the user exists.
    fn user_exists(&self, user_id: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores KeyPackages a client published (checked by the caller).
    fn publish_key_packages(
        &self,
        client_id: String,
        packages: Vec<PublishedKeyPackage>,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Hands out one KeyPackage of `kind` for each client of `user_id`
    /// (only those in `clients`, if given, that are the user's), in one
    /// transaction: the oldest unexpired one-time package not handed out
    /// before, else the newest unexpired last-resort one; clients with
    /// neither are left out. A one-time package is handed out once, also
    /// to concurrent requests. `token` names the request (16 random bytes,
    /// never reused). Returns (client id, KeyPackage) by client id.
    fn claim_key_packages(
        &self,
        token: [u8; 16],
        user_id: String,
        kind: KeyPackageKind,
        clients: Option<Vec<String>>,
        now: u64,
    ) -> impl Future<Output = Result<Vec<(String, Vec<u8>)>, StoreError>> + Send;

    /// What a client has left to hand out of `kind` at `now`.
    fn key_package_stock(
        &self,
        client_id: &str,
        kind: KeyPackageKind,
        now: u64,
    ) -> impl Future<Output = Result<KeyPackageStock, StoreError>> + Send;

    /// Drops KeyPackages that expired before `now`, and one-time packages
    /// handed out (with the record of who got what) before `claimed_before`.
    fn prune_key_packages(
        &self,
        now: u64,
        claimed_before: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records that `user_id` (of this provider) accepted a connection with
    /// `peer`, or asked for one (nothing if recorded already).
    fn add_connection(
        &self,
        user_id: String,
        peer: String,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records a one-time enrolment secret (by its SHA-256) for a client
    /// of `user_id`, good until `expires_at`.
    fn add_enrolment(
        &self,
        secret_sha256: [u8; 32],
        user_id: String,
        expires_at: u64,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Spends an enrolment secret on a new client of its user, known from
    /// then on by `public_key`, in one transaction. Fails with
    /// [`StoreError::Conflict`], changing nothing, if the secret is unknown,
    /// spent or expired at `now`, if `client_id` is not of the secret's
    /// user, or if the client exists.
    fn enrol_client(
        &self,
        secret_sha256: [u8; 32],
        client_id: String,
        user_id: String,
        public_key: Vec<u8>,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The request signing key of a client of the client API.
    fn client_key(
        &self,
        client_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Stores a connection request for every client of its recipient user
    /// to see. Fails with [`StoreError::Conflict`], changing nothing, if a
    /// delivery or request with its `(sender, message_id)` was accepted
    /// before.
    fn receive_connection_request(
        &self,
        request: InboundConnectionRequest,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The connection requests waiting for `user_id`, oldest first.
    fn connection_requests(
        &self,
        user_id: &str,
    ) -> impl Future<Output = Result<Vec<ConnectionRequestEntry>, StoreError>> + Send;

    /// Settles `user_id`'s connection request `id` ([`Decision`]); fails
    /// with [`StoreError::Conflict`], changing nothing, if the user has no
    /// such request.
    fn settle_connection_request(
        &self,
        user_id: String,
        id: i64,
        decision: Decision,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether `user_id` blocked `peer`.
    fn blocked(
        &self,
        user_id: &str,
        peer: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Whether `user_id` has a connection with `peer`.
    fn connected(
        &self,
        user_id: &str,
        peer: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Number of stored messages, for metrics and tests.
    fn message_count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Number of messages in this provider's client queues (each stored
    /// once, however many queues hold it), for metrics and tests.
    fn inbox_count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Number of group slots, for metrics and tests.
    fn group_count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Remembers the nonce of a verified provider-signed request from
    /// `sender` until `expires_at`; fails with [`StoreError::Conflict`] if
    /// it is remembered already (a replay). Each process keeps a replay
    /// cache of its own in memory; a store shared by several processes
    /// (PostgreSQL) remembers nonces for all of them, so that a request
    /// replayed to another process behind the same domain is refused too.
    /// A store used by one process only keeps the default, which records
    /// nothing: that process's own cache sees every request.
    fn remember_nonce(
        &self,
        sender: &str,
        nonce: [u8; 16],
        expires_at: u64,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (sender, nonce, expires_at, now);
        async { Ok(()) }
    }

    /// Forgets nonces that expired before `now`.
    fn prune_nonces(&self, now: u64) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = now;
        async { Ok(()) }
    }

    /// Takes, or renews, the lease on `destination`'s outbox for `owner`
    /// (an outbox of one process) until `until`: `true` if `owner` holds
    /// it now, `false` if another owner's lease runs at `now`. Of several
    /// processes sharing a store, only the lease holder sends a
    /// destination's jobs, so each job is sent by one process and in order.
    /// A store used by one process only keeps the default: its one outbox
    /// always holds every lease.
    fn lease_destination(
        &self,
        destination: &str,
        owner: &str,
        now: u64,
        until: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = (destination, owner, now, until);
        async { Ok(true) }
    }

    /// Gives up `owner`'s lease on `destination` (nothing if it holds none).
    fn release_destination(
        &self,
        destination: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = (destination, owner);
        async { Ok(()) }
    }

    /// Each destination's backlog (jobs and the oldest one's age) and the
    /// number of dead letters: read when `/metrics` is scraped, so it
    /// must cost an index scan at most.
    fn outbox_stats(&self) -> impl Future<Output = Result<OutboxStats, StoreError>> + Send;

    /// Records a redeemed Privacy Pass token (`docs/protocol.md` 3.6) by
    /// the key that signed it (its `token_key_id`) and its `nonce`; fails
    /// with [`StoreError::Conflict`], changing nothing, if that token was
    /// spent already. Kept in every backend: of the processes sharing a
    /// store, one spends a token and the others find it spent.
    fn spend_token(
        &self,
        token_key_id: [u8; 32],
        nonce: [u8; 32],
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
