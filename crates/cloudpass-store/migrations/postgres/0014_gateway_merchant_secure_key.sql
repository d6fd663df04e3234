-- A registered merchant's secure key (signMethod 11 and 12), sealed under the platform's data
-- key (AES-GCM with the merchant's merId bound in): never stored in clear. NULL: none.
ALTER TABLE gateway_merchants ADD COLUMN secure_key_sealed BYTEA;
