"""Connection pool creation; one pool per process, created in main and passed down."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from herald.retrying import retried
from herald.settings import DatabaseSettings

Pool = asyncpg.Pool
T = TypeVar("T")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)
"""The database is unreachable or restarting: worth trying again. Data errors are not."""
DATABASE_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, asyncpg.PostgresError)
"""Anything the database may raise: a periodic job logs it and tries again on its next tick."""


def rows_affected(status: str) -> int:
    """The row count of a command status such as asyncpg's `execute` returns ("DELETE 3")."""
    return int(status.rsplit(" ", 1)[-1])


async def until_written(write: Callable[[], Awaitable[T]]) -> T:
    """`write()`, retried with backoff for as long as the database is unreachable.

    For sinks, whose batch must not be skipped: they either write it or are stopped with the
    batch uncommitted (the next owner replays it). Data errors propagate at once.
    """
    return await retried(
        write,
        lambda: AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT_ERRORS),
            wait=wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1),
            reraise=True,
        ),
    )


async def create_pool(settings: DatabaseSettings) -> Pool:
    pool = await asyncpg.create_pool(
        settings.url, min_size=settings.pool_min, max_size=settings.pool_max, command_timeout=30
    )
    assert pool is not None
    return pool


@contextlib.asynccontextmanager
async def opened_pool(settings: DatabaseSettings) -> AsyncIterator[Pool]:
    """A pool for one command's work (`herald parked`, `herald billing`, ...), closed after it."""
    pool = await create_pool(settings)
    try:
        yield pool
    finally:
        await pool.close()
