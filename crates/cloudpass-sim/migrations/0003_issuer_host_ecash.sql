-- What each recorded message was: a purchase, a load of e-cash from the account, the
-- clearing of an offline e-cash spend, or a stand-in advice. A reversal undoes each its way.
ALTER TABLE sim_transactions ADD COLUMN kind TEXT NOT NULL DEFAULT 'purchase';
