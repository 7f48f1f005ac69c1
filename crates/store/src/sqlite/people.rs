//! The writes and reads about the provider's people: users, the
//! KeyPackages their clients publish and hand out, and their connections
//! (`docs/protocol.md` 9). Writes are applied on their own, in queue order,
//! in the writer's batch.

use rusqlite::OptionalExtension;

use super::guest::{Clients, acknowledge};
use super::inline::InlineReader;
use super::script::{Script, push_values};
use super::writer::Op;
use super::{to_i64, to_u64};
use crate::{ConnectionRequestEntry, Decision, KeyPackageKind, KeyPackageStock, StoreError, User};

/// Applies one write about people; `Err` fails the whole transaction,
/// `Ok(Err(_))` only this request.
pub(super) fn apply<'a>(
    conn: &rusqlite::Connection,
    script: &mut Script<'a>,
    op: &'a Op,
) -> Result<Result<(), StoreError>, String> {
    match op {
        Op::AddUser { user_id, now } => {
            insert_user(script, user_id, *now).push(" RETURNING 1");
            if script.fetch(conn)?.is_empty() {
                return Ok(Err(StoreError::Conflict));
            }
        }
        Op::RemoveUser(user_id) => {
            // What was queued for its clients is released, as if they had
            // read it all (a message goes once every client of its set has).
            // Their cursors stay where that leaves them: the sets they are in
            // still name them, and a client of that name added again later
            // must not count as one that read nothing.
            acknowledge(script, Clients::OfUser(user_id), i64::MAX);
            script
                .statement()
                .push(
                    "DELETE FROM key_packages WHERE client_id IN \
                     (SELECT client_id FROM clients WHERE user_id = ",
                )
                .push_bind(user_id.as_str())
                .push(")");
            for delete in [
                "DELETE FROM clients WHERE user_id = ",
                "DELETE FROM connections WHERE user_id = ",
                "DELETE FROM users WHERE user_id = ",
            ] {
                script.statement().push(delete).push_bind(user_id.as_str());
            }
        }
        Op::PublishKeyPackages {
            client_id,
            packages,
            now,
        } => {
            let rows: Vec<&'a (i64, bool, i64, Vec<u8>)> = packages.iter().collect();
            push_values(
                script,
                "INSERT INTO key_packages \
                 (client_id, kind, last_resort, not_after, key_package, published_at) ",
                "",
                &rows,
                |mut row, &package| {
                    let (kind, last_resort, not_after, key_package) = package;
                    row.push_bind(client_id.as_str())
                        .push_bind(*kind)
                        .push_bind(i64::from(*last_resort))
                        .push_bind(*not_after)
                        .push_bind(key_package.as_slice())
                        .push_bind(*now);
                },
            );
        }
        Op::ClaimKeyPackages {
            token,
            user_id,
            kind,
            clients,
            now,
        } => claim(script, token, user_id, *kind, clients.as_deref(), *now),
        Op::PruneKeyPackages {
            now,
            claimed_before,
        } => {
            script
                .statement()
                .push("DELETE FROM key_packages WHERE not_after <= ")
                .push_bind(*now)
                .push(" OR (claimed = 1 AND id IN (SELECT key_package_id FROM key_package_claims WHERE created_at <= ")
                .push_bind(*claimed_before)
                .push("))");
            script
                .statement()
                .push("DELETE FROM key_package_claims WHERE created_at <= ")
                .push_bind(*claimed_before);
        }
        Op::SpendToken {
            token_key_id,
            nonce,
            now,
        } => {
            script
                .statement()
                .push("INSERT INTO spent_tokens (token_key_id, nonce, spent_at) VALUES (")
                .push_bind(&token_key_id[..])
                .push(", ")
                .push_bind(&nonce[..])
                .push(", ")
                .push_bind(*now)
                .push(") ON CONFLICT DO NOTHING RETURNING 1");
            if script.fetch(conn)?.is_empty() {
                return Ok(Err(StoreError::Conflict));
            }
        }
        Op::AddConnection { user_id, peer, now } => {
            script
                .statement()
                .push("INSERT INTO connections (user_id, peer, since) VALUES (")
                .push_bind(user_id.as_str())
                .push(", ")
                .push_bind(peer.as_str())
                .push(", ")
                .push_bind(*now)
                .push(") ON CONFLICT DO NOTHING");
        }
        Op::AddEnrolment {
            secret_sha256,
            user_id,
            expires_at,
            now,
        } => {
            script
                .statement()
                .push("INSERT INTO enrolments (secret_sha256, user_id, expires_at, created_at) VALUES (")
                .push_bind(&secret_sha256[..])
                .push(", ")
                .push_bind(user_id.as_str())
                .push(", ")
                .push_bind(*expires_at)
                .push(", ")
                .push_bind(*now)
                .push(")");
        }
        Op::EnrolClient {
            secret_sha256,
            client_id,
            user_id,
            public_key,
            now,
        } => {
            // The secret goes as it is spent: only an unspent, unexpired
            // one of this user returns its row.
            script
                .statement()
                .push("DELETE FROM enrolments WHERE secret_sha256 = ")
                .push_bind(&secret_sha256[..])
                .push(" AND user_id = ")
                .push_bind(user_id.as_str())
                .push(" AND expires_at > ")
                .push_bind(*now)
                .push(" AND NOT EXISTS (SELECT 1 FROM clients WHERE client_id = ")
                .push_bind(client_id.as_str())
                .push(") RETURNING 1");
            if script.fetch(conn)?.is_empty() {
                return Ok(Err(StoreError::Conflict));
            }
            insert_user(script, user_id, *now);
            script
                .statement()
                .push("INSERT INTO clients (client_id, user_id, created_at, public_key) VALUES (")
                .push_bind(client_id.as_str())
                .push(", ")
                .push_bind(user_id.as_str())
                .push(", ")
                .push_bind(*now)
                .push(", ")
                .push_bind(public_key.as_slice())
                .push(")");
        }
        Op::ReceiveConnectionRequest(r) => {
            let (now, epoch) = match (to_i64(r.now, "time"), to_i64(r.epoch, "epoch")) {
                (Ok(now), Ok(epoch)) => (now, epoch),
                (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
            };
            script
                .statement()
                .push(
                    "INSERT INTO inbound (sender, message_id, body_sha256, answer, received_at) \
                     VALUES (",
                )
                .push_bind(r.sender.as_str())
                .push(", ")
                .push_bind(&r.message_id[..])
                .push(", ")
                .push_bind(&r.body_sha256[..])
                .push(", ")
                .push_bind(r.answer.as_slice())
                .push(", ")
                .push_bind(now)
                .push(") ON CONFLICT DO NOTHING RETURNING 1");
            if script.fetch(conn)?.is_empty() {
                return Ok(Err(StoreError::Conflict));
            }
            script
                .statement()
                .push(
                    "INSERT INTO connection_requests \
                     (sender, sender_user, recipient_user, group_id, epoch, welcome, received_at) \
                     VALUES (",
                )
                .push_bind(r.sender.as_str())
                .push(", ")
                .push_bind(r.sender_user.as_str())
                .push(", ")
                .push_bind(r.recipient_user.as_str())
                .push(", ")
                .push_bind(r.group_id.as_slice())
                .push(", ")
                .push_bind(epoch)
                .push(", ")
                .push_bind(r.welcome.as_slice())
                .push(", ")
                .push_bind(now)
                .push(")");
        }
        Op::SettleConnectionRequest {
            user_id,
            id,
            decision,
            now,
        } => {
            // The request's requester, if the user has that request.
            script
                .statement()
                .push("SELECT sender_user FROM connection_requests WHERE id = ")
                .push_bind(*id)
                .push(" AND recipient_user = ")
                .push_bind(user_id.as_str());
            let peer = match script
                .fetch(conn)?
                .into_iter()
                .next()
                .and_then(|row| row.into_iter().next())
            {
                Some(rusqlite::types::Value::Text(peer)) => peer,
                _ => return Ok(Err(StoreError::Conflict)),
            };
            let (insert, also) = match decision {
                Decision::Accept => (
                    Some("INSERT INTO connections (user_id, peer, since) VALUES ("),
                    false,
                ),
                Decision::Decline => (None, false),
                Decision::Block => (
                    Some("INSERT INTO blocks (user_id, peer, since) VALUES ("),
                    true,
                ),
            };
            if let Some(insert) = insert {
                script
                    .statement()
                    .push(insert)
                    .push_bind(user_id.as_str())
                    .push(", ")
                    .push_bind(peer.clone())
                    .push(", ")
                    .push_bind(*now)
                    .push(") ON CONFLICT DO NOTHING");
            }
            let statement = script.statement();
            statement
                .push("DELETE FROM connection_requests WHERE recipient_user = ")
                .push_bind(user_id.as_str());
            if also {
                // Every request of the blocked requester goes.
                statement.push(" AND sender_user = ").push_bind(peer);
            } else {
                statement.push(" AND id = ").push_bind(*id);
            }
        }
        _ => return Err("not a write about people".into()),
    }
    Ok(Ok(()))
}

/// Chooses one package per client and records the choice under `token`;
/// marks the one-time packages chosen as handed out. The single writer
/// makes the choice and the marking one step: no two requests get the
/// same one-time package.
fn claim<'a>(
    script: &mut Script<'a>,
    token: &'a [u8; 16],
    user_id: &'a str,
    kind: i64,
    clients: Option<&'a [String]>,
    now: i64,
) {
    let statement = script.statement();
    statement
        .push(
            "INSERT INTO key_package_claims (token, client_id, key_package_id, created_at) SELECT ",
        )
        .push_bind(&token[..])
        .push(", client_id, chosen, ")
        .push_bind(now)
        .push(
            " FROM (SELECT c.client_id AS client_id, COALESCE(\
             (SELECT k.id FROM key_packages k WHERE k.client_id = c.client_id AND k.kind = ",
        )
        .push_bind(kind)
        .push(" AND k.last_resort = 0 AND k.claimed = 0 AND k.not_after > ")
        .push_bind(now)
        .push(
            " ORDER BY k.id LIMIT 1), \
             (SELECT k.id FROM key_packages k WHERE k.client_id = c.client_id AND k.kind = ",
        )
        .push_bind(kind)
        .push(" AND k.last_resort = 1 AND k.not_after > ")
        .push_bind(now)
        .push(" ORDER BY k.id DESC LIMIT 1)) AS chosen FROM clients c WHERE c.user_id = ")
        .push_bind(user_id);
    if let Some(clients) = clients {
        if clients.is_empty() {
            statement.push(" AND 0");
        } else {
            statement.push(" AND c.client_id IN (");
            let mut list = statement.separated(", ");
            for client in clients {
                list.push_bind(client.as_str());
            }
            list.push_unseparated(")");
        }
    }
    statement.push(") WHERE chosen IS NOT NULL");
    script
        .statement()
        .push(
            "UPDATE key_packages SET claimed = 1 WHERE last_resort = 0 AND id IN \
             (SELECT key_package_id FROM key_package_claims WHERE token = ",
        )
        .push_bind(&token[..])
        .push(")");
}

/// The packages handed out under `token`, by client id.
pub(super) fn claimed(
    reader: &InlineReader,
    token: &[u8; 16],
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    reader.read(|conn| {
        let mut statement = conn.prepare_cached(
            "SELECT c.client_id, k.key_package FROM key_package_claims c \
             JOIN key_packages k ON k.id = c.key_package_id \
             WHERE c.token = ?1 ORDER BY c.client_id",
        )?;
        let rows = statement.query_map([&token[..]], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect()
    })
}

/// [`Store::key_package_stock`](crate::Store::key_package_stock).
pub(super) fn stock(
    reader: &InlineReader,
    client_id: &str,
    kind: KeyPackageKind,
    now: i64,
) -> Result<KeyPackageStock, StoreError> {
    let (one_time, last_resort): (i64, i64) = reader.read(|conn| {
        conn.prepare_cached(
            "SELECT \
               (SELECT COUNT(*) FROM key_packages WHERE client_id = ?1 AND kind = ?2 \
                  AND last_resort = 0 AND claimed = 0 AND not_after > ?3), \
               EXISTS (SELECT 1 FROM key_packages WHERE client_id = ?1 AND kind = ?2 \
                  AND last_resort = 1 AND not_after > ?3)",
        )?
        .query_row(rusqlite::params![client_id, kind.code(), now], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
    })?;
    Ok(KeyPackageStock {
        one_time: to_u64(one_time)?,
        last_resort: last_resort != 0,
    })
}

/// [`Store::users`](crate::Store::users).
pub(super) fn users(reader: &InlineReader) -> Result<Vec<User>, StoreError> {
    let rows: Vec<(String, i64, Option<String>)> = reader.read(|conn| {
        let mut statement = conn.prepare_cached(
            "SELECT u.user_id, u.created_at, c.client_id FROM users u \
             LEFT JOIN clients c ON c.user_id = u.user_id ORDER BY u.user_id, c.client_id",
        )?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
        rows.collect()
    })?;
    let mut users: Vec<User> = Vec::new();
    for (user_id, created_at, client) in rows {
        if users.last().is_none_or(|u| u.user_id != user_id) {
            users.push(User {
                user_id,
                created_at: to_u64(created_at)?,
                clients: Vec::new(),
            });
        }
        if let (Some(user), Some(client)) = (users.last_mut(), client) {
            user.clients.push(client);
        }
    }
    Ok(users)
}

/// Adds a user unless it exists; with `RETURNING 1` appended, the
/// statement answers a row only if it added one.
pub(super) fn insert_user<'s, 'a>(
    script: &'s mut Script<'a>,
    user_id: &'a str,
    now: i64,
) -> &'s mut crate::sql::Statement<'a> {
    script
        .statement()
        .push("INSERT INTO users (user_id, created_at) VALUES (")
        .push_bind(user_id)
        .push(", ")
        .push_bind(now)
        .push(") ON CONFLICT DO NOTHING")
}

/// [`Store::clients_of_user`](crate::Store::clients_of_user).
pub(super) fn clients_of_user(
    reader: &InlineReader,
    user_id: &str,
) -> Result<Vec<String>, StoreError> {
    reader.read(|conn| {
        let mut statement = conn.prepare_cached(
            "SELECT client_id FROM clients WHERE user_id = ?1 ORDER BY client_id",
        )?;
        let rows = statement.query_map([user_id], |row| row.get(0))?;
        rows.collect()
    })
}

/// Whether a row answers `sql` with `params`.
pub(super) fn exists(
    reader: &InlineReader,
    sql: &str,
    params: &[&str],
) -> Result<bool, StoreError> {
    reader.read(|conn| {
        conn.prepare_cached(sql)?
            .query_row(rusqlite::params_from_iter(params), |_| Ok(()))
            .optional()
            .map(|row| row.is_some())
    })
}

/// [`Store::client_key`](crate::Store::client_key).
pub(super) fn client_key(
    reader: &InlineReader,
    client_id: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    reader.read(|conn| {
        conn.prepare_cached("SELECT public_key FROM clients WHERE client_id = ?1")?
            .query_row([client_id], |row| row.get::<_, Option<Vec<u8>>>(0))
            .optional()
            .map(Option::flatten)
    })
}

/// [`Store::connection_requests`](crate::Store::connection_requests).
pub(super) fn connection_requests(
    reader: &InlineReader,
    user_id: &str,
) -> Result<Vec<ConnectionRequestEntry>, StoreError> {
    /// A stored time or epoch: never negative.
    fn unsigned(row: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<u64> {
        let value: i64 = row.get(column)?;
        u64::try_from(value).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(column, value))
    }
    reader.read(|conn| {
        let mut statement = conn.prepare_cached(
            "SELECT id, sender_user, group_id, epoch, welcome, received_at \
             FROM connection_requests WHERE recipient_user = ?1 ORDER BY id",
        )?;
        let rows = statement.query_map([user_id], |row| {
            Ok(ConnectionRequestEntry {
                id: row.get(0)?,
                sender_user: row.get(1)?,
                group_id: row.get(2)?,
                epoch: unsigned(row, 3)?,
                welcome: row.get(4)?,
                received_at: unsigned(row, 5)?,
            })
        })?;
        rows.collect()
    })
}
