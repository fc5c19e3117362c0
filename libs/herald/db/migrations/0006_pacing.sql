-- Per-tenant send rate, shared by every worker: one token bucket per tenant.
CREATE TABLE rate_buckets (
    tenant_id      uuid PRIMARY KEY,
    tokens         double precision NOT NULL,
    refilled_at    timestamptz NOT NULL,
    rate           double precision NOT NULL,
    granted_total  bigint NOT NULL DEFAULT 0
    -- rate and granted_total: for the rate-limit utilisation metric (granted / (rate x time)).
);

-- Refill the tenant's bucket for the time elapsed (at `rate` tokens/s, up to `burst`), then
-- take up to `want` whole tokens; returns how many were taken (0 when the bucket is dry).
-- One row lock per call, held for microseconds: workers ask for ~100 ms of tokens at a time.
CREATE FUNCTION herald_take_tokens(p_tenant uuid, p_rate double precision, p_burst double precision, p_want integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    available double precision;
    granted integer;
BEGIN
    INSERT INTO rate_buckets AS b (tenant_id, tokens, refilled_at, rate)
    VALUES (p_tenant, p_burst, clock_timestamp(), p_rate)
    ON CONFLICT (tenant_id) DO UPDATE
        SET tokens = least(p_burst, b.tokens + p_rate * extract(epoch FROM clock_timestamp() - b.refilled_at)),
            refilled_at = clock_timestamp(),
            rate = p_rate
    RETURNING tokens INTO available;
    granted := least(p_want, floor(available))::integer;
    IF granted > 0 THEN
        UPDATE rate_buckets SET tokens = tokens - granted, granted_total = granted_total + granted
        WHERE tenant_id = p_tenant;
    END IF;
    RETURN granted;
END
$$;

-- Records of herald.retry already handled, by (message, attempt). A retry partition's commit point
-- waits behind records held for a later time, so after a crash the records after it are read
-- again: those listed here are skipped instead of sent twice.
CREATE TABLE retries_done (
    message_id  uuid NOT NULL,
    attempt     integer NOT NULL,
    not_before  bigint NOT NULL,
    done_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, attempt, not_before)
);

-- A message re-queued by `herald dlq replay` points at the failed message it re-sends.
ALTER TABLE messages ADD COLUMN replay_of uuid;
