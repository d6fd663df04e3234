-- The highest ATC the switch accepted per token, shared by every switch instance on this
-- store: an online cryptogram with this ATC or a lower one is a replay. Durable, so a
-- restart (or another instance) never accepts a captured cryptogram again.
CREATE TABLE switch_token_atcs (
    token_number TEXT PRIMARY KEY,
    last_atc BIGINT NOT NULL,
    accepted_at BIGINT NOT NULL
);
