"""The callback outbox: durable, per-message ordered, per-tenant fair.

`due` hands out at most `per_tenant` rows per tenant per call, so one tenant's backlog or broken
endpoint never starves another tenant, and of each message only its pending row of the lowest
status rank (`herald.domain.status.RANK`; the earliest recorded among equals). A message's
callbacks therefore go out in status order, not in the order their events were recorded: the
worker's `sent` and the provider's receipt come from different producers and can reach
`herald.events` either way round. A row that `follows_sent` (a receipt: it names the provider's
message id, so the provider had accepted the message) is not due until its message's `sent`
row has been recorded or `hold` has passed since it was, whichever is first. Past the hold it
goes out alone: a `sent` that turns up later still goes out, after it, and the payload's `at`
orders the two.

Delivered `sent` rows are kept (`delivered_at`, payload cleared) so that a receipt recorded
after its `sent` went out finds it; `purge_delivered` removes them later. Other rows are deleted
once delivered.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import msgspec

from herald.db.pool import rows_affected


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


async def record(pool: asyncpg.Pool, pending: Sequence[Pending]) -> None:
    """Idempotent: a replayed event is already in the outbox, pending or (a `sent` delivered
    recently) kept. Otherwise it is sent once more: callbacks are at-least-once, and receivers
    dedupe on message id + status."""
    if not pending:
        return
    await pool.executemany(
        "INSERT INTO callback_outbox (message_id, tenant_id, status, payload, rank, follows_sent)"
        " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (message_id, status) DO NOTHING",
        [(p.message_id, p.tenant_id, p.status, p.payload, p.rank, p.follows_sent) for p in pending],
    )


async def due(pool: asyncpg.Pool, now: datetime, per_tenant: int, limit: int, hold: timedelta) -> list[Due]:
    rows = await pool.fetch(
        """
        SELECT id, tenant_id, payload, attempts, created_at FROM (
            SELECT o.*, row_number() OVER (PARTITION BY o.tenant_id ORDER BY o.id) AS turn
            FROM callback_outbox o
            -- One probe of the (message_id, status) key, and only for a receipt still within its
            -- hold (the condition on `o` inside gates the probe). EXISTS inside the OR below, or
            -- this join without its LIMIT, reads every kept `sent` row into a hash on each poll.
            LEFT JOIN LATERAL (SELECT true AS recorded FROM callback_outbox s
                               WHERE o.follows_sent AND o.created_at > $1::timestamptz - $4::interval
                                 AND s.message_id = o.message_id AND s.status = 'sent' LIMIT 1) sent ON true
            WHERE o.dead_at IS NULL AND o.delivered_at IS NULL AND o.next_attempt_at <= $1
              AND NOT EXISTS (SELECT 1 FROM callback_outbox p  -- a pending callback of this message that goes first
                              WHERE p.message_id = o.message_id AND p.dead_at IS NULL AND p.delivered_at IS NULL
                                AND (p.rank, p.id) < (o.rank, o.id))
              AND (NOT o.follows_sent OR o.created_at <= $1 - $4::interval OR sent.recorded)
        ) pending
        WHERE turn <= $2 ORDER BY id LIMIT $3
        """,
        now,
        per_tenant,
        limit,
        hold,
    )
    return [Due(r["id"], r["tenant_id"], bytes(r["payload"]), r["attempts"], r["created_at"]) for r in rows]


async def delivered(pool: asyncpg.Pool, outbox_id: int) -> None:
    """A `sent` row is kept (without its payload) for receipts recorded after it to find; any
    other row is deleted, as nothing waits on it."""
    await pool.execute(
        """
        WITH gone AS (DELETE FROM callback_outbox WHERE id = $1 AND status <> 'sent')
        UPDATE callback_outbox SET delivered_at = now(), payload = '' WHERE id = $1 AND status = 'sent'
        """,
        outbox_id,
    )


async def purge_delivered(pool: asyncpg.Pool, before: datetime) -> int:
    """Delete rows delivered before `before`; returns how many."""
    return rows_affected(await pool.execute("DELETE FROM callback_outbox WHERE delivered_at < $1", before))


async def retry_later(pool: asyncpg.Pool, outbox_id: int, at: datetime, error: str) -> None:
    await pool.execute(
        "UPDATE callback_outbox SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3 WHERE id = $1",
        outbox_id,
        at,
        error,
    )


async def dead(pool: asyncpg.Pool, outbox_id: int, error: str) -> None:
    await pool.execute(
        "UPDATE callback_outbox SET attempts = attempts + 1, dead_at = now(), last_error = $2 WHERE id = $1",
        outbox_id,
        error,
    )
