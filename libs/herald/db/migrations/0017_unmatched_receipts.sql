-- Receipts no send of Herald's matches after `sinks.receipt_unmatched_after_seconds` leave the
-- waiting set as `unmatched`, so the sinks' sweep reads only receipts that may still bind (a
-- provider posting receipts for ids Herald never sent, or for sends made outside Herald, made
-- every sweep read all of them). A send recorded later still binds its unmatched receipts by key.
ALTER TABLE provider_receipts DROP CONSTRAINT provider_receipts_outcome_check;
ALTER TABLE provider_receipts ADD CONSTRAINT provider_receipts_outcome_check
    CHECK (outcome IN ('bound', 'late', 'unmatched'));

-- A receipt bound by its echoed message id looks up that message's first send through the
-- provider: with an index on message_id alone, the planner combined it with a scan of every
-- send of the provider (the primary key's prefix) for each receipt whose send was not recorded.
CREATE INDEX provider_messages_message_sent ON provider_messages (message_id, sent_at);
DROP INDEX provider_messages_message;
