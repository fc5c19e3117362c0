"""The relay's connections: a pool per worker that holds the relay's connection limit across workers.

Each worker keeps at most `size` connections open, one mail at a time on each. A relay also
limits the connections it takes from one client (Postfix's `smtpd_client_connection_count_limit`
answers `421 4.7.0` beyond it), and that limit is the relay's, not a worker's: with `slots` (the
relay's limit as leases in PostgreSQL, `herald.db.connection_slots`), a connection is opened only
under a slot this worker leased, and closed, giving the slot back, when it is

* idle for `idle_seconds` (a quiet worker does not sit on the relay's capacity),
* beyond this worker's share: the limit divided by the workers that want connections now, so a
  worker joining a busy relay gets its part within a tick instead of waiting for a quiet moment,
* or its lease was lost (the worker stalled past it and another worker took the slot): closed
  when its mail is done, never under a mail.

A mail that finds no connection within `wait_seconds` is `NoConnection`: the relay did not get
it (the router may try the next provider).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import asyncpg

from herald.db import connection_slots
from herald.db.pool import until_written

log = logging.getLogger(__name__)

C = TypeVar("C")
TICK_SECONDS = 1.0
"""How often leases are renewed, shares counted and idle connections closed."""
LEASE_SECONDS = 10.0
"""A slot's lease: a worker that stops renewing (killed, stalled) frees its slots after this."""
_POLL_SECONDS = 0.1
"""A mail waiting for a slot asks again this often (another worker's release is not signalled)."""


class NoConnection(Exception):
    """No connection could be had within the wait: every slot is held elsewhere."""


class Slots(Protocol):
    """The relay's connection limit, shared by every worker."""

    async def claim(self) -> int | None: ...
    async def renew(self, held: Collection[int]) -> set[int]: ...
    async def release(self, slot: int) -> None:
        """Gives `slot` back if this worker still holds it (a lost one is left to its new holder)."""
        ...
    async def share(self) -> int: ...
    async def leave(self) -> None: ...


class PostgresSlots:
    """`Slots` as leases in PostgreSQL, for one worker (`holder`) and one relay (`provider`)."""

    def __init__(self, pool: asyncpg.Pool, provider: str, limit: int) -> None:
        self._pool, self._provider, self._limit = pool, provider, limit
        self._holder = uuid.uuid4()
        self._ensured = False

    async def claim(self) -> int | None:
        """Waits out a database outage (a mail then waits for its connection, it does not fail)."""
        if not self._ensured:
            await until_written(lambda: connection_slots.ensure(self._pool, self._provider, self._limit))
            self._ensured = True
        return await until_written(
            lambda: connection_slots.claim(self._pool, self._provider, self._limit, self._holder, LEASE_SECONDS)
        )

    async def renew(self, held: Collection[int]) -> set[int]:
        return await connection_slots.renew(self._pool, self._provider, self._holder, held, LEASE_SECONDS)

    async def release(self, slot: int) -> None:
        await connection_slots.release(self._pool, self._provider, self._holder, slot)

    async def share(self) -> int:
        members = await connection_slots.members(self._pool, self._provider, self._holder, 3 * TICK_SECONDS)
        return max(1, math.ceil(self._limit / members))

    async def leave(self) -> None:
        await connection_slots.leave(self._pool, self._provider, self._holder)


@dataclass(eq=False)
class Connection(Generic[C]):
    client: C
    slot: int | None
    idle_since: float = field(default=0.0)


class RelayPool(Generic[C]):
    """Connections to one relay for one worker; `acquire` one, `give_back` it after its mail."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[C]],
        disconnect: Callable[[C, bool], Awaitable[None]],
        usable: Callable[[C], bool],
        *,
        size: int,
        slots: Slots | None,
        wait_seconds: float,
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect, self._disconnect, self._usable = connect, disconnect, usable
        self._size, self._slots = size, slots
        self._wait_seconds, self._idle_seconds, self._clock = wait_seconds, idle_seconds, clock
        self._turns = asyncio.Semaphore(size)
        self._idle: list[Connection[C]] = []
        self._open: set[Connection[C]] = set()
        self._lost: set[int] = set()
        self._cap = size
        self._waiting = 0
        self._returned = asyncio.Event()
        self._ticker: asyncio.Task[None] | None = None
        self._member = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    async def acquire(self) -> Connection[C]:
        """A connection for one mail (reused, or opened under a slot); `NoConnection` after the wait.
        Errors from `connect` go through (the slot given back)."""
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())
        deadline = self._clock() + self._wait_seconds
        await self._turns.acquire()
        try:
            self._waiting += 1
            try:
                return await self._take(deadline)
            finally:
                self._waiting -= 1
        except BaseException:
            self._turns.release()
            raise

    async def give_back(self, connection: Connection[C], reusable: bool) -> None:
        """After its mail: kept for the next one, or closed (broken, over the share, lease lost)."""
        try:
            if reusable and self._usable(connection.client) and not self._over_share(connection):
                connection.idle_since = self._clock()
                self._idle.append(connection)
            else:
                await self._close(connection, polite=reusable)
        finally:
            self._turns.release()
            self._returned.set()

    async def close(self) -> None:
        """Every connection closed and every slot given back (the worker stops)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._close(connection, polite=True)
        if self._slots is not None and self._member:
            with contextlib.suppress(Exception):
                await self._slots.leave()

    async def _take(self, deadline: float) -> Connection[C]:
        while True:
            while self._idle:
                connection = self._idle.pop()
                if self._usable(connection.client) and connection.slot not in self._lost:
                    return connection
                await self._close(connection, polite=False)
            if self._slots is None:
                return await self._opened(None)
            if len(self._open) < self._cap:
                slot = await self._slots.claim()
                if slot is not None:
                    return await self._opened(slot)
            if self._clock() >= deadline:
                raise NoConnection
            self._returned.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._returned.wait(), _POLL_SECONDS)

    async def _opened(self, slot: int | None) -> Connection[C]:
        try:
            client = await self._connect()
        except BaseException:
            if slot is not None and self._slots is not None:
                await self._slots.release(slot)
            raise
        connection = Connection(client, slot)
        self._open.add(connection)
        return connection

    def _over_share(self, connection: Connection[C]) -> bool:
        return connection.slot is not None and (connection.slot in self._lost or len(self._open) > self._cap)

    async def _close(self, connection: Connection[C], polite: bool) -> None:
        """`polite`: the connection works and is told goodbye (SMTP's QUIT); else just closed."""
        self._open.discard(connection)
        with contextlib.suppress(Exception):
            await self._disconnect(connection.client, polite)
        if connection.slot is not None and self._slots is not None:
            self._lost.discard(connection.slot)
            with contextlib.suppress(Exception):  # a slot lost to another worker stays its
                await self._slots.release(connection.slot)

    async def tick(self) -> None:
        """Renew the leases, count this worker's share, close what is idle too long or over it."""
        if self._slots is not None:
            held = {c.slot for c in self._open if c.slot is not None}
            if held or self._waiting:
                self._cap = min(self._size, await self._slots.share())
                self._member = True
            elif self._member:
                await self._slots.leave()
                self._member, self._cap = False, self._size
            if held:
                self._lost |= held - await self._slots.renew(held)
        now = self._clock()
        for connection in list(self._idle):
            stale = now - connection.idle_since >= self._idle_seconds
            if (stale or self._over_share(connection)) and connection in self._idle:
                self._idle.remove(connection)
                await self._close(connection, polite=True)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.tick()
            except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
                # The leases outlive a few missed ticks; the next tick tries again.
                log.warning("relay connection slots not renewed", extra={"error": type(exc).__name__})
