"""The one producer wrapper: acks=all always, idempotence where the broker supports it."""

from __future__ import annotations

import asyncio
import os
import time
import zlib
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


def crc32_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """Key -> partition with zlib's C crc32 instead of aiokafka's pure-Python murmur2 (8% of the
    API's CPU under batch load). Every Herald producer uses this one function, so a tenant +
    recipient key always lands on the same partition, which is all ordering needs. Keyless
    records (none today) go to any available partition."""
    if key is None:
        return (available or all_partitions)[zlib.crc32(os.urandom(4)) % len(available or all_partitions)]
    return all_partitions[zlib.crc32(key) % len(all_partitions)]


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
            partitioner=crc32_partitioner,
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
