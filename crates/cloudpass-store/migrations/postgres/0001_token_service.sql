-- The token service's tables. Every timestamp is milliseconds since the Unix epoch (UTC).
-- Card numbers are never stored in clear: pan_encrypted is AES-256-GCM under the HSM's data
-- key, pan_fingerprint an HMAC-SHA-256 under its fingerprint key.

CREATE TABLE hsm_keys (
    name TEXT PRIMARY KEY,
    wrapped TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE issuers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    -- Where the TSP asks the bank (checkEligibility, approveProvision, sendPasscode).
    api_url TEXT NOT NULL,
    api_key_hash BYTEA NOT NULL UNIQUE,
    webhook_url TEXT,
    -- Shared secret for signing calls and notifications, encrypted under the data key.
    webhook_secret BYTEA,
    created_at BIGINT NOT NULL
);

-- Card and token BIN ranges: a prefix of the card (or token) number, and the card product.
CREATE TABLE bin_ranges (
    prefix TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('card', 'token')),
    issuer_id TEXT NOT NULL REFERENCES issuers (id),
    product TEXT NOT NULL,
    funding TEXT NOT NULL CHECK (funding IN ('debit', 'credit')),
    PRIMARY KEY (kind, prefix)
);

-- CVM policy per card product: the issuer's no-PIN limits, in minor units of currency.
CREATE TABLE products (
    issuer_id TEXT NOT NULL REFERENCES issuers (id),
    product TEXT NOT NULL,
    currency BIGINT NOT NULL,
    contactless_no_pin_limit BIGINT NOT NULL CHECK (contactless_no_pin_limit >= 0),
    online_no_pin_limit BIGINT NOT NULL CHECK (online_no_pin_limit >= 0),
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (issuer_id, product)
);

CREATE TABLE token_requestors (
    id TEXT PRIMARY KEY CHECK (length(id) = 11),
    name TEXT NOT NULL,
    wallet TEXT NOT NULL,
    api_key_hash BYTEA NOT NULL UNIQUE,
    webhook_url TEXT,
    webhook_secret BYTEA,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    token_requestor_id TEXT NOT NULL REFERENCES token_requestors (id),
    account_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (token_requestor_id, account_id)
);

CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    token_requestor_id TEXT NOT NULL REFERENCES token_requestors (id),
    external_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('handset_se', 'wearable', 'hce', 'sim_se')),
    brand TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'lost', 'wiped')),
    user_id TEXT REFERENCES users (id),
    unlock_set BOOLEAN NOT NULL,
    public_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    UNIQUE (token_requestor_id, external_id)
);

CREATE TABLE cards (
    id TEXT PRIMARY KEY,
    issuer_id TEXT NOT NULL REFERENCES issuers (id),
    pan_fingerprint BYTEA NOT NULL UNIQUE,
    pan_encrypted BYTEA NOT NULL,
    pan_bin TEXT NOT NULL,
    pan_last4 TEXT NOT NULL,
    expiry TEXT NOT NULL,
    funding TEXT NOT NULL CHECK (funding IN ('debit', 'credit')),
    product TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'lost', 'stolen', 'closed')),
    reserved_phone_masked TEXT,
    par TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL
);

CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    token_number TEXT NOT NULL UNIQUE,
    card_id TEXT NOT NULL REFERENCES cards (id),
    device_id TEXT NOT NULL REFERENCES devices (id),
    token_requestor_id TEXT NOT NULL REFERENCES token_requestors (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    expiry TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'suspended', 'deleted')),
    activated BOOLEAN NOT NULL,
    deleted BOOLEAN NOT NULL,
    holds BIGINT NOT NULL CHECK (holds >= 0 AND holds < 32),
    suspend_reason TEXT,
    status_reason TEXT,
    status_channel TEXT NOT NULL,
    is_default BOOLEAN NOT NULL,
    domain_nfc BOOLEAN NOT NULL,
    domain_in_app BOOLEAN NOT NULL,
    ecash_enabled BOOLEAN NOT NULL,
    ecash_balance BIGINT NOT NULL CHECK (ecash_balance >= 0),
    pan_sequence BIGINT NOT NULL,
    atc_issued_until BIGINT NOT NULL,
    assurance_level TEXT NOT NULL,
    -- Issuer-supplied metadata (JSON object), sent to the wallet.
    metadata TEXT NOT NULL,
    provisioned_seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version BIGINT NOT NULL,
    CHECK (NOT (is_default AND deleted)),
    CHECK (deleted = (status = 'deleted'))
);

-- The seed's mapping rules, enforced where no race can break them.
CREATE UNIQUE INDEX tokens_one_live_token_per_card_and_device ON tokens (card_id, device_id) WHERE deleted = FALSE;
CREATE UNIQUE INDEX tokens_one_default_per_device ON tokens (device_id) WHERE is_default = TRUE;
CREATE INDEX tokens_by_device ON tokens (device_id);
CREATE INDEX tokens_by_card ON tokens (card_id);

CREATE TABLE token_history (
    id BIGSERIAL PRIMARY KEY,
    token_id TEXT NOT NULL REFERENCES tokens (id),
    at BIGINT NOT NULL,
    event TEXT NOT NULL,
    channel TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    reason TEXT,
    detail TEXT
);
CREATE INDEX token_history_by_token ON token_history (token_id, id);

-- Step-up (yellow path): the OTP's keyed hash, never the OTP.
CREATE TABLE challenges (
    token_id TEXT PRIMARY KEY REFERENCES tokens (id),
    otp_hash BYTEA NOT NULL,
    destination_masked TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts_left BIGINT NOT NULL,
    resends_left BIGINT NOT NULL
);

-- The transactional outbox: written in the same transaction as the change it reports.
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    subscriber_kind TEXT NOT NULL CHECK (subscriber_kind IN ('token_requestor', 'issuer')),
    subscriber_id TEXT NOT NULL,
    token_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    failed_at BIGINT,
    last_error TEXT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_by_group ON outbox (subscriber_id, token_id, id);

CREATE TABLE idempotency (
    principal TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    response_status BIGINT,
    response_body TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (principal, idempotency_key)
);
