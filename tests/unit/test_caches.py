"""TTLCache (herald.caches): expiry, and one load for many callers at once."""

from __future__ import annotations

import asyncio

import pytest

from herald.caches import TTLCache
from tests.unit.fakes import Clock


async def test_callers_asking_at_once_share_one_load_and_an_entry_is_loaded_again_once_stale() -> None:
    clock, loads = Clock(), 0
    cache: TTLCache[str, int] = TTLCache(1.0, clock=clock)

    async def load() -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.01)
        return loads

    assert await asyncio.gather(*(cache.get("k", load) for _ in range(50))) == [1] * 50
    assert loads == 1
    assert await cache.get("k", load) == 1
    clock.now += 1.0
    assert await cache.get("k", load) == 2


async def test_a_failed_load_fails_every_caller_waiting_on_it_and_the_next_call_loads_again() -> None:
    cache: TTLCache[str, int] = TTLCache(1.0)
    gate = asyncio.Event()

    async def failing() -> int:
        await gate.wait()
        raise LookupError("database away")

    first = asyncio.create_task(cache.get("k", failing))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get("k", failing))
    await asyncio.sleep(0)
    gate.set()
    for task in (first, second):
        with pytest.raises(LookupError, match="database away"):
            await task

    async def working() -> int:
        return 7

    assert await cache.get("k", working) == 7


async def test_a_waiter_loads_itself_when_the_caller_loading_is_cancelled() -> None:
    cache: TTLCache[str, int] = TTLCache(1.0)
    never = asyncio.Event()

    async def slow() -> int:
        await never.wait()
        return 0

    async def quick() -> int:
        return 5

    loader = asyncio.create_task(cache.get("k", slow))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(cache.get("k", quick))
    await asyncio.sleep(0)
    loader.cancel()
    assert await asyncio.wait_for(waiter, 1) == 5
