-- Many buckets' refills in one statement: a worker's refills of one moment (at 10,000 tenants,
-- nearly every message's tenant needs one) in one round trip instead of one each. Each refill is
-- exactly herald_take_tokens; they run in bucket order, so that two workers' statements lock
-- bucket rows in the same order and never deadlock. `idx` is the refill's 1-based position in
-- the arrays (a bucket may appear twice: each is its own take).
CREATE FUNCTION herald_take_tokens_many(
    p_buckets uuid[], p_rates double precision[], p_bursts double precision[], p_wants integer[]
) RETURNS TABLE (idx bigint, granted integer) LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT * FROM unnest(p_buckets, p_rates, p_bursts, p_wants) WITH ORDINALITY AS t(bucket, rate, burst, want, i)
        ORDER BY t.bucket, t.i
    LOOP
        idx := r.i;
        granted := herald_take_tokens(r.bucket, r.rate, r.burst, r.want);
        RETURN NEXT;
    END LOOP;
END
$$;
