-- Content keys: message recipients and bodies travel sealed (AES-256-GCM) on every topic, with
-- one key per UTC hour. Deleting an hour's key (`herald retention`, after
-- HERALD_RETENTION_CONTENT_DAYS) purges that hour's content from every record, replica and
-- backup of the log at once: Kafka logs are append-only, a key is not. The billing ledger,
-- the status projection and the record envelopes are untouched.
CREATE TABLE content_keys (
    hour        integer PRIMARY KEY,  -- hours since the Unix epoch (UTC) the key seals
    key         bytea NOT NULL CHECK (length(key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
