-- Claiming due notifications looks, for each candidate, for an earlier undelivered event of
-- the same subscriber and token. Indexing only undelivered events keeps that probe small
-- however many delivered events the table holds.
DROP INDEX IF EXISTS outbox_by_group;
CREATE INDEX outbox_pending_by_group ON outbox (subscriber_kind, subscriber_id, token_id, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
