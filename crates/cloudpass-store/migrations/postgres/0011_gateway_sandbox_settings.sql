-- A merchant's sandbox settings (`cloudpass merchant set`), for any merId including the
-- sandbox merchant: how many sends of each notification the gateway counts as failed,
-- whatever the merchant answers, so that its retries can be watched.
CREATE TABLE gateway_sandbox_settings (
    mer_id TEXT PRIMARY KEY,
    failed_notification_sends BIGINT NOT NULL DEFAULT 0
);
