-- Class-topic records a worker deferred to herald.retry (a tenant's backlog beyond its buffer),
-- noted after the deferred copy was acknowledged and before the record's offset may be
-- committed. A worker that takes the partition over (after a crash or a rebalance) and reads
-- the record again finds the note and does not defer it a second time: two copies on
-- herald.retry would both be sent. The message id guards against a reused offset (a broker
-- whose topics were recreated). Purged by `herald retention` with the handled-retry records.
CREATE TABLE deferred_records (
    topic        text NOT NULL,
    partition    integer NOT NULL,
    "offset"     bigint NOT NULL,
    message_id   uuid NOT NULL,
    deferred_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
CREATE INDEX deferred_records_age ON deferred_records (deferred_at);
