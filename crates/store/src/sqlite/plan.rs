//! Plans: the steps of a sub-batch evaluated in memory, in order, against
//! the stored versions, each with exactly the outcome of committing it on
//! its own; then the net effect of those accepted, written with a fixed
//! number of multi-row statements. This is what makes a batch cost a
//! handful of statements whatever its size.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sha2::{Digest, Sha256};

use super::script::{MAX_TERMS_PER_DELETE, Script, push_in, push_values};
use super::{last_before, to_i64};
use crate::pages::{PageChange, PagePlan, page_count};
use crate::{GroupWrite, Step, StoreError, storable_epochs};

/// The net effect of the accepted steps of a sub-batch.
#[derive(Default)]
pub(super) struct Plan<'a> {
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

/// The effect of the accepted steps on one group's snapshots, applied in
/// step order: within a step, the group's deletion first, then the step's
/// snapshot, then its pruning.
#[derive(Default)]
struct SnapshotPlan<'a> {
    /// The group was deleted: every snapshot stored before the batch goes.
    cleared: bool,
    /// Otherwise, stored snapshots created at or before this go (the
    /// latest cutoff of the steps, from [`last_before`]).
    prune_through: Option<i64>,
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

    /// Prunes the snapshots created at or before `through`.
    fn prune(&mut self, through: i64) {
        let Self {
            cleared,
            prune_through,
            written,
            dropped,
        } = self;
        if !*cleared {
            *prune_through = Some(prune_through.map_or(through, |t| t.max(through)));
        }
        written.retain(|epoch, (created_at, _)| {
            let keep = *created_at > through;
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
    /// Created at or before this time.
    Through(&'a [u8], i64),
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
    /// Evaluates `step` after the steps added before it. On `Ok(Err(_))` (a
    /// version conflict, a repeated digest, or a step that cannot be stored)
    /// the step changes nothing; `Err` is a failure of the database, which
    /// fails the batch. The step's digests are remembered and forgotten
    /// on `conn` at once, in step order (see [`digests`]).
    pub(super) fn add(
        &mut self,
        conn: &rusqlite::Connection,
        step: &'a Step,
        stored: &HashMap<Vec<u8>, u64>,
        known_messages: &mut HashSet<Vec<u8>>,
    ) -> Result<Result<(), StoreError>, String> {
        let mut failed = None;
        let outcome = self.add_step(step, stored, known_messages, &mut |op| {
            digests(conn, op).map_err(|e| {
                let message = format!("batch: {e}");
                failed = Some(message.clone());
                StoreError::Database(message)
            })
        });
        match failed {
            Some(message) => Err(message),
            None => Ok(outcome),
        }
    }

    fn add_step(
        &mut self,
        step: &'a Step,
        stored: &HashMap<Vec<u8>, u64>,
        known_messages: &mut HashSet<Vec<u8>>,
        digests: &mut dyn FnMut(DigestOp<'_>) -> Result<bool, StoreError>,
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
        let now = to_i64(step.now, "step time")?;
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
                    version: to_i64(version, "version")?,
                    state_len: to_i64(state.len() as u64, "state length")?,
                    reserved_until: reserved_until
                        .map(|until| to_i64(until, "reservation expiry"))
                        .transpose()?,
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
                    version: to_i64(version, "version")?,
                    state_len: to_i64(*len, "state length")?,
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
            Some(s) => Some((
                to_i64(s.epoch, "snapshot epoch")?,
                to_i64(s.created_at, "snapshot time")?,
                s.data.as_slice(),
            )),
            None => None,
        };
        for local in &step.local {
            to_i64(local.epoch, "epoch of a local delivery")?;
        }
        // A cutoff beyond storable times prunes every snapshot.
        let prune = step.prune_snapshots_before.map(last_before);
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
        let remember = match &step.remember {
            Some(m) => Some((to_i64(m.epoch, "message epoch")?, &m.digest)),
            None => None,
        };
        let forget = step.forget_digests.as_ref().and_then(storable_epochs);
        // The last check, and the first change: nothing refuses the step
        // after it.
        if let Some((epoch, digest)) = remember
            && !digests(DigestOp::Remember(&step.group_id, epoch, digest))?
        {
            return Err(StoreError::Repeated);
        }

        group.version = version;
        if let Some(change) = pages {
            change.apply(&mut group.pages);
        }
        if let Some(write) = write {
            if matches!(write, FinalWrite::Delete) {
                group.snapshots.clear();
                digests(DigestOp::Forget(&step.group_id, None))?;
            }
            group.write = Some(write);
        }
        if let Some(epochs) = forget {
            digests(DigestOp::Forget(&step.group_id, Some(epochs)))?;
        }
        if let Some((epoch, created_at, data)) = snapshot {
            group.snapshots.write(epoch, created_at, data);
        }
        if let Some(through) = prune {
            group.snapshots.prune(through);
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
    pub(super) fn write(self, script: &mut Script<'a>) {
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
                if let Some(through) = plan.prune_through {
                    snapshot_deletes.push(SnapshotDelete::Through(group_id, through));
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
                    SnapshotDelete::Through(group_id, through) => {
                        terms
                            .push("(group_id = ")
                            .push_bind_unseparated(group_id)
                            .push_unseparated(" AND created_at <= ")
                            .push_bind_unseparated(through)
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

/// What a step does to its group's remembered digests.
pub(super) enum DigestOp<'s> {
    /// Remember this digest (group, epoch, digest): `false` if the group
    /// has it already.
    Remember(&'s [u8], i64, &'s [u8; 32]),
    /// Forget the group's digests of the epochs from the first to the last
    /// given (`None`: all of them).
    Forget(&'s [u8], Option<(i64, i64)>),
}

/// Applies a digest operation on the write connection at once, inside the
/// batch's transaction. Unlike the rest of a step, whose net effect the plan
/// writes at the end with multi-row statements, digests are written one by
/// one in step order: a repeat is then one primary-key insert that finds
/// the row (no lookup beforehand), and the statements are always the same
/// three, so they stay prepared. Nothing else touches `message_digests`,
/// so running these before the script's statements changes no outcome.
fn digests(conn: &rusqlite::Connection, op: DigestOp<'_>) -> rusqlite::Result<bool> {
    match op {
        DigestOp::Remember(group_id, epoch, digest) => conn
            .prepare_cached(
                "INSERT INTO message_digests (group_id, epoch, digest) VALUES (?1, ?2, ?3) \
                 ON CONFLICT DO NOTHING",
            )?
            .execute(rusqlite::params![group_id, epoch, &digest[..]])
            .map(|inserted| inserted == 1),
        DigestOp::Forget(group_id, Some((first, last))) => conn
            .prepare_cached(
                "DELETE FROM message_digests WHERE group_id = ?1 AND epoch BETWEEN ?2 AND ?3",
            )?
            .execute(rusqlite::params![group_id, first, last])
            .map(|_| true),
        DigestOp::Forget(group_id, None) => conn
            .prepare_cached("DELETE FROM message_digests WHERE group_id = ?1")?
            .execute(rusqlite::params![group_id])
            .map(|_| true),
    }
}
