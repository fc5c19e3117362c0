-- Provider receipts are bound to what Herald itself recorded, never to what their body says
-- (security review, issue #29 finding 1: a signed receipt naming another tenant's message moved
-- it to failed, called that tenant back and re-dated its bill).
--
-- provider_messages: every send a provider accepted, from the worker's `sent` event (written by
-- the status sink): the only way from a provider's id to Herald's message and tenant.
CREATE TABLE provider_messages (
    provider            text        NOT NULL,
    provider_message_id text        NOT NULL,
    message_id          uuid        NOT NULL,
    tenant_id           uuid        NOT NULL,
    sent_at             timestamptz NOT NULL,
    PRIMARY KEY (provider, provider_message_id)
);
CREATE INDEX provider_messages_sent_at ON provider_messages (sent_at);
CREATE INDEX provider_messages_message ON provider_messages (message_id);

-- provider_receipts: what providers reported, as they reported it (no recipient, no tenant),
-- one row per (provider, provider id, status): a replayed receipt is the same row.
-- `callback_data` is the message id Herald attached to the send, echoed by the provider (as
-- WhatsApp's biz_opaque_callback_data): untrusted, it binds a receipt only to a message that
-- Herald recorded sending through the same provider, when the provider's id is unknown
-- because the worker died before publishing that send's `sent` (the message was sent again). `outcome`
-- is NULL until the receipt binder (herald_sinks/receipts.py) finds its send; then `bound`
-- (its status event was published) or `late` (it contradicted the final status already
-- reported for the message, e.g. `failed` after `delivered`: kept here, never the status).
CREATE TABLE provider_receipts (
    provider            text        NOT NULL,
    provider_message_id text        NOT NULL,
    status              text        NOT NULL,
    reported_at         timestamptz,
    received_at         timestamptz NOT NULL DEFAULT now(),
    reason              text,
    callback_data       uuid,
    outcome             text CHECK (outcome IN ('bound', 'late')),
    bound_at            timestamptz,
    message_id          uuid,
    PRIMARY KEY (provider, provider_message_id, status)
);
CREATE INDEX provider_receipts_waiting ON provider_receipts (received_at) WHERE outcome IS NULL;

-- receipt_finals: the first final status (delivered or failed) a provider reported for a
-- message. Its primary key decides between two receipts bound at once by two binders.
CREATE TABLE receipt_finals (
    message_id uuid        PRIMARY KEY,
    status     text        NOT NULL,
    decided_at timestamptz NOT NULL DEFAULT now()
);
