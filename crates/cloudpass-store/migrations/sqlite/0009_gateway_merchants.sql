-- Merchants registered with the institution gateway (`cloudpass merchant add`): who they
-- are, the certificate their requests are signed with (signMethod 01, found by certId =
-- its decimal serial), and what they may do. No secret is kept here: a certificate is
-- public. The sandbox merchant is made from the data directory, not stored.
CREATE TABLE gateway_merchants (
    mer_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    certificate_pem TEXT NOT NULL,
    -- Comma-separated permission names (cloudpass-gateway's Permissions).
    permissions TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
