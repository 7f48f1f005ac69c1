//! The provider's people on PostgreSQL: users, clients, KeyPackages,
//! connections and queue acknowledgements. Each write is a transaction of
//! its own on the pool; races between processes are settled by row locks.

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool};

use super::reads::get_u64;
use super::{error, to_u64};
use crate::{
    ConnectionRequestEntry, Decision, InboundConnectionRequest, KeyPackageKind, KeyPackageStock,
    PublishedKeyPackage, StoreError, User,
};

/// Whether `sql` (a `SELECT EXISTS (...)` with `$1` and maybe `$2`) is true.
pub(super) async fn exists(
    pool: &PgPool,
    sql: &'static str,
    first: &str,
    second: Option<&str>,
) -> Result<bool, StoreError> {
    let mut query = sqlx::query_scalar(sql).bind(first);
    if let Some(second) = second {
        query = query.bind(second);
    }
    query.fetch_one(pool).await.map_err(error)
}

async fn insert_user(conn: &mut PgConnection, user_id: &str, now: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "INSERT INTO users (user_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(now)
    .execute(conn)
    .await?
    .rows_affected())
}

/// [`Store::add_user`](crate::Store::add_user).
pub(super) async fn add_user(pool: &PgPool, user_id: &str, now: i64) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await.map_err(error)?;
    match insert_user(&mut conn, user_id, now).await.map_err(error)? {
        0 => Err(StoreError::Conflict),
        _ => Ok(()),
    }
}

/// [`Store::add_client`](crate::Store::add_client).
pub(super) async fn add_client(
    pool: &PgPool,
    client_id: &str,
    user_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(error)?;
    insert_user(&mut tx, user_id, now).await.map_err(error)?;
    sqlx::query(
        "INSERT INTO clients (client_id, user_id, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(client_id)
    .bind(user_id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(error)?;
    tx.commit().await.map_err(error)
}

/// Drops queue entries of `clients` (a `client_id` condition) up to
/// `up_to`, and the messages no queue holds any more. The messages are
/// locked first, so that two processes acknowledging the last two holders
/// of one message cannot both leave it.
async fn release(
    tx: &mut PgConnection,
    condition: &'static str,
    who: &str,
    up_to: i64,
) -> Result<(), sqlx::Error> {
    let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT inbox_id FROM client_queue WHERE {condition} AND inbox_id <= $2"
    )))
    .bind(who)
    .bind(up_to)
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT 1 FROM inbox WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM client_queue WHERE {condition} AND inbox_id = ANY($2)"
    )))
    .bind(who)
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "DELETE FROM inbox WHERE id = ANY($1) \
         AND NOT EXISTS (SELECT 1 FROM client_queue q WHERE q.inbox_id = inbox.id)",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// [`Store::acknowledge`](crate::Store::acknowledge): only what is stored
/// now is dropped, so a larger `up_to` never swallows later messages.
pub(super) async fn acknowledge(
    pool: &PgPool,
    client_id: &str,
    up_to: i64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(error)?;
    release(&mut tx, "client_id = $1", client_id, up_to)
        .await
        .map_err(error)?;
    tx.commit().await.map_err(error)
}

/// [`Store::remove_user`](crate::Store::remove_user).
pub(super) async fn remove_user(pool: &PgPool, user_id: &str) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(error)?;
    let clients = "client_id IN (SELECT client_id FROM clients WHERE user_id = $1)";
    release(&mut tx, clients, user_id, i64::MAX)
        .await
        .map_err(error)?;
    for delete in [
        "DELETE FROM key_packages WHERE client_id IN \
         (SELECT client_id FROM clients WHERE user_id = $1)",
        "DELETE FROM clients WHERE user_id = $1",
        "DELETE FROM connections WHERE user_id = $1",
        "DELETE FROM users WHERE user_id = $1",
    ] {
        sqlx::query(delete)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(error)?;
    }
    tx.commit().await.map_err(error)
}

/// [`Store::users`](crate::Store::users).
pub(super) async fn users(pool: &PgPool) -> Result<Vec<User>, StoreError> {
    let rows = sqlx::query(
        "SELECT u.user_id, u.created_at, c.client_id FROM users u \
         LEFT JOIN clients c ON c.user_id = u.user_id ORDER BY u.user_id, c.client_id",
    )
    .fetch_all(pool)
    .await
    .map_err(error)?;
    let mut users: Vec<User> = Vec::new();
    for row in rows {
        let user_id: String = row.try_get("user_id").map_err(error)?;
        let client: Option<String> = row.try_get("client_id").map_err(error)?;
        if users.last().is_none_or(|u| u.user_id != user_id) {
            users.push(User {
                user_id,
                created_at: get_u64(&row, "created_at")?,
                clients: Vec::new(),
            });
        }
        if let (Some(user), Some(client)) = (users.last_mut(), client) {
            user.clients.push(client);
        }
    }
    Ok(users)
}

/// [`Store::clients_of_user`](crate::Store::clients_of_user).
pub(super) async fn clients_of_user(
    pool: &PgPool,
    user_id: &str,
) -> Result<Vec<String>, StoreError> {
    sqlx::query_scalar("SELECT client_id FROM clients WHERE user_id = $1 ORDER BY client_id")
        .bind(user_id)
        .fetch_all(pool)
        .await
        .map_err(error)
}

/// [`Store::publish_key_packages`](crate::Store::publish_key_packages).
pub(super) async fn publish_key_packages(
    pool: &PgPool,
    client_id: &str,
    packages: &[PublishedKeyPackage],
    now: i64,
) -> Result<(), StoreError> {
    let mut kinds = Vec::with_capacity(packages.len());
    let mut last_resort = Vec::with_capacity(packages.len());
    let mut not_after = Vec::with_capacity(packages.len());
    let mut bytes: Vec<&[u8]> = Vec::with_capacity(packages.len());
    for p in packages {
        kinds.push(kind_code(p.kind));
        last_resort.push(p.last_resort);
        not_after.push(super::to_i64(p.not_after, "time")?);
        bytes.push(&p.key_package);
    }
    sqlx::query(
        "INSERT INTO key_packages \
         (client_id, kind, last_resort, not_after, key_package, published_at) \
         SELECT $1, k, l, n, b, $2 \
         FROM UNNEST($3::int2[], $4::bool[], $5::int8[], $6::bytea[]) WITH ORDINALITY \
         AS t (k, l, n, b, o) ORDER BY o",
    )
    .bind(client_id)
    .bind(now)
    .bind(&kinds)
    .bind(&last_resort)
    .bind(&not_after)
    .bind(&bytes)
    .execute(pool)
    .await
    .map_err(error)?;
    Ok(())
}

fn kind_code(kind: KeyPackageKind) -> i16 {
    match kind {
        KeyPackageKind::Regular => 0,
        KeyPackageKind::Connection => 1,
    }
}

/// [`Store::claim_key_packages`](crate::Store::claim_key_packages): a
/// one-time package is taken `FOR UPDATE SKIP LOCKED`, so a concurrent
/// request (in any process) takes the next one, never the same.
pub(super) async fn claim_key_packages(
    pool: &PgPool,
    user_id: &str,
    kind: KeyPackageKind,
    clients: Option<&[String]>,
    now: i64,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let mut tx = pool.begin().await.map_err(error)?;
    let of_user: Vec<String> = sqlx::query_scalar(
        "SELECT client_id FROM clients WHERE user_id = $1 \
         AND ($2::text[] IS NULL OR client_id = ANY($2)) ORDER BY client_id",
    )
    .bind(user_id)
    .bind(clients)
    .fetch_all(&mut *tx)
    .await
    .map_err(error)?;
    let kind = kind_code(kind);
    let mut handed = Vec::new();
    for client in of_user {
        let one_time: Option<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT id, key_package FROM key_packages \
             WHERE client_id = $1 AND kind = $2 AND NOT last_resort AND claimed_at IS NULL \
               AND not_after > $3 \
             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .bind(&client)
        .bind(kind)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(error)?;
        if let Some((id, package)) = one_time {
            sqlx::query("UPDATE key_packages SET claimed_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(error)?;
            handed.push((client, package));
            continue;
        }
        let last_resort: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT key_package FROM key_packages \
             WHERE client_id = $1 AND kind = $2 AND last_resort AND not_after > $3 \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(&client)
        .bind(kind)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(error)?;
        if let Some(package) = last_resort {
            handed.push((client, package));
        }
    }
    tx.commit().await.map_err(error)?;
    Ok(handed)
}

/// [`Store::key_package_stock`](crate::Store::key_package_stock).
pub(super) async fn stock(
    pool: &PgPool,
    client_id: &str,
    kind: KeyPackageKind,
    now: i64,
) -> Result<KeyPackageStock, StoreError> {
    let (one_time, last_resort): (i64, bool) = sqlx::query_as(
        "SELECT \
           (SELECT COUNT(*) FROM key_packages WHERE client_id = $1 AND kind = $2 \
              AND NOT last_resort AND claimed_at IS NULL AND not_after > $3), \
           EXISTS (SELECT 1 FROM key_packages WHERE client_id = $1 AND kind = $2 \
              AND last_resort AND not_after > $3)",
    )
    .bind(client_id)
    .bind(kind_code(kind))
    .bind(now)
    .fetch_one(pool)
    .await
    .map_err(error)?;
    Ok(KeyPackageStock {
        one_time: to_u64(one_time)?,
        last_resort,
    })
}

/// [`Store::prune_key_packages`](crate::Store::prune_key_packages), with
/// cutoffs for `<=`.
pub(super) async fn prune_key_packages(
    pool: &PgPool,
    expired_through: i64,
    claimed_through: i64,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM key_packages WHERE not_after <= $1 OR claimed_at <= $2")
        .bind(expired_through)
        .bind(claimed_through)
        .execute(pool)
        .await
        .map_err(error)?;
    Ok(())
}

/// [`Store::add_connection`](crate::Store::add_connection).
pub(super) async fn add_connection(
    pool: &PgPool,
    user_id: &str,
    peer: &str,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO connections (user_id, peer, since) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(peer)
    .bind(now)
    .execute(pool)
    .await
    .map_err(error)?;
    Ok(())
}

/// [`Store::add_enrolment`](crate::Store::add_enrolment).
pub(super) async fn add_enrolment(
    pool: &PgPool,
    secret_sha256: &[u8; 32],
    user_id: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO enrolments (secret_sha256, user_id, expires_at, created_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(&secret_sha256[..])
    .bind(user_id)
    .bind(expires_at)
    .bind(now)
    .execute(pool)
    .await
    .map_err(error)?;
    Ok(())
}

/// [`Store::enrol_client`](crate::Store::enrol_client): the secret goes as
/// it is spent; of two processes spending it, one finds it gone.
pub(super) async fn enrol_client(
    pool: &PgPool,
    secret_sha256: &[u8; 32],
    client_id: &str,
    user_id: &str,
    public_key: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(error)?;
    let spent = sqlx::query(
        "DELETE FROM enrolments WHERE secret_sha256 = $1 AND user_id = $2 AND expires_at > $3 \
         AND NOT EXISTS (SELECT 1 FROM clients WHERE client_id = $4)",
    )
    .bind(&secret_sha256[..])
    .bind(user_id)
    .bind(now)
    .bind(client_id)
    .execute(&mut *tx)
    .await
    .map_err(error)?
    .rows_affected();
    if spent == 0 {
        return Err(StoreError::Conflict);
    }
    insert_user(&mut tx, user_id, now).await.map_err(error)?;
    let added = sqlx::query(
        "INSERT INTO clients (client_id, user_id, created_at, public_key) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(client_id)
    .bind(user_id)
    .bind(now)
    .bind(public_key)
    .execute(&mut *tx)
    .await
    .map_err(error)?
    .rows_affected();
    // Enrolled meanwhile by another secret: this one stays unspent.
    if added == 0 {
        return Err(StoreError::Conflict);
    }
    tx.commit().await.map_err(error)
}

/// [`Store::client_key`](crate::Store::client_key).
pub(super) async fn client_key(
    pool: &PgPool,
    client_id: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let key: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT public_key FROM clients WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(pool)
            .await
            .map_err(error)?;
    Ok(key.flatten())
}

/// [`Store::receive_connection_request`](crate::Store::receive_connection_request).
pub(super) async fn receive_connection_request(
    pool: &PgPool,
    r: &InboundConnectionRequest,
) -> Result<(), StoreError> {
    let now = super::to_i64(r.now, "time")?;
    let epoch = super::to_i64(r.epoch, "epoch")?;
    let mut tx = pool.begin().await.map_err(error)?;
    let remembered = sqlx::query(
        "INSERT INTO inbound (sender, message_id, body_sha256, answer, received_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(&r.sender)
    .bind(&r.message_id[..])
    .bind(&r.body_sha256[..])
    .bind(&r.answer)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(error)?
    .rows_affected();
    if remembered == 0 {
        return Err(StoreError::Conflict);
    }
    sqlx::query(
        "INSERT INTO connection_requests \
         (sender, sender_user, recipient_user, group_id, epoch, welcome, received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&r.sender)
    .bind(&r.sender_user)
    .bind(&r.recipient_user)
    .bind(&r.group_id)
    .bind(epoch)
    .bind(&r.welcome)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(error)?;
    tx.commit().await.map_err(error)
}

/// [`Store::connection_requests`](crate::Store::connection_requests).
pub(super) async fn connection_requests(
    pool: &PgPool,
    user_id: &str,
) -> Result<Vec<ConnectionRequestEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, sender_user, group_id, epoch, welcome, received_at \
         FROM connection_requests WHERE recipient_user = $1 ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await
    .map_err(error)?;
    rows.iter()
        .map(|row| {
            Ok(ConnectionRequestEntry {
                id: row.try_get("id").map_err(error)?,
                sender_user: row.try_get("sender_user").map_err(error)?,
                group_id: row.try_get("group_id").map_err(error)?,
                epoch: get_u64(row, "epoch")?,
                welcome: row.try_get("welcome").map_err(error)?,
                received_at: get_u64(row, "received_at")?,
            })
        })
        .collect()
}

/// [`Store::settle_connection_request`](crate::Store::settle_connection_request).
pub(super) async fn settle_connection_request(
    pool: &PgPool,
    user_id: &str,
    id: i64,
    decision: Decision,
    now: i64,
) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.map_err(error)?;
    let peer: Option<String> = sqlx::query_scalar(
        "SELECT sender_user FROM connection_requests WHERE id = $1 AND recipient_user = $2 \
         FOR UPDATE",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(error)?;
    let Some(peer) = peer else {
        return Err(StoreError::Conflict);
    };
    let insert = match decision {
        Decision::Accept => Some(
            "INSERT INTO connections (user_id, peer, since) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        ),
        Decision::Decline => None,
        Decision::Block => Some(
            "INSERT INTO blocks (user_id, peer, since) VALUES ($1, $2, $3) \
             ON CONFLICT DO NOTHING",
        ),
    };
    if let Some(insert) = insert {
        sqlx::query(insert)
            .bind(user_id)
            .bind(&peer)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(error)?;
    }
    let delete = if decision == Decision::Block {
        // Every request of the blocked requester goes.
        sqlx::query(
            "DELETE FROM connection_requests WHERE recipient_user = $1 AND sender_user = $2",
        )
        .bind(user_id)
        .bind(&peer)
    } else {
        sqlx::query("DELETE FROM connection_requests WHERE recipient_user = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
    };
    delete.execute(&mut *tx).await.map_err(error)?;
    tx.commit().await.map_err(error)
}
