"""A provider's connection limit held across workers (migration 0028): leased slots.

`claim` takes a free slot (never leased, released, or its lease ended) below the limit; `renew`
extends the leases a holder still has and says which those are (a slot whose lease ended and
was claimed by another worker is gone); `release` gives one back. `members` records that a
worker wants connections and counts the workers that do, for an equal share each.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

import asyncpg


async def ensure(pool: asyncpg.Pool, provider: str, limit: int) -> None:
    """The provider's slots 0..limit-1 exist (a lower limit later leaves the others unused)."""
    await pool.execute(
        "INSERT INTO connection_slots (provider, slot) SELECT $1, generate_series(0, $2 - 1)"
        " ON CONFLICT DO NOTHING", provider, limit,
    )  # fmt: skip


async def claim(pool: asyncpg.Pool, provider: str, limit: int, holder: uuid.UUID, lease_seconds: float) -> int | None:
    """A free slot below `limit`, now leased to `holder`; None when every one is held."""
    slot: int | None = await pool.fetchval(
        """
        WITH free AS (
            SELECT slot FROM connection_slots
            WHERE provider = $1 AND slot < $2 AND leased_until < now()
            ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED
        )
        UPDATE connection_slots AS s SET holder = $3, leased_until = now() + make_interval(secs => $4)
        FROM free WHERE s.provider = $1 AND s.slot = free.slot
        RETURNING s.slot
        """,
        provider, limit, holder, lease_seconds,
    )  # fmt: skip
    return slot


async def renew(
    pool: asyncpg.Pool, provider: str, holder: uuid.UUID, slots: Collection[int], lease_seconds: float
) -> set[int]:
    """The leases of `slots` extended; those `holder` still had (a lapsed lease nobody took is
    taken back)."""
    if not slots:
        return set()
    rows = await pool.fetch(
        "UPDATE connection_slots SET leased_until = now() + make_interval(secs => $4)"
        " WHERE provider = $1 AND holder = $2 AND slot = ANY($3::integer[]) RETURNING slot",
        provider, holder, list(slots), lease_seconds,
    )  # fmt: skip
    return {row["slot"] for row in rows}


async def release(pool: asyncpg.Pool, provider: str, holder: uuid.UUID, slot: int) -> None:
    await pool.execute(
        "UPDATE connection_slots SET holder = NULL, leased_until = '-infinity'"
        " WHERE provider = $1 AND slot = $2 AND holder = $3", provider, slot, holder,
    )  # fmt: skip


async def members(pool: asyncpg.Pool, provider: str, member: uuid.UUID, lease_seconds: float) -> int:
    """`member` wants connections for the next `lease_seconds`; how many workers do now (at least 1)."""
    count: int = await pool.fetchval(
        """
        WITH seen AS (
            INSERT INTO connection_members (provider, member, seen_until)
            VALUES ($1, $2, now() + make_interval(secs => $3))
            ON CONFLICT (provider, member) DO UPDATE SET seen_until = excluded.seen_until
        ), gone AS (  -- workers that stopped without leaving
            DELETE FROM connection_members WHERE provider = $1 AND seen_until < now() - interval '1 hour'
        )
        SELECT 1 + count(*) FROM connection_members
        WHERE provider = $1 AND member <> $2 AND seen_until > now()
        """,
        provider, member, lease_seconds,
    )  # fmt: skip
    return count


async def leave(pool: asyncpg.Pool, provider: str, member: uuid.UUID) -> None:
    """`member` wants no connections any more (and holds none)."""
    await pool.execute("DELETE FROM connection_members WHERE provider = $1 AND member = $2", provider, member)
