-- A claim on an idempotency key whose holder died is taken over once it is older than the
-- lease (`created_at` is when it was last claimed). `effect_committed` is set in the same
-- transaction as the request's change, so whoever takes a claim over knows whether the
-- change it would make is already made.
ALTER TABLE idempotency ADD COLUMN effect_committed BIGINT NOT NULL DEFAULT 0;
