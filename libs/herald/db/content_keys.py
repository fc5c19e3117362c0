"""The content keys table (see migration 0007 and `herald.sealing`; `db.retention` deletes)."""

from __future__ import annotations

import os
from collections.abc import Collection

import asyncpg


async def ensure(pool: asyncpg.Pool, hour: int) -> bytes:
    """The hour's key, created if it does not exist yet. Processes racing to create it all get
    the one that was stored first."""
    key: bytes = await pool.fetchval(
        "WITH made AS (INSERT INTO content_keys (hour, key) VALUES ($1, $2) ON CONFLICT (hour) DO NOTHING"
        " RETURNING key) SELECT key FROM made UNION ALL SELECT key FROM content_keys WHERE hour = $1 LIMIT 1",
        hour, os.urandom(32),
    )  # fmt: skip
    return key


async def fetch(pool: asyncpg.Pool, hours: Collection[int]) -> dict[int, bytes]:
    """The keys of those hours that still exist."""
    rows = await pool.fetch("SELECT hour, key FROM content_keys WHERE hour = ANY($1::int[])", list(hours))
    return {r["hour"]: r["key"] for r in rows}
