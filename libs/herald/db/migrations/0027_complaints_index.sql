-- The sinks count each tenant's complaints of the last day every minute
-- (herald.db.email_reputation): a partial index keeps that off a scan of every suppression.
CREATE INDEX suppressions_complaints ON suppressions (created_at) WHERE reason = 'complained';
