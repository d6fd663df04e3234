-- A merchant's sandbox clock: how far the integrator advanced the time its orders live by
-- (payTimeout, the clearing day, the notification schedule), in milliseconds.
ALTER TABLE gateway_sandbox_settings ADD COLUMN clock_offset_ms INTEGER NOT NULL DEFAULT 0;
