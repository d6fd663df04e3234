-- The switch's journal: every acquirer request as it arrived and the answer the switch gave.
-- A request is recorded before it is worked on (a second one with the same key is a
-- duplicate) and its answer before the answer leaves. The key is MTI, acquirer, STAN and
-- transmission time. Card data is never stored here: the token appears masked.
CREATE TABLE switch_journal (
    id TEXT PRIMARY KEY,
    mti TEXT NOT NULL,
    acquirer_id TEXT NOT NULL,
    stan TEXT NOT NULL,
    transmission_time TEXT NOT NULL,
    rrn TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    token_masked TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    response_code TEXT,
    auth_code TEXT,
    -- answered, timeout, down, not_sent
    issuer_outcome TEXT,
    answered_at BIGINT
);
CREATE INDEX switch_journal_by_time ON switch_journal (received_at);

-- Store and forward: advices the issuer must receive, retried until it acknowledges them.
-- One row per original transaction, so a reversal is queued once however often it is asked for.
CREATE TABLE switch_saf (
    id TEXT PRIMARY KEY,
    mti TEXT NOT NULL,
    -- reversal, stand_in (a stand-in approval to post) or ecash (an offline spend to clear)
    kind TEXT NOT NULL,
    token_number TEXT NOT NULL,
    original_mti TEXT NOT NULL,
    stan TEXT NOT NULL,
    transmission_time TEXT NOT NULL,
    acquirer_id TEXT NOT NULL,
    rrn TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    acknowledged_at BIGINT,
    response_code TEXT
);
CREATE INDEX switch_saf_due ON switch_saf (next_attempt_at) WHERE acknowledged_at IS NULL;

-- Offline e-cash spends cleared: one per token and ATC, however often a batch is uploaded.
CREATE TABLE switch_offline_clearings (
    token_number TEXT NOT NULL,
    atc BIGINT NOT NULL,
    journal_id TEXT NOT NULL,
    cleared_at BIGINT NOT NULL,
    PRIMARY KEY (token_number, atc)
);
