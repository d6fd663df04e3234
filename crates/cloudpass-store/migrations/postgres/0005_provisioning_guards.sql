-- Push receipts already spent: a receipt provisions once.
CREATE TABLE push_receipts_spent (
    receipt_id TEXT PRIMARY KEY,
    token_requestor_id TEXT NOT NULL,
    spent_at BIGINT NOT NULL
);

-- Provisioning attempts the issuer (or the token service) declined, kept to bound card
-- testing per card and per wallet account, and for the bank to see. The card is known by
-- its keyed fingerprint only.
CREATE TABLE provisioning_declines (
    id BIGSERIAL PRIMARY KEY,
    card_fingerprint BYTEA NOT NULL,
    token_requestor_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    declined_at BIGINT NOT NULL
);
CREATE INDEX provisioning_declines_card ON provisioning_declines (card_fingerprint, declined_at);
CREATE INDEX provisioning_declines_user ON provisioning_declines (user_id, declined_at);
