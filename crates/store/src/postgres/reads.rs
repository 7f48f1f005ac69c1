//! Reads, on the pool: they see every step whose
//! [`Pending`](crate::Pending) has resolved, in this process or another.

use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

use super::{error, to_u64};
use crate::{DeadLetter, Job, Queued, Remembered, Snapshot, StoreError, StoredGroup};

/// [`Store::load_group`](crate::Store::load_group).
pub(super) async fn load_group(
    pool: &PgPool,
    group_id: &[u8],
) -> Result<Option<StoredGroup>, StoreError> {
    // One statement, so the row and its pages come from one snapshot.
    let rows = sqlx::query(
        "SELECT g.version, g.reserved_until, g.state_len, p.data \
         FROM groups g LEFT JOIN state_pages p ON p.group_id = g.group_id \
         WHERE g.group_id = $1 ORDER BY p.page",
    )
    .bind(group_id)
    .fetch_all(pool)
    .await
    .map_err(error)?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let len: i64 = first.try_get("state_len").map_err(error)?;
    let len = usize::try_from(len)
        .map_err(|_| StoreError::Database(format!("stored state length {len} is out of range")))?;
    let mut state = Vec::with_capacity(len);
    for row in &rows {
        if let Some(page) = row.try_get::<Option<&[u8]>, _>("data").map_err(error)? {
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
            .map_err(error)?
            .map(to_u64)
            .transpose()?,
    }))
}

/// [`Store::group_version`](crate::Store::group_version).
pub(super) async fn group_version(
    pool: &PgPool,
    group_id: &[u8],
) -> Result<Option<u64>, StoreError> {
    let version: Option<i64> = sqlx::query_scalar("SELECT version FROM groups WHERE group_id = $1")
        .bind(group_id)
        .fetch_optional(pool)
        .await
        .map_err(error)?;
    version.map(to_u64).transpose()
}

/// [`Store::load_snapshot`](crate::Store::load_snapshot): an epoch beyond
/// `i64::MAX` has no snapshot.
pub(super) async fn load_snapshot(
    pool: &PgPool,
    group_id: &[u8],
    epoch: u64,
) -> Result<Option<Snapshot>, StoreError> {
    let Ok(stored_epoch) = i64::try_from(epoch) else {
        return Ok(None);
    };
    let row =
        sqlx::query("SELECT created_at, data FROM snapshots WHERE group_id = $1 AND epoch = $2")
            .bind(group_id)
            .bind(stored_epoch)
            .fetch_optional(pool)
            .await
            .map_err(error)?;
    row.map(|row| {
        Ok(Snapshot {
            epoch,
            created_at: get_u64(&row, "created_at")?,
            data: row.try_get("data").map_err(error)?,
        })
    })
    .transpose()
}

/// [`Store::pending_jobs_after`](crate::Store::pending_jobs_after) and
/// [`Store::pending_group_jobs`](crate::Store::pending_group_jobs).
pub(super) async fn pending_jobs(
    pool: &PgPool,
    destination: &str,
    group_id: Option<&[u8]>,
    from: i64,
    to: i64,
    limit: u32,
) -> Result<Vec<Job>, StoreError> {
    let rows = sqlx::query(
        "SELECT j.id, j.destination, j.message_id, j.recipients, m.body, j.attempts, \
                j.created_at \
         FROM jobs j JOIN messages m ON m.message_id = j.message_id \
         WHERE j.destination = $1 AND j.id >= $2 AND j.id <= $3 \
               AND ($4::bytea IS NULL OR m.group_id = $4) \
         ORDER BY j.id LIMIT $5",
    )
    .bind(destination)
    .bind(from)
    .bind(to)
    .bind(group_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(error)?;
    rows.iter().map(job_from_row).collect()
}

/// [`Store::job_destinations`](crate::Store::job_destinations).
pub(super) async fn job_destinations(pool: &PgPool) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar("SELECT DISTINCT destination FROM jobs")
        .fetch_all(pool)
        .await
        .map_err(error)
}

/// [`Store::outbox_stats`](crate::Store::outbox_stats): one walk of the
/// `(destination, id)` index, then the oldest job of each destination by
/// id (ids become visible in order), and the dead letters' count.
pub(super) async fn outbox_stats(pool: &PgPool) -> Result<crate::OutboxStats, StoreError> {
    let rows = sqlx::query(
        "SELECT d.destination, d.jobs, j.created_at \
         FROM (SELECT destination, COUNT(*) AS jobs, MIN(id) AS first \
               FROM jobs GROUP BY destination) d \
         JOIN jobs j ON j.id = d.first \
         ORDER BY d.destination",
    )
    .fetch_all(pool)
    .await
    .map_err(error)?;
    let destinations = rows
        .iter()
        .map(|row| {
            Ok(crate::DestinationBacklog {
                destination: row.try_get("destination").map_err(error)?,
                jobs: get_u64(row, "jobs")?,
                oldest_created_at: get_u64(row, "created_at")?,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(crate::OutboxStats {
        destinations,
        dead_letters: count(pool, "SELECT COUNT(*) FROM dead_letters").await?,
    })
}

/// [`Store::dead_letters`](crate::Store::dead_letters).
pub(super) async fn dead_letters(pool: &PgPool, limit: u32) -> Result<Vec<DeadLetter>, StoreError> {
    let rows = sqlx::query(
        "SELECT id AS letter_id, job_id AS id, destination, message_id, recipients, body, \
                attempts, created_at, failed_at, reason \
         FROM dead_letters ORDER BY id LIMIT $1",
    )
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(error)?;
    rows.iter()
        .map(|row| {
            Ok(DeadLetter {
                id: row.try_get("letter_id").map_err(error)?,
                job: job_from_row(row)?,
                failed_at: get_u64(row, "failed_at")?,
                reason: row.try_get("reason").map_err(error)?,
            })
        })
        .collect()
}

/// [`Store::known_clients`](crate::Store::known_clients).
pub(super) async fn known_clients(
    pool: &PgPool,
    client_ids: &[String],
) -> Result<Vec<bool>, StoreError> {
    let found: std::collections::HashSet<String> =
        sqlx::query_scalar("SELECT client_id FROM clients WHERE client_id = ANY($1)")
            .bind(client_ids)
            .fetch_all(pool)
            .await
            .map_err(error)?
            .into_iter()
            .collect();
    Ok(client_ids.iter().map(|c| found.contains(c)).collect())
}

/// [`Store::remembered`](crate::Store::remembered).
pub(super) async fn remembered(
    pool: &PgPool,
    sender: &str,
    message_id: [u8; 16],
) -> Result<Option<Remembered>, StoreError> {
    let row = sqlx::query(
        "SELECT body_sha256, answer FROM inbound WHERE sender = $1 AND message_id = $2",
    )
    .bind(sender)
    .bind(&message_id[..])
    .fetch_optional(pool)
    .await
    .map_err(error)?;
    row.map(|row| {
        Ok(Remembered {
            body_sha256: row.try_get("body_sha256").map_err(error)?,
            answer: row.try_get("answer").map_err(error)?,
        })
    })
    .transpose()
}

/// [`Store::client_queue`](crate::Store::client_queue).
pub(super) async fn client_queue(
    pool: &PgPool,
    client_id: &str,
    after: u64,
    limit: u32,
) -> Result<Vec<Queued>, StoreError> {
    let Ok(after) = i64::try_from(after) else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query(
        "SELECT i.id AS seq, i.sender, i.group_id, i.epoch, i.message, i.received_at \
         FROM client_queue q JOIN inbox i ON i.id = q.inbox_id \
         WHERE q.client_id = $1 AND q.inbox_id > $2 ORDER BY q.inbox_id LIMIT $3",
    )
    .bind(client_id)
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(error)?;
    rows.iter()
        .map(|row| {
            Ok(Queued {
                seq: get_u64(row, "seq")?,
                sender: row.try_get("sender").map_err(error)?,
                group_id: row.try_get("group_id").map_err(error)?,
                epoch: get_u64(row, "epoch")?,
                message: row.try_get("message").map_err(error)?,
                received_at: get_u64(row, "received_at")?,
            })
        })
        .collect()
}

/// A count (`SELECT COUNT(*) ...`).
pub(super) async fn count(pool: &PgPool, sql: &'static str) -> Result<u64, StoreError> {
    let count: i64 = sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .map_err(error)?;
    to_u64(count)
}

fn job_from_row(row: &PgRow) -> Result<Job, StoreError> {
    let message_id: Vec<u8> = row.try_get("message_id").map_err(error)?;
    let message_id = <[u8; 16]>::try_from(message_id.as_slice()).map_err(|_| {
        StoreError::Database(format!(
            "stored message id has {} bytes, not 16",
            message_id.len()
        ))
    })?;
    let attempts: i32 = row.try_get("attempts").map_err(error)?;
    Ok(Job {
        id: row.try_get("id").map_err(error)?,
        destination: row.try_get("destination").map_err(error)?,
        message_id,
        recipients: row.try_get("recipients").map_err(error)?,
        body: row.try_get("body").map_err(error)?,
        attempts: u32::try_from(attempts).map_err(|_| {
            StoreError::Database(format!("stored attempts {attempts} out of range"))
        })?,
        created_at: get_u64(row, "created_at")?,
    })
}

pub(super) fn get_u64(row: &PgRow, column: &str) -> Result<u64, StoreError> {
    to_u64(row.try_get::<i64, _>(column).map_err(error)?)
}
