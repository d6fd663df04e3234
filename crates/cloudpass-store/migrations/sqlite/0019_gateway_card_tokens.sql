-- Token payment (bizType 000902): a card a merchant opened, named to it by a token. The
-- card number and expiry are sealed by the platform (bound to the token), never stored in
-- clear; the merchant's opening request is named by (mer_id, order_id, txn_time) and its
-- digest, so a repeated opening gets the same token and another request under the same
-- names is refused.
CREATE TABLE gateway_card_tokens (
    token TEXT PRIMARY KEY,
    mer_id TEXT NOT NULL,
    tr_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    txn_time TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    sealed_card BLOB NOT NULL,
    card_masked TEXT NOT NULL,
    card_type TEXT NOT NULL,
    status TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    deleted_at BIGINT,
    UNIQUE (mer_id, order_id, txn_time)
);
