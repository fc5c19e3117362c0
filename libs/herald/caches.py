"""A small TTL cache for per-process lookups (keys, templates).

Bounded by entry count (oldest evicted first) and by age: an entry older than `ttl` is refetched,
which is what bounds how long a revoked key or a deleted template keeps working elsewhere. A
missing key is loaded once however many callers ask at the same time (the worker asks once per
message in flight: without it, every expiry of a busy tenant's entry was dozens of queries).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    def __init__(self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._loading: dict[K, asyncio.Future[V]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        while True:
            now = self._clock()
            hit = self._entries.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
            pending = self._loading.get(key)
            if pending is None:
                break
            # Waited on, not awaited: cancelling this caller leaves the load to its own caller,
            # and no second future holds its outcome unread.
            await asyncio.wait([pending])
            if not pending.cancelled():
                return pending.result()
            # The caller loading it was cancelled: load it here instead.
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a load nobody else waited for must not warn
            raise
        finally:
            del self._loading[key]
        future.set_result(value)
        self._entries[key] = (now + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return value

    def invalidate(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every entry (a change that may affect many keys)."""
        self._entries.clear()
