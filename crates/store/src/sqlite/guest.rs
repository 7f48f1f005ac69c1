//! The writes of the guest side and of the outbox's failures, each applied
//! on its own (after the requests queued before it) in the writer's batch.

use rusqlite::types::Value;

use super::script::{Script, push_in, push_values};
use super::to_i64;
use super::writer::Op;
use crate::{Inbound, StoreError};

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
            // The messages this frees, if no other queue holds them.
            script
                .statement()
                .push("SELECT DISTINCT inbox_id FROM client_queue WHERE client_id = ")
                .push_bind(client_id.as_str())
                .push(" AND seq <= ")
                .push_bind(*up_to);
            let freed: Vec<i64> = script
                .fetch(conn)?
                .iter()
                .filter_map(|row| match row.first() {
                    Some(Value::Integer(id)) => Some(*id),
                    _ => None,
                })
                .collect();
            script
                .statement()
                .push("DELETE FROM client_queue WHERE client_id = ")
                .push_bind(client_id.as_str())
                .push(" AND seq <= ")
                .push_bind(*up_to);
            push_in(
                script,
                "DELETE FROM inbox WHERE id",
                " AND NOT EXISTS (SELECT 1 FROM client_queue q WHERE q.inbox_id = inbox.id)",
                &freed,
                |list, id| {
                    list.push_bind(*id);
                },
            );
        }
        _ => return Err("not a guest write".into()),
    }
    Ok(Ok(()))
}

/// Remembers the delivery, stores its message once and queues it for each
/// recipient; a delivery whose `(sender, message_id)` is remembered already
/// changes nothing and fails with `Conflict`.
fn deliver<'a>(
    conn: &rusqlite::Connection,
    script: &mut Script<'a>,
    inbound: &'a Inbound,
) -> Result<Result<(), StoreError>, String> {
    let (now, epoch) = match (to_i64(inbound.now, "time"), to_i64(inbound.epoch, "epoch")) {
        (Ok(now), Ok(epoch)) => (now, epoch),
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
    };
    script
        .statement()
        .push(
            "INSERT INTO inbound (sender, message_id, body_sha256, answer, received_at) \
             VALUES (",
        )
        .push_bind(inbound.sender.as_str())
        .push(", ")
        .push_bind(&inbound.message_id[..])
        .push(", ")
        .push_bind(&inbound.body_sha256[..])
        .push(", ")
        .push_bind(inbound.answer.as_slice())
        .push(", ")
        .push_bind(now)
        .push(") ON CONFLICT DO NOTHING RETURNING 1");
    if script.fetch(conn)?.is_empty() {
        return Ok(Err(StoreError::Conflict));
    }
    if inbound.recipients.is_empty() {
        return Ok(Ok(()));
    }
    script
        .statement()
        .push(
            "INSERT INTO inbox (sender, message_id, group_id, epoch, message, received_at) \
             VALUES (",
        )
        .push_bind(inbound.sender.as_str())
        .push(", ")
        .push_bind(&inbound.message_id[..])
        .push(", ")
        .push_bind(inbound.group_id.as_slice())
        .push(", ")
        .push_bind(epoch)
        .push(", ")
        .push_bind(inbound.message.as_slice())
        .push(", ")
        .push_bind(now)
        .push(") RETURNING id");
    let Some(Some(Value::Integer(inbox_id))) =
        script.fetch(conn)?.first().map(|r| r.first().cloned())
    else {
        return Err("inbox: no id returned".into());
    };
    push_values(
        script,
        "INSERT INTO client_queue (client_id, inbox_id) ",
        "",
        &inbound.recipients,
        |mut row, client| {
            row.push_bind(client.clone()).push_bind(inbox_id);
        },
    );
    Ok(Ok(()))
}
