-- The institution gateway's orders: one row per transaction number (TN). A merchant's
-- orderId and txnTime identify its order; the TN and the queryId of the payment identify it
-- to everyone else. The money columns follow cloudpass-core::order (refunds reserve before
-- they are sent). No card data is kept but the masked number shown in queries.
CREATE TABLE gateway_orders (
    tn TEXT PRIMARY KEY,
    mer_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    txn_time TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency INTEGER NOT NULL,
    channel TEXT NOT NULL,
    back_url TEXT NOT NULL,
    front_url TEXT,
    req_reserved TEXT,
    pay_timeout INTEGER NOT NULL,
    request_digest TEXT NOT NULL,
    status TEXT NOT NULL,
    refunded INTEGER NOT NULL DEFAULT 0,
    refund_reserved INTEGER NOT NULL DEFAULT 0,
    paid_at INTEGER,
    query_id TEXT UNIQUE,
    pay_response_code TEXT,
    pay_card_masked TEXT,
    pay_card_type TEXT,
    auth_stan TEXT,
    auth_transmission_time TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL,
    UNIQUE (mer_id, order_id, txn_time)
);
CREATE INDEX gateway_orders_unpaid ON gateway_orders (pay_timeout) WHERE status = 'issued';
