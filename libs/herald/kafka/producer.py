"""The one producer wrapper: acks=all always, idempotence where the broker supports it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import msgspec
from aiokafka import AIOKafkaProducer

from herald import metrics
from herald.kafka.topics import Names
from herald.settings import KafkaSettings


class Record(msgspec.Struct, frozen=True):
    topic: str
    """Unprefixed contract name; the producer applies the deployment prefix."""
    key: bytes | None
    value: bytes


class Producer:
    """Produces records and returns only once the broker acknowledged every one of them.

    `send_many` enqueues the whole batch first and then waits once, so a batch of N records costs
    one round of broker requests, not N sequential round trips.
    """

    def __init__(self, settings: KafkaSettings, names: Names) -> None:
        self._names = names
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap,
            acks="all",
            enable_idempotence=settings.idempotent_producer,
            linger_ms=settings.linger_ms,
            max_batch_size=64 * 1024,
            request_timeout_ms=settings.request_timeout_ms,
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send_many(self, records: Sequence[Record]) -> None:
        """Raises (aiokafka's KafkaError) if any record was not acknowledged."""
        started = time.perf_counter()
        futures = [await self._producer.send(self._names.topic(r.topic), value=r.value, key=r.key) for r in records]
        await asyncio.gather(*futures)
        metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)

    async def send(self, record: Record) -> None:
        await self.send_many((record,))
