-- Rolling 24 h unique-recipient accounting per tenant. Recipients are stored as a keyed hash
-- (SHA-256 over tenant id + address), never in clear.
CREATE TABLE tenant_recipients (
    tenant_id       uuid NOT NULL,
    recipient_hash  bytea NOT NULL,
    last_sent_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, recipient_hash)
);
CREATE INDEX tenant_recipients_window ON tenant_recipients (tenant_id, last_sent_at);

-- Worker-side deduplication of idempotent sends: the first Kafka record carrying a message id
-- claims it; any other record with the same id is a repeat and is not delivered. The claim
-- remembers which record claimed it, so a redelivery of that same record (after a crash) is
-- still processed.
CREATE TABLE message_claims (
    message_id  uuid PRIMARY KEY,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint NOT NULL,
    claimed_at  timestamptz NOT NULL DEFAULT now()
);
