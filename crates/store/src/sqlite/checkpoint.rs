//! Checkpoints: copying committed pages from the write-ahead log into the
//! database file, beside the writer rather than inside its transactions,
//! so that no step's answer waits for one.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::oneshot;

use super::writer::Writer;

/// How often the checkpointer looks for new transactions to checkpoint.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// Copies committed pages from the log into the database file, until the
/// store closes, on a connection (and so a thread) of its own: a checkpoint
/// copies and syncs every page written since the last one, which inside the
/// writer's transactions would add that time to the answer of whichever step
/// triggered it. `PASSIVE` waits for nobody and blocks nobody; once a
/// checkpoint has copied the whole log, the writer starts the log over.
pub(super) async fn run_checkpoints(
    mut conn: SqliteConnection,
    writer: Arc<Writer>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checkpointed = 0;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        let committed = writer.transactions();
        if committed == checkpointed {
            continue;
        }
        // A failure (e.g. busy) is retried at the next tick; the writer's
        // own automatic checkpoint is the safety net.
        if sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
            .is_ok()
        {
            checkpointed = committed;
        }
    }
    let _ = conn.close().await;
}
