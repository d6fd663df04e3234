-- Self-service certification: the standard cases each merchant's own traffic has passed in
-- the sandbox, each recorded once, when it first passed.
CREATE TABLE gateway_certification (
    mer_id TEXT NOT NULL,
    case_name TEXT NOT NULL,
    passed_at INTEGER NOT NULL,
    PRIMARY KEY (mer_id, case_name)
);
