"""The sinks' side of receipt binding (`herald.receipt_binding`).

The status projection tells the `Binder` which sends it has just recorded; the binder binds the
receipts that were waiting for them (a probe by key per send) and publishes their status
events. Every `receipt_sweep_seconds` (the first one interval after start) it also sweeps every
receipt still waiting, oldest first, for what neither fast path bound: a process that died
between recording and binding, a broker that refused the publish, a receipt bound by the
`callback_data` it echoed (its own id was never recorded). A receipt still matching no send
after `receipt_unmatched_after_seconds` leaves the sweep's reach as `unmatched` (counted, and
bound after all if its send is recorded later) until `herald retention` deletes it. Several
sinks processes bind side by side (`FOR UPDATE SKIP LOCKED`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

import asyncpg
from aiokafka.errors import KafkaError

from herald import metrics
from herald.db import receipts
from herald.db.pool import DATABASE_ERRORS
from herald.kafka.producer import Producer
from herald.receipt_binding import BATCH, bind_and_publish
from herald_sinks.settings import SinkSettings

log = logging.getLogger(__name__)


class Binder:
    def __init__(self, pool: asyncpg.Pool, producer: Producer, settings: SinkSettings) -> None:
        self._pool = pool
        self._producer = producer
        self._sweep_seconds = settings.receipt_sweep_seconds
        self._unmatched_after = settings.receipt_unmatched_after_seconds
        self._sends: list[tuple[str, str]] = []
        self._wake = asyncio.Event()

    def sends_recorded(self, sends: Sequence[tuple[str, str]]) -> None:
        """(provider, provider's id) of sends now committed: their waiting receipts can bind."""
        if sends:
            self._sends.extend(sends)
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        stopping = asyncio.create_task(stop.wait())
        stopping.add_done_callback(lambda _: self._wake.set())
        try:
            await self._loop(stop)
        finally:
            stopping.cancel()

    async def _loop(self, stop: asyncio.Event) -> None:
        next_sweep = time.monotonic() + self._sweep_seconds
        while not stop.is_set():
            timeout = max(0.0, next_sweep - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            sends, self._sends = self._sends, []
            try:
                for start in range(0, len(sends), BATCH):
                    await bind_and_publish(self._pool, self._producer, sends[start : start + BATCH])
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self._sweep_seconds
                    while await bind_and_publish(self._pool, self._producer) == BATCH and not stop.is_set():
                        pass
                    for provider, count in (
                        await receipts.give_up_unmatched(self._pool, self._unmatched_after)
                    ).items():
                        metrics.RECEIPTS.labels(metrics.provider_label(provider), "unmatched").inc(count)
                        log.warning("provider receipts matched no send", extra={"provider": provider, "count": count})
            except (*DATABASE_ERRORS, KafkaError) as exc:
                # The sends' receipts stay waiting: the sweep binds them.
                log.warning("receipt binding failed; the sweep will retry", extra={"error": type(exc).__name__})
