//! What is waiting to be delivered, for operators ([`BacklogStore`]): the switch's
//! store-and-forward advices not yet acknowledged, the token service's notifications and the
//! gateway's notifications neither delivered nor given up. Each counted with the creation
//! time of its oldest, on both backends from one body of SQL; each count is one indexed scan
//! of what is pending.

use std::future::Future;

use sqlx::Row;

use crate::{AnyStore, PgStore, SqliteStore, StoreResult};

/// One queue's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub pending: i64,
    /// Unix milliseconds the oldest pending one was created; `None` when none is.
    pub oldest_created_at: Option<i64>,
}

/// The queues operators watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlogs {
    /// `switch_saf`: advices to the issuer not acknowledged.
    pub store_and_forward: Backlog,
    /// `outbox`: token lifecycle notifications to wallets and issuers.
    pub outbox: Backlog,
    /// `gateway_notifications`: notifications to merchants' `backUrl`.
    pub merchant_notifications: Backlog,
}

pub trait BacklogStore: Send + Sync {
    fn backlogs(&self) -> impl Future<Output = StoreResult<Backlogs>> + Send;
    /// One round trip to the database: whether it answers.
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
}

const SAF: &str =
    "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM switch_saf WHERE acknowledged_at IS NULL";
const OUTBOX: &str = "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL";
const MERCHANT: &str = "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM gateway_notifications WHERE delivered_at IS NULL AND failed_at IS NULL";

macro_rules! backlog_backend {
    ($store:ident) => {
        impl $store {
            async fn backlog_of(&self, sql: &'static str) -> StoreResult<Backlog> {
                let row = sqlx::query(sql).fetch_one(self.reader()).await?;
                Ok(Backlog {
                    pending: row.try_get("n")?,
                    oldest_created_at: row.try_get("oldest")?,
                })
            }
        }

        impl BacklogStore for $store {
            async fn backlogs(&self) -> StoreResult<Backlogs> {
                Ok(Backlogs {
                    store_and_forward: self.backlog_of(SAF).await?,
                    outbox: self.backlog_of(OUTBOX).await?,
                    merchant_notifications: self.backlog_of(MERCHANT).await?,
                })
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(self.reader()).await?;
                Ok(())
            }
        }
    };
}

backlog_backend!(SqliteStore);
backlog_backend!(PgStore);

impl BacklogStore for AnyStore {
    async fn backlogs(&self) -> StoreResult<Backlogs> {
        match self {
            AnyStore::Sqlite(store) => store.backlogs().await,
            AnyStore::Postgres(store) => store.backlogs().await,
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(store) => store.ping().await,
            AnyStore::Postgres(store) => store.ping().await,
        }
    }
}
