-- Undos (31) and refunds (04) are orders of their own (their own orderId and txnTime, a
-- queryId when they succeed) that name the consume they return.
ALTER TABLE gateway_orders ADD COLUMN kind TEXT NOT NULL DEFAULT 'consume';
ALTER TABLE gateway_orders ADD COLUMN original_tn TEXT;
