//! Point reads on the caller's thread. A read through sqlx's pool is a
//! round trip to the connection's worker thread and back; a lookup of a
//! few rows takes less than those two thread wake-ups, which on a loaded
//! 2-core machine were a sixth of a delivery's cost (`docs/performance.md`).
//! Only reads that touch a handful of pages belong here: the caller's async
//! worker waits while they run.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rusqlite::OpenFlags;

use super::BUSY_TIMEOUT;
use crate::StoreError;

/// Idle connections kept for the next reads.
const KEPT: usize = 4;

/// Read-only connections to the database, opened as needed and kept.
pub(super) struct InlineReader {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl InlineReader {
    pub(super) fn new(path: &Path) -> Self {
        InlineReader {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `read` on a read-only connection, here and now.
    pub(super) fn read<R>(
        &self,
        read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<R>,
    ) -> Result<R, StoreError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = read(&conn).map_err(|e| StoreError::Database(e.to_string()));
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < KEPT {
            idle.push(conn);
        }
        result
    }

    fn open(&self) -> Result<rusqlite::Connection, StoreError> {
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Unavailable(format!("read connection: {e}")))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| StoreError::Unavailable(format!("read connection: {e}")))?;
        Ok(conn)
    }
}
