-- Workers ask for a tenant's newest suppression on a channel (herald.db.suppressions.latest)
-- to know whether a marketing message accepted before it must be looked up again.
CREATE INDEX suppressions_latest ON suppressions (tenant_id, channel, created_at);
