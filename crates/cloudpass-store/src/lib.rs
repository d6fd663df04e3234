//! Persistence for the token service, behind one contract ([`TokenStore`]) with two
//! implementations written from the same SQL: SQLite (the embedded default: one file, WAL,
//! a single writer connection and a pool of readers) and PostgreSQL (`DATABASE_URL`).
//!
//! The store executes; it does not decide. A change arrives as a [`Changeset`] the service
//! built from the pure rules in `cloudpass-core`, and is applied in one transaction: rows are
//! matched on the version they were read at, the notifications of the change go into the
//! outbox in the same transaction, and the mapping rules (one live token per card per
//! device, one default per device) are also unique indexes, so no race can break them.

mod backlog;
mod card_tokens;
mod error;
mod gateway;
mod rows;
mod sql;
mod terminal_keys;
pub mod testing;
mod wallet;

use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub use backlog::{Backlog, BacklogStore, Backlogs};
pub use card_tokens::{CardTokenInsert, CardTokenRow, CardTokenStore};
pub use error::{Duplicate, StoreError};
pub use gateway::{
    GatewayStore, MERCHANTS_LISTED_MAX, MerchantRow, NotificationRow, OrderInsert, OrderRow,
};
pub use rows::*;
pub use sql::{PgStore, SqliteStore};
pub use terminal_keys::{TerminalKeyStore, TerminalKeysRow};
pub use wallet::{
    AccountRow, WALLET_CARDS_MAX, WALLET_DEVICES_MAX, WalletCardRow, WalletDeviceRow,
    WalletSessionRow, WalletStore,
};

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything the token service keeps, and how it changes.
pub trait TokenStore: Send + Sync {
    /// Applies the migrations this build carries (idempotent).
    fn migrate(&self) -> impl Future<Output = StoreResult<()>> + Send;

    // Keys of the HSM, wrapped under its master key.
    fn key(&self, name: &str) -> impl Future<Output = StoreResult<Option<String>>> + Send;
    /// Every stored key, as (name, wrapped), by name.
    fn keys(&self) -> impl Future<Output = StoreResult<Vec<(String, String)>>> + Send;
    /// Replaces wrapped keys in one transaction, each only if it is still the `old` one
    /// (master key rotation); any other value makes the whole change a `Conflict`.
    fn replace_keys(
        &self,
        replacements: &[KeyReplacement],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Stores `wrapped` under `name` unless a key is already there; returns the stored one.
    fn insert_key_if_absent(
        &self,
        name: &str,
        wrapped: &str,
        now: i64,
    ) -> impl Future<Output = StoreResult<String>> + Send;

    // Set-up of participants.
    fn insert_issuer(
        &self,
        issuer: &IssuerRow,
        ranges: &[BinRangeRow],
        products: &[ProductRow],
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn insert_token_requestor(
        &self,
        requestor: &TokenRequestorRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn insert_user(&self, user: &UserRow) -> impl Future<Output = StoreResult<()>> + Send;
    fn insert_device(&self, device: &DeviceRow) -> impl Future<Output = StoreResult<()>> + Send;
    /// Points an issuer at new endpoints (the sandbox does this when its address changes).
    fn set_issuer_endpoints(
        &self,
        id: &str,
        api_url: &str,
        webhook_url: Option<&str>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn set_token_requestor_webhook(
        &self,
        id: &str,
        webhook_url: Option<&str>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    // Reads.
    fn issuer(&self, id: &str) -> impl Future<Output = StoreResult<Option<IssuerRow>>> + Send;
    fn issuer_by_api_key(
        &self,
        hash: &[u8],
    ) -> impl Future<Output = StoreResult<Option<IssuerRow>>> + Send;
    fn issuers(&self) -> impl Future<Output = StoreResult<Vec<IssuerRow>>> + Send;
    fn bin_ranges(&self) -> impl Future<Output = StoreResult<Vec<BinRangeRow>>> + Send;
    fn product(
        &self,
        issuer_id: &str,
        product: &str,
    ) -> impl Future<Output = StoreResult<Option<ProductRow>>> + Send;
    fn token_requestor(
        &self,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<TokenRequestorRow>>> + Send;
    fn token_requestor_by_api_key(
        &self,
        hash: &[u8],
    ) -> impl Future<Output = StoreResult<Option<TokenRequestorRow>>> + Send;
    fn token_requestors(&self) -> impl Future<Output = StoreResult<Vec<TokenRequestorRow>>> + Send;
    fn user(&self, id: &str) -> impl Future<Output = StoreResult<Option<UserRow>>> + Send;
    fn user_by_account(
        &self,
        token_requestor_id: &str,
        account_id: &str,
    ) -> impl Future<Output = StoreResult<Option<UserRow>>> + Send;
    fn device(&self, id: &str) -> impl Future<Output = StoreResult<Option<DeviceRow>>> + Send;
    fn device_by_external_id(
        &self,
        token_requestor_id: &str,
        external_id: &str,
    ) -> impl Future<Output = StoreResult<Option<DeviceRow>>> + Send;
    fn card(&self, id: &str) -> impl Future<Output = StoreResult<Option<CardRow>>> + Send;
    fn card_by_fingerprint(
        &self,
        fingerprint: &[u8],
    ) -> impl Future<Output = StoreResult<Option<CardRow>>> + Send;
    fn token(&self, id: &str) -> impl Future<Output = StoreResult<Option<TokenRow>>> + Send;
    fn token_by_number(
        &self,
        token_number: &str,
    ) -> impl Future<Output = StoreResult<Option<TokenRow>>> + Send;
    /// A device's tokens, deleted ones included, oldest first.
    fn tokens_by_device(
        &self,
        device_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<TokenRow>>> + Send;
    /// A card's tokens, deleted ones included, oldest first.
    fn tokens_by_card(
        &self,
        card_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<TokenRow>>> + Send;
    /// Live tokens of one card product.
    fn live_tokens_by_product(
        &self,
        issuer_id: &str,
        product: &str,
    ) -> impl Future<Output = StoreResult<Vec<TokenRow>>> + Send;
    fn history(&self, token_id: &str) -> impl Future<Output = StoreResult<Vec<HistoryRow>>> + Send;
    fn challenge(
        &self,
        token_id: &str,
    ) -> impl Future<Output = StoreResult<Option<ChallengeRow>>> + Send;
    /// The token, its card, device, wallet and product limits, in one read: what
    /// detokenization needs.
    fn vault_entry(
        &self,
        token_number: &str,
    ) -> impl Future<Output = StoreResult<Option<VaultEntry>>> + Send;

    /// Applies a changeset atomically (see [`Changeset`]).
    fn commit(&self, changeset: &Changeset) -> impl Future<Output = StoreResult<()>> + Send;

    // The outbox.
    /// Leases up to `limit` due events until `lease_until`, at most the oldest undelivered
    /// event of each (subscriber, token), so delivery stays in order per token.
    fn claim_due_events(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<OutboxRow>>> + Send;
    fn record_delivery(
        &self,
        id: i64,
        outcome: &DeliveryOutcome,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn outbox_for_token(
        &self,
        token_id: &str,
    ) -> impl Future<Output = StoreResult<Vec<OutboxRow>>> + Send;
    /// Deletes delivered and dead-lettered events created before `before`; returns how many.
    fn prune_outbox(&self, before: i64) -> impl Future<Output = StoreResult<u64>> + Send;

    // Idempotency keys.
    /// Claims `key` for a request at `now`, or says why not. An unanswered claim made before
    /// `stale_before` is taken over (`IdempotencyBegin::TakenOver`).
    fn idempotency_begin(
        &self,
        principal: &str,
        key: &str,
        request_hash: &[u8],
        now: i64,
        stale_before: i64,
    ) -> impl Future<Output = StoreResult<IdempotencyBegin>> + Send;
    fn idempotency_complete(
        &self,
        principal: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Forgets a begun key whose request failed before any effect, so a retry may run.
    fn idempotency_release(
        &self,
        principal: &str,
        key: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Forgets idempotency records created before `before`; returns how many.
    fn prune_idempotency(&self, before: i64) -> impl Future<Output = StoreResult<u64>> + Send;

    // Provisioning guards.
    /// Spends a push receipt: true the first time, false ever after.
    fn spend_push_receipt(
        &self,
        receipt_id: &str,
        token_requestor_id: &str,
        at: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
    /// Gives a receipt back after an attempt that failed before any effect (the issuer
    /// could not be reached), so the wallet may retry it.
    fn unspend_push_receipt(
        &self,
        receipt_id: &str,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn record_provisioning_decline(
        &self,
        decline: &DeclineRow,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Declines of the card and of the wallet account since `since`.
    fn provisioning_declines_since(
        &self,
        card_fingerprint: &[u8],
        user_id: &str,
        since: i64,
    ) -> impl Future<Output = StoreResult<DeclineCounts>> + Send;
    /// The card's declines since `since`, newest first, at most `limit`.
    fn provisioning_declines_of_card(
        &self,
        card_fingerprint: &[u8],
        since: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<DeclineRow>>> + Send;

    // The switch's journal and store-and-forward queue.
    /// Applies journal steps in one transaction, in order; one outcome per step.
    fn journal_apply(
        &self,
        ops: &[JournalOp],
    ) -> impl Future<Output = StoreResult<Vec<JournalOutcome>>> + Send;
    fn journal_entry(
        &self,
        id: &str,
    ) -> impl Future<Output = StoreResult<Option<JournalRow>>> + Send;
    /// The switch's newest journal entries, newest first, at most `limit`: the operator
    /// console's list.
    fn recent_journal(
        &self,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<JournalRow>>> + Send;
    /// The newest tokens, newest first, at most `limit`.
    fn recent_tokens(&self, limit: i64) -> impl Future<Output = StoreResult<Vec<TokenRow>>> + Send;
    /// Advices due at `now`, oldest first; an advice waits while an earlier one about the same
    /// original transaction is unacknowledged (an advice of a stand-in approval reaches the
    /// issuer before the reversal of that approval).
    fn saf_due(
        &self,
        now: i64,
        limit: i64,
    ) -> impl Future<Output = StoreResult<Vec<SafRow>>> + Send;
    fn saf_record(
        &self,
        id: &str,
        delivery: &SafDelivery,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn saf_entry(&self, id: &str) -> impl Future<Output = StoreResult<Option<SafRow>>> + Send;
}

/// How durable an SQLite commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteDurability {
    /// fsync the WAL at every commit: survives power loss (the default).
    Full,
    /// fsync at checkpoints only: survives a process crash, may lose the last commits on
    /// power loss.
    Normal,
}

/// Bounds of the connection pools.
#[derive(Debug, Clone, Copy)]
pub struct PoolOptions {
    /// PostgreSQL connections; SQLite read connections.
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub sqlite_durability: SqliteDurability,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            sqlite_durability: SqliteDurability::Full,
        }
    }
}

/// Either backend, chosen at run time by `DATABASE_URL`.
#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl AnyStore {
    /// The embedded store: one SQLite file (created if missing), WAL.
    pub async fn open_sqlite(path: &Path, options: PoolOptions) -> StoreResult<AnyStore> {
        Ok(AnyStore::Sqlite(SqliteStore::open(path, options).await?))
    }

    /// A PostgreSQL store; `schema`, if given, becomes the search path (tests use a fresh
    /// schema each).
    pub async fn connect_postgres(
        url: &str,
        schema: Option<&str>,
        options: PoolOptions,
    ) -> StoreResult<AnyStore> {
        Ok(AnyStore::Postgres(
            PgStore::connect(url, schema, options).await?,
        ))
    }

    /// `postgres://…` or `sqlite://path`.
    pub async fn connect(url: &str, options: PoolOptions) -> StoreResult<AnyStore> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::connect_postgres(url, None, options).await
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            Self::open_sqlite(Path::new(path), options).await
        } else {
            Err(StoreError::Connect(
                "DATABASE_URL must start with postgres:// or sqlite://".into(),
            ))
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }
}

macro_rules! delegate {
    ($( fn $name:ident(&self $(, $arg:ident : $ty:ty)*) -> $out:ty; )*) => {
        impl TokenStore for AnyStore {
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $out {
                    match self {
                        AnyStore::Sqlite(store) => store.$name($($arg),*).await,
                        AnyStore::Postgres(store) => store.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate! {
    fn migrate(&self) -> StoreResult<()>;
    fn key(&self, name: &str) -> StoreResult<Option<String>>;
    fn keys(&self) -> StoreResult<Vec<(String, String)>>;
    fn replace_keys(&self, replacements: &[KeyReplacement]) -> StoreResult<()>;
    fn insert_key_if_absent(&self, name: &str, wrapped: &str, now: i64) -> StoreResult<String>;
    fn insert_issuer(&self, issuer: &IssuerRow, ranges: &[BinRangeRow], products: &[ProductRow]) -> StoreResult<()>;
    fn insert_token_requestor(&self, requestor: &TokenRequestorRow) -> StoreResult<()>;
    fn insert_user(&self, user: &UserRow) -> StoreResult<()>;
    fn insert_device(&self, device: &DeviceRow) -> StoreResult<()>;
    fn set_issuer_endpoints(&self, id: &str, api_url: &str, webhook_url: Option<&str>) -> StoreResult<()>;
    fn set_token_requestor_webhook(&self, id: &str, webhook_url: Option<&str>) -> StoreResult<()>;
    fn issuer(&self, id: &str) -> StoreResult<Option<IssuerRow>>;
    fn issuer_by_api_key(&self, hash: &[u8]) -> StoreResult<Option<IssuerRow>>;
    fn issuers(&self) -> StoreResult<Vec<IssuerRow>>;
    fn bin_ranges(&self) -> StoreResult<Vec<BinRangeRow>>;
    fn product(&self, issuer_id: &str, product: &str) -> StoreResult<Option<ProductRow>>;
    fn token_requestor(&self, id: &str) -> StoreResult<Option<TokenRequestorRow>>;
    fn token_requestor_by_api_key(&self, hash: &[u8]) -> StoreResult<Option<TokenRequestorRow>>;
    fn token_requestors(&self) -> StoreResult<Vec<TokenRequestorRow>>;
    fn user(&self, id: &str) -> StoreResult<Option<UserRow>>;
    fn user_by_account(&self, token_requestor_id: &str, account_id: &str) -> StoreResult<Option<UserRow>>;
    fn device(&self, id: &str) -> StoreResult<Option<DeviceRow>>;
    fn device_by_external_id(&self, token_requestor_id: &str, external_id: &str) -> StoreResult<Option<DeviceRow>>;
    fn card(&self, id: &str) -> StoreResult<Option<CardRow>>;
    fn card_by_fingerprint(&self, fingerprint: &[u8]) -> StoreResult<Option<CardRow>>;
    fn token(&self, id: &str) -> StoreResult<Option<TokenRow>>;
    fn token_by_number(&self, token_number: &str) -> StoreResult<Option<TokenRow>>;
    fn tokens_by_device(&self, device_id: &str) -> StoreResult<Vec<TokenRow>>;
    fn tokens_by_card(&self, card_id: &str) -> StoreResult<Vec<TokenRow>>;
    fn live_tokens_by_product(&self, issuer_id: &str, product: &str) -> StoreResult<Vec<TokenRow>>;
    fn history(&self, token_id: &str) -> StoreResult<Vec<HistoryRow>>;
    fn challenge(&self, token_id: &str) -> StoreResult<Option<ChallengeRow>>;
    fn vault_entry(&self, token_number: &str) -> StoreResult<Option<VaultEntry>>;
    fn commit(&self, changeset: &Changeset) -> StoreResult<()>;
    fn claim_due_events(&self, now: i64, lease_until: i64, limit: i64) -> StoreResult<Vec<OutboxRow>>;
    fn record_delivery(&self, id: i64, outcome: &DeliveryOutcome) -> StoreResult<()>;
    fn outbox_for_token(&self, token_id: &str) -> StoreResult<Vec<OutboxRow>>;
    fn prune_outbox(&self, before: i64) -> StoreResult<u64>;
    fn idempotency_begin(&self, principal: &str, key: &str, request_hash: &[u8], now: i64, stale_before: i64) -> StoreResult<IdempotencyBegin>;
    fn idempotency_complete(&self, principal: &str, key: &str, status: u16, body: &str) -> StoreResult<()>;
    fn idempotency_release(&self, principal: &str, key: &str) -> StoreResult<()>;
    fn prune_idempotency(&self, before: i64) -> StoreResult<u64>;
    fn spend_push_receipt(&self, receipt_id: &str, token_requestor_id: &str, at: i64) -> StoreResult<bool>;
    fn unspend_push_receipt(&self, receipt_id: &str) -> StoreResult<()>;
    fn record_provisioning_decline(&self, decline: &DeclineRow) -> StoreResult<()>;
    fn provisioning_declines_since(&self, card_fingerprint: &[u8], user_id: &str, since: i64) -> StoreResult<DeclineCounts>;
    fn provisioning_declines_of_card(&self, card_fingerprint: &[u8], since: i64, limit: i64) -> StoreResult<Vec<DeclineRow>>;
    fn journal_apply(&self, ops: &[JournalOp]) -> StoreResult<Vec<JournalOutcome>>;
    fn journal_entry(&self, id: &str) -> StoreResult<Option<JournalRow>>;
    fn recent_journal(&self, limit: i64) -> StoreResult<Vec<JournalRow>>;
    fn recent_tokens(&self, limit: i64) -> StoreResult<Vec<TokenRow>>;
    fn saf_due(&self, now: i64, limit: i64) -> StoreResult<Vec<SafRow>>;
    fn saf_record(&self, id: &str, delivery: &SafDelivery) -> StoreResult<()>;
    fn saf_entry(&self, id: &str) -> StoreResult<Option<SafRow>>;
}

pub(crate) fn parse_url_options<T: FromStr>(url: &str) -> StoreResult<T>
where
    T::Err: std::fmt::Display,
{
    T::from_str(url).map_err(|error| StoreError::Connect(error.to_string()))
}
