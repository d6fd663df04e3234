//! The two backends, generated from one body of SQL: every statement below is valid in both
//! SQLite and PostgreSQL (`$n` placeholders, `RETURNING`, partial indexes); the few that
//! differ are passed in per backend. Integers are 64-bit and booleans are booleans in both.

use std::path::Path;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row};

use crate::rows::*;
use crate::{
    PoolOptions, SqliteDurability, StoreError, StoreResult, TokenStore, parse_url_options,
};

macro_rules! issuer_columns {
    () => {
        "id, name, api_url, api_key_hash, webhook_url, webhook_secret, created_at"
    };
}
macro_rules! requestor_columns {
    () => {
        "id, name, wallet, api_key_hash, webhook_url, webhook_secret, created_at"
    };
}
macro_rules! product_columns {
    () => {
        "issuer_id, product, currency, contactless_no_pin_limit, online_no_pin_limit, updated_at, version"
    };
}
macro_rules! user_columns {
    () => {
        "id, token_requestor_id, account_id, created_at"
    };
}
macro_rules! device_columns {
    () => {
        "id, token_requestor_id, external_id, kind, brand, state, user_id, unlock_set, public_key, created_at, updated_at, version"
    };
}
macro_rules! card_columns {
    () => {
        "id, issuer_id, pan_fingerprint, pan_encrypted, pan_bin, pan_last4, expiry, funding, product, status, reserved_phone_masked, par, created_at, updated_at, version"
    };
}
macro_rules! token_columns {
    () => {
        "id, token_number, card_id, device_id, token_requestor_id, user_id, expiry, status, activated, deleted, holds, suspend_reason, status_reason, status_channel, is_default, domain_nfc, domain_in_app, ecash_enabled, ecash_balance, pan_sequence, atc_issued_until, assurance_level, metadata, provisioned_seq, created_at, updated_at, version"
    };
}
macro_rules! outbox_columns {
    () => {
        "id, event_id, subscriber_kind, subscriber_id, token_id, event_type, payload, created_at, attempts, next_attempt_at, delivered_at, failed_at, last_error"
    };
}
macro_rules! qualified_token_columns {
    () => {
        "t.id, t.token_number, t.card_id, t.device_id, t.token_requestor_id, t.user_id, t.expiry, t.status, t.activated, t.deleted, t.holds, t.suspend_reason, t.status_reason, t.status_channel, t.is_default, t.domain_nfc, t.domain_in_app, t.ecash_enabled, t.ecash_balance, t.pan_sequence, t.atc_issued_until, t.assurance_level, t.metadata, t.provisioned_seq, t.created_at, t.updated_at, t.version"
    };
}
macro_rules! aliased_card_columns {
    () => {
        "c.id AS c_id, c.issuer_id AS c_issuer_id, c.pan_fingerprint AS c_pan_fingerprint, c.pan_encrypted AS c_pan_encrypted, c.pan_bin AS c_pan_bin, c.pan_last4 AS c_pan_last4, c.expiry AS c_expiry, c.funding AS c_funding, c.product AS c_product, c.status AS c_status, c.reserved_phone_masked AS c_reserved_phone_masked, c.par AS c_par, c.created_at AS c_created_at, c.updated_at AS c_updated_at, c.version AS c_version"
    };
}

/// Claims due notifications: only the head of each subscriber's queue for a token is marked
/// `head` (see migration 0022), so this reads the due heads through their own index and
/// nothing behind them — its cost is the batch, however long the backlog.
const CLAIM_SQLITE: &str = concat!(
    "UPDATE outbox SET next_attempt_at = $2 WHERE id IN (\
     SELECT id FROM outbox WHERE head = 1 AND delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
     ORDER BY next_attempt_at, id LIMIT $3) RETURNING ",
    outbox_columns!()
);

const CLAIM_POSTGRES: &str = concat!(
    "UPDATE outbox SET next_attempt_at = $2 WHERE id IN (\
     SELECT id FROM outbox WHERE head = 1 AND delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 \
     ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING ",
    outbox_columns!()
);

/// How an outbox queue (one subscriber, one token) is held while its head is decided: an
/// event written while the event before it is delivered must not miss becoming the head.
/// SQLite has one writer, so there is nothing to hold; PostgreSQL takes a transaction-scoped
/// advisory lock on the queue — by its subscriber kind, subscriber ID and token ID for a new
/// event, by an event's own queue for a delivery.
struct OutboxQueueLock {
    by_key: Option<&'static str>,
    by_event: Option<&'static str>,
}

const OUTBOX_QUEUE_LOCK_SQLITE: OutboxQueueLock = OutboxQueueLock {
    by_key: None,
    by_event: None,
};

const OUTBOX_QUEUE_LOCK_POSTGRES: OutboxQueueLock = OutboxQueueLock {
    by_key: Some("SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2 || ':' || $3, 0))"),
    by_event: Some(
        "SELECT pg_advisory_xact_lock(hashtextextended(subscriber_kind || ':' || subscriber_id || ':' || token_id, 0)) \
         FROM outbox WHERE id = $1",
    ),
};

/// A boxed future borrowing a connection.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What a write job reports back once the batch it ran in is committed (or not).
type Finish = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// The work of a write job: runs on the write connection, reports success and a finisher.
type JobWork =
    Box<dyn for<'c> FnOnce(&'c mut sqlx::SqliteConnection) -> BoxFuture<'c, (bool, Finish)> + Send>;

/// One write, queued for the writer task: whether it must run alone (migrations run their own
/// transactions), and the work, which returns whether it succeeded and how to report back.
struct WriteJob {
    exclusive: bool,
    run: JobWork,
    /// Reports a failure without running the job (its batch could not start).
    abort: Finish,
}

/// Most jobs committed together.
const MAX_BATCH: usize = 128;
/// Most jobs waiting for the writer; callers wait beyond that.
const QUEUE_BOUND: usize = 4096;

/// The embedded backend: one file in WAL mode; reads through a pool of read-only
/// connections; every write through one writer task that owns the only write connection.
///
/// The writer commits in groups: it takes every job waiting (up to [`MAX_BATCH`]), runs each
/// inside its own savepoint of one transaction — a job that fails is rolled back alone — and
/// commits once, so one fsync makes a whole batch durable. A job's result is reported only
/// after that commit.
#[derive(Clone)]
pub struct SqliteStore {
    writer: tokio::sync::mpsc::Sender<WriteJob>,
    reader: SqlitePool,
    /// For migrations, which need a connection of their own.
    options: std::sync::Arc<SqliteConnectOptions>,
}

impl SqliteStore {
    pub async fn open(path: &Path, options: PoolOptions) -> StoreResult<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Connect(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let synchronous = match options.sqlite_durability {
            SqliteDurability::Full => SqliteSynchronous::Full,
            SqliteDurability::Normal => SqliteSynchronous::Normal,
        };
        let base = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let connection = base
            .clone()
            .create_if_missing(true)
            .connect()
            .await
            .map_err(|error| StoreError::Connect(error.to_string()))?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(base.clone().read_only(true))
            .await
            .map_err(|error| StoreError::Connect(error.to_string()))?;
        let (writer, jobs) = tokio::sync::mpsc::channel(QUEUE_BOUND);
        tokio::spawn(write_loop(connection, jobs));
        Ok(Self {
            writer,
            reader,
            options: std::sync::Arc::new(base),
        })
    }

    /// Migrations run on a connection of their own (they manage their own transactions); the
    /// writer waits behind SQLite's lock meanwhile.
    async fn run_migrations(&self) -> StoreResult<()> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with((*self.options).clone())
            .await
            .map_err(|error| StoreError::Connect(error.to_string()))?;
        SQLITE_MIGRATIONS.run(&pool).await?;
        pool.close().await;
        Ok(())
    }

    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Runs `work` on the write connection (inside the current batch's transaction unless
    /// `exclusive`) and returns its result once it is durable.
    pub(crate) async fn write<T, F>(&self, exclusive: bool, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut sqlx::SqliteConnection) -> BoxFuture<'c, StoreResult<T>>
            + Send
            + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel::<StoreResult<T>>();
        // The reply goes out once: from the job after its batch commits, or from `abort`.
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(reply)));
        let abort_slot = std::sync::Arc::clone(&slot);
        let job = WriteJob {
            exclusive,
            run: Box::new(move |connection| {
                Box::pin(async move {
                    let result = work(connection).await;
                    let succeeded = result.is_ok();
                    let finish: Finish = Box::new(move |commit_error| {
                        if let Some(reply) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                            let _ = reply.send(match commit_error {
                                Some(error) if succeeded => Err(error.clone()),
                                _ => result,
                            });
                        }
                    });
                    (succeeded, finish)
                })
            }),
            abort: Box::new(move |error| {
                if let Some(reply) = abort_slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = reply.send(Err(error
                        .cloned()
                        .unwrap_or_else(|| StoreError::Database("write aborted".into()))));
                }
            }),
        };
        let stopped = || StoreError::Database("the SQLite writer has stopped".into());
        self.writer.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn execute(
    connection: &mut sqlx::SqliteConnection,
    sql: &'static str,
) -> Result<(), StoreError> {
    sqlx::query(sql).execute(&mut *connection).await?;
    Ok(())
}

/// The writer task: group commits until every store handle is dropped.
async fn write_loop(
    mut connection: sqlx::SqliteConnection,
    mut jobs: tokio::sync::mpsc::Receiver<WriteJob>,
) {
    while let Some(first) = jobs.recv().await {
        if first.exclusive {
            let (_, finish) = (first.run)(&mut connection).await;
            finish(None);
            continue;
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) if !job.exclusive => batch.push(job),
                Ok(job) => {
                    // Run an exclusive job after this batch, alone.
                    run_batch(&mut connection, std::mem::take(&mut batch)).await;
                    let (_, finish) = (job.run)(&mut connection).await;
                    finish(None);
                    break;
                }
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            run_batch(&mut connection, batch).await;
        }
    }
}

async fn run_batch(connection: &mut sqlx::SqliteConnection, batch: Vec<WriteJob>) {
    if let Err(error) = execute(connection, "BEGIN IMMEDIATE").await {
        for job in batch {
            (job.abort)(Some(&error));
        }
        return;
    }
    let mut finishes = Vec::with_capacity(batch.len());
    // Set when a failed job could not be undone: nothing of this batch may be committed.
    let mut poisoned: Option<StoreError> = None;
    for job in batch {
        if let Some(error) = &poisoned {
            (job.abort)(Some(error));
            continue;
        }
        if let Err(error) = execute(connection, "SAVEPOINT job").await {
            (job.abort)(Some(&error));
            continue;
        }
        let (succeeded, finish) = (job.run)(connection).await;
        let closed = if succeeded {
            execute(connection, "RELEASE job").await
        } else {
            match execute(connection, "ROLLBACK TO job").await {
                Ok(()) => execute(connection, "RELEASE job").await,
                Err(error) => Err(error),
            }
        };
        if let Err(error) = &closed {
            poisoned = Some(error.clone());
        }
        finishes.push((finish, closed.err()));
    }
    let committed = match poisoned {
        Some(error) => Err(error),
        None => execute(connection, "COMMIT").await,
    };
    if committed.is_err() {
        let _ = execute(connection, "ROLLBACK").await;
    }
    for (finish, job_error) in finishes {
        match (&committed, job_error) {
            (Err(error), _) => finish(Some(error)),
            (Ok(()), Some(error)) => finish(Some(&error)),
            (Ok(()), None) => finish(None),
        }
    }
}

/// The PostgreSQL backend.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(
        url: &str,
        schema: Option<&str>,
        options: PoolOptions,
    ) -> StoreResult<Self> {
        let mut connect: PgConnectOptions = parse_url_options(url)?;
        if let Some(schema) = schema {
            connect = connect.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|error| StoreError::Connect(error.to_string()))?;
        Ok(Self { pool })
    }

    pub(crate) fn reader(&self) -> &PgPool {
        &self.pool
    }

    async fn run_migrations(&self) -> StoreResult<()> {
        POSTGRES_MIGRATIONS.run(&self.pool).await?;
        Ok(())
    }

    /// Runs `work` in its own transaction (PostgreSQL batches concurrent commits' WAL
    /// flushes itself). `exclusive` work runs outside a transaction.
    pub(crate) async fn write<T, F>(&self, exclusive: bool, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut sqlx::PgConnection) -> BoxFuture<'c, StoreResult<T>>
            + Send
            + 'static,
    {
        if exclusive {
            let mut connection = self.pool.acquire().await?;
            return work(&mut connection).await;
        }
        let mut transaction = self.pool.begin().await?;
        let result = work(&mut transaction).await?;
        transaction.commit().await?;
        Ok(result)
    }
}

macro_rules! backend {
    ($store:ident, $row:ty, $conn:ty, $claim:expr, $outbox_lock:expr) => {
        impl $store {
            fn issuer_from(row: &$row) -> StoreResult<IssuerRow> {
                Ok(IssuerRow {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    api_url: row.try_get("api_url")?,
                    api_key_hash: row.try_get("api_key_hash")?,
                    webhook_url: row.try_get("webhook_url")?,
                    webhook_secret: row.try_get("webhook_secret")?,
                    created_at: row.try_get("created_at")?,
                })
            }

            fn requestor_from(row: &$row) -> StoreResult<TokenRequestorRow> {
                Ok(TokenRequestorRow {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    wallet: row.try_get("wallet")?,
                    api_key_hash: row.try_get("api_key_hash")?,
                    webhook_url: row.try_get("webhook_url")?,
                    webhook_secret: row.try_get("webhook_secret")?,
                    created_at: row.try_get("created_at")?,
                })
            }

            fn product_from(row: &$row) -> StoreResult<ProductRow> {
                Ok(ProductRow {
                    issuer_id: row.try_get("issuer_id")?,
                    product: row.try_get("product")?,
                    currency: row.try_get("currency")?,
                    contactless_no_pin_limit: row.try_get("contactless_no_pin_limit")?,
                    online_no_pin_limit: row.try_get("online_no_pin_limit")?,
                    updated_at: row.try_get("updated_at")?,
                    version: row.try_get("version")?,
                })
            }

            fn user_from(row: &$row) -> StoreResult<UserRow> {
                Ok(UserRow {
                    id: row.try_get("id")?,
                    token_requestor_id: row.try_get("token_requestor_id")?,
                    account_id: row.try_get("account_id")?,
                    created_at: row.try_get("created_at")?,
                })
            }

            fn device_from(row: &$row) -> StoreResult<DeviceRow> {
                Ok(DeviceRow {
                    id: row.try_get("id")?,
                    token_requestor_id: row.try_get("token_requestor_id")?,
                    external_id: row.try_get("external_id")?,
                    kind: row.try_get("kind")?,
                    brand: row.try_get("brand")?,
                    state: row.try_get("state")?,
                    user_id: row.try_get("user_id")?,
                    unlock_set: row.try_get("unlock_set")?,
                    public_key: row.try_get("public_key")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    version: row.try_get("version")?,
                })
            }

            fn card_from(row: &$row, prefix: &str) -> StoreResult<CardRow> {
                let column = |name: &str| format!("{prefix}{name}");
                Ok(CardRow {
                    id: row.try_get(column("id").as_str())?,
                    issuer_id: row.try_get(column("issuer_id").as_str())?,
                    pan_fingerprint: row.try_get(column("pan_fingerprint").as_str())?,
                    pan_encrypted: row.try_get(column("pan_encrypted").as_str())?,
                    pan_bin: row.try_get(column("pan_bin").as_str())?,
                    pan_last4: row.try_get(column("pan_last4").as_str())?,
                    expiry: row.try_get(column("expiry").as_str())?,
                    funding: row.try_get(column("funding").as_str())?,
                    product: row.try_get(column("product").as_str())?,
                    status: row.try_get(column("status").as_str())?,
                    reserved_phone_masked: row.try_get(column("reserved_phone_masked").as_str())?,
                    par: row.try_get(column("par").as_str())?,
                    created_at: row.try_get(column("created_at").as_str())?,
                    updated_at: row.try_get(column("updated_at").as_str())?,
                    version: row.try_get(column("version").as_str())?,
                })
            }

            async fn insert_saf(conn: &mut $conn, row: &SafRow) -> StoreResult<bool> {
                let inserted = sqlx::query(
                    "INSERT INTO switch_saf (id, mti, kind, token_number, original_mti, stan, transmission_time, acquirer_id, rrn, \
                     terminal_id, merchant_id, amount, currency, attempts, next_attempt_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&row.id)
                .bind(&row.mti)
                .bind(&row.kind)
                .bind(&row.token_number)
                .bind(&row.original_mti)
                .bind(&row.stan)
                .bind(&row.transmission_time)
                .bind(&row.acquirer_id)
                .bind(&row.rrn)
                .bind(&row.terminal_id)
                .bind(&row.merchant_id)
                .bind(row.amount)
                .bind(row.currency)
                .bind(row.attempts)
                .bind(row.next_attempt_at)
                .bind(row.created_at)
                .execute(&mut *conn)
                .await?;
                Ok(inserted.rows_affected() == 1)
            }

            fn journal_from(row: &$row) -> StoreResult<JournalRow> {
                Ok(JournalRow {
                    id: row.try_get("id")?,
                    mti: row.try_get("mti")?,
                    acquirer_id: row.try_get("acquirer_id")?,
                    stan: row.try_get("stan")?,
                    transmission_time: row.try_get("transmission_time")?,
                    rrn: row.try_get("rrn")?,
                    terminal_id: row.try_get("terminal_id")?,
                    token_masked: row.try_get("token_masked")?,
                    amount: row.try_get("amount")?,
                    currency: row.try_get("currency")?,
                    received_at: row.try_get("received_at")?,
                    response_code: row.try_get("response_code")?,
                    auth_code: row.try_get("auth_code")?,
                    issuer_outcome: row.try_get("issuer_outcome")?,
                    answered_at: row.try_get("answered_at")?,
                })
            }

            fn saf_from(row: &$row) -> StoreResult<SafRow> {
                Ok(SafRow {
                    id: row.try_get("id")?,
                    mti: row.try_get("mti")?,
                    kind: row.try_get("kind")?,
                    token_number: row.try_get("token_number")?,
                    original_mti: row.try_get("original_mti")?,
                    stan: row.try_get("stan")?,
                    transmission_time: row.try_get("transmission_time")?,
                    acquirer_id: row.try_get("acquirer_id")?,
                    rrn: row.try_get("rrn")?,
                    terminal_id: row.try_get("terminal_id")?,
                    merchant_id: row.try_get("merchant_id")?,
                    amount: row.try_get("amount")?,
                    currency: row.try_get("currency")?,
                    attempts: row.try_get("attempts")?,
                    next_attempt_at: row.try_get("next_attempt_at")?,
                    created_at: row.try_get("created_at")?,
                    acknowledged_at: row.try_get("acknowledged_at")?,
                    response_code: row.try_get("response_code")?,
                })
            }

            fn token_from(row: &$row) -> StoreResult<TokenRow> {
                Ok(TokenRow {
                    id: row.try_get("id")?,
                    token_number: row.try_get("token_number")?,
                    card_id: row.try_get("card_id")?,
                    device_id: row.try_get("device_id")?,
                    token_requestor_id: row.try_get("token_requestor_id")?,
                    user_id: row.try_get("user_id")?,
                    expiry: row.try_get("expiry")?,
                    status: row.try_get("status")?,
                    activated: row.try_get("activated")?,
                    deleted: row.try_get("deleted")?,
                    holds: row.try_get("holds")?,
                    suspend_reason: row.try_get("suspend_reason")?,
                    status_reason: row.try_get("status_reason")?,
                    status_channel: row.try_get("status_channel")?,
                    is_default: row.try_get("is_default")?,
                    domain_nfc: row.try_get("domain_nfc")?,
                    domain_in_app: row.try_get("domain_in_app")?,
                    ecash_enabled: row.try_get("ecash_enabled")?,
                    ecash_balance: row.try_get("ecash_balance")?,
                    pan_sequence: row.try_get("pan_sequence")?,
                    atc_issued_until: row.try_get("atc_issued_until")?,
                    assurance_level: row.try_get("assurance_level")?,
                    metadata: row.try_get("metadata")?,
                    provisioned_seq: row.try_get("provisioned_seq")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    version: row.try_get("version")?,
                })
            }

            fn history_from(row: &$row) -> StoreResult<HistoryRow> {
                Ok(HistoryRow {
                    token_id: row.try_get("token_id")?,
                    at: row.try_get("at")?,
                    event: row.try_get("event")?,
                    channel: row.try_get("channel")?,
                    from_status: row.try_get("from_status")?,
                    to_status: row.try_get("to_status")?,
                    reason: row.try_get("reason")?,
                    detail: row.try_get("detail")?,
                })
            }

            fn outbox_from(row: &$row) -> StoreResult<OutboxRow> {
                Ok(OutboxRow {
                    id: row.try_get("id")?,
                    event_id: row.try_get("event_id")?,
                    subscriber_kind: row.try_get("subscriber_kind")?,
                    subscriber_id: row.try_get("subscriber_id")?,
                    token_id: row.try_get("token_id")?,
                    event_type: row.try_get("event_type")?,
                    payload: row.try_get("payload")?,
                    created_at: row.try_get("created_at")?,
                    attempts: row.try_get("attempts")?,
                    next_attempt_at: row.try_get("next_attempt_at")?,
                    delivered_at: row.try_get("delivered_at")?,
                    failed_at: row.try_get("failed_at")?,
                    last_error: row.try_get("last_error")?,
                })
            }

            async fn one<T>(&self, sql: &'static str, binds: &[&str], map: fn(&$row) -> StoreResult<T>) -> StoreResult<Option<T>> {
                let mut query = sqlx::query(sql);
                for value in binds {
                    query = query.bind(*value);
                }
                query.fetch_optional(self.reader()).await?.as_ref().map(map).transpose()
            }

            async fn many<T>(&self, sql: &'static str, binds: &[&str], map: fn(&$row) -> StoreResult<T>) -> StoreResult<Vec<T>> {
                let mut query = sqlx::query(sql);
                for value in binds {
                    query = query.bind(*value);
                }
                query.fetch_all(self.reader()).await?.iter().map(map).collect()
            }
        }

        impl TokenStore for $store {
            async fn migrate(&self) -> StoreResult<()> {
                self.run_migrations().await
            }

            async fn key(&self, name: &str) -> StoreResult<Option<String>> {
                let row = sqlx::query("SELECT wrapped FROM hsm_keys WHERE name = $1").bind(name).fetch_optional(self.reader()).await?;
                Ok(match row {
                    Some(row) => Some(row.try_get("wrapped")?),
                    None => None,
                })
            }

            async fn keys(&self) -> StoreResult<Vec<(String, String)>> {
                let rows = sqlx::query("SELECT name, wrapped FROM hsm_keys ORDER BY name").fetch_all(self.reader()).await?;
                rows.iter()
                    .map(|row| Ok((row.try_get("name")?, row.try_get("wrapped")?)))
                    .collect()
            }

            async fn replace_keys(&self, replacements: &[KeyReplacement]) -> StoreResult<()> {
                let replacements = replacements.to_vec();
                self.write(true, move |conn: &mut $conn| {
                    Box::pin(async move {
                        for replacement in &replacements {
                            let updated = sqlx::query("UPDATE hsm_keys SET wrapped = $3 WHERE name = $1 AND wrapped = $2")
                                .bind(&replacement.name)
                                .bind(&replacement.old)
                                .bind(&replacement.new)
                                .execute(&mut *conn)
                                .await?;
                            if updated.rows_affected() != 1 {
                                return Err(StoreError::Conflict);
                            }
                        }
                        Ok(())
                    })
                })
                .await
            }

            async fn insert_key_if_absent(&self, name: &str, wrapped: &str, now: i64) -> StoreResult<String> {
                let name = name.to_owned();
                let wrapped = wrapped.to_owned();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let name: &str = &name;
                        let wrapped: &str = &wrapped;
                        sqlx::query("INSERT INTO hsm_keys (name, wrapped, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                            .bind(name)
                            .bind(wrapped)
                            .bind(now)
                            .execute(&mut *conn)
                            .await?;
                        let row = sqlx::query("SELECT wrapped FROM hsm_keys WHERE name = $1").bind(name).fetch_one(&mut *conn).await?;
                        Ok(row.try_get("wrapped")?)
                    })
                })
                .await
            }

            async fn insert_issuer(&self, issuer: &IssuerRow, ranges: &[BinRangeRow], products: &[ProductRow]) -> StoreResult<()> {
                let issuer = issuer.clone();
                let ranges = ranges.to_vec();
                let products = products.to_vec();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let issuer: &IssuerRow = &issuer;
                        let ranges: &[BinRangeRow] = &ranges;
                        let products: &[ProductRow] = &products;
                                        sqlx::query("INSERT INTO issuers (id, name, api_url, api_key_hash, webhook_url, webhook_secret, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                            .bind(&issuer.id)
                            .bind(&issuer.name)
                            .bind(&issuer.api_url)
                            .bind(&issuer.api_key_hash)
                            .bind(&issuer.webhook_url)
                            .bind(&issuer.webhook_secret)
                            .bind(issuer.created_at)
                            .execute(&mut *conn)
                            .await?;
                        for range in ranges {
                            sqlx::query("INSERT INTO bin_ranges (prefix, kind, issuer_id, product, funding) VALUES ($1, $2, $3, $4, $5)")
                                .bind(&range.prefix)
                                .bind(&range.kind)
                                .bind(&range.issuer_id)
                                .bind(&range.product)
                                .bind(&range.funding)
                                .execute(&mut *conn)
                                .await?;
                        }
                        for product in products {
                            sqlx::query(
                                "INSERT INTO products (issuer_id, product, currency, contactless_no_pin_limit, online_no_pin_limit, updated_at, version) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                            )
                            .bind(&product.issuer_id)
                            .bind(&product.product)
                            .bind(product.currency)
                            .bind(product.contactless_no_pin_limit)
                            .bind(product.online_no_pin_limit)
                            .bind(product.updated_at)
                            .bind(product.version)
                            .execute(&mut *conn)
                            .await?;
                        }
                        Ok(())
                    })
                })
                .await
            }

            async fn insert_token_requestor(&self, requestor: &TokenRequestorRow) -> StoreResult<()> {
                let requestor = requestor.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let requestor: &TokenRequestorRow = &requestor;
                        sqlx::query(
                            "INSERT INTO token_requestors (id, name, wallet, api_key_hash, webhook_url, webhook_secret, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(&requestor.id)
                        .bind(&requestor.name)
                        .bind(&requestor.wallet)
                        .bind(&requestor.api_key_hash)
                        .bind(&requestor.webhook_url)
                        .bind(&requestor.webhook_secret)
                        .bind(requestor.created_at)
                        .execute(&mut *conn)
                        .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn insert_user(&self, user: &UserRow) -> StoreResult<()> {
                let user = user.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let user: &UserRow = &user;
                        sqlx::query("INSERT INTO users (id, token_requestor_id, account_id, created_at) VALUES ($1, $2, $3, $4)")
                            .bind(&user.id)
                            .bind(&user.token_requestor_id)
                            .bind(&user.account_id)
                            .bind(user.created_at)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn insert_device(&self, device: &DeviceRow) -> StoreResult<()> {
                let device = device.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let device: &DeviceRow = &device;
                        sqlx::query(concat!("INSERT INTO devices (", device_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"))
                            .bind(&device.id)
                            .bind(&device.token_requestor_id)
                            .bind(&device.external_id)
                            .bind(&device.kind)
                            .bind(&device.brand)
                            .bind(&device.state)
                            .bind(&device.user_id)
                            .bind(device.unlock_set)
                            .bind(&device.public_key)
                            .bind(device.created_at)
                            .bind(device.updated_at)
                            .bind(device.version)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn set_issuer_endpoints(&self, id: &str, api_url: &str, webhook_url: Option<&str>) -> StoreResult<()> {
                let id = id.to_owned();
                let api_url = api_url.to_owned();
                let webhook_url = webhook_url.map(str::to_owned);
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let id: &str = &id;
                        let api_url: &str = &api_url;
                        let webhook_url: Option<&str> = webhook_url.as_deref();
                        sqlx::query("UPDATE issuers SET api_url = $2, webhook_url = $3 WHERE id = $1").bind(id).bind(api_url).bind(webhook_url).execute(&mut *conn).await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn set_token_requestor_webhook(&self, id: &str, webhook_url: Option<&str>) -> StoreResult<()> {
                let id = id.to_owned();
                let webhook_url = webhook_url.map(str::to_owned);
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let id: &str = &id;
                        let webhook_url: Option<&str> = webhook_url.as_deref();
                        sqlx::query("UPDATE token_requestors SET webhook_url = $2 WHERE id = $1").bind(id).bind(webhook_url).execute(&mut *conn).await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn issuer(&self, id: &str) -> StoreResult<Option<IssuerRow>> {
                self.one(concat!("SELECT ", issuer_columns!(), " FROM issuers WHERE id = $1"), &[id], Self::issuer_from).await
            }

            async fn issuer_by_api_key(&self, hash: &[u8]) -> StoreResult<Option<IssuerRow>> {
                let row = sqlx::query(concat!("SELECT ", issuer_columns!(), " FROM issuers WHERE api_key_hash = $1"))
                    .bind(hash)
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref().map(Self::issuer_from).transpose()
            }

            async fn issuers(&self) -> StoreResult<Vec<IssuerRow>> {
                self.many(concat!("SELECT ", issuer_columns!(), " FROM issuers ORDER BY id"), &[], Self::issuer_from).await
            }

            async fn bin_ranges(&self) -> StoreResult<Vec<BinRangeRow>> {
                let rows = sqlx::query("SELECT prefix, kind, issuer_id, product, funding FROM bin_ranges ORDER BY kind, prefix")
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(BinRangeRow {
                            prefix: row.try_get("prefix")?,
                            kind: row.try_get("kind")?,
                            issuer_id: row.try_get("issuer_id")?,
                            product: row.try_get("product")?,
                            funding: row.try_get("funding")?,
                        })
                    })
                    .collect()
            }

            async fn product(&self, issuer_id: &str, product: &str) -> StoreResult<Option<ProductRow>> {
                self.one(concat!("SELECT ", product_columns!(), " FROM products WHERE issuer_id = $1 AND product = $2"), &[issuer_id, product], Self::product_from).await
            }

            async fn token_requestor(&self, id: &str) -> StoreResult<Option<TokenRequestorRow>> {
                self.one(concat!("SELECT ", requestor_columns!(), " FROM token_requestors WHERE id = $1"), &[id], Self::requestor_from).await
            }

            async fn token_requestor_by_api_key(&self, hash: &[u8]) -> StoreResult<Option<TokenRequestorRow>> {
                let row = sqlx::query(concat!("SELECT ", requestor_columns!(), " FROM token_requestors WHERE api_key_hash = $1"))
                    .bind(hash)
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref().map(Self::requestor_from).transpose()
            }

            async fn token_requestors(&self) -> StoreResult<Vec<TokenRequestorRow>> {
                self.many(concat!("SELECT ", requestor_columns!(), " FROM token_requestors ORDER BY id"), &[], Self::requestor_from).await
            }

            async fn user(&self, id: &str) -> StoreResult<Option<UserRow>> {
                self.one(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"), &[id], Self::user_from).await
            }

            async fn user_by_account(&self, token_requestor_id: &str, account_id: &str) -> StoreResult<Option<UserRow>> {
                self.one(
                    concat!("SELECT ", user_columns!(), " FROM users WHERE token_requestor_id = $1 AND account_id = $2"),
                    &[token_requestor_id, account_id],
                    Self::user_from,
                )
                .await
            }

            async fn device(&self, id: &str) -> StoreResult<Option<DeviceRow>> {
                self.one(concat!("SELECT ", device_columns!(), " FROM devices WHERE id = $1"), &[id], Self::device_from).await
            }

            async fn device_by_external_id(&self, token_requestor_id: &str, external_id: &str) -> StoreResult<Option<DeviceRow>> {
                self.one(
                    concat!("SELECT ", device_columns!(), " FROM devices WHERE token_requestor_id = $1 AND external_id = $2"),
                    &[token_requestor_id, external_id],
                    Self::device_from,
                )
                .await
            }

            async fn card(&self, id: &str) -> StoreResult<Option<CardRow>> {
                self.one(concat!("SELECT ", card_columns!(), " FROM cards WHERE id = $1"), &[id], |row| Self::card_from(row, "")).await
            }

            async fn card_by_fingerprint(&self, fingerprint: &[u8]) -> StoreResult<Option<CardRow>> {
                let row = sqlx::query(concat!("SELECT ", card_columns!(), " FROM cards WHERE pan_fingerprint = $1"))
                    .bind(fingerprint)
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref().map(|row| Self::card_from(row, "")).transpose()
            }

            async fn token(&self, id: &str) -> StoreResult<Option<TokenRow>> {
                self.one(concat!("SELECT ", token_columns!(), " FROM tokens WHERE id = $1"), &[id], Self::token_from).await
            }

            async fn token_by_number(&self, token_number: &str) -> StoreResult<Option<TokenRow>> {
                self.one(concat!("SELECT ", token_columns!(), " FROM tokens WHERE token_number = $1"), &[token_number], Self::token_from).await
            }

            async fn tokens_by_device(&self, device_id: &str) -> StoreResult<Vec<TokenRow>> {
                self.many(concat!("SELECT ", token_columns!(), " FROM tokens WHERE device_id = $1 ORDER BY provisioned_seq, id"), &[device_id], Self::token_from).await
            }

            async fn tokens_by_card(&self, card_id: &str) -> StoreResult<Vec<TokenRow>> {
                self.many(concat!("SELECT ", token_columns!(), " FROM tokens WHERE card_id = $1 ORDER BY provisioned_seq, id"), &[card_id], Self::token_from).await
            }

            async fn live_tokens_by_product(&self, issuer_id: &str, product: &str) -> StoreResult<Vec<TokenRow>> {
                self.many(
                    concat!(
                        "SELECT ",
                        qualified_token_columns!(),
                        " FROM tokens t JOIN cards c ON c.id = t.card_id \
                         WHERE c.issuer_id = $1 AND c.product = $2 AND t.deleted = FALSE ORDER BY t.provisioned_seq, t.id"
                    ),
                    &[issuer_id, product],
                    Self::token_from,
                )
                .await
            }

            async fn history(&self, token_id: &str) -> StoreResult<Vec<HistoryRow>> {
                self.many(
                    "SELECT token_id, at, event, channel, from_status, to_status, reason, detail FROM token_history WHERE token_id = $1 ORDER BY id",
                    &[token_id],
                    Self::history_from,
                )
                .await
            }

            async fn challenge(&self, token_id: &str) -> StoreResult<Option<ChallengeRow>> {
                let row = sqlx::query(
                    "SELECT token_id, otp_hash, destination_masked, expires_at, attempts_left, resends_left FROM challenges WHERE token_id = $1",
                )
                .bind(token_id)
                .fetch_optional(self.reader())
                .await?;
                row.map(|row| {
                    Ok(ChallengeRow {
                        token_id: row.try_get("token_id")?,
                        otp_hash: row.try_get("otp_hash")?,
                        destination_masked: row.try_get("destination_masked")?,
                        expires_at: row.try_get("expires_at")?,
                        attempts_left: row.try_get("attempts_left")?,
                        resends_left: row.try_get("resends_left")?,
                    })
                })
                .transpose()
            }

            async fn vault_entry(&self, token_number: &str) -> StoreResult<Option<VaultEntry>> {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    qualified_token_columns!(),
                    ", ",
                    aliased_card_columns!(),
                    ", d.kind AS d_kind, d.state AS d_state, r.wallet AS r_wallet, \
                     p.currency AS p_currency, p.contactless_no_pin_limit AS p_contactless, \
                     p.online_no_pin_limit AS p_online \
                     FROM tokens t JOIN cards c ON c.id = t.card_id \
                     JOIN devices d ON d.id = t.device_id \
                     JOIN token_requestors r ON r.id = t.token_requestor_id \
                     LEFT JOIN products p ON p.issuer_id = c.issuer_id AND p.product = c.product \
                     WHERE t.token_number = $1"
                ))
                .bind(token_number)
                .fetch_optional(self.reader())
                .await?;
                row.map(|row| {
                    let currency: Option<i64> = row.try_get("p_currency")?;
                    let contactless: Option<i64> = row.try_get("p_contactless")?;
                    let online: Option<i64> = row.try_get("p_online")?;
                    Ok(VaultEntry {
                        token: Self::token_from(&row)?,
                        card: Self::card_from(&row, "c_")?,
                        device_kind: row.try_get("d_kind")?,
                        device_state: row.try_get("d_state")?,
                        wallet: row.try_get("r_wallet")?,
                        limits: match (currency, contactless, online) {
                            (Some(currency), Some(contactless), Some(online)) => Some(NoPinLimits {
                                currency,
                                contactless,
                                online,
                            }),
                            _ => None,
                        },
                    })
                })
                .transpose()
            }

            async fn commit(&self, changeset: &Changeset) -> StoreResult<()> {
                let changeset = changeset.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let changeset: &Changeset = &changeset;
                                        let guard = |affected: u64| if affected == 1 { Ok(()) } else { Err(StoreError::Conflict) };

                        for (id, version) in &changeset.device_guards {
                            let done = sqlx::query("UPDATE devices SET version = version + 1 WHERE id = $1 AND version = $2")
                                .bind(id)
                                .bind(version)
                                .execute(&mut *conn)
                                .await?;
                            guard(done.rows_affected())?;
                        }
                        for (id, version) in &changeset.card_guards {
                            let done = sqlx::query("UPDATE cards SET version = version + 1 WHERE id = $1 AND version = $2")
                                .bind(id)
                                .bind(version)
                                .execute(&mut *conn)
                                .await?;
                            guard(done.rows_affected())?;
                        }
                        for card in &changeset.card_inserts {
                            sqlx::query(concat!("INSERT INTO cards (", card_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"))
                                .bind(&card.id)
                                .bind(&card.issuer_id)
                                .bind(&card.pan_fingerprint)
                                .bind(&card.pan_encrypted)
                                .bind(&card.pan_bin)
                                .bind(&card.pan_last4)
                                .bind(&card.expiry)
                                .bind(&card.funding)
                                .bind(&card.product)
                                .bind(&card.status)
                                .bind(&card.reserved_phone_masked)
                                .bind(&card.par)
                                .bind(card.created_at)
                                .bind(card.updated_at)
                                .bind(card.version)
                                .execute(&mut *conn)
                                .await?;
                        }
                        for card in &changeset.card_updates {
                            let done = sqlx::query(
                                "UPDATE cards SET pan_fingerprint = $3, pan_encrypted = $4, pan_bin = $5, pan_last4 = $6, expiry = $7, funding = $8, \
                                 product = $9, status = $10, reserved_phone_masked = $11, updated_at = $12, version = version + 1 \
                                 WHERE id = $1 AND version = $2",
                            )
                            .bind(&card.id)
                            .bind(card.version)
                            .bind(&card.pan_fingerprint)
                            .bind(&card.pan_encrypted)
                            .bind(&card.pan_bin)
                            .bind(&card.pan_last4)
                            .bind(&card.expiry)
                            .bind(&card.funding)
                            .bind(&card.product)
                            .bind(&card.status)
                            .bind(&card.reserved_phone_masked)
                            .bind(card.updated_at)
                            .execute(&mut *conn)
                            .await?;
                            guard(done.rows_affected())?;
                        }
                        for device in &changeset.device_updates {
                            let done = sqlx::query(
                                "UPDATE devices SET state = $3, user_id = $4, unlock_set = $5, public_key = $6, updated_at = $7, version = version + 1 \
                                 WHERE id = $1 AND version = $2",
                            )
                            .bind(&device.id)
                            .bind(device.version)
                            .bind(&device.state)
                            .bind(&device.user_id)
                            .bind(device.unlock_set)
                            .bind(&device.public_key)
                            .bind(device.updated_at)
                            .execute(&mut *conn)
                            .await?;
                            guard(done.rows_affected())?;
                        }
                        for product in &changeset.product_updates {
                            let done = sqlx::query(
                                "UPDATE products SET currency = $4, contactless_no_pin_limit = $5, online_no_pin_limit = $6, updated_at = $7, \
                                 version = version + 1 WHERE issuer_id = $1 AND product = $2 AND version = $3",
                            )
                            .bind(&product.issuer_id)
                            .bind(&product.product)
                            .bind(product.version)
                            .bind(product.currency)
                            .bind(product.contactless_no_pin_limit)
                            .bind(product.online_no_pin_limit)
                            .bind(product.updated_at)
                            .execute(&mut *conn)
                            .await?;
                            guard(done.rows_affected())?;
                        }

                        // Order matters for the one-default-per-device index: clear old defaults
                        // first, then insert, then set new defaults.
                        let (setting_default, others): (Vec<&TokenRow>, Vec<&TokenRow>) =
                            changeset.token_updates.iter().partition(|token| token.is_default);
                        for token in others {
                            Self::update_token(&mut *conn, token).await?;
                        }
                        for token in &changeset.token_inserts {
                            sqlx::query(concat!(
                                "INSERT INTO tokens (",
                                token_columns!(),
                                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
                                 $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)"
                            ))
                            .bind(&token.id)
                            .bind(&token.token_number)
                            .bind(&token.card_id)
                            .bind(&token.device_id)
                            .bind(&token.token_requestor_id)
                            .bind(&token.user_id)
                            .bind(&token.expiry)
                            .bind(&token.status)
                            .bind(token.activated)
                            .bind(token.deleted)
                            .bind(token.holds)
                            .bind(&token.suspend_reason)
                            .bind(&token.status_reason)
                            .bind(&token.status_channel)
                            .bind(token.is_default)
                            .bind(token.domain_nfc)
                            .bind(token.domain_in_app)
                            .bind(token.ecash_enabled)
                            .bind(token.ecash_balance)
                            .bind(token.pan_sequence)
                            .bind(token.atc_issued_until)
                            .bind(&token.assurance_level)
                            .bind(&token.metadata)
                            .bind(token.provisioned_seq)
                            .bind(token.created_at)
                            .bind(token.updated_at)
                            .bind(token.version)
                            .execute(&mut *conn)
                            .await?;
                        }
                        for token in setting_default {
                            Self::update_token(&mut *conn, token).await?;
                        }

                        for entry in &changeset.history {
                            sqlx::query(
                                "INSERT INTO token_history (token_id, at, event, channel, from_status, to_status, reason, detail) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                            )
                            .bind(&entry.token_id)
                            .bind(entry.at)
                            .bind(&entry.event)
                            .bind(&entry.channel)
                            .bind(&entry.from_status)
                            .bind(&entry.to_status)
                            .bind(&entry.reason)
                            .bind(&entry.detail)
                            .execute(&mut *conn)
                            .await?;
                        }
                        if let Some(lock) = $outbox_lock.by_key {
                            // In one order, so two changes to the same queues never wait on each other.
                            let mut queues: Vec<_> = changeset
                                .outbox
                                .iter()
                                .map(|event| (&event.subscriber_kind, &event.subscriber_id, &event.token_id))
                                .collect();
                            queues.sort();
                            queues.dedup();
                            for (kind, subscriber, token) in queues {
                                sqlx::query(lock).bind(kind).bind(subscriber).bind(token).execute(&mut *conn).await?;
                            }
                        }
                        for event in &changeset.outbox {
                            sqlx::query(
                                "INSERT INTO outbox (event_id, subscriber_kind, subscriber_id, token_id, event_type, payload, created_at, attempts, next_attempt_at, head) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $7, CASE WHEN EXISTS (SELECT 1 FROM outbox p \
                                 WHERE p.subscriber_kind = $2 AND p.subscriber_id = $3 AND p.token_id = $4 \
                                 AND p.delivered_at IS NULL AND p.failed_at IS NULL) THEN 0 ELSE 1 END)",
                            )
                            .bind(&event.event_id)
                            .bind(&event.subscriber_kind)
                            .bind(&event.subscriber_id)
                            .bind(&event.token_id)
                            .bind(&event.event_type)
                            .bind(&event.payload)
                            .bind(event.created_at)
                            .execute(&mut *conn)
                            .await?;
                        }
                        for challenge in &changeset.challenge_upserts {
                            sqlx::query(
                                "INSERT INTO challenges (token_id, otp_hash, destination_masked, expires_at, attempts_left, resends_left) \
                                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (token_id) DO UPDATE SET otp_hash = excluded.otp_hash, \
                                 destination_masked = excluded.destination_masked, expires_at = excluded.expires_at, \
                                 attempts_left = excluded.attempts_left, resends_left = excluded.resends_left",
                            )
                            .bind(&challenge.token_id)
                            .bind(&challenge.otp_hash)
                            .bind(&challenge.destination_masked)
                            .bind(challenge.expires_at)
                            .bind(challenge.attempts_left)
                            .bind(challenge.resends_left)
                            .execute(&mut *conn)
                            .await?;
                        }
                        for token_id in &changeset.challenge_deletes {
                            sqlx::query("DELETE FROM challenges WHERE token_id = $1").bind(token_id).execute(&mut *conn).await?;
                        }
                        if let Some(claim) = &changeset.idempotency_claim {
                            sqlx::query("UPDATE idempotency SET effect_committed = 1 WHERE principal = $1 AND idempotency_key = $2")
                                .bind(&claim.principal)
                                .bind(&claim.key)
                                .execute(&mut *conn)
                                .await?;
                        }
                        Ok(())
                    })
                })
                .await
            }

            async fn claim_due_events(&self, now: i64, lease_until: i64, limit: i64) -> StoreResult<Vec<OutboxRow>> {
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let rows = sqlx::query($claim)
                            .bind(now)
                            .bind(lease_until)
                            .bind(limit)
                            .fetch_all(&mut *conn)
                            .await?;
                        let mut events = rows.iter().map(Self::outbox_from).collect::<StoreResult<Vec<_>>>()?;
                        events.sort_by_key(|event| event.id);
                        Ok(events)
                    })
                })
                .await
            }

            async fn record_delivery(&self, id: i64, outcome: &DeliveryOutcome) -> StoreResult<()> {
                let outcome = outcome.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let outcome: &DeliveryOutcome = &outcome;
                        if let Some(lock) = $outbox_lock.by_event {
                            sqlx::query(lock).bind(id).execute(&mut *conn).await?;
                        }
                        let query = match outcome {
                            DeliveryOutcome::Delivered { at } => sqlx::query(
                                "UPDATE outbox SET attempts = attempts + 1, delivered_at = $2, last_error = NULL, head = 0 WHERE id = $1",
                            )
                            .bind(id)
                            .bind(*at),
                            DeliveryOutcome::Retry { error, next_attempt_at } => sqlx::query(
                                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 WHERE id = $1",
                            )
                            .bind(id)
                            .bind(*next_attempt_at)
                            .bind(error.clone()),
                            DeliveryOutcome::GiveUp { error, at } => sqlx::query(
                                "UPDATE outbox SET attempts = attempts + 1, failed_at = $2, last_error = $3, head = 0 WHERE id = $1",
                            )
                            .bind(id)
                            .bind(*at)
                            .bind(error.clone()),
                        };
                        query.execute(&mut *conn).await?;
                        if !matches!(outcome, DeliveryOutcome::Retry { .. }) {
                            // The event has left its queue: the next pending one, if any, is the head.
                            sqlx::query(
                                "UPDATE outbox SET head = 1 WHERE id = (SELECT MIN(n.id) FROM outbox n, outbox d \
                                 WHERE d.id = $1 AND n.subscriber_kind = d.subscriber_kind AND n.subscriber_id = d.subscriber_id \
                                 AND n.token_id = d.token_id AND n.delivered_at IS NULL AND n.failed_at IS NULL)",
                            )
                            .bind(id)
                            .execute(&mut *conn)
                            .await?;
                        }
                        Ok(())
                    })
                })
                .await
            }

            async fn outbox_for_token(&self, token_id: &str) -> StoreResult<Vec<OutboxRow>> {
                self.many(concat!("SELECT ", outbox_columns!(), " FROM outbox WHERE token_id = $1 ORDER BY id"), &[token_id], Self::outbox_from).await
            }

            async fn prune_outbox(&self, before: i64) -> StoreResult<u64> {
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let done = sqlx::query("DELETE FROM outbox WHERE created_at < $1 AND (delivered_at IS NOT NULL OR failed_at IS NOT NULL)")
                            .bind(before)
                            .execute(&mut *conn)
                            .await?;
                        Ok(done.rows_affected())
                    })
                })
                .await
            }

            async fn prune_idempotency(&self, before: i64) -> StoreResult<u64> {
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let done = sqlx::query("DELETE FROM idempotency WHERE created_at < $1").bind(before).execute(&mut *conn).await?;
                        Ok(done.rows_affected())
                    })
                })
                .await
            }

            async fn idempotency_begin(&self, principal: &str, key: &str, request_hash: &[u8], now: i64, stale_before: i64) -> StoreResult<IdempotencyBegin> {
                let principal = principal.to_owned();
                let key = key.to_owned();
                let request_hash = request_hash.to_vec();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let principal: &str = &principal;
                        let key: &str = &key;
                        let request_hash: &[u8] = &request_hash;
                        let inserted = sqlx::query(
                            "INSERT INTO idempotency (principal, idempotency_key, request_hash, created_at) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (principal, idempotency_key) DO NOTHING",
                        )
                        .bind(principal)
                        .bind(key)
                        .bind(request_hash)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                        if inserted.rows_affected() == 1 {
                            return Ok(IdempotencyBegin::New);
                        }
                        let row = sqlx::query(
                            "SELECT request_hash, response_status, response_body, created_at, effect_committed FROM idempotency \
                             WHERE principal = $1 AND idempotency_key = $2",
                        )
                        .bind(principal)
                        .bind(key)
                        .fetch_one(&mut *conn)
                        .await?;
                        let stored: Vec<u8> = row.try_get("request_hash")?;
                        if stored != request_hash {
                            return Ok(IdempotencyBegin::Mismatch);
                        }
                        let status: Option<i64> = row.try_get("response_status")?;
                        let body: Option<String> = row.try_get("response_body")?;
                        if let (Some(status), Some(body)) = (status, body) {
                            return Ok(IdempotencyBegin::Replay {
                                status: u16::try_from(status).map_err(|_| StoreError::Corrupt("idempotency status".into()))?,
                                body,
                            });
                        }
                        let claimed_at: i64 = row.try_get("created_at")?;
                        if claimed_at >= stale_before {
                            return Ok(IdempotencyBegin::InProgress);
                        }
                        // Only one of several callers finding the same stale claim takes it.
                        let taken = sqlx::query(
                            "UPDATE idempotency SET created_at = $3 \
                             WHERE principal = $1 AND idempotency_key = $2 AND created_at = $4 AND response_status IS NULL",
                        )
                        .bind(principal)
                        .bind(key)
                        .bind(now)
                        .bind(claimed_at)
                        .execute(&mut *conn)
                        .await?;
                        if taken.rows_affected() != 1 {
                            return Ok(IdempotencyBegin::InProgress);
                        }
                        let effect_committed: i64 = row.try_get("effect_committed")?;
                        Ok(IdempotencyBegin::TakenOver { effect_committed: effect_committed != 0 })
                    })
                })
                .await
            }

            async fn idempotency_complete(&self, principal: &str, key: &str, status: u16, body: &str) -> StoreResult<()> {
                let principal = principal.to_owned();
                let key = key.to_owned();
                let body = body.to_owned();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let principal: &str = &principal;
                        let key: &str = &key;
                        let body: &str = &body;
                        sqlx::query(
                            "UPDATE idempotency SET response_status = $3, response_body = $4 \
                             WHERE principal = $1 AND idempotency_key = $2 AND response_status IS NULL",
                        )
                            .bind(principal)
                            .bind(key)
                            .bind(i64::from(status))
                            .bind(body)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn journal_apply(&self, ops: &[JournalOp]) -> StoreResult<Vec<JournalOutcome>> {
                let ops = ops.to_vec();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let mut outcomes = Vec::with_capacity(ops.len());
                        for op in &ops {
                            outcomes.push(match op {
                                JournalOp::Begin(row) => {
                                    let inserted = sqlx::query(
                                        "INSERT INTO switch_journal (id, mti, acquirer_id, stan, transmission_time, rrn, terminal_id, token_masked, \
                                         amount, currency, received_at, response_code, auth_code, issuer_outcome, answered_at) \
                                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT (id) DO NOTHING",
                                    )
                                    .bind(&row.id)
                                    .bind(&row.mti)
                                    .bind(&row.acquirer_id)
                                    .bind(&row.stan)
                                    .bind(&row.transmission_time)
                                    .bind(&row.rrn)
                                    .bind(&row.terminal_id)
                                    .bind(&row.token_masked)
                                    .bind(row.amount)
                                    .bind(row.currency)
                                    .bind(row.received_at)
                                    .bind(&row.response_code)
                                    .bind(&row.auth_code)
                                    .bind(&row.issuer_outcome)
                                    .bind(row.answered_at)
                                    .execute(&mut *conn)
                                    .await?;
                                    if inserted.rows_affected() == 1 {
                                        JournalOutcome::Recorded
                                    } else {
                                        let existing = sqlx::query("SELECT * FROM switch_journal WHERE id = $1")
                                            .bind(&row.id)
                                            .fetch_one(&mut *conn)
                                            .await?;
                                        JournalOutcome::Duplicate(Box::new(Self::journal_from(&existing)?))
                                    }
                                }
                                JournalOp::Answer(answer) => {
                                    sqlx::query(
                                        "UPDATE switch_journal SET response_code = $2, auth_code = $3, issuer_outcome = $4, answered_at = $5 WHERE id = $1",
                                    )
                                    .bind(&answer.id)
                                    .bind(&answer.response_code)
                                    .bind(&answer.auth_code)
                                    .bind(&answer.issuer_outcome)
                                    .bind(answer.answered_at)
                                    .execute(&mut *conn)
                                    .await?;
                                    JournalOutcome::Recorded
                                }
                                JournalOp::ClearOffline { token_number, atc, advice } => {
                                    let claimed = sqlx::query(
                                        "INSERT INTO switch_offline_clearings (token_number, atc, journal_id, cleared_at) VALUES ($1, $2, $3, $4) \
                                         ON CONFLICT (token_number, atc) DO NOTHING",
                                    )
                                    .bind(token_number)
                                    .bind(*atc)
                                    .bind(&advice.id)
                                    .bind(advice.created_at)
                                    .execute(&mut *conn)
                                    .await?;
                                    if claimed.rows_affected() == 1 {
                                        Self::insert_saf(&mut *conn, advice).await?;
                                        JournalOutcome::Recorded
                                    } else {
                                        JournalOutcome::AlreadyCleared
                                    }
                                }
                                JournalOp::AcceptAtc { token_number, atc, at } => {
                                    // One statement decides: a row is written only when the
                                    // ATC is new or higher, so two instances (or two requests
                                    // in one batch) can never both accept the same ATC.
                                    let accepted = sqlx::query(
                                        "INSERT INTO switch_token_atcs (token_number, last_atc, accepted_at) VALUES ($1, $2, $3) \
                                         ON CONFLICT (token_number) DO UPDATE SET last_atc = excluded.last_atc, accepted_at = excluded.accepted_at \
                                         WHERE switch_token_atcs.last_atc < excluded.last_atc",
                                    )
                                    .bind(token_number)
                                    .bind(*atc)
                                    .bind(*at)
                                    .execute(&mut *conn)
                                    .await?;
                                    if accepted.rows_affected() == 1 {
                                        JournalOutcome::Recorded
                                    } else {
                                        JournalOutcome::StaleAtc
                                    }
                                }
                                JournalOp::Enqueue(row) => {
                                    if Self::insert_saf(&mut *conn, row).await? {
                                        JournalOutcome::Recorded
                                    } else {
                                        JournalOutcome::AlreadyQueued
                                    }
                                }
                            });
                        }
                        Ok(outcomes)
                    })
                })
                .await
            }

            async fn journal_entry(&self, id: &str) -> StoreResult<Option<JournalRow>> {
                sqlx::query("SELECT * FROM switch_journal WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?
                    .map(|row| Self::journal_from(&row))
                    .transpose()
            }

            async fn recent_journal(&self, limit: i64) -> StoreResult<Vec<JournalRow>> {
                sqlx::query("SELECT * FROM switch_journal ORDER BY received_at DESC, id DESC LIMIT $1")
                    .bind(limit)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(Self::journal_from)
                    .collect()
            }

            async fn recent_tokens(&self, limit: i64) -> StoreResult<Vec<TokenRow>> {
                sqlx::query(concat!("SELECT ", token_columns!(), " FROM tokens ORDER BY created_at DESC, id DESC LIMIT $1"))
                    .bind(limit)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(Self::token_from)
                    .collect()
            }

            async fn saf_due(&self, now: i64, limit: i64) -> StoreResult<Vec<SafRow>> {
                sqlx::query(
                    "SELECT * FROM switch_saf s WHERE s.acknowledged_at IS NULL AND s.next_attempt_at <= $1 \
                     AND NOT EXISTS (SELECT 1 FROM switch_saf e WHERE e.acknowledged_at IS NULL AND e.acquirer_id = s.acquirer_id \
                     AND e.stan = s.stan AND e.transmission_time = s.transmission_time \
                     AND (e.created_at < s.created_at OR (e.created_at = s.created_at AND e.id < s.id))) \
                     ORDER BY s.next_attempt_at, s.id LIMIT $2",
                )
                .bind(now)
                .bind(limit)
                .fetch_all(self.reader())
                .await?
                .iter()
                .map(Self::saf_from)
                .collect()
            }

            async fn saf_record(&self, id: &str, delivery: &SafDelivery) -> StoreResult<()> {
                let id = id.to_owned();
                let delivery = delivery.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        match &delivery {
                            SafDelivery::Acknowledged { response_code, at } => {
                                sqlx::query(
                                    "UPDATE switch_saf SET attempts = attempts + 1, acknowledged_at = $2, response_code = $3 WHERE id = $1 AND acknowledged_at IS NULL",
                                )
                                .bind(&id)
                                .bind(*at)
                                .bind(response_code)
                                .execute(&mut *conn)
                                .await?;
                            }
                            SafDelivery::Retry { next_attempt_at } => {
                                sqlx::query(
                                    "UPDATE switch_saf SET attempts = attempts + 1, next_attempt_at = $2 WHERE id = $1 AND acknowledged_at IS NULL",
                                )
                                .bind(&id)
                                .bind(*next_attempt_at)
                                .execute(&mut *conn)
                                .await?;
                            }
                        }
                        Ok(())
                    })
                })
                .await
            }

            async fn spend_push_receipt(&self, receipt_id: &str, token_requestor_id: &str, at: i64) -> StoreResult<bool> {
                let receipt_id = receipt_id.to_owned();
                let token_requestor_id = token_requestor_id.to_owned();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let spent = sqlx::query(
                            "INSERT INTO push_receipts_spent (receipt_id, token_requestor_id, spent_at) VALUES ($1, $2, $3) ON CONFLICT (receipt_id) DO NOTHING",
                        )
                        .bind(&receipt_id)
                        .bind(&token_requestor_id)
                        .bind(at)
                        .execute(&mut *conn)
                        .await?;
                        Ok(spent.rows_affected() == 1)
                    })
                })
                .await
            }

            async fn unspend_push_receipt(&self, receipt_id: &str) -> StoreResult<()> {
                let receipt_id = receipt_id.to_owned();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        sqlx::query("DELETE FROM push_receipts_spent WHERE receipt_id = $1")
                            .bind(&receipt_id)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn record_provisioning_decline(&self, decline: &DeclineRow) -> StoreResult<()> {
                let decline = decline.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        sqlx::query(
                            "INSERT INTO provisioning_declines (card_fingerprint, token_requestor_id, user_id, reason, declined_at) VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(&decline.card_fingerprint)
                        .bind(&decline.token_requestor_id)
                        .bind(&decline.user_id)
                        .bind(&decline.reason)
                        .bind(decline.declined_at)
                        .execute(&mut *conn)
                        .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn provisioning_declines_since(&self, card_fingerprint: &[u8], user_id: &str, since: i64) -> StoreResult<DeclineCounts> {
                let row = sqlx::query(
                    "SELECT (SELECT COUNT(*) FROM provisioning_declines WHERE card_fingerprint = $1 AND declined_at >= $3) AS for_card, \
                     (SELECT COUNT(*) FROM provisioning_declines WHERE user_id = $2 AND declined_at >= $3) AS for_user",
                )
                .bind(card_fingerprint)
                .bind(user_id)
                .bind(since)
                .fetch_one(self.reader())
                .await?;
                Ok(DeclineCounts {
                    for_card: row.try_get("for_card")?,
                    for_user: row.try_get("for_user")?,
                })
            }

            async fn provisioning_declines_of_card(&self, card_fingerprint: &[u8], since: i64, limit: i64) -> StoreResult<Vec<DeclineRow>> {
                let rows = sqlx::query(
                    "SELECT card_fingerprint, token_requestor_id, user_id, reason, declined_at FROM provisioning_declines \
                     WHERE card_fingerprint = $1 AND declined_at >= $2 ORDER BY declined_at DESC, id DESC LIMIT $3",
                )
                .bind(card_fingerprint)
                .bind(since)
                .bind(limit)
                .fetch_all(self.reader())
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(DeclineRow {
                            card_fingerprint: row.try_get("card_fingerprint")?,
                            token_requestor_id: row.try_get("token_requestor_id")?,
                            user_id: row.try_get("user_id")?,
                            reason: row.try_get("reason")?,
                            declined_at: row.try_get("declined_at")?,
                        })
                    })
                    .collect()
            }

            async fn saf_entry(&self, id: &str) -> StoreResult<Option<SafRow>> {
                sqlx::query("SELECT * FROM switch_saf WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?
                    .map(|row| Self::saf_from(&row))
                    .transpose()
            }

            async fn idempotency_release(&self, principal: &str, key: &str) -> StoreResult<()> {
                let principal = principal.to_owned();
                let key = key.to_owned();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let principal: &str = &principal;
                        let key: &str = &key;
                        sqlx::query(
                            "DELETE FROM idempotency WHERE principal = $1 AND idempotency_key = $2 \
                             AND response_status IS NULL AND effect_committed = 0",
                        )
                            .bind(principal)
                            .bind(key)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }
        }
    };
}

macro_rules! token_update {
    ($store:ident, $conn:ty) => {
        impl $store {
            async fn update_token(conn: &mut $conn, token: &TokenRow) -> StoreResult<()> {
                let done = sqlx::query(
                    "UPDATE tokens SET card_id = $3, expiry = $4, status = $5, activated = $6, deleted = $7, holds = $8, suspend_reason = $9, \
                     status_reason = $10, status_channel = $11, is_default = $12, domain_nfc = $13, domain_in_app = $14, ecash_enabled = $15, \
                     ecash_balance = $16, atc_issued_until = $17, assurance_level = $18, metadata = $19, updated_at = $20, version = version + 1 \
                     WHERE id = $1 AND version = $2",
                )
                .bind(&token.id)
                .bind(token.version)
                .bind(&token.card_id)
                .bind(&token.expiry)
                .bind(&token.status)
                .bind(token.activated)
                .bind(token.deleted)
                .bind(token.holds)
                .bind(&token.suspend_reason)
                .bind(&token.status_reason)
                .bind(&token.status_channel)
                .bind(token.is_default)
                .bind(token.domain_nfc)
                .bind(token.domain_in_app)
                .bind(token.ecash_enabled)
                .bind(token.ecash_balance)
                .bind(token.atc_issued_until)
                .bind(&token.assurance_level)
                .bind(&token.metadata)
                .bind(token.updated_at)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() == 1 { Ok(()) } else { Err(StoreError::Conflict) }
            }
        }
    };
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

backend!(
    SqliteStore,
    sqlx::sqlite::SqliteRow,
    sqlx::SqliteConnection,
    CLAIM_SQLITE,
    OUTBOX_QUEUE_LOCK_SQLITE
);
backend!(
    PgStore,
    sqlx::postgres::PgRow,
    sqlx::PgConnection,
    CLAIM_POSTGRES,
    OUTBOX_QUEUE_LOCK_POSTGRES
);
token_update!(SqliteStore, sqlx::SqliteConnection);
token_update!(PgStore, sqlx::PgConnection);
