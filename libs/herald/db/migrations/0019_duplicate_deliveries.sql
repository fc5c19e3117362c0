-- Each duplicate send counted once: a delivery receipt under a provider id other than the one
-- a message was first delivered under is a second send (a worker crashed between the provider's
-- acceptance and its commit). Counted by inserting here, so a batch the status sink applies again
-- (a rebalance replays what was not committed) finds the row and counts nothing; before this,
-- herald_duplicate_sends_total grew with every replay (28 counted for 20 sent).
CREATE TABLE duplicate_deliveries (
    message_id uuid NOT NULL,
    provider_message_id text NOT NULL,
    counted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, provider_message_id)
);
