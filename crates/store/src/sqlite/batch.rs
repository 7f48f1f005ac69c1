//! Batches: one transaction's worth of queued requests, applied with a
//! fixed handful of statements and with exactly the outcome of applying
//! each request on its own, in queue order. The writer decides what goes in
//! a transaction; this decides what the transaction does.

use std::collections::{BTreeSet, HashMap, HashSet};

use rusqlite::types::Value;

use super::plan::Plan;
use super::script::{LookupRow, Script, push_in};
use super::to_u64;
use super::writer::{Op, Request};
use super::{guest, people};
use crate::{Step, StoreError};

/// The outcome of each request of a batch, in the batch's order.
type Outcomes = Vec<Result<(), StoreError>>;

/// Applies `batch` in the transaction the writer began, and commits it.
/// `Err` means the transaction as a whole failed (and was rolled back): no
/// request of the batch took effect.
pub(super) fn run_batch(
    conn: &mut rusqlite::Connection,
    batch: &[Request],
) -> Result<Outcomes, String> {
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
            Op::CompleteJob(id) | Op::DeadLetter { job_id: id, .. } => Some(id),
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
            Op::PruneReservations(last)
            | Op::PruneSnapshots(last)
            | Op::PruneMessages(last)
            | Op::PruneInbound(last) => {
                // After the requests queued before it, before those after.
                std::mem::take(&mut sub).apply(conn, script, &mut outcomes)?;
                let (delete, tail) = match request.op {
                    Op::PruneReservations(_) => (
                        "DELETE FROM groups WHERE reserved_until IS NOT NULL AND reserved_until <= ",
                        "",
                    ),
                    Op::PruneSnapshots(_) => ("DELETE FROM snapshots WHERE created_at <= ", ""),
                    Op::PruneInbound(_) => ("DELETE FROM inbound WHERE received_at <= ", ""),
                    _ => ("DELETE FROM messages WHERE created_at <= ", UNREFERENCED),
                };
                script.statement().push(delete).push_bind(*last).push(tail);
                if let Op::PruneInbound(_) = request.op {
                    // Recipient sets as old, that no message refers to.
                    for delete in [
                        "DELETE FROM guest_set_members WHERE set_id IN (SELECT id FROM guest_sets",
                        "DELETE FROM guest_sets WHERE id IN (SELECT id FROM guest_sets",
                    ] {
                        script
                            .statement()
                            .push(delete)
                            .push(" s WHERE s.created_at <= ")
                            .push_bind(*last)
                            .push(
                                " AND NOT EXISTS \
                                 (SELECT 1 FROM inbox WHERE inbox.recipient_set = s.id))",
                            );
                    }
                }
            }
            Op::DeadLetter {
                job_id,
                reason,
                now,
            } => {
                // Unknown, or completed earlier in this batch: nothing to do.
                if let Some((message_id, recipient_set)) = to_complete.remove(job_id) {
                    // Copied before the sub-batch that deletes the job.
                    std::mem::take(&mut sub).apply(conn, script, &mut outcomes)?;
                    guest::dead_letter(script, *job_id, reason, *now);
                    sub.jobs.push(*job_id);
                    sub.messages.insert(message_id);
                    sub.recipient_sets.extend(recipient_set);
                }
            }
            Op::RecordAttempt(_)
            | Op::AddClient { .. }
            | Op::Deliver(_)
            | Op::Acknowledge { .. } => {
                // After the requests queued before it, before those after.
                std::mem::take(&mut sub).apply(conn, script, &mut outcomes)?;
                let outcome = guest::apply(conn, script, &request.op)?;
                if let Some(slot) = outcomes.get_mut(index) {
                    *slot = outcome;
                }
            }
            Op::AddUser { .. }
            | Op::RemoveUser(_)
            | Op::PublishKeyPackages { .. }
            | Op::ClaimKeyPackages { .. }
            | Op::PruneKeyPackages { .. }
            | Op::AddConnection { .. }
            | Op::AddEnrolment { .. }
            | Op::EnrolClient { .. }
            | Op::ReceiveConnectionRequest(_)
            | Op::SettleConnectionRequest { .. }
            | Op::SpendToken { .. } => {
                std::mem::take(&mut sub).apply(conn, script, &mut outcomes)?;
                let outcome = people::apply(conn, script, &request.op)?;
                if let Some(slot) = outcomes.get_mut(index) {
                    *slot = outcome;
                }
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
    let mut local = Vec::new();
    for &(index, step) in steps {
        let outcome = plan.add(conn, step, &stored, &mut known)?;
        if outcome.is_ok() {
            local.extend(step.local.iter().map(|l| (l, step.now)));
        }
        if let Some(slot) = outcomes.get_mut(index) {
            *slot = outcome;
        }
    }
    plan.write(script);
    guest::queue_local(conn, script, &local)
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
