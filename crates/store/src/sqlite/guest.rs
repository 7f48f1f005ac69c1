//! The writes of the guest side and of the outbox's failures, each applied
//! on its own (after the requests queued before it) in the writer's batch.
//!
//! A client's queue is not written per client: a delivery stores its message
//! once with the id of its recipient set, and the queue of a client is the
//! messages of its sets after the position it acknowledged
//! (`client_cursors`). A message goes once every client of its set has
//! acknowledged it.

use std::collections::{HashMap, HashSet};

use rusqlite::types::Value;
use sha2::{Digest, Sha256};

use super::script::{LookupRow, MAX_ROWS_PER_STATEMENT, Script, push_in, push_values};
use super::to_i64;
use super::writer::Op;
use crate::{Inbound, LocalDelivery, StoreError};

/// Adds the copy of job `job_id` to the dead letters (the caller deletes
/// the job, as a completion).
pub(super) fn dead_letter<'a>(script: &mut Script<'a>, job_id: i64, reason: &'a str, now: i64) {
    script
        .statement()
        .push(
            "INSERT INTO dead_letters \
             (job_id, destination, message_id, recipients, body, attempts, created_at, \
              failed_at, reason) \
             SELECT j.id, j.destination, j.message_id, \
                    COALESCE(rs.recipients, j.recipients), m.body, j.attempts, j.created_at, ",
        )
        .push_bind(now)
        .push(", ")
        .push_bind(reason)
        .push(
            " FROM jobs j JOIN messages m ON m.message_id = j.message_id \
             LEFT JOIN recipient_sets rs ON rs.hash = j.recipient_set WHERE j.id = ",
        )
        .push_bind(job_id);
}

/// Applies one guest write (or a job's attempt count); `Err` fails the
/// whole transaction, `Ok(Err(_))` only this request.
pub(super) fn apply<'a>(
    conn: &rusqlite::Connection,
    script: &mut Script<'a>,
    op: &'a Op,
) -> Result<Result<(), StoreError>, String> {
    match op {
        Op::RecordAttempt(job_id) => {
            script
                .statement()
                .push("UPDATE jobs SET attempts = attempts + 1 WHERE id = ")
                .push_bind(*job_id);
        }
        Op::AddClient {
            client_id,
            user_id,
            now,
        } => {
            super::people::insert_user(script, user_id, *now);
            script
                .statement()
                .push("INSERT INTO clients (client_id, user_id, created_at) VALUES (")
                .push_bind(client_id.as_str())
                .push(", ")
                .push_bind(user_id.as_str())
                .push(", ")
                .push_bind(*now)
                .push(") ON CONFLICT DO NOTHING");
        }
        Op::Deliver(inbound) => return deliver(conn, script, inbound),
        Op::Acknowledge { client_id, up_to } => {
            acknowledge(script, Clients::One(client_id), *up_to);
        }
        _ => return Err("not a guest write".into()),
    }
    Ok(Ok(()))
}

/// Whose queues an acknowledgement moves.
pub(super) enum Clients<'a> {
    One(&'a str),
    /// Every client of a user.
    OfUser(&'a str),
}

impl<'a> Clients<'a> {
    /// `= ?` or `IN (...)`, for a `client_id` column.
    fn push_condition(&self, statement: &mut crate::sql::Statement<'a>) {
        match *self {
            Clients::One(client_id) => {
                statement.push(" = ").push_bind(client_id);
            }
            Clients::OfUser(user_id) => {
                statement
                    .push(" IN (SELECT client_id FROM clients WHERE user_id = ")
                    .push_bind(user_id)
                    .push(")");
            }
        }
    }
}

/// Moves the queues of `clients` up to `up_to`, and drops the messages
/// every client of their set has now acknowledged.
pub(super) fn acknowledge<'a>(script: &mut Script<'a>, clients: Clients<'a>, up_to: i64) {
    // The cursor moves forward only, and never past the newest message: a
    // position beyond it must not swallow later ones.
    let statement = script.statement();
    statement.push("INSERT INTO client_cursors (client_id, acked) SELECT ");
    match clients {
        Clients::One(client_id) => statement.push_bind(client_id),
        Clients::OfUser(_) => statement.push("client_id"),
    };
    statement
        .push(", MIN(")
        .push_bind(up_to)
        .push(", (SELECT COALESCE(MAX(id), 0) FROM inbox))");
    if let Clients::OfUser(user_id) = clients {
        statement
            .push(" FROM clients WHERE user_id = ")
            .push_bind(user_id);
    } else {
        // (A `WHERE` keeps `ON CONFLICT` from reading as a join's `ON`.)
        statement.push(" WHERE 1");
    }
    statement.push(" ON CONFLICT (client_id) DO UPDATE SET acked = MAX(acked, excluded.acked)");
    // The messages of these clients' sets that every client of their set
    // has now acknowledged.
    let statement = script.statement();
    statement.push(
        "DELETE FROM inbox WHERE id IN (\
         SELECT i.id FROM (\
           SELECT m.set_id, MIN(COALESCE(c.acked, 0)) AS low \
           FROM guest_set_members mine \
           JOIN guest_set_members m ON m.set_id = mine.set_id \
           LEFT JOIN client_cursors c ON c.client_id = m.client_id \
           WHERE mine.client_id",
    );
    clients.push_condition(statement);
    statement
        .push(
            " AND EXISTS (SELECT 1 FROM inbox x WHERE x.recipient_set = mine.set_id \
             AND x.id <= ",
        )
        .push_bind(up_to)
        .push(
            ") GROUP BY m.set_id\
             ) s CROSS JOIN inbox i ON i.recipient_set = s.set_id AND i.id <= s.low)",
        );
}

/// Remembers the deliveries and stores each message once, for the set of
/// its recipients, in order; if a delivery with one of their `(sender,
/// message_id)` is remembered already, changes nothing and fails with
/// `Conflict`.
fn deliver<'a>(
    conn: &rusqlite::Connection,
    script: &mut Script<'a>,
    inbound: &'a [Inbound],
) -> Result<Result<(), StoreError>, String> {
    let mut rows = Vec::with_capacity(inbound.len());
    for i in inbound {
        match (to_i64(i.now, "time"), to_i64(i.epoch, "epoch")) {
            (Ok(now), Ok(epoch)) => rows.push((i, now, epoch)),
            (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
        }
    }
    // Looked up first, so that a repeat among them changes nothing: by
    // sender, each sender's ids in one statement (on the primary key).
    let mut senders: Vec<&str> = inbound.iter().map(|i| i.sender.as_str()).collect();
    senders.sort_unstable();
    senders.dedup();
    for sender in senders {
        let ids: Vec<&'a [u8]> = inbound
            .iter()
            .filter(|i| i.sender == sender)
            .map(|i| &i.message_id[..])
            .collect();
        for chunk in ids.chunks(MAX_ROWS_PER_STATEMENT) {
            let statement = script.statement();
            statement
                .push("SELECT 1 FROM inbound WHERE sender = ")
                .push_bind(sender)
                .push(" AND message_id IN (");
            let mut list = statement.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            list.push_unseparated(") LIMIT 1");
        }
    }
    if !script.fetch(conn)?.is_empty() {
        return Ok(Err(StoreError::Conflict));
    }
    push_values(
        script,
        "INSERT INTO inbound (sender, message_id, body_sha256, answer, received_at) ",
        "",
        &rows,
        |mut row, &(i, now, _)| {
            row.push_bind(i.sender.as_str())
                .push_bind(&i.message_id[..])
                .push_bind(&i.body_sha256[..])
                .push_bind(i.answer.as_slice())
                .push_bind(now);
        },
    );
    // Consecutive messages of a group go to the same clients: their set is
    // looked up once.
    let mut sets: HashMap<&'a [String], i64> = HashMap::new();
    for (i, now, epoch) in rows {
        if i.recipients.is_empty() {
            continue;
        }
        let set_id = match sets.get(i.recipients.as_slice()) {
            Some(&id) => id,
            None => {
                let id = recipient_set(conn, script, &i.recipients, now)?;
                sets.insert(i.recipients.as_slice(), id);
                id
            }
        };
        push_inbox(
            script,
            &i.sender,
            &i.message_id,
            &i.group_id,
            epoch,
            &i.message,
            now,
            set_id,
        );
    }
    Ok(Ok(()))
}

/// Queues the local deliveries of a batch's successful steps, in order, for
/// their recipients in the client directory (found with one lookup).
pub(super) fn queue_local<'a>(
    conn: &rusqlite::Connection,
    script: &mut Script<'a>,
    deliveries: &[(&'a LocalDelivery, u64)],
) -> Result<(), String> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let mut named: Vec<&str> = deliveries
        .iter()
        .flat_map(|(d, _)| d.recipients.iter().map(String::as_str))
        .collect();
    named.sort_unstable();
    named.dedup();
    // The steps' own statements first: the rows read next are the lookup's.
    script.execute(conn)?;
    push_in(
        script,
        "SELECT client_id FROM clients WHERE client_id",
        "",
        &named,
        |list, client| {
            list.push_bind(*client);
        },
    );
    let known: HashSet<String> = script
        .fetch(conn)?
        .into_iter()
        .filter_map(|row| match row.into_iter().next() {
            Some(Value::Text(client)) => Some(client),
            _ => None,
        })
        .collect();
    // A group's consecutive messages go to the same clients: their set is
    // looked up once per batch, by the list as the step named it (no copy).
    let mut sets: HashMap<&'a [String], Option<i64>> = HashMap::new();
    for &(delivery, now) in deliveries {
        // Checked by `Plan::add` before the step was accepted.
        let epoch = to_i64(delivery.epoch, "epoch").map_err(|e| e.to_string())?;
        let now = to_i64(now, "time").map_err(|e| e.to_string())?;
        let named = delivery.recipients.as_slice();
        let set_id = match sets.get(named) {
            Some(&id) => id,
            None => {
                let recipients: Vec<String> = named
                    .iter()
                    .filter(|c| known.contains(c.as_str()))
                    .cloned()
                    .collect();
                let id = if recipients.is_empty() {
                    None
                } else {
                    Some(recipient_set(conn, script, &recipients, now)?)
                };
                sets.insert(named, id);
                id
            }
        };
        // None of them is in the directory.
        let Some(set_id) = set_id else {
            continue;
        };
        push_inbox(
            script,
            &delivery.hub,
            &delivery.message_id,
            &delivery.group_id,
            epoch,
            &delivery.message,
            now,
            set_id,
        );
    }
    Ok(())
}

/// The id of the set of `recipients` (stored now if it is new): a group's
/// consecutive messages go to the same clients, so its deliveries share a
/// set, and a client's queue is the messages of its sets.
fn recipient_set<'a>(
    conn: &rusqlite::Connection,
    script: &mut Script<'a>,
    recipients: &[String],
    now: i64,
) -> Result<i64, String> {
    let mut clients: Vec<&str> = recipients.iter().map(String::as_str).collect();
    clients.sort_unstable();
    clients.dedup();
    let mut hash = Sha256::new();
    for client in &clients {
        hash.update(client.as_bytes());
        hash.update([0]);
    }
    let hash = hash.finalize().to_vec();
    script
        .statement()
        .push("SELECT id FROM guest_sets WHERE hash = ")
        .push_bind(hash.clone());
    if let Some(id) = single_id(&script.fetch(conn)?) {
        return Ok(id);
    }
    script
        .statement()
        .push("INSERT INTO guest_sets (hash, created_at) VALUES (")
        .push_bind(hash)
        .push(", ")
        .push_bind(now)
        .push(") RETURNING id");
    let id = single_id(&script.fetch(conn)?).ok_or("guest_sets: no id returned")?;
    let members: Vec<String> = clients.into_iter().map(str::to_owned).collect();
    push_values(
        script,
        "INSERT INTO guest_set_members (set_id, client_id) ",
        "",
        &members,
        |mut row, client| {
            row.push_bind(id).push_bind(client.clone());
        },
    );
    Ok(id)
}

/// The integer in the first column of the only row of `rows`.
fn single_id(rows: &[LookupRow]) -> Option<i64> {
    match rows {
        [row] => match row.first() {
            Some(Value::Integer(id)) => Some(*id),
            _ => None,
        },
        _ => None,
    }
}

/// Stores a message once for the clients of recipient set `set_id`.
#[allow(clippy::too_many_arguments)]
fn push_inbox<'a>(
    script: &mut Script<'a>,
    sender: &'a str,
    message_id: &'a [u8; 16],
    group_id: &'a [u8],
    epoch: i64,
    message: &'a [u8],
    now: i64,
    set_id: i64,
) {
    script
        .statement()
        .push(
            "INSERT INTO inbox \
             (sender, message_id, group_id, epoch, message, received_at, recipient_set) \
             VALUES (",
        )
        .push_bind(sender)
        .push(", ")
        .push_bind(&message_id[..])
        .push(", ")
        .push_bind(group_id)
        .push(", ")
        .push_bind(epoch)
        .push(", ")
        .push_bind(message)
        .push(", ")
        .push_bind(now)
        .push(", ")
        .push_bind(set_id)
        .push(")");
}
