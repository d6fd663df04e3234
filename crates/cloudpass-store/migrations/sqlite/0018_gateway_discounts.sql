-- Marketing discounts. On a consume, `discount` is the part of its amount a campaign's
-- sponsor carries (the card is charged the rest); on a refund or undo, the sponsor's part
-- of what it returns. `campaign_id` names the campaign, on both. A campaign's spending is
-- the sum over its orders, so it is written in the same statement as the order's state.
ALTER TABLE gateway_orders ADD COLUMN discount BIGINT NOT NULL DEFAULT 0;
ALTER TABLE gateway_orders ADD COLUMN campaign_id TEXT;
CREATE INDEX gateway_orders_by_campaign ON gateway_orders (campaign_id) WHERE campaign_id IS NOT NULL;
