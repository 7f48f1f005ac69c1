//! What the store's test files share: databases in temporary directories,
//! raw connections, and databases at an older schema version.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mimid_store::{Durability, SqliteStore};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

pub fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("mimid.sqlite")
}

pub async fn open(path: &Path, durability: Durability) -> SqliteStore {
    match SqliteStore::open(path, durability).await {
        Ok(store) => store,
        Err(e) => panic!("open {}: {e}", path.display()),
    }
}

/// A connection of its own, to look at what the store's interface does not
/// expose.
pub async fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(path))
        .await
        .expect("raw connection")
}

pub async fn count(conn: &mut SqliteConnection, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(conn)
        .await
        .expect("count")
}

/// Creates the database at `path` with only the `migrations` named (the
/// first ones, in order), as an older version of the store left it, and
/// returns a connection to fill it.
pub async fn at_schema(
    dir: &tempfile::TempDir,
    path: &Path,
    migrations: &[&str],
) -> SqliteConnection {
    let old = dir.path().join("migrations-old");
    std::fs::create_dir(&old).unwrap();
    for name in migrations {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(name);
        std::fs::copy(source, old.join(name)).unwrap();
    }
    let mut conn = SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    conn
}

/// The store suite's SQLite backend: a database file in a temporary
/// directory of its own.
pub struct Sqlite {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub durability: Durability,
}

impl Sqlite {
    pub fn new(durability: Durability) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = db_path(&dir);
        Sqlite {
            dir,
            path,
            durability,
        }
    }
}

impl crate::suite::Backend for Sqlite {
    type Store = SqliteStore;

    async fn open(&self) -> SqliteStore {
        open(&self.path, self.durability).await
    }

    async fn close(&self, store: SqliteStore) {
        store.close().await.expect("close");
    }
}
