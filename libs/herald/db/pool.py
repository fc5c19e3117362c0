"""Connection pool creation; one pool per process, created in main and passed down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeAlias, TypeVar

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from herald.retrying import retried
from herald.settings import DatabaseSettings

Conn: TypeAlias = "asyncpg.Pool | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
"""A pool, or one of its connections inside a transaction: what a statement that may join a
caller's transaction takes."""

Pool = asyncpg.Pool
T = TypeVar("T")

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    # The server is shutting down, crashed under the connection, or is still recovering and
    # refuses connections (SQLSTATE 57P01-57P03); or every connection slot is taken (53300).
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    # The transaction lost a deadlock or a serialization conflict (40001, 40P01): run it again.
    asyncpg.TransactionRollbackError,
    # The server takes no writes (25006): a primary demoted in a failover, or one in recovery,
    # still accepting connections until they move to the new primary. Not the records' fault:
    # parking them would leave every batch of the failover for an operator to replay.
    asyncpg.ReadOnlySQLTransactionError,
)
"""The database is unreachable, restarting or full: worth trying again. Data errors are not."""
DATABASE_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, asyncpg.PostgresError)
"""Anything the database may raise: a periodic job logs it and tries again on its next tick."""


def rows_affected(status: str) -> int:
    """The row count of a command status such as asyncpg's `execute` returns ("DELETE 3")."""
    return int(status.rsplit(" ", 1)[-1])


async def until_written(write: Callable[[], Awaitable[T]]) -> T:
    """`write()` (a write or a read), retried with backoff for as long as the database is
    unreachable; data errors propagate at once.

    For work that must not be skipped: a sink's batch, a worker's fetched records (their claims,
    their tenants' rates, their content keys). Either it is done, or the process is stopped with
    the records uncommitted and the partition's next owner reads them again.
    """
    return await retried(
        write,
        lambda: AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT_ERRORS),
            wait=wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1),
            reraise=True,
        ),
    )


async def close_pool(pool: Pool, seconds: float = 10.0) -> None:
    """Close gracefully, or, past `seconds` (a connection a stalled server never answers), cut
    every connection: a stopping process must not hang on its database."""
    try:
        await asyncio.wait_for(pool.close(), seconds)
    except TimeoutError:
        pool.terminate()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a connection goes through on its way back to the pool, after asyncpg has rolled back
    any transaction left open: nothing more. asyncpg's default adds a round trip of four
    statements (`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`) to every
    release: more than half the statements a message cost the database (loadtests/RESULTS.md).

    The contract this puts on callers: leave no session state on a pooled connection. Advisory
    locks are transaction-scoped (`pg_advisory_xact_lock`; the migration's session lock is on a
    connection of its own), cursors live inside transactions, nothing LISTENs, nothing SETs
    outside a transaction. Nor is finding a connection a failure broke this function's job: one
    the server closed is replaced at the next acquire, and one that is silently dead fails its
    next query with a transient error, which every caller already meets with a retry or a 503
    (the database-fault tests in tests/integration/test_crash.py run without the reset)."""


async def create_pool(settings: DatabaseSettings, query_timeout: float | None = None) -> Pool:
    """The process's pool; each query and each new connection fails with TimeoutError (transient)
    after `query_timeout` seconds (default `settings.command_timeout_seconds`)."""
    seconds = settings.command_timeout_seconds if query_timeout is None else query_timeout
    pool = await asyncpg.create_pool(
        settings.url, min_size=settings.pool_min, max_size=settings.pool_max, command_timeout=seconds, timeout=seconds,
        reset=_keep_session,
    )  # fmt: skip
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
