-- The issuer host's accounts, its double-entry ledger and its record of every financial
-- message (so a repeated message is answered from the record and never posts twice).

ALTER TABLE sim_cards ADD COLUMN account_id TEXT;
-- PIN verification value under the bank's PIN verification key, bound to the card ID.
ALTER TABLE sim_cards ADD COLUMN pvv BLOB;
ALTER TABLE sim_cards ADD COLUMN pin_tries INTEGER NOT NULL DEFAULT 0;

CREATE TABLE sim_accounts (
    id TEXT PRIMARY KEY,
    currency INTEGER NOT NULL,
    -- Positive: money the bank owes the holder. Debit accounts start funded; credit
    -- accounts start at zero and may go down to -credit_limit.
    balance INTEGER NOT NULL,
    credit_limit INTEGER NOT NULL CHECK (credit_limit >= 0),
    daily_limit INTEGER NOT NULL CHECK (daily_limit >= 0),
    daily_spent INTEGER NOT NULL,
    spent_day INTEGER NOT NULL,
    CHECK (balance + credit_limit >= 0)
);

CREATE TABLE sim_ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id INTEGER NOT NULL,
    account TEXT NOT NULL,
    debit INTEGER NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    posted_at INTEGER NOT NULL
);
CREATE INDEX sim_ledger_by_account ON sim_ledger (account);

CREATE TABLE sim_transactions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mti TEXT NOT NULL,
    acquirer TEXT NOT NULL,
    stan TEXT NOT NULL,
    transmission_time TEXT NOT NULL,
    rrn TEXT NOT NULL,
    card_id TEXT,
    amount INTEGER NOT NULL,
    currency INTEGER NOT NULL,
    response_code TEXT NOT NULL,
    auth_code TEXT,
    day INTEGER NOT NULL,
    reversed INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    UNIQUE (mti, acquirer, stan, transmission_time, rrn)
);
