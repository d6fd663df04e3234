-- The Cloud QuickPass app's accounts (cloudpass-wallet). A person signs up with a phone
-- number and a password; the password is kept only as an Argon2id PHC string. After too
-- many wrong passwords in a row the account is locked until `locked_until`.
CREATE TABLE wallet_users (
    id TEXT PRIMARY KEY,
    phone TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- Signed-in browsers. The session cookie carries a random token; only its SHA-256 is kept,
-- so a copy of this table cannot be turned into sessions.
CREATE TABLE wallet_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES wallet_users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX wallet_sessions_expiry ON wallet_sessions (expires_at);
