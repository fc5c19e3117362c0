"""Retries that cost nothing until something fails (tenacity on the hot path was measurable)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying

T = TypeVar("T")


async def retried(call: Callable[[], Awaitable[T]], retrying: Callable[[], AsyncRetrying]) -> T:
    """`call()`, retried as `retrying()` says, which is built only if the first call raises.

    Building an AsyncRetrying per call was ~12% of the worker's CPU (loadtests/RESULTS.md), and
    nearly every call succeeds at once. A first failure is replayed inside tenacity as attempt 1,
    so its predicate, waits (Retry-After included) and attempt budget apply exactly as if tenacity
    had made that call itself.
    """
    try:
        return await call()
    except Exception as exc:
        first: Exception | None = exc
    async for attempt in retrying():
        with attempt:
            if first is not None:
                failed, first = first, None
                raise failed
            return await call()
    raise AssertionError("unreachable: tenacity re-raises or returns")
