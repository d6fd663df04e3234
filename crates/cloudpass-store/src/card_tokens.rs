//! The cards merchants opened for token payment (bizType 000902), a store of their own
//! ([`CardTokenStore`]) on both backends from one body of SQL. It keeps the card sealed by
//! the platform, never in clear; what a token may do is the gateway's to decide.

use std::future::Future;

use sqlx::Row;

use crate::{AnyStore, PgStore, SqliteStore, StoreResult};

/// A merchant's token for one card.
#[derive(Clone, PartialEq, Eq)]
pub struct CardTokenRow {
    /// 19 digits, drawn by the gateway.
    pub token: String,
    pub mer_id: String,
    /// The merchant's token requestor id (`trId`, 11 digits): the token is good with it only.
    pub tr_id: String,
    /// The opening's `orderId` and `txnTime`.
    pub order_id: String,
    pub txn_time: String,
    /// What identifies the opening request byte for byte.
    pub request_digest: String,
    /// The card number and expiry, sealed by the platform and bound to the token.
    pub sealed_card: Vec<u8>,
    /// First 6 and last 4 digits.
    pub card_masked: String,
    /// `01` debit, `02` credit.
    pub card_type: String,
    /// `active` or `deleted`.
    pub status: String,
    /// Unix milliseconds.
    pub opened_at: i64,
    pub deleted_at: Option<i64>,
}

impl std::fmt::Debug for CardTokenRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardTokenRow")
            .field("token", &self.token)
            .field("mer_id", &self.mer_id)
            .field("card_masked", &self.card_masked)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// What inserting a token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardTokenInsert {
    Inserted,
    /// The merchant already opened a card with this orderId and txnTime.
    Exists(Box<CardTokenRow>),
    /// The token is taken: draw another.
    TokenTaken,
}

pub trait CardTokenStore: Send + Sync {
    fn insert_card_token(
        &self,
        row: &CardTokenRow,
    ) -> impl Future<Output = StoreResult<CardTokenInsert>> + Send;
    fn card_token(
        &self,
        token: &str,
    ) -> impl Future<Output = StoreResult<Option<CardTokenRow>>> + Send;
    /// The token a merchant opened with this orderId and txnTime, if it did.
    fn card_token_of_opening(
        &self,
        mer_id: &str,
        order_id: &str,
        txn_time: &str,
    ) -> impl Future<Output = StoreResult<Option<CardTokenRow>>> + Send;
    /// Marks an active token deleted at `at`; false when it is not active (or not there).
    fn delete_card_token(
        &self,
        token: &str,
        at: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

macro_rules! card_token_columns {
    () => {
        "token, mer_id, tr_id, order_id, txn_time, request_digest, sealed_card, card_masked, card_type, status, opened_at, deleted_at"
    };
}

macro_rules! card_token_backend {
    ($store:ident, $row:ty, $conn:ty) => {
        impl $store {
            fn card_token_from(row: &$row) -> StoreResult<CardTokenRow> {
                Ok(CardTokenRow {
                    token: row.try_get("token")?,
                    mer_id: row.try_get("mer_id")?,
                    tr_id: row.try_get("tr_id")?,
                    order_id: row.try_get("order_id")?,
                    txn_time: row.try_get("txn_time")?,
                    request_digest: row.try_get("request_digest")?,
                    sealed_card: row.try_get("sealed_card")?,
                    card_masked: row.try_get("card_masked")?,
                    card_type: row.try_get("card_type")?,
                    status: row.try_get("status")?,
                    opened_at: row.try_get("opened_at")?,
                    deleted_at: row.try_get("deleted_at")?,
                })
            }

            async fn card_token_named(
                &self,
                mer_id: &str,
                order_id: &str,
                txn_time: &str,
            ) -> StoreResult<Option<CardTokenRow>> {
                sqlx::query(concat!("SELECT ", card_token_columns!(), " FROM gateway_card_tokens WHERE mer_id = $1 AND order_id = $2 AND txn_time = $3"))
                    .bind(mer_id.to_owned())
                    .bind(order_id.to_owned())
                    .bind(txn_time.to_owned())
                    .fetch_optional(self.reader())
                    .await?
                    .map(|row| Self::card_token_from(&row))
                    .transpose()
            }
        }

        impl CardTokenStore for $store {
            async fn insert_card_token(&self, given: &CardTokenRow) -> StoreResult<CardTokenInsert> {
                let t = given.clone();
                let inserted = self
                    .write(false, move |conn: &mut $conn| {
                        Box::pin(async move {
                            let done = sqlx::query(concat!(
                                "INSERT INTO gateway_card_tokens (", card_token_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING"
                            ))
                            .bind(&t.token).bind(&t.mer_id).bind(&t.tr_id).bind(&t.order_id)
                            .bind(&t.txn_time).bind(&t.request_digest).bind(&t.sealed_card)
                            .bind(&t.card_masked).bind(&t.card_type).bind(&t.status)
                            .bind(t.opened_at).bind(t.deleted_at)
                            .execute(&mut *conn)
                            .await?;
                            Ok(done.rows_affected() == 1)
                        })
                    })
                    .await?;
                if inserted {
                    return Ok(CardTokenInsert::Inserted);
                }
                match self.card_token_named(&given.mer_id, &given.order_id, &given.txn_time).await? {
                    Some(existing) => Ok(CardTokenInsert::Exists(Box::new(existing))),
                    None => Ok(CardTokenInsert::TokenTaken),
                }
            }

            async fn card_token(&self, token: &str) -> StoreResult<Option<CardTokenRow>> {
                sqlx::query(concat!("SELECT ", card_token_columns!(), " FROM gateway_card_tokens WHERE token = $1"))
                    .bind(token.to_owned())
                    .fetch_optional(self.reader())
                    .await?
                    .map(|row| Self::card_token_from(&row))
                    .transpose()
            }

            async fn card_token_of_opening(
                &self,
                mer_id: &str,
                order_id: &str,
                txn_time: &str,
            ) -> StoreResult<Option<CardTokenRow>> {
                self.card_token_named(mer_id, order_id, txn_time).await
            }

            async fn delete_card_token(&self, token: &str, at: i64) -> StoreResult<bool> {
                let token = token.to_owned();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let done = sqlx::query("UPDATE gateway_card_tokens SET status = 'deleted', deleted_at = $2 WHERE token = $1 AND status = 'active'")
                            .bind(&token)
                            .bind(at)
                            .execute(&mut *conn)
                            .await?;
                        Ok(done.rows_affected() == 1)
                    })
                })
                .await
            }
        }
    };
}

card_token_backend!(SqliteStore, sqlx::sqlite::SqliteRow, sqlx::SqliteConnection);
card_token_backend!(PgStore, sqlx::postgres::PgRow, sqlx::PgConnection);

impl CardTokenStore for AnyStore {
    async fn insert_card_token(&self, row: &CardTokenRow) -> StoreResult<CardTokenInsert> {
        match self {
            AnyStore::Sqlite(store) => store.insert_card_token(row).await,
            AnyStore::Postgres(store) => store.insert_card_token(row).await,
        }
    }

    async fn card_token(&self, token: &str) -> StoreResult<Option<CardTokenRow>> {
        match self {
            AnyStore::Sqlite(store) => store.card_token(token).await,
            AnyStore::Postgres(store) => store.card_token(token).await,
        }
    }

    async fn card_token_of_opening(
        &self,
        mer_id: &str,
        order_id: &str,
        txn_time: &str,
    ) -> StoreResult<Option<CardTokenRow>> {
        match self {
            AnyStore::Sqlite(store) => {
                store
                    .card_token_of_opening(mer_id, order_id, txn_time)
                    .await
            }
            AnyStore::Postgres(store) => {
                store
                    .card_token_of_opening(mer_id, order_id, txn_time)
                    .await
            }
        }
    }

    async fn delete_card_token(&self, token: &str, at: i64) -> StoreResult<bool> {
        match self {
            AnyStore::Sqlite(store) => store.delete_card_token(token, at).await,
            AnyStore::Postgres(store) => store.delete_card_token(token, at).await,
        }
    }
}
