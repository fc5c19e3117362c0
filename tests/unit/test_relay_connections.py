"""The relay's connection pool (herald_worker.email.connections) against in-memory slots."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Collection

import pytest

from herald_worker.email.connections import Connection, NoConnection, RelayPool


class MemorySlots:
    """A relay limit shared by the pools built on one instance, as the PostgreSQL leases are."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held: dict[int, object] = {}
        self.members = 1
        self.released: list[int] = []

    def for_holder(self, holder: object) -> HolderSlots:
        return HolderSlots(self, holder)


class HolderSlots:
    def __init__(self, shared: MemorySlots, holder: object) -> None:
        self.shared, self.holder = shared, holder

    async def claim(self) -> int | None:
        for slot in range(self.shared.limit):
            if slot not in self.shared.held:
                self.shared.held[slot] = self.holder
                return slot
        return None

    async def renew(self, held: Collection[int]) -> set[int]:
        return {slot for slot in held if self.shared.held.get(slot) is self.holder}

    async def release(self, slot: int) -> None:
        if self.shared.held.get(slot) is self.holder:
            del self.shared.held[slot]
            self.shared.released.append(slot)

    async def share(self) -> int:
        return max(1, -(-self.shared.limit // self.shared.members))

    async def leave(self) -> None:
        pass


class Client:
    def __init__(self, number: int) -> None:
        self.number, self.open, self.quit = number, True, False


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _pool(
    slots: HolderSlots | None, size: int = 4, wait: float = 0.3, clock: Callable[[], float] = time.monotonic,
    fail: bool = False,
) -> tuple[RelayPool[Client], list[Client]]:
    made: list[Client] = []
    numbers = itertools.count()

    async def connect() -> Client:
        if fail:
            raise OSError("connection refused")
        made.append(Client(next(numbers)))
        return made[-1]

    async def disconnect(client: Client, polite: bool) -> None:
        client.open, client.quit = False, polite

    pool: RelayPool[Client] = RelayPool(
        connect, disconnect, lambda c: c.open, size=size, slots=slots, wait_seconds=wait, idle_seconds=10.0,
        clock=clock,
    )  # fmt: skip
    return pool, made


async def test_two_pools_never_open_more_connections_than_the_relay_allows() -> None:
    shared = MemorySlots(limit=3)
    a, made_a = _pool(shared.for_holder("a"), size=4, wait=0.2)
    b, made_b = _pool(shared.for_holder("b"), size=4, wait=0.2)
    held = [await a.acquire(), await a.acquire(), await b.acquire()]
    with pytest.raises(NoConnection):
        await b.acquire()
    assert len(made_a) + len(made_b) == 3
    # A connection given back to `a` is reused by `a` without a new slot; one closed frees a slot for `b`.
    await a.give_back(held[0], reusable=True)
    assert (await a.acquire()) is held[0]
    await a.give_back(held[1], reusable=False)
    again = await b.acquire()
    assert again.slot == held[1].slot
    assert not made_a[1].open
    for pool in (a, b):
        await pool.close()


async def test_a_mail_waiting_for_a_slot_takes_the_connection_given_back_meanwhile() -> None:
    shared = MemorySlots(limit=1)
    pool, made = _pool(shared.for_holder("a"), size=2, wait=2.0)
    first = await pool.acquire()
    waiting = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await pool.give_back(first, reusable=True)
    assert (await asyncio.wait_for(waiting, 1)) is first
    assert len(made) == 1
    await pool.close()


async def test_a_connection_that_fails_to_open_gives_its_slot_back() -> None:
    shared = MemorySlots(limit=1)
    pool, _ = _pool(shared.for_holder("a"), fail=True)
    with pytest.raises(OSError, match="connection refused"):
        await pool.acquire()
    assert shared.held == {}
    assert shared.released == [0]


async def test_a_lost_lease_closes_the_connection_after_its_mail_and_never_releases_anothers_slot() -> None:
    shared = MemorySlots(limit=1)
    pool, made = _pool(shared.for_holder("a"))
    connection = await pool.acquire()
    shared.held[0] = "b"  # a's lease ended while it stalled, and b claimed the slot
    await pool.tick()
    assert made[0].open  # never closed under a mail
    await pool.give_back(connection, reusable=True)
    assert not made[0].open
    assert shared.held == {0: "b"}
    assert shared.released == []
    await pool.close()


async def test_idle_connections_close_after_the_idle_time_and_beyond_a_smaller_share() -> None:
    shared, clock = MemorySlots(limit=4), Clock()
    pool, made = _pool(shared.for_holder("a"), size=4, clock=clock)
    taken: list[Connection[Client]] = [await pool.acquire() for _ in range(4)]
    for connection in taken:
        await pool.give_back(connection, reusable=True)
    assert pool.open_connections == 4
    shared.members = 2  # another worker wants the relay: this one's share is 2 of 4
    waiting = asyncio.create_task(pool.acquire())  # demand keeps this worker a member
    await pool.tick()
    assert pool.open_connections == 2, "idle connections beyond the share are closed"
    assert all(c.quit for c in made if not c.open), "a working connection is told QUIT"
    await pool.give_back(await waiting, reusable=True)
    clock.now += 10.0
    await pool.tick()
    assert pool.open_connections == 0
    assert shared.held == {}
    await pool.close()


async def test_a_worker_at_its_share_claims_no_further_slot_though_some_are_free() -> None:
    shared = MemorySlots(limit=4)
    shared.members = 2
    pool, made = _pool(shared.for_holder("a"), size=4, wait=0.2)
    first = await pool.acquire()
    await pool.tick()  # learns its share: 2 of 4
    second = await pool.acquire()
    with pytest.raises(NoConnection):
        await pool.acquire()
    assert len(made) == 2
    assert len(shared.held) == 2
    for connection in (first, second):
        await pool.give_back(connection, reusable=True)
    await pool.close()


async def test_without_a_relay_limit_a_pool_opens_up_to_its_size() -> None:
    pool, made = _pool(None, size=3, wait=0.1)
    taken = [await pool.acquire() for _ in range(3)]
    blocked = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0.05)
    assert not blocked.done()
    assert len(made) == 3
    await pool.give_back(taken[0], reusable=True)
    assert (await asyncio.wait_for(blocked, 1)) is taken[0]
    await pool.close()
