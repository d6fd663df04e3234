//! The Cloud QuickPass app's accounts and signed-in sessions, a store of their own
//! ([`WalletStore`]) on both backends from one body of SQL. The store keeps what the wallet
//! decided; the rules (password policy, lockout, session lifetime) are `cloudpass-wallet`'s.
//! It never sees a password or a session token: only an Argon2id PHC string and a SHA-256.

use std::future::Future;

use sqlx::Row;

use crate::{AnyStore, PgStore, SqliteStore, StoreResult};

/// A wallet account.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountRow {
    /// Random, given by the wallet.
    pub id: String,
    /// The phone number the person signed up with (11 digits).
    pub phone: String,
    /// Argon2id, as a PHC string.
    pub password_hash: String,
    /// Wrong passwords since the last right one.
    pub failed_logins: i64,
    /// Unix milliseconds before which the account takes no login (0: not locked).
    pub locked_until: i64,
    pub created_at: i64,
}

impl std::fmt::Debug for AccountRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountRow")
            .field("id", &self.id)
            .field("failed_logins", &self.failed_logins)
            .field("locked_until", &self.locked_until)
            .finish_non_exhaustive()
    }
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletSessionRow {
    /// Lowercase hex SHA-256 of the cookie's token.
    pub token_hash: String,
    pub user_id: String,
    pub created_at: i64,
    /// Unix milliseconds.
    pub expires_at: i64,
}

/// A card bound (or being bound) to an account.
#[derive(Clone, PartialEq, Eq)]
pub struct WalletCardRow {
    pub id: String,
    pub user_id: String,
    /// The card number's keyed fingerprint.
    pub fingerprint: Vec<u8>,
    /// The card number sealed under the platform's data key.
    pub pan_sealed: Vec<u8>,
    /// First 6 and last 4 digits.
    pub pan_masked: String,
    /// `debit` or `credit`.
    pub funding: String,
    pub product: Option<String>,
    /// `pending` (a code is awaited) or `bound`.
    pub status: String,
    /// The keyed digest of the code sent, while pending.
    pub code_digest: Option<Vec<u8>>,
    pub code_attempts: i64,
    /// Unix milliseconds.
    pub code_expires_at: i64,
    pub created_at: i64,
    pub bound_at: Option<i64>,
    /// The card's expiry (YYMM) sealed under the platform's data key; none for cards bound
    /// before it was kept.
    pub expiry_sealed: Option<Vec<u8>>,
}

/// A device an account signed in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletDeviceRow {
    /// The device id the token service knows.
    pub id: String,
    pub user_id: String,
    /// `handset_se`, `wearable` or `hce`.
    pub kind: String,
    /// `apple`, `huawei`, `xiaomi`, `samsung` or `quickpass`.
    pub maker: String,
    pub name: String,
    pub created_at: i64,
    pub signed_out_at: Option<i64>,
}

/// The most devices one account may have signed in on (signed out ones included).
pub const WALLET_DEVICES_MAX: i64 = 10;

impl std::fmt::Debug for WalletCardRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalletCardRow")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("pan_masked", &self.pan_masked)
            .field("funding", &self.funding)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// The most cards one account may have bound.
pub const WALLET_CARDS_MAX: i64 = 20;

/// What the wallet keeps of its users.
pub trait WalletStore: Send + Sync {
    /// Adds an account; false when the phone number has one already.
    fn insert_account(&self, user: &AccountRow) -> impl Future<Output = StoreResult<bool>> + Send;
    fn account_by_phone(
        &self,
        phone: &str,
    ) -> impl Future<Output = StoreResult<Option<AccountRow>>> + Send;
    /// Records the outcome of a login: the wrong passwords in a row and any lock.
    fn set_login_failures(
        &self,
        user_id: &str,
        failed_logins: i64,
        locked_until: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn insert_wallet_session(
        &self,
        session: &WalletSessionRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// The session and its user, if the session exists and has not expired at `now`.
    fn wallet_session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<Option<(WalletSessionRow, AccountRow)>>> + Send;
    fn delete_wallet_session(
        &self,
        token_hash: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Removes sessions expired at `now`; how many.
    fn delete_expired_wallet_sessions(
        &self,
        now: i64,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// Starts a binding: the account's earlier pending bindings go, this one is added.
    fn start_wallet_binding(
        &self,
        card: &WalletCardRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn wallet_card(
        &self,
        user_id: &str,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<WalletCardRow>>> + Send;
    /// Records a wrong code.
    fn set_wallet_code_attempts(
        &self,
        id: &str,
        attempts: i64,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Binds a pending card; false when it is not pending or the account has it bound.
    fn bind_wallet_card(
        &self,
        id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Unbinds a bound card of the account; false when it has no such card.
    fn remove_wallet_card(
        &self,
        user_id: &str,
        id: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The account's bound cards, oldest first, at most [`WALLET_CARDS_MAX`].
    fn bound_wallet_cards(
        &self,
        user_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<WalletCardRow>>> + Send;
    /// Adds a device to its account; false when the account has [`WALLET_DEVICES_MAX`].
    fn insert_wallet_device(
        &self,
        device: &WalletDeviceRow,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// The account's devices, oldest first.
    fn wallet_devices(
        &self,
        user_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<WalletDeviceRow>>> + Send;
    fn wallet_device(
        &self,
        user_id: &str,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<WalletDeviceRow>>> + Send;
    /// A device by the id the token service knows, whoever's it is.
    fn wallet_device_by_id(
        &self,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<WalletDeviceRow>>> + Send;
    /// Records that the account signed out of its device; false when it had no such device
    /// signed in.
    fn sign_out_wallet_device(
        &self,
        user_id: &str,
        id: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

macro_rules! account_columns {
    () => {
        "id, phone, password_hash, failed_logins, locked_until, created_at"
    };
}

macro_rules! wallet_card_columns {
    () => {
        "id, user_id, fingerprint, pan_sealed, pan_masked, funding, product, status, code_digest, code_attempts, code_expires_at, created_at, bound_at, expiry_sealed"
    };
}

macro_rules! wallet_device_columns {
    () => {
        "id, user_id, kind, maker, name, created_at, signed_out_at"
    };
}

macro_rules! wallet_backend {
    ($store:ident, $row:ty, $conn:ty) => {
        impl $store {
            fn wallet_card_from(row: &$row) -> StoreResult<WalletCardRow> {
                Ok(WalletCardRow {
                    id: row.try_get("id")?,
                    user_id: row.try_get("user_id")?,
                    fingerprint: row.try_get("fingerprint")?,
                    pan_sealed: row.try_get("pan_sealed")?,
                    pan_masked: row.try_get("pan_masked")?,
                    funding: row.try_get("funding")?,
                    product: row.try_get("product")?,
                    status: row.try_get("status")?,
                    code_digest: row.try_get("code_digest")?,
                    code_attempts: row.try_get("code_attempts")?,
                    code_expires_at: row.try_get("code_expires_at")?,
                    created_at: row.try_get("created_at")?,
                    bound_at: row.try_get("bound_at")?,
                    expiry_sealed: row.try_get("expiry_sealed")?,
                })
            }

            fn wallet_device_from(row: &$row) -> StoreResult<WalletDeviceRow> {
                Ok(WalletDeviceRow {
                    id: row.try_get("id")?,
                    user_id: row.try_get("user_id")?,
                    kind: row.try_get("kind")?,
                    maker: row.try_get("maker")?,
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                    signed_out_at: row.try_get("signed_out_at")?,
                })
            }

            fn account_from(row: &$row) -> StoreResult<AccountRow> {
                Ok(AccountRow {
                    id: row.try_get("id")?,
                    phone: row.try_get("phone")?,
                    password_hash: row.try_get("password_hash")?,
                    failed_logins: row.try_get("failed_logins")?,
                    locked_until: row.try_get("locked_until")?,
                    created_at: row.try_get("created_at")?,
                })
            }
        }

        impl WalletStore for $store {
            async fn insert_account(&self, user: &AccountRow) -> StoreResult<bool> {
                let u = user.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let done = sqlx::query(concat!("INSERT INTO wallet_users (", account_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"))
                            .bind(&u.id).bind(&u.phone).bind(&u.password_hash)
                            .bind(u.failed_logins).bind(u.locked_until).bind(u.created_at)
                            .execute(&mut *conn)
                            .await?;
                        Ok(done.rows_affected() == 1)
                    })
                })
                .await
            }

            async fn account_by_phone(&self, phone: &str) -> StoreResult<Option<AccountRow>> {
                sqlx::query(concat!("SELECT ", account_columns!(), " FROM wallet_users WHERE phone = $1"))
                    .bind(phone.to_owned())
                    .fetch_optional(self.reader())
                    .await?
                    .map(|row| Self::account_from(&row))
                    .transpose()
            }

            async fn set_login_failures(&self, user_id: &str, failed_logins: i64, locked_until: i64) -> StoreResult<()> {
                let user_id = user_id.to_owned();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        sqlx::query("UPDATE wallet_users SET failed_logins = $2, locked_until = $3 WHERE id = $1")
                            .bind(&user_id).bind(failed_logins).bind(locked_until)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn insert_wallet_session(&self, session: &WalletSessionRow) -> StoreResult<()> {
                let s = session.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        sqlx::query("INSERT INTO wallet_sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                            .bind(&s.token_hash).bind(&s.user_id).bind(s.created_at).bind(s.expires_at)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn wallet_session(&self, token_hash: &str, now: i64) -> StoreResult<Option<(WalletSessionRow, AccountRow)>> {
                let row = sqlx::query("SELECT s.token_hash, s.user_id, s.created_at AS session_created_at, s.expires_at, u.id, u.phone, u.password_hash, u.failed_logins, u.locked_until, u.created_at FROM wallet_sessions s JOIN wallet_users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2")
                    .bind(token_hash.to_owned())
                    .bind(now)
                    .fetch_optional(self.reader())
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let session = WalletSessionRow {
                    token_hash: row.try_get("token_hash")?,
                    user_id: row.try_get("user_id")?,
                    created_at: row.try_get("session_created_at")?,
                    expires_at: row.try_get("expires_at")?,
                };
                Ok(Some((session, Self::account_from(&row)?)))
            }

            async fn delete_wallet_session(&self, token_hash: &str) -> StoreResult<()> {
                let token_hash = token_hash.to_owned();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        sqlx::query("DELETE FROM wallet_sessions WHERE token_hash = $1")
                            .bind(&token_hash)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn delete_expired_wallet_sessions(&self, now: i64) -> StoreResult<u64> {
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let done = sqlx::query("DELETE FROM wallet_sessions WHERE expires_at <= $1")
                            .bind(now)
                            .execute(&mut *conn)
                            .await?;
                        Ok(done.rows_affected())
                    })
                })
                .await
            }

            async fn start_wallet_binding(&self, card: &WalletCardRow) -> StoreResult<()> {
                let c = card.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        sqlx::query("DELETE FROM wallet_cards WHERE user_id = $1 AND status = 'pending'")
                            .bind(&c.user_id)
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query(concat!("INSERT INTO wallet_cards (", wallet_card_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"))
                            .bind(&c.id).bind(&c.user_id).bind(&c.fingerprint).bind(&c.pan_sealed)
                            .bind(&c.pan_masked).bind(&c.funding).bind(&c.product).bind(&c.status)
                            .bind(&c.code_digest).bind(c.code_attempts).bind(c.code_expires_at)
                            .bind(c.created_at).bind(c.bound_at).bind(&c.expiry_sealed)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn wallet_card(&self, user_id: &str, id: &str) -> StoreResult<Option<WalletCardRow>> {
                sqlx::query(concat!("SELECT ", wallet_card_columns!(), " FROM wallet_cards WHERE user_id = $1 AND id = $2"))
                    .bind(user_id.to_owned())
                    .bind(id.to_owned())
                    .fetch_optional(self.reader())
                    .await?
                    .map(|row| Self::wallet_card_from(&row))
                    .transpose()
            }

            async fn set_wallet_code_attempts(&self, id: &str, attempts: i64) -> StoreResult<()> {
                let id = id.to_owned();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        sqlx::query("UPDATE wallet_cards SET code_attempts = $2 WHERE id = $1")
                            .bind(&id).bind(attempts)
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
            }

            async fn bind_wallet_card(&self, id: &str, now: i64) -> StoreResult<bool> {
                let id = id.to_owned();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let done = sqlx::query("UPDATE wallet_cards SET status = 'bound', code_digest = NULL, bound_at = $2 WHERE id = $1 AND status = 'pending' AND NOT EXISTS (SELECT 1 FROM wallet_cards b WHERE b.user_id = wallet_cards.user_id AND b.fingerprint = wallet_cards.fingerprint AND b.status = 'bound')")
                            .bind(&id).bind(now)
                            .execute(&mut *conn)
                            .await?;
                        Ok(done.rows_affected() == 1)
                    })
                })
                .await
            }

            async fn remove_wallet_card(&self, user_id: &str, id: &str) -> StoreResult<bool> {
                let (user_id, id) = (user_id.to_owned(), id.to_owned());
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let done = sqlx::query("DELETE FROM wallet_cards WHERE user_id = $1 AND id = $2 AND status = 'bound'")
                            .bind(&user_id).bind(&id)
                            .execute(&mut *conn)
                            .await?;
                        Ok(done.rows_affected() == 1)
                    })
                })
                .await
            }

            async fn bound_wallet_cards(&self, user_id: &str) -> StoreResult<Vec<WalletCardRow>> {
                sqlx::query(concat!("SELECT ", wallet_card_columns!(), " FROM wallet_cards WHERE user_id = $1 AND status = 'bound' ORDER BY bound_at, id LIMIT $2"))
                    .bind(user_id.to_owned())
                    .bind(WALLET_CARDS_MAX)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(Self::wallet_card_from)
                    .collect()
            }

            async fn insert_wallet_device(&self, device: &WalletDeviceRow) -> StoreResult<bool> {
                let d = device.clone();
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        // The count and the insert in one statement: two at once cannot both
                        // pass the bound.
                        let done = sqlx::query(concat!("INSERT INTO wallet_devices (", wallet_device_columns!(), ") SELECT $1, $2, $3, $4, $5, $6, $7 WHERE (SELECT COUNT(*) FROM wallet_devices WHERE user_id = $2) < $8"))
                            .bind(&d.id).bind(&d.user_id).bind(&d.kind).bind(&d.maker)
                            .bind(&d.name).bind(d.created_at).bind(d.signed_out_at)
                            .bind(WALLET_DEVICES_MAX)
                            .execute(&mut *conn)
                            .await?;
                        Ok(done.rows_affected() == 1)
                    })
                })
                .await
            }

            async fn wallet_devices(&self, user_id: &str) -> StoreResult<Vec<WalletDeviceRow>> {
                sqlx::query(concat!("SELECT ", wallet_device_columns!(), " FROM wallet_devices WHERE user_id = $1 ORDER BY created_at, id LIMIT $2"))
                    .bind(user_id.to_owned())
                    .bind(WALLET_DEVICES_MAX)
                    .fetch_all(self.reader())
                    .await?
                    .iter()
                    .map(Self::wallet_device_from)
                    .collect()
            }

            async fn wallet_device(&self, user_id: &str, id: &str) -> StoreResult<Option<WalletDeviceRow>> {
                sqlx::query(concat!("SELECT ", wallet_device_columns!(), " FROM wallet_devices WHERE user_id = $1 AND id = $2"))
                    .bind(user_id.to_owned())
                    .bind(id.to_owned())
                    .fetch_optional(self.reader())
                    .await?
                    .map(|row| Self::wallet_device_from(&row))
                    .transpose()
            }

            async fn wallet_device_by_id(&self, id: &str) -> StoreResult<Option<WalletDeviceRow>> {
                sqlx::query(concat!("SELECT ", wallet_device_columns!(), " FROM wallet_devices WHERE id = $1"))
                    .bind(id.to_owned())
                    .fetch_optional(self.reader())
                    .await?
                    .map(|row| Self::wallet_device_from(&row))
                    .transpose()
            }

            async fn sign_out_wallet_device(&self, user_id: &str, id: &str, now: i64) -> StoreResult<bool> {
                let (user_id, id) = (user_id.to_owned(), id.to_owned());
                self.write(false, move |conn: &mut $conn| {
                    Box::pin(async move {
                        let done = sqlx::query("UPDATE wallet_devices SET signed_out_at = $3 WHERE user_id = $1 AND id = $2 AND signed_out_at IS NULL")
                            .bind(&user_id).bind(&id).bind(now)
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

wallet_backend!(SqliteStore, sqlx::sqlite::SqliteRow, sqlx::SqliteConnection);
wallet_backend!(PgStore, sqlx::postgres::PgRow, sqlx::PgConnection);

impl WalletStore for AnyStore {
    async fn insert_account(&self, user: &AccountRow) -> StoreResult<bool> {
        match self {
            AnyStore::Sqlite(store) => store.insert_account(user).await,
            AnyStore::Postgres(store) => store.insert_account(user).await,
        }
    }

    async fn account_by_phone(&self, phone: &str) -> StoreResult<Option<AccountRow>> {
        match self {
            AnyStore::Sqlite(store) => store.account_by_phone(phone).await,
            AnyStore::Postgres(store) => store.account_by_phone(phone).await,
        }
    }

    async fn set_login_failures(
        &self,
        user_id: &str,
        failed_logins: i64,
        locked_until: i64,
    ) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(store) => {
                store
                    .set_login_failures(user_id, failed_logins, locked_until)
                    .await
            }
            AnyStore::Postgres(store) => {
                store
                    .set_login_failures(user_id, failed_logins, locked_until)
                    .await
            }
        }
    }

    async fn insert_wallet_session(&self, session: &WalletSessionRow) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(store) => store.insert_wallet_session(session).await,
            AnyStore::Postgres(store) => store.insert_wallet_session(session).await,
        }
    }

    async fn wallet_session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<Option<(WalletSessionRow, AccountRow)>> {
        match self {
            AnyStore::Sqlite(store) => store.wallet_session(token_hash, now).await,
            AnyStore::Postgres(store) => store.wallet_session(token_hash, now).await,
        }
    }

    async fn delete_wallet_session(&self, token_hash: &str) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(store) => store.delete_wallet_session(token_hash).await,
            AnyStore::Postgres(store) => store.delete_wallet_session(token_hash).await,
        }
    }

    async fn delete_expired_wallet_sessions(&self, now: i64) -> StoreResult<u64> {
        match self {
            AnyStore::Sqlite(store) => store.delete_expired_wallet_sessions(now).await,
            AnyStore::Postgres(store) => store.delete_expired_wallet_sessions(now).await,
        }
    }

    async fn start_wallet_binding(&self, card: &WalletCardRow) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(store) => store.start_wallet_binding(card).await,
            AnyStore::Postgres(store) => store.start_wallet_binding(card).await,
        }
    }

    async fn wallet_card(&self, user_id: &str, id: &str) -> StoreResult<Option<WalletCardRow>> {
        match self {
            AnyStore::Sqlite(store) => store.wallet_card(user_id, id).await,
            AnyStore::Postgres(store) => store.wallet_card(user_id, id).await,
        }
    }

    async fn set_wallet_code_attempts(&self, id: &str, attempts: i64) -> StoreResult<()> {
        match self {
            AnyStore::Sqlite(store) => store.set_wallet_code_attempts(id, attempts).await,
            AnyStore::Postgres(store) => store.set_wallet_code_attempts(id, attempts).await,
        }
    }

    async fn bind_wallet_card(&self, id: &str, now: i64) -> StoreResult<bool> {
        match self {
            AnyStore::Sqlite(store) => store.bind_wallet_card(id, now).await,
            AnyStore::Postgres(store) => store.bind_wallet_card(id, now).await,
        }
    }

    async fn remove_wallet_card(&self, user_id: &str, id: &str) -> StoreResult<bool> {
        match self {
            AnyStore::Sqlite(store) => store.remove_wallet_card(user_id, id).await,
            AnyStore::Postgres(store) => store.remove_wallet_card(user_id, id).await,
        }
    }

    async fn bound_wallet_cards(&self, user_id: &str) -> StoreResult<Vec<WalletCardRow>> {
        match self {
            AnyStore::Sqlite(store) => store.bound_wallet_cards(user_id).await,
            AnyStore::Postgres(store) => store.bound_wallet_cards(user_id).await,
        }
    }

    async fn insert_wallet_device(&self, device: &WalletDeviceRow) -> StoreResult<bool> {
        match self {
            AnyStore::Sqlite(store) => store.insert_wallet_device(device).await,
            AnyStore::Postgres(store) => store.insert_wallet_device(device).await,
        }
    }

    async fn wallet_devices(&self, user_id: &str) -> StoreResult<Vec<WalletDeviceRow>> {
        match self {
            AnyStore::Sqlite(store) => store.wallet_devices(user_id).await,
            AnyStore::Postgres(store) => store.wallet_devices(user_id).await,
        }
    }

    async fn wallet_device(&self, user_id: &str, id: &str) -> StoreResult<Option<WalletDeviceRow>> {
        match self {
            AnyStore::Sqlite(store) => store.wallet_device(user_id, id).await,
            AnyStore::Postgres(store) => store.wallet_device(user_id, id).await,
        }
    }

    async fn wallet_device_by_id(&self, id: &str) -> StoreResult<Option<WalletDeviceRow>> {
        match self {
            AnyStore::Sqlite(store) => store.wallet_device_by_id(id).await,
            AnyStore::Postgres(store) => store.wallet_device_by_id(id).await,
        }
    }

    async fn sign_out_wallet_device(&self, user_id: &str, id: &str, now: i64) -> StoreResult<bool> {
        match self {
            AnyStore::Sqlite(store) => store.sign_out_wallet_device(user_id, id, now).await,
            AnyStore::Postgres(store) => store.sign_out_wallet_device(user_id, id, now).await,
        }
    }
}
