-- The issuer host stand-in's own database: a bank is another party and keeps its own books.
-- Card numbers are stored encrypted under the bank's own data key and found by fingerprint.

CREATE TABLE sim_keys (
    name TEXT PRIMARY KEY,
    wrapped TEXT NOT NULL
);

CREATE TABLE sim_cards (
    id TEXT PRIMARY KEY,
    pan_fingerprint BLOB NOT NULL UNIQUE,
    pan_encrypted BLOB NOT NULL,
    pan_last4 TEXT NOT NULL,
    expiry TEXT NOT NULL,
    cvn2_hash BLOB,
    phone TEXT NOT NULL,
    holder_name TEXT NOT NULL,
    funding TEXT NOT NULL CHECK (funding IN ('debit', 'credit')),
    product TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'lost', 'stolen', 'closed')),
    -- What the bank answers to a wallet provisioning request: green or yellow (step-up).
    provisioning TEXT NOT NULL CHECK (provisioning IN ('green', 'yellow')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Text messages the bank "sent": the sandbox's window onto step-up codes.
CREATE TABLE sim_sms (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    phone TEXT NOT NULL,
    text TEXT NOT NULL,
    sent_at INTEGER NOT NULL
);
CREATE INDEX sim_sms_by_phone ON sim_sms (phone, id);
