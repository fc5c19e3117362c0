"""The callback outbox: durable, per-message ordered, per-tenant fair, shared by dispatchers.

`lease_due` hands out at most `per_tenant` rows per tenant at a time (leased, so that several
dispatchers never send one row twice), so one tenant's backlog or broken endpoint never starves
another tenant, and of each message only its pending row of the lowest
status rank (`herald.domain.status.RANK`; the earliest recorded among equals). A message's
callbacks therefore go out in status order, not in the order their events were recorded: the
worker's `sent` and the provider's receipt come from different producers and can reach
`herald.events` either way round. A row that `follows_sent` (a receipt: it names the provider's
message id, so the provider had accepted the message) is not due until its message's `sent`
row has been recorded or `hold` has passed since it was, whichever is first. Past the hold it
goes out alone. A `sent` that turns up after a later status of its message went out (held up
longer than the hold: a worker killed between the provider's answer and its event, whose
message the next worker sent again) is stale: it is recorded as already delivered and never
sent, so a receiver that keeps the last status it was told keeps the right one.

Whether a receipt still waits is decided when rows are written, not on each poll: `record` sets
a receipt's `awaits_sent` only if its message has no `sent` row (in the table or in the same
batch), and clears it on the receipts a newly recorded `sent` releases. So the poll, every
100 ms, reads only pending rows, however many receipts are inside their hold. A message's
events come from one partition and are recorded by one consumer, in order, so the two writes do
not race; if they ever did (two owners during a rebalance), the receipt would wait out the hold
and still go out after its `sent` had.

Delivered rows are kept (`delivered_at`, payload cleared) for a while, so that a receipt
recorded after its `sent` went out finds it, a stale status finds the later one, and a replayed
event finds its own row instead of calling the tenant again; `purge_delivered` removes them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import msgspec

from herald.db.pool import Conn, rows_affected


class Pending(msgspec.Struct, frozen=True):
    message_id: uuid.UUID
    tenant_id: uuid.UUID
    status: str
    payload: bytes
    rank: int
    """`RANK` of the status: a message's callbacks go out in this order."""
    follows_sent: bool
    """True for a provider's receipt: it waits (up to the hold) for its message's `sent`."""


class Due(msgspec.Struct, frozen=True):
    id: int
    tenant_id: uuid.UUID
    payload: bytes
    attempts: int
    created_at: datetime


async def record(pool: Conn, pending: Sequence[Pending]) -> int:
    """Idempotent: a replayed event finds its row, pending or (delivered recently) kept.
    Otherwise it is sent once more: callbacks are at-least-once, and receivers dedupe on message
    id + status. One statement: the inserts (a stale status inserted as already delivered), and
    the release of receipts already waiting for a `sent` in this batch (it sees the table as it
    was before the inserts, which the inserts' own check covers). Returns how many were stale."""
    if not pending:
        return 0
    stale: int = await pool.fetchval(
        """
        WITH batch AS (
            SELECT b.*, EXISTS (SELECT 1 FROM callback_outbox h
                                WHERE h.message_id = b.message_id AND h.rank > b.rank
                                  AND h.delivered_at IS NOT NULL) AS stale
            FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[], $5::smallint[], $6::boolean[])
                AS b(message_id, tenant_id, status, payload, rank, follows_sent)
        ),
        recorded AS (
            INSERT INTO callback_outbox (message_id, tenant_id, status, payload, rank, awaits_sent, delivered_at)
            SELECT b.message_id, b.tenant_id, b.status, CASE WHEN b.stale THEN ''::bytea ELSE b.payload END, b.rank,
                   b.follows_sent AND NOT b.stale
                   AND NOT EXISTS (SELECT 1 FROM batch s
                                   WHERE s.message_id = b.message_id AND s.status = 'sent')
                   AND NOT EXISTS (SELECT 1 FROM callback_outbox s
                                   WHERE s.message_id = b.message_id AND s.status = 'sent'),
                   CASE WHEN b.stale THEN now() END
            FROM batch b
            ON CONFLICT (message_id, status) DO NOTHING
            RETURNING delivered_at IS NOT NULL AS stale
        ),
        released AS (
            UPDATE callback_outbox o SET awaits_sent = false FROM batch b
            WHERE b.status = 'sent' AND o.message_id = b.message_id AND o.awaits_sent
              AND o.dead_at IS NULL AND o.delivered_at IS NULL
        )
        SELECT count(*) FILTER (WHERE stale) FROM recorded
        """,
        [p.message_id for p in pending],
        [p.tenant_id for p in pending],
        [p.status for p in pending],
        [p.payload for p in pending],
        [p.rank for p in pending],
        [p.follows_sent for p in pending],
    )
    return stale


_PENDING = """
    SELECT o.*, row_number() OVER (PARTITION BY o.tenant_id ORDER BY o.id) AS turn
    FROM callback_outbox o
    WHERE o.dead_at IS NULL AND o.delivered_at IS NULL AND o.next_attempt_at <= (SELECT at FROM clock)
      AND NOT EXISTS (SELECT 1 FROM callback_outbox p  -- a pending callback of this message that goes first
                      WHERE p.message_id = o.message_id AND p.dead_at IS NULL AND p.delivered_at IS NULL
                        AND (p.rank, p.id) < (o.rank, o.id))
      AND (NOT o.awaits_sent OR o.created_at <= (SELECT at FROM clock) - $4::interval)
"""
_LEASE_DUE = f"""
WITH clock AS (SELECT coalesce($1::timestamptz, now()) AS at),
leased AS (
    UPDATE callback_outbox o SET leased_until = (SELECT at FROM clock) + $5::interval
    WHERE o.id IN (
        SELECT c.id FROM callback_outbox c
        WHERE c.id IN (
            SELECT id FROM ({_PENDING}) pending
            WHERE turn <= $2 AND (leased_until IS NULL OR leased_until <= (SELECT at FROM clock)) ORDER BY id LIMIT $3
        )
          -- Checked again on the row as it is now: another dispatcher may have leased it meanwhile.
          AND c.dead_at IS NULL AND c.delivered_at IS NULL
          AND (c.leased_until IS NULL OR c.leased_until <= (SELECT at FROM clock))
        FOR UPDATE SKIP LOCKED
    )
    RETURNING o.id, o.tenant_id, o.payload, o.attempts, o.created_at
)
SELECT * FROM leased ORDER BY id
"""


async def lease_due(
    pool: asyncpg.Pool, per_tenant: int, limit: int, hold: timedelta, lease: timedelta, now: datetime | None = None
) -> list[Due]:
    """Due rows (in id order), leased to the caller for `lease`: no other call hands them out
    before then, unless `delivered`, `retry_later` or `dead` settles them first.

    Per tenant, only its first `per_tenant` pending rows are considered and those leased count
    among them, so a tenant has at most `per_tenant` callbacks in flight across all dispatchers.
    Times are the database's (`now` stands in for its clock in tests): dispatchers on hosts whose
    clocks disagree still agree on when a lease ends and a row is due.
    """
    rows = await pool.fetch(_LEASE_DUE, now, per_tenant, limit, hold, lease)
    return [Due(r["id"], r["tenant_id"], bytes(r["payload"]), r["attempts"], r["created_at"]) for r in rows]


async def delivered(pool: asyncpg.Pool, outbox_id: int) -> None:
    """Kept without its payload until `purge_delivered`: later rows of its message look it up."""
    await pool.execute("UPDATE callback_outbox SET delivered_at = now(), payload = '' WHERE id = $1", outbox_id)


async def purge_delivered(pool: asyncpg.Pool, before: datetime) -> int:
    """Delete rows delivered before `before`; returns how many."""
    return rows_affected(await pool.execute("DELETE FROM callback_outbox WHERE delivered_at < $1", before))


async def retry_later(pool: asyncpg.Pool, outbox_id: int, delay: timedelta, error: str) -> None:
    """Due again `delay` from now on the database's clock, and no longer leased."""
    await pool.execute(
        "UPDATE callback_outbox SET attempts = attempts + 1, next_attempt_at = now() + $2::interval,"
        " last_error = $3, leased_until = NULL WHERE id = $1",
        outbox_id,
        delay,
        error,
    )


async def dead(pool: asyncpg.Pool, outbox_id: int, error: str) -> None:
    await pool.execute(
        "UPDATE callback_outbox SET attempts = attempts + 1, dead_at = now(), last_error = $2 WHERE id = $1",
        outbox_id,
        error,
    )


class TenantBacklog(msgspec.Struct, frozen=True):
    tenant_id: uuid.UUID
    pending: int
    retrying: int
    """Pending callbacks the endpoint has failed at least once."""
    oldest_seconds: float


class Backlog(msgspec.Struct, frozen=True):
    pending: int
    worst: list[TenantBacklog]
    """The tenants with the oldest pending callback, oldest first."""


async def backlog(pool: asyncpg.Pool, tenants: int) -> Backlog:
    """What waits to reach tenants' endpoints (pending: neither delivered nor given up), and the
    `tenants` tenants whose oldest pending callback is oldest. Reads only pending rows, through
    the outbox's partial due index."""
    rows = await pool.fetch(
        """
        SELECT tenant_id, count(*) AS pending, count(*) FILTER (WHERE attempts > 0) AS retrying,
               extract(epoch FROM now() - min(created_at))::float8 AS oldest_seconds,
               sum(count(*)) OVER ()::bigint AS everyone
        FROM callback_outbox WHERE dead_at IS NULL AND delivered_at IS NULL
        GROUP BY tenant_id ORDER BY min(created_at) LIMIT $1
        """,
        tenants,
    )
    worst = [TenantBacklog(r["tenant_id"], r["pending"], r["retrying"], max(0.0, r["oldest_seconds"])) for r in rows]
    return Backlog(rows[0]["everyone"] if rows else 0, worst)
