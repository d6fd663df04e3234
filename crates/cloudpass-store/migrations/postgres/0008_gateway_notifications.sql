-- Notifications to merchants' backUrl: written in the same transaction as the order change
-- they announce, delivered by the gateway's worker until acknowledged (HTTP 200 or 302) or
-- their sends run out. The body is the signed form as sent; it holds no card number but the
-- masked one.
CREATE TABLE gateway_notifications (
    id BIGSERIAL PRIMARY KEY,
    tn TEXT NOT NULL,
    mer_id TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    failed_at BIGINT,
    last_status BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX gateway_notifications_due ON gateway_notifications (next_attempt_at) WHERE delivered_at IS NULL AND failed_at IS NULL;
