"""Calls made one at a time, run together: group commit for lookups and takes that would each be a
round trip of their own.

`Batched(run_many)` is called like a coroutine function of one request. The calls waiting at one
moment go in one `run_many(requests)`, which returns one result per request, in order; while it
is out, the calls that come meanwhile wait and go together in the next. Nothing waits to fill a
batch: a call alone goes at once, and a batch is what gathered during the previous one, so the
batches grow with the load and the latency added is at most one `run_many`.

`BatchedCache(load_many, ttl)` is a `TTLCache` whose misses go through one `Batched`: the keys
missing at one moment are loaded in one `load_many(keys)`. For per-key state that a process with
thousands of tenants finds stale for most keys (each is asked more rarely than its entry lives).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

from herald.caches import TTLCache

Q = TypeVar("Q")
R = TypeVar("R")
K = TypeVar("K", bound=Hashable)


class Batched(Generic[Q, R]):
    def __init__(self, run_many: Callable[[list[Q]], Awaitable[Sequence[R]]]) -> None:
        """`run_many(requests)`: one result per request, in order. An exception it raises is
        raised in each call of that batch; a call cancelled while waiting leaves the others theirs."""
        self._run_many = run_many
        self._waiting: list[tuple[Q, asyncio.Future[R]]] = []
        self._running: asyncio.Task[None] | None = None

    async def __call__(self, request: Q) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        if self._running is None:
            self._running = asyncio.create_task(self._run_waiting())
        return await future

    async def _run_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._run(batch)
        finally:
            self._running = None
            for _, future in self._waiting:  # only when this task is cancelled: none waits forever
                future.cancel()

    async def _run(self, batch: list[tuple[Q, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run_many([request for request, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} requests")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # each caller's to handle, as if its own call had raised it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # its caller gave up: what it asked for is done all the same
                future.set_result(result)


class BatchedCache(Generic[K, R]):
    def __init__(
        self,
        load_many: Callable[[list[K]], Awaitable[Sequence[R]]],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`load_many(keys)`: one value per key, in order (what `Batched` asks of `run_many`).
        Retrying a failed load is the caller's (`until_written` around `load_many` retries a
        whole batch; around `get`, one key)."""
        self._cache: TTLCache[K, R] = TTLCache(ttl, clock=clock)
        self._load: Batched[K, R] = Batched(load_many)

    async def get(self, key: K) -> R:
        """The cached value, or the value loaded now (with the other keys missing meanwhile)."""
        return await self._cache.get(key, lambda: self._load(key))
