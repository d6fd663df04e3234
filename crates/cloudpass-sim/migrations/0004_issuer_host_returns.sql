-- Voids and refunds name the purchase they return: a refund may follow a purchase several
-- times, never for more than is left of it.
ALTER TABLE sim_transactions ADD COLUMN original_id INTEGER REFERENCES sim_transactions (id);
CREATE INDEX sim_transactions_by_original ON sim_transactions (original_id);
