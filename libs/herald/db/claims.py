"""What the worker notes so that a record read again is not handled twice: claims of idempotent
message ids (migration 0002), handled herald.retry records (0006) and deferred records
(0013, 0014)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg
import msgspec


class Source(msgspec.Struct, frozen=True):
    """The Kafka record a message was read from."""

    message_id: uuid.UUID
    topic: str
    partition: int
    offset: int


async def claim(pool: asyncpg.Pool, sources: Sequence[Source]) -> set[Source]:
    """Claim every id; return the sources whose id is claimed by a *different* record (repeats).

    A redelivery of the claiming record itself (same topic, partition, offset) is not a repeat:
    the crash that caused it may have happened before the send.
    """
    if not sources:
        return set()
    async with pool.acquire() as conn, conn.transaction():
        # In id order: two workers claiming overlapping ids at once (a partition's old and new
        # owner around a rebalance) then lock them in the same order instead of deadlocking.
        await conn.executemany(
            'INSERT INTO message_claims (message_id, topic, partition, "offset") VALUES ($1, $2, $3, $4)'
            " ON CONFLICT (message_id) DO NOTHING",
            sorted((s.message_id, s.topic, s.partition, s.offset) for s in sources),
        )
        rows = await conn.fetch(
            'SELECT message_id, topic, partition, "offset" FROM message_claims WHERE message_id = ANY($1::uuid[])',
            [s.message_id for s in sources],
        )
    owner = {r["message_id"]: (r["topic"], r["partition"], r["offset"]) for r in rows}
    return {s for s in sources if owner.get(s.message_id) != (s.topic, s.partition, s.offset)}


RetryKey = tuple[uuid.UUID, int, int]
"""(message id, attempt, not_before_ms): one record of herald.retry."""


async def retries_done(pool: asyncpg.Pool, keys: Sequence[RetryKey]) -> set[RetryKey]:
    """The keys already handled (see migration 0006)."""
    if not keys:
        return set()
    rows = await pool.fetch(
        "SELECT d.message_id, d.attempt, d.not_before FROM retries_done d"
        " JOIN unnest($1::uuid[], $2::int[], $3::bigint[]) AS k(message_id, attempt, not_before)"
        " USING (message_id, attempt, not_before)",
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
    )  # fmt: skip
    return {(r["message_id"], r["attempt"], r["not_before"]) for r in rows}


async def retry_done(pool: asyncpg.Pool, key: RetryKey) -> None:
    await pool.execute(
        "INSERT INTO retries_done (message_id, attempt, not_before) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", *key
    )


class Deferral(msgspec.Struct, frozen=True):
    """A record the worker deferred to herald.retry, and when its copy may go (`not_before_ms`
    of the copy; None for notes older than migration 0014, whose copy was acknowledged)."""

    source: Source
    copy_not_before_ms: int | None


async def note_deferred(pool: asyncpg.Pool, deferrals: Sequence[Deferral]) -> None:
    """Note records about to be deferred (see migrations 0013, 0014). Call before their copies
    are published: a copy must never be on herald.retry without its note."""
    if not deferrals:
        return
    await pool.execute(
        'INSERT INTO deferred_records (topic, partition, "offset", message_id, copy_not_before)'
        " SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::uuid[], $5::bigint[])"
        " ON CONFLICT DO NOTHING",
        [d.source.topic for d in deferrals], [d.source.partition for d in deferrals],
        [d.source.offset for d in deferrals], [d.source.message_id for d in deferrals],
        [d.copy_not_before_ms for d in deferrals],
    )  # fmt: skip


async def deferred_from(pool: asyncpg.Pool, starts: Sequence[tuple[str, int, int]]) -> list[Deferral]:
    """The noted records of each (topic, partition) at or after its start offset (where a new
    owner starts reading: what is below it is committed and never read again)."""
    if not starts:
        return []
    rows = await pool.fetch(
        'SELECT d.topic, d.partition, d."offset", d.message_id, d.copy_not_before FROM deferred_records d'
        " JOIN unnest($1::text[], $2::int[], $3::bigint[]) AS s(topic, partition, start)"
        ' ON d.topic = s.topic AND d.partition = s.partition AND d."offset" >= s.start',
        [s[0] for s in starts], [s[1] for s in starts], [s[2] for s in starts],
    )  # fmt: skip
    return [
        Deferral(Source(r["message_id"], r["topic"], r["partition"], r["offset"]), r["copy_not_before"]) for r in rows
    ]
