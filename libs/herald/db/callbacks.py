"""The callback outbox: durable, per-message ordered, per-tenant fair.

`due` hands out at most `per_tenant` rows per tenant per call, and only the oldest pending row
of each message, so one tenant's backlog or broken endpoint never starves another tenant and a
message's callbacks go out in the order they were recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import msgspec


class Pending(msgspec.Struct, frozen=True):
    message_id: uuid.UUID
    tenant_id: uuid.UUID
    status: str
    payload: bytes


class Due(msgspec.Struct, frozen=True):
    id: int
    tenant_id: uuid.UUID
    payload: bytes
    attempts: int
    created_at: datetime


async def record(pool: asyncpg.Pool, pending: Sequence[Pending]) -> None:
    """Idempotent: a replayed event is already in the outbox (or was delivered and deleted...
    in which case it is sent once more: callbacks are at-least-once, receivers dedupe on
    message id + status)."""
    if not pending:
        return
    await pool.executemany(
        "INSERT INTO callback_outbox (message_id, tenant_id, status, payload) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (message_id, status) DO NOTHING",
        [(p.message_id, p.tenant_id, p.status, p.payload) for p in pending],
    )


async def due(pool: asyncpg.Pool, now: datetime, per_tenant: int, limit: int) -> list[Due]:
    rows = await pool.fetch(
        """
        SELECT id, tenant_id, payload, attempts, created_at FROM (
            SELECT o.*, row_number() OVER (PARTITION BY o.tenant_id ORDER BY o.id) AS rank
            FROM callback_outbox o
            WHERE o.dead_at IS NULL AND o.next_attempt_at <= $1
              AND NOT EXISTS (SELECT 1 FROM callback_outbox p  -- an earlier pending callback of this message
                              WHERE p.message_id = o.message_id AND p.dead_at IS NULL AND p.id < o.id)
        ) ranked
        WHERE rank <= $2 ORDER BY id LIMIT $3
        """,
        now,
        per_tenant,
        limit,
    )
    return [Due(r["id"], r["tenant_id"], bytes(r["payload"]), r["attempts"], r["created_at"]) for r in rows]


async def delivered(pool: asyncpg.Pool, outbox_id: int) -> None:
    await pool.execute("DELETE FROM callback_outbox WHERE id = $1", outbox_id)


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
