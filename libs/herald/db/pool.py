"""Connection pool creation; one pool per process, created in main and passed down."""

from __future__ import annotations

import asyncpg

from herald.settings import DatabaseSettings

Pool = asyncpg.Pool


async def create_pool(settings: DatabaseSettings) -> Pool:
    pool = await asyncpg.create_pool(
        settings.url, min_size=settings.pool_min, max_size=settings.pool_max, command_timeout=30
    )
    assert pool is not None
    return pool
