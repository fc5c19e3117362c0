-- Callbacks go out in status order, whatever order their events reached `herald.events` in.
-- The worker's `sent` and the provider's receipt (`delivered`, `read`, `failed`) come from
-- different producers, so a receipt can land first. Each row now carries its status rank, and
-- a receipt's row (`follows_sent`) waits for its message's `sent` row to be recorded, for at
-- most HERALD_SINKS_CALLBACK_ORDER_HOLD_SECONDS. To know that `sent` was recorded after it went
-- out, delivered rows are kept (`delivered_at`) for a while instead of being deleted at once.
ALTER TABLE callback_outbox
    ADD COLUMN rank smallint NOT NULL DEFAULT 0,
    ADD COLUMN follows_sent boolean NOT NULL DEFAULT false,
    ADD COLUMN delivered_at timestamptz;

DROP INDEX callback_outbox_due;
DROP INDEX callback_outbox_message;
CREATE INDEX callback_outbox_due ON callback_outbox (next_attempt_at)
    WHERE dead_at IS NULL AND delivered_at IS NULL;
CREATE INDEX callback_outbox_message ON callback_outbox (message_id, rank, id)
    WHERE dead_at IS NULL AND delivered_at IS NULL;
CREATE INDEX callback_outbox_delivered ON callback_outbox (delivered_at) WHERE delivered_at IS NOT NULL;
