//! Fresh stores for tests: an SQLite file in a new temporary directory, or a new schema in
//! the PostgreSQL test database (`CLOUDPASS_TEST_POSTGRES_URL`, by default the local server's
//! `test` database). A PostgreSQL that cannot be reached is an error, never a skip.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;

use crate::{AnyStore, PoolOptions, StoreError, TokenStore};

/// The PostgreSQL server tests use.
pub fn postgres_url() -> String {
    std::env::var("CLOUDPASS_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_suffix() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{now}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A migrated store and what to remove afterwards.
pub struct TestStore {
    pub store: AnyStore,
    cleanup: Cleanup,
}

enum Cleanup {
    Directory(PathBuf),
    Schema(String),
}

impl TestStore {
    /// The PostgreSQL schema of this store, if it is one.
    pub fn schema(&self) -> Option<&str> {
        match &self.cleanup {
            Cleanup::Schema(schema) => Some(schema),
            Cleanup::Directory(_) => None,
        }
    }

    /// Removes the store's file or schema.
    pub async fn cleanup(self) {
        self.cleanup_at(&postgres_url()).await;
    }

    /// Removes the store's file or schema (a schema on the server at `url`).
    pub async fn cleanup_at(self, url: &str) {
        match self.cleanup {
            Cleanup::Directory(path) => {
                let _ = std::fs::remove_dir_all(path);
            }
            Cleanup::Schema(schema) => {
                if let Ok(mut connection) = sqlx::PgConnection::connect(url).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                    )))
                    .execute(&mut connection)
                    .await;
                }
            }
        }
    }
}

/// A new SQLite store in a fresh directory.
pub async fn fresh_sqlite() -> Result<TestStore, StoreError> {
    let directory = std::env::temp_dir().join(format!("cloudpass-test-{}", unique_suffix()));
    let store =
        AnyStore::open_sqlite(&directory.join("cloudpass.sqlite"), PoolOptions::default()).await?;
    store.migrate().await?;
    Ok(TestStore {
        store,
        cleanup: Cleanup::Directory(directory),
    })
}

/// A new PostgreSQL store in a fresh schema. Schemas left by crashed runs more than an hour
/// old are dropped on the way.
pub async fn fresh_postgres() -> Result<TestStore, StoreError> {
    fresh_postgres_at(&postgres_url()).await
}

/// A new PostgreSQL store in a fresh schema on the server at `url`.
pub async fn fresh_postgres_at(url: &str) -> Result<TestStore, StoreError> {
    let mut connection = sqlx::PgConnection::connect(url).await.map_err(|error| {
        StoreError::Connect(format!(
            "PostgreSQL test server at {url} is unreachable: {error}"
        ))
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let stale: Vec<(String,)> =
        sqlx::query_as("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'cpt\\_%'")
            .fetch_all(&mut connection)
            .await?;
    for (schema,) in stale {
        let created = schema
            .split('_')
            .nth(1)
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(now);
        if now.saturating_sub(created) > 3600 {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .execute(&mut connection)
            .await;
        }
    }
    let schema = format!("cpt_{}", unique_suffix());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&mut connection)
        .await?;
    let options = PoolOptions {
        max_connections: 8,
        ..PoolOptions::default()
    };
    let store = AnyStore::connect_postgres(url, Some(&schema), options).await?;
    store.migrate().await?;
    Ok(TestStore {
        store,
        cleanup: Cleanup::Schema(schema),
    })
}

/// The two databases every storage test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh store on `backend`.
pub async fn fresh(backend: Backend) -> Result<TestStore, StoreError> {
    match backend {
        Backend::Sqlite => fresh_sqlite().await,
        Backend::Postgres => fresh_postgres().await,
    }
}

/// Tokio tests `sqlite::NAME` and `postgres::NAME` for each `async fn NAME(Backend)` named:
/// `on_both_stores!(a, b);` beside `async fn a(backend: Backend)` in a test file.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::testing::Backend::Sqlite).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name($crate::testing::Backend::Postgres).await;
            })*
        }
    };
}
