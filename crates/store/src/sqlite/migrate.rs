//! Migrations: the versioned schema (`crates/store/migrations`), brought up
//! to date on a connection of its own before anything else opens, so that
//! the writer and the readers only ever see the current schema.

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use super::db;
use crate::StoreError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Runs the pending migrations on the database `options` open.
pub(super) async fn migrate(options: &SqliteConnectOptions) -> Result<(), StoreError> {
    let mut conn = SqliteConnection::connect_with(options).await.map_err(db)?;
    MIGRATOR
        .run(&mut conn)
        .await
        .map_err(|e| StoreError::Database(format!("migration: {e}")))?;
    conn.close().await.map_err(db)
}
