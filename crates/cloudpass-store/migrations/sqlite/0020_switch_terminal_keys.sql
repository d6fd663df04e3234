-- A terminal's working keys from its last sign-on, wrapped under the switch's master key
-- (`cpk1.…` text), so that a restarted switch still checks the terminal's MACs and PIN
-- blocks: a terminal signed on before the restart is not refused A0 after it.
CREATE TABLE switch_terminal_keys (
    acquirer_id TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    pin_key TEXT NOT NULL,
    mac_key TEXT NOT NULL,
    signed_on_at BIGINT NOT NULL,
    PRIMARY KEY (acquirer_id, terminal_id)
);
