"""Process lifecycle shared by every long-running Herald process.

`run_until_signalled(main, ops_app, host, port)` runs the process's main coroutine beside a small
HTTP server for `/healthz`, `/readyz` and `/metrics`. SIGTERM or SIGINT sets the stop event the
main coroutine watches; it then drains (finishes in-flight work, commits) and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn
from litestar import Litestar

log = logging.getLogger(__name__)

GC_YOUNG_THRESHOLD = 10_000
"""Allocations (net of deallocations) between young-generation collections; CPython's default
is 700."""


def collect_garbage_rarely() -> None:
    """Set once a serving process has imported and built what it serves, before it serves.

    CPython's cyclic collector is triggered by allocations, and each full collection walks every
    tracked object. A Herald process holds ~150,000 of them from its imports alone and allocates
    hundreds per message (futures, tasks, records, dicts), so at the defaults a worker spent
    up to half of its CPU collecting (a wall-time upper bound; loadtests/RESULTS.md, session 26). `gc.freeze()` moves
    what exists now (modules, classes, functions: never garbage) out of every later
    collection's walk, and a larger young threshold lets most per-message objects die of their
    reference counts before a collection looks at them. Cycles are still collected, later:
    at most this many more allocations' worth of them wait, megabytes, not a leak.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


async def run_until_signalled(
    main: Callable[[asyncio.Event], Awaitable[None]], ops: Litestar | None, host: str, port: int
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server: uvicorn.Server | None = None
    server_task: asyncio.Task[None] | None = None
    if ops is not None and port:
        server = uvicorn.Server(uvicorn.Config(ops, host=host, port=port, log_level="warning", lifespan="on"))
        server_task = asyncio.create_task(server.serve())
    try:
        await main(stop)
    finally:
        if server is not None and server_task is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server_task, 5)


async def until_stopped(work: asyncio.Future[Any], stop: asyncio.Event) -> None:
    """Wait for `stop` or for `work` to end; re-raise if `work` failed (the supervisor restarts us)."""
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if work in done:
        work.result()


async def ticks(interval: float, stop: asyncio.Event) -> AsyncIterator[None]:
    """Yields every `interval` seconds until `stop` is set, and returns as soon as it is: the
    loop of every periodic job (receipt sweep, billing settler, utilisation report)."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        if stop.is_set():
            return
        yield
