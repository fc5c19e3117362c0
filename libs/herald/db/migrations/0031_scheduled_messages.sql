-- Messages sent with `send_at`, kept by the worker until their time (herald_worker.schedule):
-- the record as it was read from its class topic, sealed, with where it goes back to.
CREATE TABLE scheduled_messages (
    id        uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    due_at    timestamptz NOT NULL,
    topic     text NOT NULL,
    key       bytea NOT NULL,
    record    bytea NOT NULL
);
CREATE INDEX scheduled_messages_due ON scheduled_messages (due_at);

-- One row per message a cancellation and a send contend for (herald.db.schedule): the first to
-- decide wins. `decided` is NULL while a cancellation waits for the worker's turn; a row the
-- worker wrote for a send has no request (`requested_at` -infinity). Purged by `created_at`.
CREATE TABLE message_cancellations (
    message_id   uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    requested_at timestamptz NOT NULL,
    decided      text CHECK (decided IN ('cancelled', 'sent')),
    event_sent   boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX message_cancellations_tenant ON message_cancellations (tenant_id, requested_at);
CREATE INDEX message_cancellations_unsent ON message_cancellations (requested_at)
    WHERE decided = 'cancelled' AND NOT event_sent;
