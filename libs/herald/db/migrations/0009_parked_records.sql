-- Records a sink's handler refused on their own (poison), parked by the consumer loop so that
-- the sink moves on; `herald parked replay` applies them again once the cause is fixed.
CREATE TABLE parked_records (
    consumer_group  text NOT NULL,
    topic           text NOT NULL,
    partition       integer NOT NULL,
    "offset"        bigint NOT NULL,
    key             bytea,
    value           bytea,
    timestamp_ms    bigint NOT NULL,
    error           text NOT NULL,
    attempts        integer NOT NULL DEFAULT 1,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition, "offset")
);
