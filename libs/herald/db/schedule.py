"""Scheduled messages and cancellations (migration 0031).

* `park` keeps a class-topic record whose `send_at` is ahead; `release_due` hands the due ones
  to a publisher and deletes them in the same transaction, so a record is deleted only once the
  broker has it (a crash between the two publishes it again: the worker claims released
  records by id, so it is still sent once).
* A cancellation and a send contend for one row per message: `cancel` (the API) deletes a
  scheduled message outright, or leaves the decision to the worker; `may_send` (the worker,
  just before the provider) takes the row for the send unless a cancellation is waiting, which
  it decides instead. Whoever writes `decided` first wins.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from enum import StrEnum

import asyncpg
import msgspec

from herald.db.pool import Conn


class Parked(msgspec.Struct, frozen=True):
    id: uuid.UUID
    tenant_id: uuid.UUID
    due_at: datetime
    topic: str
    key: bytes
    record: bytes


class Cancellation(StrEnum):
    CANCELLED = "cancelled"
    """Decided: the message will never be sent (its `cancelled` event is owed if not yet sent)."""
    REQUESTED = "requested"
    """Waiting for the worker: cancelled if it comes before the message's send."""
    TOO_LATE = "too_late"
    """A provider has (or is being handed) the message."""


async def park(conn: Conn, rows: Sequence[Parked]) -> None:
    """Idempotent: a record read again (after a crash) is parked once."""
    await conn.executemany(
        "INSERT INTO scheduled_messages (id, tenant_id, due_at, topic, key, record) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT (id) DO NOTHING",
        [(r.id, r.tenant_id, r.due_at, r.topic, r.key, r.record) for r in rows],
    )


async def release_due(pool: asyncpg.Pool, limit: int, publish: Callable[[list[Parked]], Awaitable[None]]) -> int:
    """Publish up to `limit` due messages and forget them; how many. Several workers release
    side by side (SKIP LOCKED); a cancellation of one being released waits for this to commit."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, tenant_id, due_at, topic, key, record FROM scheduled_messages WHERE due_at <= now()"
            " ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED", limit,
        )  # fmt: skip
        if not rows:
            return 0
        await publish([msgspec.convert(dict(r), Parked) for r in rows])
        await conn.execute("DELETE FROM scheduled_messages WHERE id = ANY($1::uuid[])", [r["id"] for r in rows])
    return len(rows)


async def is_scheduled(conn: Conn, tenant_id: uuid.UUID, message_id: uuid.UUID) -> bool:
    found = await conn.fetchval(
        "SELECT 1 FROM scheduled_messages WHERE id = $1 AND tenant_id = $2", message_id, tenant_id
    )
    return found is not None


async def cancel_requested(conn: Conn, tenant_id: uuid.UUID, message_id: uuid.UUID) -> bool:
    """Whether the tenant asked to cancel this message before."""
    found = await conn.fetchval(
        "SELECT 1 FROM message_cancellations WHERE message_id = $1 AND tenant_id = $2 AND requested_at > '-infinity'",
        message_id, tenant_id,
    )  # fmt: skip
    return found is not None


async def cancel(pool: asyncpg.Pool, tenant_id: uuid.UUID, message_id: uuid.UUID) -> Cancellation:
    """Cancel the tenant's message: at once if it is still scheduled, else when the worker
    reaches it, unless a send decided first."""
    async with pool.acquire() as conn, conn.transaction():
        unscheduled = await conn.fetchval(
            "DELETE FROM scheduled_messages WHERE id = $1 AND tenant_id = $2 RETURNING true", message_id, tenant_id
        )
        decided = await conn.fetchval(
            "INSERT INTO message_cancellations (message_id, tenant_id, requested_at, decided)"
            " VALUES ($1, $2, now(), $3) ON CONFLICT (message_id)"
            " DO UPDATE SET decided = coalesce(message_cancellations.decided, excluded.decided) RETURNING decided",
            message_id, tenant_id, "cancelled" if unscheduled else None,
        )  # fmt: skip
    if decided == "sent":
        return Cancellation.TOO_LATE
    return Cancellation.CANCELLED if decided == "cancelled" else Cancellation.REQUESTED


async def may_send(conn: Conn, tenant_id: uuid.UUID, message_id: uuid.UUID) -> bool:
    """Take the message for its send (True), or decide the cancellation waiting for it (False;
    its `cancelled` event is then the caller's to publish)."""
    decided = await conn.fetchval(
        "INSERT INTO message_cancellations (message_id, tenant_id, requested_at, decided)"
        " VALUES ($1, $2, '-infinity', 'sent')"
        " ON CONFLICT (message_id) DO UPDATE SET decided = coalesce(message_cancellations.decided, 'cancelled'),"
        " event_sent = true"
        " RETURNING decided",
        message_id, tenant_id,
    )  # fmt: skip
    return bool(decided == "sent")


async def decide_cancelled(conn: Conn, tenant_id: uuid.UUID, message_id: uuid.UUID) -> bool:
    """Cancel the message unless its send was decided first (True: that send goes on; False:
    cancelled, its `cancelled` event the caller's to publish). For a cancelled campaign's messages."""
    decided = await conn.fetchval(
        "INSERT INTO message_cancellations (message_id, tenant_id, requested_at, decided, event_sent)"
        " VALUES ($1, $2, now(), 'cancelled', true)"
        " ON CONFLICT (message_id) DO UPDATE SET decided = coalesce(message_cancellations.decided, 'cancelled'),"
        " event_sent = true RETURNING decided",
        message_id, tenant_id,
    )  # fmt: skip
    return bool(decided == "sent")


async def latest_cancellations(conn: Conn, tenant_ids: Sequence[uuid.UUID]) -> list[datetime | None]:
    """When each tenant last asked to cancel a message (None: never), in order."""
    rows = await conn.fetch(
        "SELECT (SELECT max(requested_at) FROM message_cancellations c"
        "        WHERE c.tenant_id = t.id AND c.requested_at > '-infinity') AS latest"
        " FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, i) ORDER BY t.i",
        list(tenant_ids),
    )  # fmt: skip
    return [row["latest"] for row in rows]


async def owed_events(conn: Conn, older_than: datetime, limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(message, tenant) of cancellations decided whose `cancelled` event nobody confirmed sending."""
    rows = await conn.fetch(
        "SELECT message_id, tenant_id FROM message_cancellations WHERE decided = 'cancelled' AND NOT event_sent"
        " AND requested_at < $1 ORDER BY requested_at LIMIT $2", older_than, limit,
    )  # fmt: skip
    return [(r["message_id"], r["tenant_id"]) for r in rows]


async def events_sent(conn: Conn, message_ids: Sequence[uuid.UUID]) -> None:
    await conn.execute(
        "UPDATE message_cancellations SET event_sent = true WHERE message_id = ANY($1::uuid[])", list(message_ids)
    )
