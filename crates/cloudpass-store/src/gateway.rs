//! The institution gateway's orders, a store of their own ([`GatewayStore`]) on both
//! backends from one body of SQL. The store keeps what the gateway decided; the decisions
//! are `cloudpass-core::order`'s. Writes are matched on the version read, so two requests
//! racing for one order (a refund and an undo) cannot both be recorded.

use std::future::Future;

use sqlx::Row;

use crate::{AnyStore, PgStore, SqliteStore, StoreError, StoreResult};

/// One order (one TN) as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    /// The 21-digit transaction number.
    pub tn: String,
    pub mer_id: String,
    pub order_id: String,
    /// `txnTime` as the merchant sent it (yyyyMMddHHmmss, Beijing).
    pub txn_time: String,
    /// Fen.
    pub amount: i64,
    /// ISO 4217 numeric.
    pub currency: i64,
    /// `07` or `08`.
    pub channel: String,
    pub back_url: String,
    pub front_url: Option<String>,
    pub req_reserved: Option<String>,
    /// Unix seconds after which an unpaid order closes.
    pub pay_timeout: i64,
    /// A keyed digest of the request that made the order: a byte-identical retry gets the
    /// original answer, a different request with the same orderId and txnTime gets 12.
    pub request_digest: String,
    /// `cloudpass-core::order::OrderStatus` as text.
    pub status: String,
    pub refunded: i64,
    pub refund_reserved: i64,
    /// When the payment was approved, unix milliseconds.
    pub paid_at: Option<i64>,
    /// The payment's queryId (21 digits), once paid.
    pub query_id: Option<String>,
    /// The field 39 of the payment's authorization.
    pub pay_response_code: Option<String>,
    /// The card paid with, first 6 and last 4 digits only.
    pub pay_card_masked: Option<String>,
    /// `01` debit, `02` credit.
    pub pay_card_type: Option<String>,
    /// The authorization's STAN and transmission time: voids and refunds name it.
    pub auth_stan: Option<String>,
    pub auth_transmission_time: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
    /// `consume`, `undo` or `refund`.
    pub kind: String,
    /// For an undo or refund: the TN of the consume it returns.
    pub original_tn: Option<String>,
    /// What notifications repeat of the request (bizType, accessType and its merchant
    /// fields), URL-encoded; '' for orders from before it was kept.
    pub request_echo: String,
    /// Fen. On a consume: the part of `amount` a campaign's sponsor carries, the card being
    /// charged the rest. On a return: the sponsor's part of what it returns.
    pub discount: i64,
    /// The campaign that gave the discount.
    pub campaign_id: Option<String>,
}

/// A notification to a merchant's `backUrl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    /// Given by the store.
    pub id: i64,
    /// The order it announces.
    pub tn: String,
    pub mer_id: String,
    pub url: String,
    /// The signed form, URL-encoded, as it is posted.
    pub body: String,
    /// Sends made so far.
    pub attempts: i64,
    /// Unix milliseconds.
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
    /// Set when the sends ran out.
    pub failed_at: Option<i64>,
    /// The HTTP status of the last send (none when it got no answer).
    pub last_status: Option<i64>,
    pub created_at: i64,
}

/// A merchant registered with the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantRow {
    /// `merId`, 15 letters or digits.
    pub mer_id: String,
    pub name: String,
    /// The certificate its requests are signed with, PEM.
    pub certificate_pem: String,
    /// Permission names, comma-separated.
    pub permissions: String,
    /// Its secure key for signMethod 11 and 12, sealed by the platform; `None`: none.
    pub secure_key_sealed: Option<Vec<u8>>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Merchants listed at once, at most.
pub const MERCHANTS_LISTED_MAX: i64 = 10_000;

/// What inserting an order found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderInsert {
    Inserted,
    /// The merchant already has an order with this orderId and txnTime.
    Exists(Box<OrderRow>),
    /// The TN is taken (by another merchant's order): draw another.
    TnTaken,
}

pub trait GatewayStore: Send + Sync {
    fn insert_order(
        &self,
        order: &OrderRow,
    ) -> impl Future<Output = StoreResult<OrderInsert>> + Send;
    fn order(
        &self,
        mer_id: &str,
        order_id: &str,
        txn_time: &str,
    ) -> impl Future<Output = StoreResult<Option<OrderRow>>> + Send;
    fn order_by_tn(&self, tn: &str) -> impl Future<Output = StoreResult<Option<OrderRow>>> + Send;
    fn order_by_query_id(
        &self,
        query_id: &str,
    ) -> impl Future<Output = StoreResult<Option<OrderRow>>> + Send;
    /// Writes `order` if the stored row is still at `order.version - 1`, with the
    /// notification of the change in the same transaction; else [`StoreError::Conflict`]
    /// and nothing is written.
    fn update_order(
        &self,
        order: &OrderRow,
        notification: Option<&NotificationRow>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Inserts the return `order` and writes `original` (by version, as
    /// [`GatewayStore::update_order`]) in one transaction: a return is recorded with the
    /// reservation it makes on its consume, or not at all. [`StoreError::Conflict`], and
    /// nothing written, when `original` moved meanwhile.
    fn insert_return(
        &self,
        order: &OrderRow,
        original: &OrderRow,
    ) -> impl Future<Output = StoreResult<OrderInsert>> + Send;
    /// Writes each of `orders` by version, as [`GatewayStore::update_order`], with the
    /// notification, in one transaction: all of it or, with [`StoreError::Conflict`],
    /// nothing.
    fn update_orders(
        &self,
        orders: &[OrderRow],
        notification: Option<&NotificationRow>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Orders still unpaid whose `payTimeout` (unix seconds) is before `now`, at most
    /// `limit`, the longest expired first.
    fn unpaid_past_timeout(
        &self,
        now: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<OrderRow>>> + Send;
    /// Payments still in flight (`paying`) whose last change is before `before` (unix
    /// milliseconds), at most `limit`, the oldest first: their answers were lost.
    fn paying_since(
        &self,
        before: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<OrderRow>>> + Send;
    /// A merchant's consumes and returns that succeeded between `from` and `to` (unix
    /// milliseconds, `to` excluded), in the order they did.
    fn succeeded_between(
        &self,
        mer_id: &str,
        from: i64,
        to: i64,
    ) -> impl Future<Output = StoreResult<Vec<OrderRow>>> + Send;
    /// Notifications due at `now` (unix milliseconds), oldest first, at most `limit`.
    fn due_notifications(
        &self,
        now: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<NotificationRow>>> + Send;
    /// Records a send: its attempts, status and what comes next.
    fn record_notification(
        &self,
        notification: &NotificationRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The notifications of an order, oldest first.
    fn notifications_of(
        &self,
        tn: &str,
    ) -> impl Future<Output = StoreResult<Vec<NotificationRow>>> + Send;
    /// The newest orders (consumes and returns), newest first, at most `limit`: the
    /// operator console's list.
    fn recent_orders(&self, limit: i64) -> impl Future<Output = StoreResult<Vec<OrderRow>>> + Send;
    /// How many consumes are in each state, by state.
    fn order_counts(&self) -> impl Future<Output = StoreResult<Vec<(String, i64)>>> + Send;
    /// What the campaign `campaign_id` has given away and not had back: the discounts of its
    /// consumes that are paid or in flight, less the sponsor's parts of returns that succeeded.
    fn campaign_spent(&self, campaign_id: &str) -> impl Future<Output = StoreResult<i64>> + Send;
    /// The newest notifications, newest first, at most `limit`.
    fn recent_notifications(
        &self,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<NotificationRow>>> + Send;
    /// Registers a merchant; false (and nothing written) when its `merId` is taken.
    fn insert_merchant(
        &self,
        merchant: &MerchantRow,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Replaces a merchant's name, certificate, permissions and secure key; false when there
    /// is none.
    fn update_merchant(
        &self,
        merchant: &MerchantRow,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    fn merchant(
        &self,
        mer_id: &str,
    ) -> impl Future<Output = StoreResult<Option<MerchantRow>>> + Send;
    /// Every merchant by `merId`, at most [`MERCHANTS_LISTED_MAX`].
    fn merchants(&self) -> impl Future<Output = StoreResult<Vec<MerchantRow>>> + Send;
    /// Records that the merchant passed the certification case `case_name` at `at` (unix
    /// milliseconds); a case passed before keeps its first time. True when it is new.
    fn record_certification(
        &self,
        mer_id: &str,
        case_name: &str,
        at: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Sets how many sends of each of the merchant's notifications count as failed.
    fn set_failed_notification_sends(
        &self,
        mer_id: &str,
        sends: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// How many sends of each of the merchant's notifications count as failed (0 unless set).
    fn failed_notification_sends(
        &self,
        mer_id: &str,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Advances the merchant's sandbox clock by `by_ms`; its offset now.
    fn advance_sandbox_clock(
        &self,
        mer_id: &str,
        by_ms: i64,
    ) -> impl Future<Output = StoreResult<i64>> + Send;
    /// Every merchant's sandbox clock offset that is not zero.
    fn sandbox_clocks(&self) -> impl Future<Output = StoreResult<Vec<(String, i64)>>> + Send;
    /// The cases the merchant passed and when, by case name.
    fn certification_of(
        &self,
        mer_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<(String, i64)>>> + Send;
}

macro_rules! notification_columns {
    () => {
        "id, tn, mer_id, url, body, attempts, next_attempt_at, delivered_at, failed_at, last_status, created_at"
    };
}

macro_rules! order_columns {
    () => {
        "tn, mer_id, order_id, txn_time, amount, currency, channel, back_url, front_url, req_reserved, pay_timeout, request_digest, status, refunded, refund_reserved, paid_at, query_id, pay_response_code, pay_card_masked, pay_card_type, auth_stan, auth_transmission_time, created_at, updated_at, version, kind, original_tn, request_echo, discount, campaign_id"
    };
}

macro_rules! gateway_backend {
    ($store:ident, $row:ty, $conn:ty) => {
        impl $store {
            fn order_from(row: &$row) -> StoreResult<OrderRow> {
                Ok(OrderRow {
                    tn: row.try_get("tn")?,
                    mer_id: row.try_get("mer_id")?,
                    order_id: row.try_get("order_id")?,
                    txn_time: row.try_get("txn_time")?,
                    amount: row.try_get("amount")?,
                    currency: row.try_get("currency")?,
                    channel: row.try_get("channel")?,
                    back_url: row.try_get("back_url")?,
                    front_url: row.try_get("front_url")?,
                    req_reserved: row.try_get("req_reserved")?,
                    pay_timeout: row.try_get("pay_timeout")?,
                    request_digest: row.try_get("request_digest")?,
                    status: row.try_get("status")?,
                    refunded: row.try_get("refunded")?,
                    refund_reserved: row.try_get("refund_reserved")?,
                    paid_at: row.try_get("paid_at")?,
                    query_id: row.try_get("query_id")?,
                    pay_response_code: row.try_get("pay_response_code")?,
                    pay_card_masked: row.try_get("pay_card_masked")?,
                    pay_card_type: row.try_get("pay_card_type")?,
                    auth_stan: row.try_get("auth_stan")?,
                    auth_transmission_time: row.try_get("auth_transmission_time")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                    version: row.try_get("version")?,
                    kind: row.try_get("kind")?,
                    original_tn: row.try_get("original_tn")?,
                    request_echo: row.try_get("request_echo")?,
                    discount: row.try_get("discount")?,
                    campaign_id: row.try_get("campaign_id")?,
                })
            }

            fn merchant_from(row: &$row) -> StoreResult<MerchantRow> {
                Ok(MerchantRow {
                    mer_id: row.try_get("mer_id")?,
                    name: row.try_get("name")?,
                    certificate_pem: row.try_get("certificate_pem")?,
                    permissions: row.try_get("permissions")?,
                    secure_key_sealed: row.try_get("secure_key_sealed")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }

            fn notification_from(row: &$row) -> StoreResult<NotificationRow> {
                Ok(NotificationRow {
                    id: row.try_get("id")?,
                    tn: row.try_get("tn")?,
                    mer_id: row.try_get("mer_id")?,
                    url: row.try_get("url")?,
                    body: row.try_get("body")?,
                    attempts: row.try_get("attempts")?,
                    next_attempt_at: row.try_get("next_attempt_at")?,
                    delivered_at: row.try_get("delivered_at")?,
                    failed_at: row.try_get("failed_at")?,
                    last_status: row.try_get("last_status")?,
                    created_at: row.try_get("created_at")?,
                })
            }

            async fn one_order(&self, sql: &'static str, keys: &[&str]) -> StoreResult<Option<OrderRow>> {
                let mut query = sqlx::query(sql);
                for key in keys {
                    query = query.bind(key.to_string());
                }
                query
                    .fetch_optional(self.reader())
                    .await?
                    .map(|row| Self::order_from(&row))
                    .transpose()
            }
        }

        impl GatewayStore for $store {
            async fn advance_sandbox_clock(&self, mer_id: &str, by_ms: i64) -> StoreResult<i64> {
                let mer_id = mer_id.to_owned();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let row = sqlx::query("INSERT INTO gateway_sandbox_settings (mer_id, clock_offset_ms) VALUES ($1, $2) ON CONFLICT (mer_id) DO UPDATE SET clock_offset_ms = gateway_sandbox_settings.clock_offset_ms + excluded.clock_offset_ms RETURNING clock_offset_ms")
                            .bind(&mer_id).bind(by_ms)
                            .fetch_one(&mut *conn)
                            .await?;
                        Ok(row.try_get("clock_offset_ms")?)
                    })
                })
                .await
            }

            async fn sandbox_clocks(&self) -> StoreResult<Vec<(String, i64)>> {
                let rows = sqlx::query("SELECT mer_id, clock_offset_ms FROM gateway_sandbox_settings WHERE clock_offset_ms <> 0 ORDER BY mer_id")
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map(|row| Ok((row.try_get("mer_id")?, row.try_get("clock_offset_ms")?)))
                    .collect()
            }

            async fn set_failed_notification_sends(&self, mer_id: &str, sends: i64) -> StoreResult<()> {
                let mer_id = mer_id.to_owned();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO gateway_sandbox_settings (mer_id, failed_notification_sends) VALUES ($1, $2) ON CONFLICT (mer_id) DO UPDATE SET failed_notification_sends = excluded.failed_notification_sends")
                            .bind(&mer_id).bind(sends)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn failed_notification_sends(&self, mer_id: &str) -> StoreResult<i64> {
                let row = sqlx::query("SELECT failed_notification_sends FROM gateway_sandbox_settings WHERE mer_id = $1")
                    .bind(mer_id.to_owned())
                    .fetch_optional(self.reader())
                    .await?;
                match row {
                    Some(row) => Ok(row.try_get("failed_notification_sends")?),
                    None => Ok(0),
                }
            }

            async fn record_certification(&self, mer_id: &str, case_name: &str, at: i64) -> StoreResult<bool> {
                let (mer_id, case_name) = (mer_id.to_owned(), case_name.to_owned());
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let done = sqlx::query("INSERT INTO gateway_certification (mer_id, case_name, passed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                            .bind(&mer_id).bind(&case_name).bind(at)
                            .execute(&mut *conn)
                            .await?;
                        Ok(done.rows_affected() == 1)
                    })
                })
                .await
            }

            async fn certification_of(&self, mer_id: &str) -> StoreResult<Vec<(String, i64)>> {
                let rows = sqlx::query("SELECT case_name, passed_at FROM gateway_certification WHERE mer_id = $1 ORDER BY case_name")
                    .bind(mer_id.to_owned())
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map(|row| Ok((row.try_get("case_name")?, row.try_get("passed_at")?)))
                    .collect()
            }

            async fn insert_merchant(&self, merchant: &MerchantRow) -> StoreResult<bool> {
                let m = merchant.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let done = sqlx::query("INSERT INTO gateway_merchants (mer_id, name, certificate_pem, permissions, secure_key_sealed, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING")
                            .bind(&m.mer_id).bind(&m.name).bind(&m.certificate_pem)
                            .bind(&m.permissions).bind(&m.secure_key_sealed)
                            .bind(m.created_at).bind(m.updated_at)
                            .execute(&mut *conn)
                            .await?;
                        Ok(done.rows_affected() == 1)
                    })
                })
                .await
            }

            async fn update_merchant(&self, merchant: &MerchantRow) -> StoreResult<bool> {
                let m = merchant.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let done = sqlx::query("UPDATE gateway_merchants SET name = $2, certificate_pem = $3, permissions = $4, secure_key_sealed = $5, updated_at = $6 WHERE mer_id = $1")
                            .bind(&m.mer_id).bind(&m.name).bind(&m.certificate_pem)
                            .bind(&m.permissions).bind(&m.secure_key_sealed)
                            .bind(m.updated_at)
                            .execute(&mut *conn)
                            .await?;
                        Ok(done.rows_affected() == 1)
                    })
                })
                .await
            }

            async fn merchant(&self, mer_id: &str) -> StoreResult<Option<MerchantRow>> {
                sqlx::query("SELECT mer_id, name, certificate_pem, permissions, secure_key_sealed, created_at, updated_at FROM gateway_merchants WHERE mer_id = $1")
                    .bind(mer_id.to_owned())
                    .fetch_optional(self.reader())
                    .await?
                    .map(|row| Self::merchant_from(&row))
                    .transpose()
            }

            async fn merchants(&self) -> StoreResult<Vec<MerchantRow>> {
                sqlx::query("SELECT mer_id, name, certificate_pem, permissions, secure_key_sealed, created_at, updated_at FROM gateway_merchants ORDER BY mer_id LIMIT $1")
                    .bind(MERCHANTS_LISTED_MAX)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(Self::merchant_from)
                    .collect()
            }

            async fn succeeded_between(&self, mer_id: &str, from: i64, to: i64) -> StoreResult<Vec<OrderRow>> {
                sqlx::query(concat!("SELECT ", order_columns!(), " FROM gateway_orders WHERE mer_id = $1 AND paid_at >= $2 AND paid_at < $3 ORDER BY paid_at, tn"))
                    .bind(mer_id.to_owned())
                    .bind(from)
                    .bind(to)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(Self::order_from)
                    .collect()
            }

            async fn paying_since(&self, before: i64, limit: i64) -> StoreResult<Vec<OrderRow>> {
                sqlx::query(concat!("SELECT ", order_columns!(), " FROM gateway_orders WHERE status = 'paying' AND updated_at < $1 ORDER BY updated_at LIMIT $2"))
                    .bind(before)
                    .bind(limit)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(Self::order_from)
                    .collect()
            }

            async fn unpaid_past_timeout(&self, now: i64, limit: i64) -> StoreResult<Vec<OrderRow>> {
                sqlx::query(concat!("SELECT ", order_columns!(), " FROM gateway_orders WHERE status = 'issued' AND pay_timeout < $1 ORDER BY pay_timeout LIMIT $2"))
                    .bind(now)
                    .bind(limit)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(Self::order_from)
                    .collect()
            }

            async fn due_notifications(&self, now: i64, limit: i64) -> StoreResult<Vec<NotificationRow>> {
                sqlx::query(concat!("SELECT ", notification_columns!(), " FROM gateway_notifications WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $1 ORDER BY id LIMIT $2"))
                    .bind(now)
                    .bind(limit)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(Self::notification_from)
                    .collect()
            }

            async fn record_notification(&self, notification: &NotificationRow) -> StoreResult<()> {
                let n = notification.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        sqlx::query("UPDATE gateway_notifications SET attempts = $2, next_attempt_at = $3, delivered_at = $4, failed_at = $5, last_status = $6 WHERE id = $1")
                            .bind(n.id).bind(n.attempts).bind(n.next_attempt_at)
                            .bind(n.delivered_at).bind(n.failed_at).bind(n.last_status)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn notifications_of(&self, tn: &str) -> StoreResult<Vec<NotificationRow>> {
                sqlx::query(concat!("SELECT ", notification_columns!(), " FROM gateway_notifications WHERE tn = $1 ORDER BY id"))
                    .bind(tn.to_owned())
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(Self::notification_from)
                    .collect()
            }

            async fn recent_orders(&self, limit: i64) -> StoreResult<Vec<OrderRow>> {
                sqlx::query(concat!("SELECT ", order_columns!(), " FROM gateway_orders ORDER BY created_at DESC, tn DESC LIMIT $1"))
                    .bind(limit)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(Self::order_from)
                    .collect()
            }

            async fn order_counts(&self) -> StoreResult<Vec<(String, i64)>> {
                let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM gateway_orders WHERE kind = 'consume' GROUP BY status ORDER BY status")
                    .fetch_all(self.reader())
                    .await?;
                rows.iter()
                    .map(|row| Ok((row.try_get::<String, _>("status")?, row.try_get::<i64, _>("n")?)))
                    .collect()
            }

            async fn campaign_spent(&self, campaign_id: &str) -> StoreResult<i64> {
                // A failed or closed consume holds nothing; a return counts once it succeeded.
                let row = sqlx::query(
                    "SELECT CAST(COALESCE(SUM(CASE WHEN kind = 'consume' THEN discount ELSE -discount END), 0) AS BIGINT) AS spent FROM gateway_orders WHERE campaign_id = $1 AND ((kind = 'consume' AND status NOT IN ('issued', 'failed', 'closed')) OR (kind <> 'consume' AND status = 'paid'))",
                )
                .bind(campaign_id)
                .fetch_one(self.reader())
                .await?;
                Ok(row.try_get("spent")?)
            }

            async fn recent_notifications(&self, limit: i64) -> StoreResult<Vec<NotificationRow>> {
                sqlx::query(concat!("SELECT ", notification_columns!(), " FROM gateway_notifications ORDER BY id DESC LIMIT $1"))
                    .bind(limit)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(Self::notification_from)
                    .collect()
            }

            async fn insert_order(&self, given: &OrderRow) -> StoreResult<OrderInsert> {
                let order = given.clone();
                let inserted = self
                    .write(false, move |conn: &mut $conn| {
                        Box::pin(async move { Self::insert_order_row(conn, &order).await })
                    })
                    .await?;
                self.insert_outcome(given, inserted).await
            }

            async fn insert_return(&self, given: &OrderRow, original: &OrderRow) -> StoreResult<OrderInsert> {
                let order = given.clone();
                let original = original.clone();
                let inserted = self
                    .write(false, move |conn: &mut $conn| {
                        Box::pin(async move {
                            let inserted = Self::insert_order_row(conn, &order).await?;
                            if inserted {
                                Self::update_order_row(conn, &original).await?;
                            }
                            Ok(inserted)
                        })
                    })
                    .await?;
                self.insert_outcome(given, inserted).await
            }

            async fn update_orders(&self, orders: &[OrderRow], notification: Option<&NotificationRow>) -> StoreResult<()> {
                let orders = orders.to_vec();
                let notification = notification.cloned();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        for order in &orders {
                            Self::update_order_row(conn, order).await?;
                        }
                        if let Some(n) = &notification {
                            Self::insert_notification_row(conn, n).await?;
                        }
                        Ok(())
                    })
                })
                .await
            }

            async fn order(&self, mer_id: &str, order_id: &str, txn_time: &str) -> StoreResult<Option<OrderRow>> {
                self.one_order(
                    concat!("SELECT ", order_columns!(), " FROM gateway_orders WHERE mer_id = $1 AND order_id = $2 AND txn_time = $3"),
                    &[mer_id, order_id, txn_time],
                )
                .await
            }

            async fn order_by_tn(&self, tn: &str) -> StoreResult<Option<OrderRow>> {
                self.one_order(concat!("SELECT ", order_columns!(), " FROM gateway_orders WHERE tn = $1"), &[tn])
                    .await
            }

            async fn order_by_query_id(&self, query_id: &str) -> StoreResult<Option<OrderRow>> {
                self.one_order(concat!("SELECT ", order_columns!(), " FROM gateway_orders WHERE query_id = $1"), &[query_id])
                    .await
            }

            async fn update_order(&self, order: &OrderRow, notification: Option<&NotificationRow>) -> StoreResult<()> {
                self.update_orders(std::slice::from_ref(order), notification).await
            }
        }

        impl $store {
            /// Inserts `o` unless its TN or its merchant's orderId and txnTime are taken;
            /// whether it did.
            async fn insert_order_row(conn: &mut $conn, o: &OrderRow) -> StoreResult<bool> {
                let row = sqlx::query(concat!(
                    "INSERT INTO gateway_orders (", order_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30) ON CONFLICT DO NOTHING RETURNING tn"
                ))
                .bind(&o.tn).bind(&o.mer_id).bind(&o.order_id).bind(&o.txn_time)
                .bind(o.amount).bind(o.currency).bind(&o.channel).bind(&o.back_url)
                .bind(&o.front_url).bind(&o.req_reserved).bind(o.pay_timeout)
                .bind(&o.request_digest).bind(&o.status).bind(o.refunded)
                .bind(o.refund_reserved).bind(o.paid_at).bind(&o.query_id)
                .bind(&o.pay_response_code).bind(&o.pay_card_masked)
                .bind(&o.pay_card_type).bind(&o.auth_stan)
                .bind(&o.auth_transmission_time).bind(o.created_at)
                .bind(o.updated_at).bind(o.version).bind(&o.kind).bind(&o.original_tn)
                .bind(&o.request_echo).bind(o.discount).bind(&o.campaign_id)
                .fetch_optional(&mut *conn)
                .await?;
                Ok(row.is_some())
            }

            /// What an insert that did not happen found.
            async fn insert_outcome(&self, given: &OrderRow, inserted: bool) -> StoreResult<OrderInsert> {
                if inserted {
                    return Ok(OrderInsert::Inserted);
                }
                match self.order(&given.mer_id, &given.order_id, &given.txn_time).await? {
                    Some(existing) => Ok(OrderInsert::Exists(Box::new(existing))),
                    None => Ok(OrderInsert::TnTaken),
                }
            }

            /// Writes `o` if the stored row is still at `o.version - 1`.
            async fn update_order_row(conn: &mut $conn, o: &OrderRow) -> StoreResult<()> {
                let done = sqlx::query(
                    "UPDATE gateway_orders SET status = $2, refunded = $3, refund_reserved = $4, paid_at = $5, query_id = $6, pay_response_code = $7, pay_card_masked = $8, pay_card_type = $9, auth_stan = $10, auth_transmission_time = $11, updated_at = $12, version = $13, discount = $15, campaign_id = $16 WHERE tn = $1 AND version = $14",
                )
                .bind(&o.tn).bind(&o.status).bind(o.refunded).bind(o.refund_reserved)
                .bind(o.paid_at).bind(&o.query_id).bind(&o.pay_response_code)
                .bind(&o.pay_card_masked).bind(&o.pay_card_type).bind(&o.auth_stan)
                .bind(&o.auth_transmission_time).bind(o.updated_at).bind(o.version)
                .bind(o.version - 1).bind(o.discount).bind(&o.campaign_id)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Conflict);
                }
                Ok(())
            }

            async fn insert_notification_row(conn: &mut $conn, n: &NotificationRow) -> StoreResult<()> {
                sqlx::query("INSERT INTO gateway_notifications (tn, mer_id, url, body, attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, 0, $5, $6)")
                    .bind(&n.tn).bind(&n.mer_id).bind(&n.url).bind(&n.body)
                    .bind(n.next_attempt_at).bind(n.created_at)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }
        }
    };
}

gateway_backend!(SqliteStore, sqlx::sqlite::SqliteRow, sqlx::SqliteConnection);
gateway_backend!(PgStore, sqlx::postgres::PgRow, sqlx::PgConnection);

impl GatewayStore for AnyStore {
    async fn insert_order(&self, order: &OrderRow) -> StoreResult<OrderInsert> {
        match self {
            AnyStore::Sqlite(store) => store.insert_order(order).await,
            AnyStore::Postgres(store) => store.insert_order(order).await,
        }
    }

    async fn order(
        &self,
        mer_id: &str,
        order_id: &str,
        txn_time: &str,
    ) -> StoreResult<Option<OrderRow>> {
        match self {
            AnyStore::Sqlite(store) => store.order(mer_id, order_id, txn_time).await,
            AnyStore::Postgres(store) => store.order(mer_id, order_id, txn_time).await,
        }
    }

    async fn order_by_tn(&self, tn: &str) -> StoreResult<Option<OrderRow>> {
        match self {
            AnyStore::Sqlite(store) => store.order_by_tn(tn).await,
            AnyStore::Postgres(store) => store.order_by_tn(tn).await,
        }
    }

    async fn order_by_query_id(&self, query_id: &str) -> StoreResult<Option<OrderRow>> {
        match self {
            AnyStore::Sqlite(store) => store.order_by_query_id(query_id).await,
            AnyStore::Postgres(store) => store.order_by_query_id(query_id).await,
        }
    }

    async fn update_order(
        &self,
        order: &OrderRow,
        notification: Option<&NotificationRow>,
    ) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(store) => store.update_order(order, notification).await,
            AnyStore::Postgres(store) => store.update_order(order, notification).await,
        }
    }

    async fn insert_return(
        &self,
        order: &OrderRow,
        original: &OrderRow,
    ) -> StoreResult<OrderInsert> {
        match self {
            AnyStore::Sqlite(store) => store.insert_return(order, original).await,
            AnyStore::Postgres(store) => store.insert_return(order, original).await,
        }
    }

    async fn update_orders(
        &self,
        orders: &[OrderRow],
        notification: Option<&NotificationRow>,
    ) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(store) => store.update_orders(orders, notification).await,
            AnyStore::Postgres(store) => store.update_orders(orders, notification).await,
        }
    }

    async fn succeeded_between(
        &self,
        mer_id: &str,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<OrderRow>> {
        match self {
            AnyStore::Sqlite(store) => store.succeeded_between(mer_id, from, to).await,
            AnyStore::Postgres(store) => store.succeeded_between(mer_id, from, to).await,
        }
    }

    async fn paying_since(&self, before: i64, limit: i64) -> StoreResult<Vec<OrderRow>> {
        match self {
            AnyStore::Sqlite(store) => store.paying_since(before, limit).await,
            AnyStore::Postgres(store) => store.paying_since(before, limit).await,
        }
    }

    async fn unpaid_past_timeout(&self, now: i64, limit: i64) -> StoreResult<Vec<OrderRow>> {
        match self {
            AnyStore::Sqlite(store) => store.unpaid_past_timeout(now, limit).await,
            AnyStore::Postgres(store) => store.unpaid_past_timeout(now, limit).await,
        }
    }

    async fn due_notifications(&self, now: i64, limit: i64) -> StoreResult<Vec<NotificationRow>> {
        match self {
            AnyStore::Sqlite(store) => store.due_notifications(now, limit).await,
            AnyStore::Postgres(store) => store.due_notifications(now, limit).await,
        }
    }

    async fn record_notification(&self, notification: &NotificationRow) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(store) => store.record_notification(notification).await,
            AnyStore::Postgres(store) => store.record_notification(notification).await,
        }
    }

    async fn notifications_of(&self, tn: &str) -> StoreResult<Vec<NotificationRow>> {
        match self {
            AnyStore::Sqlite(store) => store.notifications_of(tn).await,
            AnyStore::Postgres(store) => store.notifications_of(tn).await,
        }
    }

    async fn recent_orders(&self, limit: i64) -> StoreResult<Vec<OrderRow>> {
        match self {
            AnyStore::Sqlite(store) => store.recent_orders(limit).await,
            AnyStore::Postgres(store) => store.recent_orders(limit).await,
        }
    }

    async fn order_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        match self {
            AnyStore::Sqlite(store) => store.order_counts().await,
            AnyStore::Postgres(store) => store.order_counts().await,
        }
    }

    async fn campaign_spent(&self, campaign_id: &str) -> StoreResult<i64> {
        match self {
            AnyStore::Sqlite(store) => store.campaign_spent(campaign_id).await,
            AnyStore::Postgres(store) => store.campaign_spent(campaign_id).await,
        }
    }

    async fn recent_notifications(&self, limit: i64) -> StoreResult<Vec<NotificationRow>> {
        match self {
            AnyStore::Sqlite(store) => store.recent_notifications(limit).await,
            AnyStore::Postgres(store) => store.recent_notifications(limit).await,
        }
    }

    async fn insert_merchant(&self, merchant: &MerchantRow) -> StoreResult<bool> {
        match self {
            AnyStore::Sqlite(store) => store.insert_merchant(merchant).await,
            AnyStore::Postgres(store) => store.insert_merchant(merchant).await,
        }
    }

    async fn update_merchant(&self, merchant: &MerchantRow) -> StoreResult<bool> {
        match self {
            AnyStore::Sqlite(store) => store.update_merchant(merchant).await,
            AnyStore::Postgres(store) => store.update_merchant(merchant).await,
        }
    }

    async fn merchant(&self, mer_id: &str) -> StoreResult<Option<MerchantRow>> {
        match self {
            AnyStore::Sqlite(store) => store.merchant(mer_id).await,
            AnyStore::Postgres(store) => store.merchant(mer_id).await,
        }
    }

    async fn advance_sandbox_clock(&self, mer_id: &str, by_ms: i64) -> StoreResult<i64> {
        match self {
            AnyStore::Sqlite(store) => store.advance_sandbox_clock(mer_id, by_ms).await,
            AnyStore::Postgres(store) => store.advance_sandbox_clock(mer_id, by_ms).await,
        }
    }

    async fn sandbox_clocks(&self) -> StoreResult<Vec<(String, i64)>> {
        match self {
            AnyStore::Sqlite(store) => store.sandbox_clocks().await,
            AnyStore::Postgres(store) => store.sandbox_clocks().await,
        }
    }

    async fn set_failed_notification_sends(&self, mer_id: &str, sends: i64) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(store) => store.set_failed_notification_sends(mer_id, sends).await,
            AnyStore::Postgres(store) => store.set_failed_notification_sends(mer_id, sends).await,
        }
    }

    async fn failed_notification_sends(&self, mer_id: &str) -> StoreResult<i64> {
        match self {
            AnyStore::Sqlite(store) => store.failed_notification_sends(mer_id).await,
            AnyStore::Postgres(store) => store.failed_notification_sends(mer_id).await,
        }
    }

    async fn record_certification(
        &self,
        mer_id: &str,
        case_name: &str,
        at: i64,
    ) -> StoreResult<bool> {
        match self {
            AnyStore::Sqlite(store) => store.record_certification(mer_id, case_name, at).await,
            AnyStore::Postgres(store) => store.record_certification(mer_id, case_name, at).await,
        }
    }

    async fn certification_of(&self, mer_id: &str) -> StoreResult<Vec<(String, i64)>> {
        match self {
            AnyStore::Sqlite(store) => store.certification_of(mer_id).await,
            AnyStore::Postgres(store) => store.certification_of(mer_id).await,
        }
    }

    async fn merchants(&self) -> StoreResult<Vec<MerchantRow>> {
        match self {
            AnyStore::Sqlite(store) => store.merchants().await,
            AnyStore::Postgres(store) => store.merchants().await,
        }
    }
}
