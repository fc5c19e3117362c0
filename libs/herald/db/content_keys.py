"""The content keys table (see migration 0007 and `herald.sealing`; `db.retention` deletes)."""

from __future__ import annotations

import os
from collections.abc import Collection

import asyncpg


async def ensure(pool: asyncpg.Pool, hour: int) -> bytes:
    """The hour's key, created if it does not exist yet. Processes racing to create it all get
    the one that was stored first.

    Two statements, not one: an INSERT that loses the race waits for the winner's commit, but a
    SELECT in the same statement still reads the snapshot taken before it and finds no row (with
    eight API processes racing, 40 hours in 200 handed someone no key: a 500 at the top of the hour).
    """
    async with pool.acquire() as conn:
        made: bytes | None = await conn.fetchval(
            "INSERT INTO content_keys (hour, key) VALUES ($1, $2) ON CONFLICT (hour) DO NOTHING RETURNING key",
            hour, os.urandom(32),
        )  # fmt: skip
        if made is not None:
            return made
        stored: bytes | None = await conn.fetchval("SELECT key FROM content_keys WHERE hour = $1", hour)
    if stored is None:  # only if the hour's key was deleted meanwhile (retention: hours long past)
        raise LookupError(f"the content key of hour {hour} was deleted while it was being created")
    return stored


async def fetch(pool: asyncpg.Pool, hours: Collection[int]) -> dict[int, bytes]:
    """The keys of those hours that still exist."""
    rows = await pool.fetch("SELECT hour, key FROM content_keys WHERE hour = ANY($1::int[])", list(hours))
    return {r["hour"]: r["key"] for r in rows}
