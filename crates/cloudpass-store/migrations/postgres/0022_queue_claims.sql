-- Claiming due notifications used to look, for every due candidate, for an earlier pending
-- event of the same subscriber and token: with a backlog of N that is N probes for each batch
-- claimed. Now each queue's head is marked when it becomes the head (written with the event,
-- or when the event before it is delivered or given up), and a claim reads only due heads
-- through their own index: the cost of a claim is the batch it takes, not the backlog.
ALTER TABLE outbox ADD COLUMN head INTEGER NOT NULL DEFAULT 0;
UPDATE outbox SET head = 1
 WHERE delivered_at IS NULL AND failed_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM outbox p
                    WHERE p.subscriber_kind = outbox.subscriber_kind AND p.subscriber_id = outbox.subscriber_id
                      AND p.token_id = outbox.token_id AND p.id < outbox.id
                      AND p.delivered_at IS NULL AND p.failed_at IS NULL);
DROP INDEX IF EXISTS outbox_pending;
CREATE INDEX outbox_due_heads ON outbox (next_attempt_at, id)
    WHERE head = 1 AND delivered_at IS NULL AND failed_at IS NULL;

-- Store and forward sends an advice only after the earlier advices of the same original
-- transaction (acquirer, STAN, transmission time). That probe had no index but the due one,
-- so each candidate scanned every pending advice; now it is one index lookup, and due
-- advices are read in (next_attempt_at, id) order straight from their index.
CREATE INDEX switch_saf_pending_by_original ON switch_saf (acquirer_id, stan, transmission_time, created_at, id)
    WHERE acknowledged_at IS NULL;
DROP INDEX IF EXISTS switch_saf_due;
CREATE INDEX switch_saf_due ON switch_saf (next_attempt_at, id) WHERE acknowledged_at IS NULL;
