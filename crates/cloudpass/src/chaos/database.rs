//! The platform's store in a run: the embedded SQLite file in the run's directory, or a fresh
//! PostgreSQL database created on a server for the run (dropped after a clean audit). The
//! faults a database can suffer, and the audit's read-only connection to it.
//!
//! The sandbox bank keeps its ledger in SQLite either way (`issuer-host.sqlite`): it is a
//! stand-in for another institution's host, not part of the platform's store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Row};

/// Where the platform keeps its store during a run.
#[derive(Clone)]
pub enum PlatformStore {
    /// `cloudpass.sqlite` in the platform's data directory.
    Sqlite(PathBuf),
    /// A database of the run's own on a PostgreSQL server.
    Postgres {
        /// The server's URL as given (its database is where the run's is created from).
        server: String,
        /// The run's database.
        database: String,
    },
}

impl PlatformStore {
    /// SQLite in `data_dir`, or, with `server`, a new database named for the run there.
    pub async fn create(
        data_dir: &Path,
        server: Option<&str>,
        run_name: &str,
    ) -> Result<PlatformStore, String> {
        let Some(server) = server else {
            return Ok(PlatformStore::Sqlite(data_dir.join("cloudpass.sqlite")));
        };
        let database = run_name.replace('-', "_");
        if !database
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
        {
            return Err("the run's database name must be letters, digits and underscores".into());
        }
        let mut admin = PgConnection::connect(server)
            .await
            .map_err(|e| format!("cannot reach PostgreSQL at --database-url: {e}"))?;
        // The name is letters, digits and underscores only (checked above).
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("cannot create the run's database {database}: {e}"))?;
        let _ = admin.close().await;
        Ok(PlatformStore::Postgres {
            server: server.to_owned(),
            database,
        })
    }

    /// The platform's `DATABASE_URL` (none: the embedded SQLite in its data directory).
    pub fn url(&self) -> Option<String> {
        match self {
            PlatformStore::Sqlite(_) => None,
            PlatformStore::Postgres { server, database } => Some(with_database(server, database)),
        }
    }

    /// What the run's output calls it.
    pub fn describe(&self) -> String {
        match self {
            PlatformStore::Sqlite(path) => format!("SQLite {}", path.display()),
            PlatformStore::Postgres { database, .. } => format!("PostgreSQL database {database}"),
        }
    }

    /// Drops the run's PostgreSQL database (after a clean audit).
    pub async fn remove(&self) {
        if let PlatformStore::Postgres { server, database } = self
            && let Ok(mut admin) = PgConnection::connect(server).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await;
            let _ = admin.close().await;
        }
    }

    /// A read-only look at the store, for the audit.
    pub async fn open(&self) -> Result<StoreReader, String> {
        match self {
            PlatformStore::Sqlite(path) => SqliteConnectOptions::new()
                .filename(path)
                .read_only(true)
                .connect()
                .await
                .map(StoreReader::Sqlite)
                .map_err(|e| format!("cannot open {}: {e}", path.display())),
            PlatformStore::Postgres { .. } => {
                let url = self.url().unwrap_or_default();
                PgConnection::connect(&url)
                    .await
                    .map(StoreReader::Postgres)
                    .map_err(|e| format!("cannot connect to the run's database: {e}"))
            }
        }
    }

    /// Another session holds the write lock for `lasting`: the platform's writes wait for
    /// it. On SQLite the stores give up after 10 s, so a longer lock makes writes fail; on
    /// PostgreSQL every table is locked against writes (reads go on) and writes wait.
    pub async fn refuse_writes(&self, lasting: Duration) {
        match self {
            PlatformStore::Sqlite(path) => hold_sqlite_write_lock(path, lasting).await,
            PlatformStore::Postgres { .. } => {
                let url = self.url().unwrap_or_default();
                let _ = hold_postgres_write_locks(&url, lasting).await;
            }
        }
    }

    /// PostgreSQL only: every session of the platform's is terminated at once, as when the
    /// server restarts or fails over; transactions in flight are rolled back. How many were
    /// cut (none on SQLite, which has no sessions).
    pub async fn cut_sessions(&self) -> Result<u64, String> {
        let PlatformStore::Postgres { server, database } = self else {
            return Ok(0);
        };
        let mut admin = PgConnection::connect(server)
            .await
            .map_err(|e| format!("cannot reach PostgreSQL: {e}"))?;
        let cut = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS cut FROM \
             (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
              WHERE datname = $1 AND pid <> pg_backend_pid()) AS terminated",
        )
        .bind(database)
        .fetch_one(&mut admin)
        .await
        .map(|row| row.get::<i64, _>("cut"))
        .map_err(|e| format!("cannot cut the sessions: {e}"));
        let _ = admin.close().await;
        cut.map(|count| u64::try_from(count).unwrap_or(0))
    }
}

/// `server` with its database replaced by `database`
/// (`postgres://u@h:5432/test?x=y` → `postgres://u@h:5432/<database>?x=y`).
fn with_database(server: &str, database: &str) -> String {
    let (scheme, rest) = server.split_once("://").unwrap_or(("postgres", server));
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let query = tail.find('?').map(|at| &tail[at..]).unwrap_or("");
    format!("{scheme}://{authority}/{database}{query}")
}

/// Holds the write lock of the SQLite database at `path` for `lasting`.
pub async fn hold_sqlite_write_lock(path: &Path, lasting: Duration) {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_secs(2));
    let Ok(mut connection) = options.connect().await else {
        return;
    };
    if sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut connection)
        .await
        .is_ok()
    {
        tokio::time::sleep(lasting).await;
        let _ = sqlx::query("ROLLBACK").execute(&mut connection).await;
    }
    let _ = connection.close().await;
}

/// Locks every table of the database at `url` in EXCLUSIVE mode (reads pass, writes wait)
/// for `lasting`.
async fn hold_postgres_write_locks(url: &str, lasting: Duration) -> Result<(), sqlx::Error> {
    let mut connection = PgConnection::connect(url).await?;
    let tables: Vec<String> = sqlx::query(
        "SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = current_schema()",
    )
    .fetch_all(&mut connection)
    .await?
    .iter()
    .map(|row| row.get::<String, _>("name"))
    .collect();
    if tables.is_empty() {
        return connection.close().await;
    }
    let mut transaction = connection.begin().await?;
    sqlx::query("SET LOCAL lock_timeout = '2s'")
        .execute(&mut *transaction)
        .await?;
    // The names come from the catalogue, quoted by quote_ident.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        tables.join(", ")
    )))
    .execute(&mut *transaction)
    .await?;
    tokio::time::sleep(lasting).await;
    transaction.rollback().await
}

/// The audit's connection to the platform's store. Its queries are written once for both
/// databases and read every column as text.
pub enum StoreReader {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl StoreReader {
    /// The rows of `sql` (bound to `binds` as `$1`, `$2`, …), each column as text (`None`
    /// for NULL). Write the SQL so that every column is text in both databases.
    pub async fn rows(
        &mut self,
        sql: &'static str,
        binds: &[&str],
    ) -> Result<Vec<Vec<Option<String>>>, String> {
        let failed = |e: sqlx::Error| format!("the audit's query failed: {e}");
        match self {
            StoreReader::Sqlite(connection) => {
                let mut query = sqlx::query(sql);
                for bind in binds {
                    query = query.bind(*bind);
                }
                let rows = query.fetch_all(&mut *connection).await.map_err(failed)?;
                rows.iter()
                    .map(texts)
                    .collect::<Result<_, _>>()
                    .map_err(failed)
            }
            StoreReader::Postgres(connection) => {
                let mut query = sqlx::query(sql);
                for bind in binds {
                    query = query.bind(*bind);
                }
                let rows = query.fetch_all(&mut *connection).await.map_err(failed)?;
                rows.iter()
                    .map(texts)
                    .collect::<Result<_, _>>()
                    .map_err(failed)
            }
        }
    }

    /// The single number `sql` counts (written as `CAST(COUNT(*) AS TEXT)`).
    pub async fn count(&mut self, sql: &'static str) -> Result<i64, String> {
        let rows = self.rows(sql, &[]).await?;
        rows.first()
            .and_then(|row| row.first().cloned().flatten())
            .and_then(|count| count.parse().ok())
            .ok_or_else(|| format!("the audit's count gave no number: {sql}"))
    }

    pub async fn close(self) {
        match self {
            StoreReader::Sqlite(connection) => {
                let _ = connection.close().await;
            }
            StoreReader::Postgres(connection) => {
                let _ = connection.close().await;
            }
        }
    }
}

/// Every column of `row` as text.
fn texts<R>(row: &R) -> Result<Vec<Option<String>>, sqlx::Error>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    (0..row.len())
        .map(|column| row.try_get::<Option<String>, _>(column))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_runs_database_replaces_the_servers_in_its_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "run_1"),
            "postgres://postgres@127.0.0.1:5432/run_1"
        );
        assert_eq!(
            with_database("postgresql://u:p@db:5433/x?sslmode=disable", "run_2"),
            "postgresql://u:p@db:5433/run_2?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://db?sslmode=disable", "run_3"),
            "postgres://db/run_3?sslmode=disable"
        );
    }
}
