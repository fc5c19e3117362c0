"""Records a sink could not apply, kept for an operator instead of stopping the sink.

A sink's consumer loop (`herald.kafka.consumer.ConsumerLoop`) parks a record here when its
handler refuses that record on its own, then moves on; `herald parked replay` runs the sink's
handler over parked records again once the cause is fixed and deletes those it applies. The
value is the record as it was on the topic (recipients and bodies stay sealed); the error is
the exception's type and message, cut to 500 characters.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from herald.db.pool import rows_affected

ERROR_CHARS = 500
_ERROR_TYPE = "split_part(error, ':', 1)"
"""The exception's type, as `herald parked list` groups them and `discard --error-type` names them."""


class Parked(msgspec.Struct, frozen=True):
    consumer_group: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    error: str


class Count(msgspec.Struct, frozen=True):
    consumer_group: str
    error_type: str
    records: int
    first_parked_at: datetime
    last_parked_at: datetime


async def park(pool: asyncpg.Pool, record: Parked) -> None:
    """Idempotent on (group, topic, partition, offset): a replayed batch parks nothing twice."""
    await pool.execute(
        'INSERT INTO parked_records (consumer_group, topic, partition, "offset", key, value, timestamp_ms, error)'
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        *_key(record),
        record.key,
        record.value,
        record.timestamp_ms,
        record.error[:ERROR_CHARS],
    )


async def counts(pool: asyncpg.Pool) -> list[Count]:
    rows = await pool.fetch(
        f"SELECT consumer_group, {_ERROR_TYPE} AS error_type, count(*) AS records,"
        " min(parked_at) AS first_parked_at, max(parked_at) AS last_parked_at"
        " FROM parked_records GROUP BY 1, 2 ORDER BY 1, 2"
    )
    return [msgspec.convert(dict(r), Count) for r in rows]


async def waiting(pool: asyncpg.Pool) -> dict[str, int]:
    """Parked records by consumer group (groups with none are absent)."""
    rows = await pool.fetch("SELECT consumer_group, count(*) AS n FROM parked_records GROUP BY 1")
    return {r["consumer_group"]: r["n"] for r in rows}


async def discard(pool: asyncpg.Pool, group: str, error_type: str | None, *, dry_run: bool) -> int:
    """Delete a group's parked records (of one error type, if given); returns how many. For
    records that can never be applied: what they carried is given up for good."""
    where = f"consumer_group = $1 AND ($2::text IS NULL OR {_ERROR_TYPE} = $2)"
    if dry_run:
        n: int = await pool.fetchval(f"SELECT count(*) FROM parked_records WHERE {where}", group, error_type)
        return n
    return rows_affected(await pool.execute(f"DELETE FROM parked_records WHERE {where}", group, error_type))


async def of_group(pool: asyncpg.Pool, group: str) -> list[Parked]:
    """Oldest first (per partition, in offset order)."""
    rows = await pool.fetch(
        'SELECT consumer_group, topic, partition, "offset", key, value, timestamp_ms, error'
        ' FROM parked_records WHERE consumer_group = $1 ORDER BY parked_at, topic, partition, "offset"',
        group,
    )
    return [msgspec.convert(dict(r), Parked) for r in rows]


_ONE = 'consumer_group = $1 AND topic = $2 AND partition = $3 AND "offset" = $4'


async def unpark(pool: asyncpg.Pool, record: Parked) -> None:
    await pool.execute(f"DELETE FROM parked_records WHERE {_ONE}", *_key(record))


async def refused_again(pool: asyncpg.Pool, record: Parked, error: str) -> None:
    await pool.execute(
        f"UPDATE parked_records SET error = $5, attempts = attempts + 1 WHERE {_ONE}",
        *_key(record),
        error[:ERROR_CHARS],
    )


def _key(record: Parked) -> tuple[str, str, int, int]:
    return record.consumer_group, record.topic, record.partition, record.offset
