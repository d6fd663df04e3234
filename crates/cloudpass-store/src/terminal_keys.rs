//! Terminals' working keys from their last sign-on, wrapped under the switch's master key
//! ([`TerminalKeyStore`]), on both backends from one body of SQL. The store sees only the
//! wrapped text; the switch's HSM unwraps it.

use std::future::Future;

use sqlx::Row;

use crate::{AnyStore, PgStore, SqliteStore, StoreResult};

/// A terminal's working keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalKeysRow {
    pub acquirer_id: String,
    pub terminal_id: String,
    /// The PIN key, wrapped (`cpk1.…`).
    pub pin_key: String,
    /// The MAC key, wrapped (`cpk1.…`).
    pub mac_key: String,
    /// Unix milliseconds.
    pub signed_on_at: i64,
}

pub trait TerminalKeyStore: Send + Sync {
    /// Keeps a terminal's keys, replacing those of its sign-on before.
    fn save_terminal_keys(
        &self,
        row: &TerminalKeysRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Every terminal's keys.
    fn terminal_keys(&self) -> impl Future<Output = StoreResult<Vec<TerminalKeysRow>>> + Send;
}

macro_rules! terminal_keys_backend {
    ($store:ident, $conn:ty) => {
        impl TerminalKeyStore for $store {
            async fn save_terminal_keys(&self, row: &TerminalKeysRow) -> StoreResult<()> {
                let r = row.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO switch_terminal_keys (acquirer_id, terminal_id, pin_key, mac_key, signed_on_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (acquirer_id, terminal_id) DO UPDATE SET pin_key = excluded.pin_key, mac_key = excluded.mac_key, signed_on_at = excluded.signed_on_at")
                            .bind(&r.acquirer_id).bind(&r.terminal_id).bind(&r.pin_key)
                            .bind(&r.mac_key).bind(r.signed_on_at)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn terminal_keys(&self) -> StoreResult<Vec<TerminalKeysRow>> {
                let rows = sqlx::query("SELECT acquirer_id, terminal_id, pin_key, mac_key, signed_on_at FROM switch_terminal_keys ORDER BY acquirer_id, terminal_id")
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(TerminalKeysRow {
                            acquirer_id: row.try_get("acquirer_id")?,
                            terminal_id: row.try_get("terminal_id")?,
                            pin_key: row.try_get("pin_key")?,
                            mac_key: row.try_get("mac_key")?,
                            signed_on_at: row.try_get("signed_on_at")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

terminal_keys_backend!(SqliteStore, sqlx::SqliteConnection);
terminal_keys_backend!(PgStore, sqlx::PgConnection);

impl TerminalKeyStore for AnyStore {
    async fn save_terminal_keys(&self, row: &TerminalKeysRow) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(store) => store.save_terminal_keys(row).await,
            AnyStore::Postgres(store) => store.save_terminal_keys(row).await,
        }
    }

    async fn terminal_keys(&self) -> StoreResult<Vec<TerminalKeysRow>> {
        match self {
            AnyStore::Sqlite(store) => store.terminal_keys().await,
            AnyStore::Postgres(store) => store.terminal_keys().await,
        }
    }
}
