//! Reads: on the pool of `query_only` connections (sqlx), beside the writer
//! (WAL), so that reads never queue behind writes; they see every step
//! whose [`Pending`](crate::Pending) has resolved, and the commits of other
//! processes on the same file.

use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};

use super::inline::InlineReader;
use super::{db, to_u64};
use crate::{DeadLetter, Job, Queued, Remembered, Snapshot, StoreError, StoredGroup};

/// [`Store::load_group`](crate::Store::load_group).
pub(super) async fn load_group(
    readers: &SqlitePool,
    group_id: &[u8],
) -> Result<Option<StoredGroup>, StoreError> {
    // One statement, so the row and its pages come from one snapshot.
    let rows = sqlx::query(
        "SELECT g.version, g.reserved_until, g.state_len, p.data \
         FROM groups g LEFT JOIN state_pages p ON p.group_id = g.group_id \
         WHERE g.group_id = ?1 ORDER BY p.page",
    )
    .bind(group_id)
    .fetch_all(readers)
    .await
    .map_err(db)?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    // Every row has a length since schema version 3 (its migration set
    // it for the rows before).
    let len: i64 = first.try_get("state_len").map_err(db)?;
    let len = usize::try_from(len)
        .map_err(|_| StoreError::Database(format!("stored state length {len} is out of range")))?;
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

/// [`Store::group_version`](crate::Store::group_version): the version
/// column of the group's row, found through its primary key; the state's
/// pages are not read.
pub(super) async fn group_version(
    readers: &SqlitePool,
    group_id: &[u8],
) -> Result<Option<u64>, StoreError> {
    let version: Option<i64> = sqlx::query_scalar("SELECT version FROM groups WHERE group_id = ?1")
        .bind(group_id)
        .fetch_optional(readers)
        .await
        .map_err(db)?;
    version.map(to_u64).transpose()
}

/// [`Store::load_snapshot`](crate::Store::load_snapshot). An epoch beyond
/// `i64::MAX` cannot be stored, so it has no snapshot: `None`, not an error
/// (the epoch comes from a peer's request).
pub(super) async fn load_snapshot(
    readers: &SqlitePool,
    group_id: &[u8],
    epoch: u64,
) -> Result<Option<Snapshot>, StoreError> {
    let Ok(stored_epoch) = i64::try_from(epoch) else {
        return Ok(None);
    };
    let row =
        sqlx::query("SELECT created_at, data FROM snapshots WHERE group_id = ?1 AND epoch = ?2")
            .bind(group_id)
            .bind(stored_epoch)
            .fetch_optional(readers)
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

/// [`Store::pending_jobs_after`](crate::Store::pending_jobs_after) (all
/// groups: `group_id` `None`, `to` `i64::MAX`) and
/// [`Store::pending_group_jobs`](crate::Store::pending_group_jobs): a walk
/// of the destination's jobs with ids from `from` to `to` (the index on
/// `(destination, id)`), keeping those of `group_id` if given.
pub(super) async fn pending_jobs(
    readers: &SqlitePool,
    destination: &str,
    group_id: Option<&[u8]>,
    from: i64,
    to: i64,
    limit: u32,
) -> Result<Vec<Job>, StoreError> {
    let rows = sqlx::query(
        "SELECT j.id, j.destination, j.message_id, \
                COALESCE(rs.recipients, j.recipients) AS recipients, m.body, j.attempts, \
                j.created_at \
         FROM jobs j JOIN messages m ON m.message_id = j.message_id \
         LEFT JOIN recipient_sets rs ON rs.hash = j.recipient_set \
         WHERE j.destination = ?1 AND j.id >= ?2 AND j.id <= ?3 \
               AND (?4 IS NULL OR m.group_id = ?4) \
         ORDER BY j.id \
         LIMIT ?5",
    )
    .bind(destination)
    .bind(from)
    .bind(to)
    .bind(group_id)
    .bind(i64::from(limit))
    .fetch_all(readers)
    .await
    .map_err(db)?;
    rows.iter().map(job_from_row).collect()
}

/// [`Store::job_destinations`](crate::Store::job_destinations): the
/// distinct values of the index on `(destination, id)`.
pub(super) async fn job_destinations(readers: &SqlitePool) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar("SELECT DISTINCT destination FROM jobs")
        .fetch_all(readers)
        .await
        .map_err(db)
}

/// [`Store::outbox_stats`](crate::Store::outbox_stats): one walk of the
/// `(destination, id)` index, then the oldest job of each destination by
/// id (ids grow in commit order), and the dead letters' count.
pub(super) async fn outbox_stats(readers: &SqlitePool) -> Result<crate::OutboxStats, StoreError> {
    let rows = sqlx::query(
        "SELECT d.destination, d.jobs, j.created_at \
         FROM (SELECT destination, COUNT(*) AS jobs, MIN(id) AS first \
               FROM jobs GROUP BY destination) d \
         JOIN jobs j ON j.id = d.first \
         ORDER BY d.destination",
    )
    .fetch_all(readers)
    .await
    .map_err(db)?;
    let destinations = rows
        .iter()
        .map(|row| {
            Ok(crate::DestinationBacklog {
                destination: row.try_get("destination").map_err(db)?,
                jobs: get_u64(row, "jobs")?,
                oldest_created_at: get_u64(row, "created_at")?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(crate::OutboxStats {
        destinations,
        dead_letters: count(readers, "dead_letters").await?,
    })
}

/// [`Store::dead_letters`](crate::Store::dead_letters).
pub(super) async fn dead_letters(
    readers: &SqlitePool,
    limit: u32,
) -> Result<Vec<DeadLetter>, StoreError> {
    let rows = sqlx::query(
        "SELECT id AS letter_id, job_id AS id, destination, message_id, recipients, body, \
                attempts, created_at, failed_at, reason \
         FROM dead_letters ORDER BY id LIMIT ?1",
    )
    .bind(i64::from(limit))
    .fetch_all(readers)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|row| {
            Ok(DeadLetter {
                id: row.try_get("letter_id").map_err(db)?,
                job: job_from_row(row)?,
                failed_at: get_u64(row, "failed_at")?,
                reason: row.try_get("reason").map_err(db)?,
            })
        })
        .collect()
}

/// [`Store::known_clients`](crate::Store::known_clients): one statement
/// per 500 clients (a delivery to a large group names hundreds), on the
/// caller's thread.
pub(super) fn known_clients(
    reader: &InlineReader,
    client_ids: &[String],
) -> Result<Vec<bool>, StoreError> {
    let mut found = std::collections::HashSet::new();
    for chunk in client_ids.chunks(500) {
        let list = vec!["?"; chunk.len()].join(", ");
        let sql = format!("SELECT client_id FROM clients WHERE client_id IN ({list})");
        reader.read(|conn| {
            let mut statement = conn.prepare_cached(&sql)?;
            let mut rows = statement.query(rusqlite::params_from_iter(chunk.iter()))?;
            while let Some(row) = rows.next()? {
                found.insert(row.get::<_, String>(0)?);
            }
            Ok(())
        })?;
    }
    Ok(client_ids.iter().map(|c| found.contains(c)).collect())
}

/// [`Store::remembered`](crate::Store::remembered), on the caller's thread.
pub(super) fn remembered(
    reader: &InlineReader,
    sender: &str,
    message_id: [u8; 16],
) -> Result<Option<Remembered>, StoreError> {
    reader.read(|conn| {
        let mut statement = conn.prepare_cached(
            "SELECT body_sha256, answer FROM inbound WHERE sender = ?1 AND message_id = ?2",
        )?;
        let mut rows = statement.query(rusqlite::params![sender, &message_id[..]])?;
        match rows.next()? {
            Some(row) => Ok(Some(Remembered {
                body_sha256: row.get(0)?,
                answer: row.get(1)?,
            })),
            None => Ok(None),
        }
    })
}

/// [`Store::client_queue`](crate::Store::client_queue).
pub(super) async fn client_queue(
    readers: &SqlitePool,
    client_id: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<Queued>, StoreError> {
    // Nothing is stored after a position beyond every storable one.
    let Ok(after) = i64::try_from(after) else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query(
        // The client's sets first (CROSS JOIN fixes the order), then each
        // set's messages after the position through `inbox_by_set`.
        "SELECT i.id AS seq, i.sender, i.group_id, i.epoch, i.message, i.received_at \
         FROM guest_set_members m CROSS JOIN inbox i ON i.recipient_set = m.set_id \
         WHERE m.client_id = ?1 \
           AND i.id > MAX(?2, COALESCE( \
               (SELECT acked FROM client_cursors WHERE client_id = ?1), 0)) \
         ORDER BY i.id LIMIT ?3",
    )
    .bind(client_id)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(readers)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|row| {
            Ok(Queued {
                seq: get_u64(row, "seq")?,
                sender: row.try_get("sender").map_err(db)?,
                group_id: row.try_get("group_id").map_err(db)?,
                epoch: get_u64(row, "epoch")?,
                message: row.try_get("message").map_err(db)?,
                received_at: get_u64(row, "received_at")?,
            })
        })
        .collect()
}

/// Rows in `table`.
pub(super) async fn count(readers: &SqlitePool, table: &'static str) -> Result<u64, StoreError> {
    let count: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(readers)
            .await
            .map_err(db)?;
    to_u64(count)
}

fn message_id_of(row: &SqliteRow) -> Result<[u8; 16], StoreError> {
    let message_id: Vec<u8> = row.try_get("message_id").map_err(db)?;
    <[u8; 16]>::try_from(message_id.as_slice()).map_err(|_| {
        StoreError::Database(format!(
            "stored message id has {} bytes, not 16",
            message_id.len()
        ))
    })
}

fn attempts_of(row: &SqliteRow) -> Result<u32, StoreError> {
    let attempts: i64 = row.try_get("attempts").map_err(db)?;
    u32::try_from(attempts)
        .map_err(|_| StoreError::Database(format!("stored attempts {attempts} out of range")))
}

fn job_from_row(row: &SqliteRow) -> Result<Job, StoreError> {
    Ok(Job {
        id: row.try_get("id").map_err(db)?,
        destination: row.try_get("destination").map_err(db)?,
        message_id: message_id_of(row)?,
        recipients: row.try_get("recipients").map_err(db)?,
        body: row.try_get("body").map_err(db)?,
        attempts: attempts_of(row)?,
        created_at: get_u64(row, "created_at")?,
    })
}

fn get_u64(row: &SqliteRow, column: &str) -> Result<u64, StoreError> {
    to_u64(row.try_get::<i64, _>(column).map_err(db)?)
}
