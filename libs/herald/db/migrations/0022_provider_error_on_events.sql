-- A provider's own code and words for a failure it reported (WhatsApp: `131026 Message
-- undeliverable`) travel with the failed status to the message's timeline, beside Herald's reason.
ALTER TABLE message_events ADD COLUMN provider_error text;
