-- What a trade's notifications repeat of the request that made it: bizType, accessType and
-- the merchant fields of its access type (acqInsCode…, subMerId…), URL-encoded. Orders made
-- before it have '' and are announced as accessType 0, bizType 000201.
ALTER TABLE gateway_orders ADD COLUMN request_echo TEXT NOT NULL DEFAULT '';
