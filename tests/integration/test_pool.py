"""The process pool's contract with PostgreSQL (`herald.db.pool.create_pool`)."""

from __future__ import annotations

import asyncpg

from herald.db.pool import close_pool, create_pool
from herald.settings import DatabaseSettings

_CALLS = (
    "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid"
    " WHERE d.datname = current_database() AND query = $1"
)


async def test_a_released_connection_is_rolled_back_but_costs_no_reset_round_trip(database_url: str) -> None:
    admin = await asyncpg.connect(database_url)
    pool = await create_pool(DatabaseSettings(url=database_url, pool_min=1, pool_max=1))
    try:
        await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")  # a transaction left open by a caller's bug
            await conn.execute("CREATE TABLE left_open (x int)")
        assert await pool.fetchval("SELECT to_regclass('left_open') IS NULL")  # rolled back on release
        for _ in range(20):
            assert await pool.fetchval("SELECT 1") == 1
        # asyncpg's default reset ends with UNLISTEN * on every release: 21 round trips here.
        assert await admin.fetchval(_CALLS, "UNLISTEN *") == 0
        assert await admin.fetchval(_CALLS, "SELECT $1") + await admin.fetchval(_CALLS, "SELECT 1") >= 20
    finally:
        await close_pool(pool)
        await admin.close()
