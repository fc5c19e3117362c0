"""Waiting in tests for something another process or task does: one deadline loop for all."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast, overload

T = TypeVar("T")


@overload
async def eventually(
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str, *, seconds: float, every: float = ...
) -> T: ...
@overload
async def eventually(
    probe: Callable[[], T], done: Callable[[T], bool], what: str, *, seconds: float, every: float = ...
) -> T: ...
async def eventually(
    probe: Callable[[], Awaitable[T]] | Callable[[], T],
    done: Callable[[T], bool],
    what: str,
    *,
    seconds: float,
    every: float = 0.05,
) -> T:
    """Call `probe` (sync or async) every `every` seconds until `done(value)` holds and return
    that value. After `seconds` without it, fail the test: AssertionError naming `what` and the
    last value seen. The probe runs at least once, and once more at the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        seen = cast(T, value)
        if done(seen):
            return seen
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not reached in {seconds:g} s; last seen {seen!r}")
        await asyncio.sleep(every)


async def at_least(
    probe: Callable[[], Awaitable[int]] | Callable[[], int], n: int, what: str, *, seconds: float
) -> int:
    """`eventually` for a count that grows: until `probe()` >= n."""
    return await eventually(probe, lambda seen: seen >= n, f"{what} (expected at least {n})", seconds=seconds)
