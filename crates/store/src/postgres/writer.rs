//! The writer task: applies this process's queued steps, deliveries and
//! outbox bookkeeping in queue order, as many as are waiting in one
//! transaction (group commit).
//!
//! A transaction holds either steps and deliveries, or other requests, never
//! both: steps insert their jobs and inbox rows last (see [`Deferred`]), and
//! a request queued after them (a completion, an acknowledgement of sorts)
//! must see them. A request of the other kind ends the batch and starts the
//! next.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot};

use super::{QUEUE_CHANNEL, error, last_before, retryable, to_i64};
use crate::pages::{PageChange, page_count};
use crate::{GroupWrite, Inbound, QueueBell, STATE_PAGE, Step, StoreError, storable_epochs};

/// At most this many requests share one transaction.
const MAX_BATCH: usize = 256;

/// How often a transaction aborted by a deadlock or serialization conflict
/// with another process is run again before its requests get the error.
const ATTEMPTS: u32 = 5;

/// A write for the writer task. Steps are most of what is queued, so they
/// are kept inline: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub(super) enum Op {
    Commit(Step),
    Deliver(Vec<Inbound>),
    CompleteJobs(Vec<i64>),
    RecordAttempt(i64),
    DeadLetter {
        job_id: i64,
        reason: String,
        now: i64,
    },
    /// Drop reservations that expired at or before this time.
    PruneReservations(i64),
    /// Drop joiner snapshots created at or before this time.
    PruneSnapshots(i64),
    DiscardMessages(Vec<[u8; 16]>),
    /// Drop messages written at or before this time that no job refers to.
    PruneMessages(i64),
    /// Forget accepted deliveries received at or before this time.
    PruneInbound(i64),
}

impl Op {
    /// Whether the request inserts jobs or inbox rows at the end of its
    /// transaction.
    fn defers(&self) -> bool {
        matches!(self, Op::Commit(_) | Op::Deliver(_))
    }
}

pub(super) struct Request {
    pub op: Op,
    pub answer: oneshot::Sender<Result<(), StoreError>>,
}

/// Applies the queue until every sender is gone.
pub(super) async fn run(
    pool: PgPool,
    mut receiver: mpsc::Receiver<Request>,
    bell: Arc<QueueBell>,
    transactions: Arc<AtomicU64>,
) {
    let mut next: Option<Request> = None;
    loop {
        let first = match next.take() {
            Some(request) => request,
            None => match receiver.recv().await {
                Some(request) => request,
                None => return,
            },
        };
        let defers = first.op.defers();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(request) if request.op.defers() == defers => batch.push(request),
                Ok(request) => {
                    next = Some(request);
                    break;
                }
                Err(_) => break,
            }
        }
        let mut attempt = 1;
        let outcome = loop {
            match apply(&pool, &batch).await {
                Err(e) if retryable(&e) && attempt < ATTEMPTS => attempt += 1,
                other => break other,
            }
        };
        match outcome {
            Ok((outcomes, queued_for)) => {
                transactions.fetch_add(1, Ordering::Relaxed);
                bell.ring(queued_for.iter().map(String::as_str));
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = request.answer.send(outcome);
                }
            }
            Err(e) => {
                let e = error(e);
                for request in batch {
                    // (The message as it is: `to_string` would prefix
                    // "database: " once more.)
                    let _ = request.answer.send(Err(match &e {
                        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
                        StoreError::Database(m) => StoreError::Database(m.clone()),
                        StoreError::Conflict => StoreError::Conflict,
                        StoreError::Repeated => StoreError::Repeated,
                    }));
                }
            }
        }
    }
}

/// The outcome of each request of a batch, and the clients whose queues
/// gained messages.
type Applied = (Vec<Result<(), StoreError>>, Vec<String>);

/// Applies `batch` in one transaction. `Err`: the transaction failed as a
/// whole and changed nothing.
async fn apply(pool: &PgPool, batch: &[Request]) -> Result<Applied, sqlx::Error> {
    let started = std::time::Instant::now();
    let mut tx = pool.begin().await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut deferred = Deferred::default();
    for request in batch {
        let outcome = match &request.op {
            Op::Commit(step) => apply_step(&mut tx, step, &mut deferred).await?,
            Op::Deliver(inbound) => deliver(&mut tx, inbound, &mut deferred).await?,
            other => {
                apply_other(&mut tx, other).await?;
                Ok(())
            }
        };
        outcomes.push(outcome);
    }
    let queued_for = deferred.write(&mut tx).await?;
    tx.commit().await?;
    metrics::histogram!(crate::TRANSACTION_SECONDS, "backend" => "postgres")
        .record(started.elapsed().as_secs_f64());
    Ok((outcomes, queued_for))
}

/// What the accepted steps and deliveries of a transaction insert last, in
/// their order: see the module documentation of `postgres`.
#[derive(Default)]
struct Deferred<'a> {
    /// (destination, message id, recipients, created at).
    jobs: Vec<(&'a str, &'a [u8], &'a [u8], i64)>,
    inbox: Vec<InboxRow<'a>>,
}

struct InboxRow<'a> {
    sender: &'a str,
    message_id: &'a [u8],
    group_id: &'a [u8],
    epoch: i64,
    message: &'a [u8],
    received_at: i64,
    recipients: &'a [String],
    /// A step's delivery to the hub's own clients: only those of
    /// `recipients` in the directory get it.
    local: bool,
}

/// The advisory lock key of `name`: the first 8 bytes of its SHA-256.
fn lock_key(name: &str) -> i64 {
    let hash = Sha256::digest(name.as_bytes());
    let mut key = [0u8; 8];
    key.copy_from_slice(&hash[..8]);
    i64::from_be_bytes(key)
}

impl Deferred<'_> {
    /// Inserts the jobs and inbox rows under their advisory locks (taken
    /// in key order), and announces the clients whose queues gained
    /// messages. Returns those clients.
    async fn write(self, tx: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
        let mut keys: BTreeSet<i64> = self
            .jobs
            .iter()
            .map(|(destination, ..)| lock_key(&format!("mimid jobs {destination}")))
            .collect();
        if !self.inbox.is_empty() {
            keys.insert(lock_key("mimid inbox"));
        }
        for key in keys {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        if !self.jobs.is_empty() {
            let destinations: Vec<&str> = self.jobs.iter().map(|j| j.0).collect();
            let messages: Vec<&[u8]> = self.jobs.iter().map(|j| j.1).collect();
            let recipients: Vec<&[u8]> = self.jobs.iter().map(|j| j.2).collect();
            let times: Vec<i64> = self.jobs.iter().map(|j| j.3).collect();
            // Ids in the order of the steps.
            sqlx::query(
                "INSERT INTO jobs (destination, message_id, recipients, created_at) \
                 SELECT d, m, r, c FROM UNNEST($1::text[], $2::bytea[], $3::bytea[], $4::int8[]) \
                 WITH ORDINALITY AS t (d, m, r, c, n) ORDER BY n",
            )
            .bind(&destinations)
            .bind(&messages)
            .bind(&recipients)
            .bind(&times)
            .execute(&mut *tx)
            .await?;
        }
        if self.inbox.is_empty() {
            return Ok(Vec::new());
        }
        let named: BTreeSet<&str> = self
            .inbox
            .iter()
            .filter(|row| row.local)
            .flat_map(|row| row.recipients.iter().map(String::as_str))
            .collect();
        let known: BTreeSet<String> = if named.is_empty() {
            BTreeSet::new()
        } else {
            let named: Vec<&str> = named.into_iter().collect();
            sqlx::query_scalar("SELECT client_id FROM clients WHERE client_id = ANY($1)")
                .bind(&named)
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect()
        };
        let mut queued_for: BTreeSet<String> = BTreeSet::new();
        for row in &self.inbox {
            let recipients: Vec<&str> = row
                .recipients
                .iter()
                .map(String::as_str)
                .filter(|c| !row.local || known.contains(*c))
                .collect();
            if recipients.is_empty() {
                continue;
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO inbox (sender, message_id, group_id, epoch, message, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(row.sender)
            .bind(row.message_id)
            .bind(row.group_id)
            .bind(row.epoch)
            .bind(row.message)
            .bind(row.received_at)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO client_queue (client_id, inbox_id) \
                 SELECT c, $2 FROM UNNEST($1::text[]) AS t (c) ON CONFLICT DO NOTHING",
            )
            .bind(&recipients)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            queued_for.extend(recipients.iter().map(|c| (*c).to_owned()));
        }
        // Delivered on commit to every process listening (this one too);
        // a payload holds at most 8000 bytes.
        let mut payload = String::new();
        for client in &queued_for {
            if !payload.is_empty() && payload.len() + client.len() + 1 > 7900 {
                notify(tx, &payload).await?;
                payload.clear();
            }
            if client.len() < 7900 {
                payload.push_str(client);
                payload.push('\n');
            }
        }
        if !payload.is_empty() {
            notify(tx, &payload).await?;
        }
        Ok(queued_for.into_iter().collect())
    }
}

async fn notify(tx: &mut PgConnection, payload: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(QUEUE_CHANNEL)
        .bind(payload)
        .execute(tx)
        .await
        .map(|_| ())
}

/// The values of a step as `bigint`s, checked before anything changes.
struct Checked {
    now: i64,
    /// The version the step leaves (if it writes the slot).
    next_version: Option<i64>,
    state_len: Option<i64>,
    reserved_until: Option<i64>,
    snapshot: Option<(i64, i64)>,
    local_epochs: Vec<i64>,
    /// The epoch of the digest remembered.
    remember_epoch: Option<i64>,
}

fn check(step: &Step) -> Result<Checked, StoreError> {
    let now = to_i64(step.now, "step time")?;
    let next_version = match step.expected_version {
        None => 1,
        Some(v) => {
            let next = v.checked_add(1).ok_or_else(|| {
                StoreError::Database(format!("version {v} cannot be incremented"))
            })?;
            to_i64(next, "version")?
        }
    };
    let (next_version, state_len, reserved_until, change) = match &step.write {
        GroupWrite::Keep => (None, None, None, None),
        GroupWrite::Put {
            state,
            reserved_until,
        } => (
            Some(next_version),
            Some(to_i64(state.len() as u64, "state length")?),
            reserved_until
                .map(|until| to_i64(until, "reservation expiry"))
                .transpose()?,
            Some(PageChange::Replace(state)),
        ),
        GroupWrite::Patch { len, pages } => (
            Some(next_version),
            Some(to_i64(*len, "state length")?),
            None,
            Some(PageChange::Patch(*len, pages)),
        ),
        GroupWrite::Delete => (None, None, None, None),
    };
    if let Some(change) = change {
        change.check()?;
    }
    let snapshot = step
        .snapshot
        .as_ref()
        .map(|s| {
            Ok::<_, StoreError>((
                to_i64(s.epoch, "snapshot epoch")?,
                to_i64(s.created_at, "snapshot time")?,
            ))
        })
        .transpose()?;
    let local_epochs = step
        .local
        .iter()
        .map(|l| to_i64(l.epoch, "epoch of a local delivery"))
        .collect::<Result<_, _>>()?;
    let remember_epoch = step
        .remember
        .map(|m| to_i64(m.epoch, "message epoch"))
        .transpose()?;
    Ok(Checked {
        now,
        next_version,
        state_len,
        reserved_until,
        snapshot,
        local_epochs,
        remember_epoch,
    })
}

/// Applies one step in the transaction: `Ok(Err(_))` if it conflicts or
/// cannot be stored, having changed nothing.
async fn apply_step<'a>(
    tx: &mut PgConnection,
    step: &'a Step,
    deferred: &mut Deferred<'a>,
) -> Result<Result<(), StoreError>, sqlx::Error> {
    let checked = match check(step) {
        Ok(checked) => checked,
        Err(e) => return Ok(Err(e)),
    };
    // Messages the jobs refer to without the step carrying them must exist;
    // `FOR KEY SHARE` keeps them from going before this commits.
    let referred: BTreeSet<&[u8]> = step
        .jobs
        .iter()
        .filter(|job| !step.messages.iter().any(|m| m.message_id == job.message_id))
        .map(|job| &job.message_id[..])
        .collect();
    if !referred.is_empty() {
        let referred: Vec<&[u8]> = referred.into_iter().collect();
        let found: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT message_id FROM messages WHERE message_id = ANY($1) FOR KEY SHARE",
        )
        .bind(&referred)
        .fetch_all(&mut *tx)
        .await?;
        if let Some(missing) = referred.iter().find(|m| !found.iter().any(|f| f == *m)) {
            let destination = step
                .jobs
                .iter()
                .find(|j| j.message_id[..] == **missing)
                .map_or("", |j| j.destination.as_str());
            return Ok(Err(StoreError::Database(format!(
                "FOREIGN KEY constraint failed: a job for {destination} refers to a message \
                 that does not exist"
            ))));
        }
    }

    let group = step.group_id.as_slice();
    // A step that writes the slot before its digest is looked at can take
    // the write back (no step of the hub's does both).
    let undoable = step.remember.is_some() && !matches!(step.write, GroupWrite::Keep);
    if undoable {
        sqlx::query("SAVEPOINT remember").execute(&mut *tx).await?;
    }
    let expected = match step.expected_version {
        Some(v) => match i64::try_from(v) {
            Ok(v) => Some(v),
            // No stored version is that large.
            Err(_) => return Ok(Err(StoreError::Conflict)),
        },
        None => None,
    };
    // An application message's step (it only adds messages to a group):
    // the version check and the digest in one statement, so that it costs
    // no round trip more than a step without a digest.
    let combined = match (
        &step.write,
        expected,
        &step.remember,
        checked.remember_epoch,
    ) {
        (GroupWrite::Keep, Some(v), Some(remember), Some(epoch)) => Some((v, remember, epoch)),
        _ => None,
    };
    if let Some((v, remember, epoch)) = combined {
        // A digest another process is inserting right now makes this wait
        // for that transaction, then find it (or insert it, if that one
        // rolls back): of the two steps exactly one is applied.
        let (stored, inserted): (Option<i64>, i64) = sqlx::query_as(
            "WITH slot AS (SELECT version FROM groups WHERE group_id = $1 FOR SHARE), \
                  remembered AS (INSERT INTO message_digests (group_id, epoch, digest) \
                      SELECT $1, $2, $3 FROM slot WHERE version = $4 \
                      ON CONFLICT DO NOTHING RETURNING 1) \
             SELECT (SELECT version FROM slot), (SELECT count(*) FROM remembered)",
        )
        .bind(group)
        .bind(epoch)
        .bind(&remember.digest[..])
        .bind(v)
        .fetch_one(&mut *tx)
        .await?;
        if stored != Some(v) {
            return Ok(Err(StoreError::Conflict));
        }
        if inserted == 0 {
            return Ok(Err(StoreError::Repeated));
        }
    }
    let accepted = match (&step.write, expected) {
        // Checked, and the digest remembered, above.
        _ if combined.is_some() => true,
        (GroupWrite::Put { .. }, None) => {
            sqlx::query(
                "INSERT INTO groups (group_id, version, state_len, reserved_until, updated_at) \
             VALUES ($1, 1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(group)
            .bind(checked.state_len)
            .bind(checked.reserved_until)
            .bind(checked.now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        }
        (GroupWrite::Put { .. } | GroupWrite::Patch { .. }, Some(v)) => {
            sqlx::query(
                "UPDATE groups SET version = $2, state_len = $3, reserved_until = $4, \
             updated_at = $5 WHERE group_id = $1 AND version = $6",
            )
            .bind(group)
            .bind(checked.next_version)
            .bind(checked.state_len)
            .bind(checked.reserved_until)
            .bind(checked.now)
            .bind(v)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1
        }
        (GroupWrite::Delete, Some(v)) => {
            sqlx::query("DELETE FROM groups WHERE group_id = $1 AND version = $2")
                .bind(group)
                .bind(v)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1
        }
        (GroupWrite::Keep | GroupWrite::Delete | GroupWrite::Patch { .. }, expected) => {
            // The slot is only checked: held (`FOR SHARE`) so that it
            // cannot change before this commits.
            let stored: Option<i64> =
                sqlx::query_scalar("SELECT version FROM groups WHERE group_id = $1 FOR SHARE")
                    .bind(group)
                    .fetch_optional(&mut *tx)
                    .await?;
            if stored == expected && matches!(step.write, GroupWrite::Patch { .. }) {
                return Ok(Err(StoreError::Database(
                    "a state patch needs a stored state".into(),
                )));
            }
            stored == expected
        }
    };
    if !accepted {
        if undoable {
            sqlx::query("RELEASE SAVEPOINT remember")
                .execute(&mut *tx)
                .await?;
        }
        return Ok(Err(StoreError::Conflict));
    }
    if let (None, Some(remember), Some(epoch)) = (combined, &step.remember, checked.remember_epoch)
    {
        // As in the combined statement above.
        let inserted = sqlx::query(
            "INSERT INTO message_digests (group_id, epoch, digest) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        )
        .bind(group)
        .bind(epoch)
        .bind(&remember.digest[..])
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            if undoable {
                sqlx::query("ROLLBACK TO SAVEPOINT remember")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("RELEASE SAVEPOINT remember")
                    .execute(&mut *tx)
                    .await?;
            }
            return Ok(Err(StoreError::Repeated));
        }
    }
    if undoable {
        sqlx::query("RELEASE SAVEPOINT remember")
            .execute(&mut *tx)
            .await?;
    }

    match &step.write {
        GroupWrite::Keep => {}
        GroupWrite::Put { state, .. } => {
            sqlx::query("DELETE FROM state_pages WHERE group_id = $1")
                .bind(group)
                .execute(&mut *tx)
                .await?;
            let pages: Vec<&[u8]> = state.chunks(STATE_PAGE).collect();
            write_pages(tx, group, (0..).zip(pages).collect()).await?;
        }
        GroupWrite::Patch { len, pages } => {
            let count = i64::try_from(page_count(*len)).unwrap_or(i64::MAX);
            sqlx::query("DELETE FROM state_pages WHERE group_id = $1 AND page >= $2")
                .bind(group)
                .bind(count)
                .execute(&mut *tx)
                .await?;
            let pages = pages
                .iter()
                .filter_map(|(page, data)| Some((i32::try_from(*page).ok()?, data.as_slice())))
                .collect();
            write_pages(tx, group, pages).await?;
        }
        GroupWrite::Delete => {
            for delete in [
                "DELETE FROM state_pages WHERE group_id = $1",
                "DELETE FROM snapshots WHERE group_id = $1",
                "DELETE FROM message_digests WHERE group_id = $1",
            ] {
                sqlx::query(delete).bind(group).execute(&mut *tx).await?;
            }
        }
    }
    if let (Some(snapshot), Some((epoch, created_at))) = (&step.snapshot, checked.snapshot) {
        sqlx::query(
            "INSERT INTO snapshots (group_id, epoch, created_at, data) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (group_id, epoch) DO UPDATE SET created_at = excluded.created_at, \
             data = excluded.data",
        )
        .bind(group)
        .bind(epoch)
        .bind(created_at)
        .bind(&snapshot.data)
        .execute(&mut *tx)
        .await?;
    }
    if let Some(before) = step.prune_snapshots_before {
        sqlx::query("DELETE FROM snapshots WHERE group_id = $1 AND created_at <= $2")
            .bind(group)
            .bind(last_before(before))
            .execute(&mut *tx)
            .await?;
    }
    if let Some((first, last)) = step.forget_digests.as_ref().and_then(storable_epochs) {
        sqlx::query("DELETE FROM message_digests WHERE group_id = $1 AND epoch BETWEEN $2 AND $3")
            .bind(group)
            .bind(first)
            .bind(last)
            .execute(&mut *tx)
            .await?;
    }
    if !step.messages.is_empty() {
        // A message stored already (a retried step) is kept as it is, but
        // locked until this commits (`DO UPDATE ... WHERE false` locks the
        // row it leaves alone; `DO NOTHING` would not): otherwise another
        // process completing its last job could delete it before this
        // step's jobs refer to it, failing this whole transaction on the
        // jobs' foreign key. Sorted and without repeats: two processes lock
        // in one order, and a statement may lock a row it inserted only
        // once.
        let mut messages: Vec<_> = step.messages.iter().collect();
        messages.sort_by_key(|m| m.message_id);
        messages.dedup_by_key(|m| m.message_id);
        let ids: Vec<&[u8]> = messages.iter().map(|m| &m.message_id[..]).collect();
        let bodies: Vec<&[u8]> = messages.iter().map(|m| m.body.as_slice()).collect();
        sqlx::query(
            "INSERT INTO messages (message_id, group_id, body, created_at) \
             SELECT m, $3, b, $4 FROM UNNEST($1::bytea[], $2::bytea[]) AS t (m, b) \
             ON CONFLICT (message_id) DO UPDATE SET body = messages.body WHERE false",
        )
        .bind(&ids)
        .bind(&bodies)
        .bind(group)
        .bind(checked.now)
        .execute(&mut *tx)
        .await?;
    }
    for job in &step.jobs {
        deferred.jobs.push((
            &job.destination,
            &job.message_id,
            &job.recipients,
            checked.now,
        ));
    }
    for (local, epoch) in step.local.iter().zip(checked.local_epochs) {
        deferred.inbox.push(InboxRow {
            sender: &local.hub,
            message_id: &local.message_id,
            group_id: &local.group_id,
            epoch,
            message: &local.message,
            received_at: checked.now,
            recipients: &local.recipients,
            local: true,
        });
    }
    Ok(Ok(()))
}

/// Writes (or overwrites) pages of a group's state.
async fn write_pages(
    tx: &mut PgConnection,
    group: &[u8],
    pages: Vec<(i32, &[u8])>,
) -> Result<(), sqlx::Error> {
    if pages.is_empty() {
        return Ok(());
    }
    let numbers: Vec<i32> = pages.iter().map(|p| p.0).collect();
    let data: Vec<&[u8]> = pages.iter().map(|p| p.1).collect();
    sqlx::query(
        "INSERT INTO state_pages (group_id, page, data) \
         SELECT $1, p, d FROM UNNEST($2::int4[], $3::bytea[]) AS t (p, d) \
         ON CONFLICT (group_id, page) DO UPDATE SET data = excluded.data",
    )
    .bind(group)
    .bind(&numbers)
    .bind(&data)
    .execute(tx)
    .await?;
    Ok(())
}

/// Remembers deliveries of one sender and queues their messages; if one of
/// their `(sender, message_id)` was accepted before (or is being accepted
/// by another process), changes nothing and answers `Conflict`.
async fn deliver<'a>(
    tx: &mut PgConnection,
    inbound: &'a [Inbound],
    deferred: &mut Deferred<'a>,
) -> Result<Result<(), StoreError>, sqlx::Error> {
    let mut rows = Vec::with_capacity(inbound.len());
    for i in inbound {
        match (to_i64(i.now, "time"), to_i64(i.epoch, "epoch")) {
            (Ok(now), Ok(epoch)) => rows.push((i, now, epoch)),
            (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
        }
    }
    sqlx::query("SAVEPOINT deliver").execute(&mut *tx).await?;
    for &(i, now, _) in &rows {
        let inserted = sqlx::query(
            "INSERT INTO inbound (sender, message_id, body_sha256, answer, received_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&i.sender)
        .bind(&i.message_id[..])
        .bind(&i.body_sha256[..])
        .bind(&i.answer)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            sqlx::query("ROLLBACK TO SAVEPOINT deliver")
                .execute(&mut *tx)
                .await?;
            return Ok(Err(StoreError::Conflict));
        }
    }
    sqlx::query("RELEASE SAVEPOINT deliver")
        .execute(&mut *tx)
        .await?;
    for (i, now, epoch) in rows {
        deferred.inbox.push(InboxRow {
            sender: &i.sender,
            message_id: &i.message_id,
            group_id: &i.group_id,
            epoch,
            message: &i.message,
            received_at: now,
            recipients: &i.recipients,
            local: false,
        });
    }
    Ok(Ok(()))
}

/// The condition, in a `DELETE FROM messages`, that no job refers to the
/// message.
const UNREFERENCED: &str =
    "NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.message_id = messages.message_id)";

/// Deletes those of the messages `ids` that no job refers to. They are
/// locked first and looked at in a statement of its own, after the locks:
/// a step of another process that refers to one of them holds it (`FOR KEY
/// SHARE`) until its job is committed, and one look before that commit
/// would delete the message under the job, failing this transaction on the
/// jobs' foreign key.
async fn drop_unreferenced(
    tx: &mut PgConnection,
    mut ids: Vec<Vec<u8>>,
) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    ids.sort_unstable();
    ids.dedup();
    sqlx::query("SELECT 1 FROM messages WHERE message_id = ANY($1) ORDER BY message_id FOR UPDATE")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM messages WHERE message_id = ANY($1) AND {UNREFERENCED}"
    )))
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Applies a request that is not a step or a delivery.
async fn apply_other(tx: &mut PgConnection, op: &Op) -> Result<(), sqlx::Error> {
    match op {
        Op::Commit(_) | Op::Deliver(_) => {}
        Op::CompleteJobs(ids) => complete(tx, ids).await?,
        Op::RecordAttempt(id) => {
            sqlx::query("UPDATE jobs SET attempts = attempts + 1 WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        Op::DeadLetter {
            job_id,
            reason,
            now,
        } => {
            sqlx::query(
                "INSERT INTO dead_letters \
                 (job_id, destination, message_id, recipients, body, attempts, created_at, \
                  failed_at, reason) \
                 SELECT j.id, j.destination, j.message_id, j.recipients, m.body, j.attempts, \
                        j.created_at, $2, $3 \
                 FROM jobs j JOIN messages m ON m.message_id = j.message_id WHERE j.id = $1",
            )
            .bind(job_id)
            .bind(now)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            complete(tx, &[*job_id]).await?;
        }
        Op::PruneReservations(last) => {
            sqlx::query(
                "DELETE FROM groups WHERE reserved_until IS NOT NULL AND reserved_until <= $1",
            )
            .bind(last)
            .execute(&mut *tx)
            .await?;
        }
        Op::PruneSnapshots(last) => {
            sqlx::query("DELETE FROM snapshots WHERE created_at <= $1")
                .bind(last)
                .execute(&mut *tx)
                .await?;
        }
        Op::DiscardMessages(ids) => {
            let ids: Vec<Vec<u8>> = ids.iter().map(|id| id.to_vec()).collect();
            drop_unreferenced(tx, ids).await?;
        }
        Op::PruneMessages(last) => {
            let ids: Vec<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT message_id FROM messages WHERE created_at <= $1 AND {UNREFERENCED}"
            )))
            .bind(last)
            .fetch_all(&mut *tx)
            .await?;
            drop_unreferenced(tx, ids).await?;
        }
        Op::PruneInbound(last) => {
            sqlx::query("DELETE FROM inbound WHERE received_at <= $1")
                .bind(last)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

/// Removes jobs, and their messages once no job refers to them. The
/// messages are locked before the look, so that two processes completing
/// the last two jobs of one message cannot both leave it.
async fn complete(tx: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    let mut messages: Vec<Vec<u8>> =
        sqlx::query_scalar("DELETE FROM jobs WHERE id = ANY($1) RETURNING message_id")
            .bind(ids)
            .fetch_all(&mut *tx)
            .await?;
    if messages.is_empty() {
        return Ok(());
    }
    messages.sort_unstable();
    messages.dedup();
    sqlx::query("SELECT 1 FROM messages WHERE message_id = ANY($1) ORDER BY message_id FOR UPDATE")
        .bind(&messages)
        .execute(&mut *tx)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM messages WHERE message_id = ANY($1) AND {UNREFERENCED}"
    )))
    .bind(&messages)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
