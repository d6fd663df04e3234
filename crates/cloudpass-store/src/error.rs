//! Storage errors. Rule violations the database catches are named, so the service above can
//! turn them into the right answer instead of a generic failure.

/// Which uniqueness rule a write broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Duplicate {
    /// One card has at most one live token on a device.
    LiveTokenForCardOnDevice,
    /// A device has at most one default token.
    DefaultOnDevice,
    TokenNumber,
    CardFingerprint,
    Par,
    User,
    Device,
    IdempotencyKey,
    Other(String),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A row changed since it was read (optimistic concurrency): re-read and try again.
    #[error("concurrent modification; retry")]
    Conflict,
    #[error("duplicate: {0:?}")]
    Duplicate(Duplicate),
    /// A row holds something the code cannot read back (a bug or a hand edit).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("cannot connect: {0}")]
    Connect(String),
}

fn classify(message: &str, constraint: Option<&str>) -> Duplicate {
    let name = constraint.unwrap_or(message);
    let has = |needle: &str| name.contains(needle);
    if has("tokens_one_live_token_per_card_and_device") || has("tokens.card_id, tokens.device_id") {
        Duplicate::LiveTokenForCardOnDevice
    } else if has("tokens_one_default_per_device") || has("tokens.device_id") {
        Duplicate::DefaultOnDevice
    } else if has("token_number") {
        Duplicate::TokenNumber
    } else if has("pan_fingerprint") {
        Duplicate::CardFingerprint
    } else if has("cards_par_key") || has("cards.par") {
        Duplicate::Par
    } else if has("users_token_requestor_id_account_id_key") || has("users.token_requestor_id") {
        Duplicate::User
    } else if has("devices_token_requestor_id_external_id_key") || has("devices.token_requestor_id")
    {
        Duplicate::Device
    } else if has("idempotency") {
        Duplicate::IdempotencyKey
    } else {
        Duplicate::Other(name.to_owned())
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(database) if database.is_unique_violation() => {
                StoreError::Duplicate(classify(database.message(), database.constraint()))
            }
            // SQLite reports a busy database after its busy timeout; the caller retries.
            sqlx::Error::Database(database)
                if database.message().contains("database is locked") =>
            {
                StoreError::Conflict
            }
            _ => StoreError::Database(error.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migration(error.to_string())
    }
}
