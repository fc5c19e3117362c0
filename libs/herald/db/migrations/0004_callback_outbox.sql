-- Tenant status callbacks waiting to be delivered. The callbacks sink inserts one row per
-- (message, status) and commits before its Kafka offsets; the dispatcher deletes a row once
-- the tenant's endpoint accepted it (or gives up after the retry window and marks it dead).
CREATE TABLE callback_outbox (
    id               bigserial PRIMARY KEY,
    tenant_id        uuid NOT NULL,
    message_id       uuid NOT NULL,
    status           text NOT NULL,
    payload          bytea NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_error       text,
    dead_at          timestamptz,
    UNIQUE (message_id, status)
);
CREATE INDEX callback_outbox_due ON callback_outbox (next_attempt_at) WHERE dead_at IS NULL;
CREATE INDEX callback_outbox_message ON callback_outbox (message_id, id) WHERE dead_at IS NULL;
