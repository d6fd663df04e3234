-- Cards people bind to their Cloud QuickPass account (cloudpass-wallet). A binding starts
-- `pending` while the code the card's bank texted is awaited, and is `bound` once it is
-- typed. The card number is sealed under the platform's data key and found by its keyed
-- fingerprint; the code is kept as a keyed digest. One bound row per card per account.
CREATE TABLE wallet_cards (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES wallet_users (id),
    fingerprint BYTEA NOT NULL,
    pan_sealed BYTEA NOT NULL,
    -- First 6 and last 4 digits.
    pan_masked TEXT NOT NULL,
    -- debit or credit, as the bank said.
    funding TEXT NOT NULL,
    product TEXT,
    status TEXT NOT NULL,
    code_digest BYTEA,
    code_attempts BIGINT NOT NULL DEFAULT 0,
    code_expires_at BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    bound_at BIGINT
);
CREATE UNIQUE INDEX wallet_cards_bound_once ON wallet_cards (user_id, fingerprint) WHERE status = 'bound';
CREATE INDEX wallet_cards_of_user ON wallet_cards (user_id);
