-- A bound card's expiry, sealed like its number (the app needs both to put the card onto a
-- device). Cards bound before this column existed have none and are bound again.
ALTER TABLE wallet_cards ADD COLUMN expiry_sealed BLOB;

-- The devices a Cloud QuickPass account has signed in on: phones of each maker, watches and
-- the app itself as an HCE device. The id is the device id the token service knows; the
-- device's cards and their states are the token service's and are not copied here.
CREATE TABLE wallet_devices (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES wallet_users (id),
    -- handset_se, wearable or hce (the token service's device kinds).
    kind TEXT NOT NULL,
    -- apple, huawei, xiaomi, samsung or quickpass.
    maker TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- When the account signed out of the device; its cards left with it.
    signed_out_at INTEGER
);
CREATE INDEX wallet_devices_of_user ON wallet_devices (user_id);
