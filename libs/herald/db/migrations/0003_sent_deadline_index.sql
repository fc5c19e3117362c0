-- Finds messages still waiting for a delivery receipt (the receipt-deadline sweep).
CREATE INDEX messages_awaiting_receipt ON messages (updated_at) WHERE status = 'sent';
