"""Calls made one at a time, run together: group commit for lookups and takes that would each be a
round trip of their own.

`Batched(run_many)` is called like a coroutine function of one request. The calls waiting at one
moment go in one `run_many(requests)`, which returns one result per request, in order; while it
is out, the calls that come meanwhile wait and go together in the next. Nothing waits to fill a
batch: a call alone goes at once, and a batch is what gathered during the previous one, so the
batches grow with the load and the latency added is at most one `run_many`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Q = TypeVar("Q")
R = TypeVar("R")


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
