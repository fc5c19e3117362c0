"""How many record batches the broker stores per partition: what the embedded broker's fetch cost
grows with.

Tansu's memory storage keeps every produced batch as one object and lists all of a partition's
objects on every fetch that has something to return from it. Its fetch cost therefore grows with
the number of batches stored, not with the number of records (`make bench-broker` shows both).
Benchmarks print this after their run so that a broker figure can be read against it.

Counted by reading every partition from the start with a throw-away consumer (no group, nothing
committed) and counting the batches aiokafka unpacks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiokafka.consumer.fetcher as fetcher
from aiokafka import AIOKafkaConsumer, TopicPartition


class _Counted:
    """Wraps aiokafka's MemoryRecords (a C extension type, so it cannot be patched in place)."""

    batches = 0

    def __init__(self, *args: Any) -> None:
        self._records = _MEMORY_RECORDS(*args)

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> Any:
        batch = self._records.next_batch()
        if batch is not None:
            _Counted.batches += 1
        return batch

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())


_MEMORY_RECORDS = fetcher.MemoryRecords


@contextmanager
def _counting() -> Iterator[None]:
    fetcher.MemoryRecords = _Counted  # type: ignore[misc]
    try:
        yield
    finally:
        fetcher.MemoryRecords = _MEMORY_RECORDS  # type: ignore[misc]


async def _caught_up(consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
    highwater = consumer.highwater(tp)
    return highwater is not None and await consumer.position(tp) >= highwater


async def stored(bootstrap: str, topic: str) -> tuple[int, int, int]:
    """(records, batches, partitions) stored in `topic` right now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    with _counting():
        _Counted.batches = 0
        await consumer.start()
        try:
            await consumer.topics()  # fetches the cluster's metadata: a consumer learns topics lazily
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            records = 0
            # The end is each partition's high watermark as its fetches report it (Tansu's
            # end_offsets is stale, and an empty fetch only means a busy broker).
            while not all([await _caught_up(consumer, tp) for tp in partitions]):
                got = await consumer.getmany(timeout_ms=1000, max_records=50_000)
                records += sum(len(batch) for batch in got.values())
            return records, _Counted.batches, len(partitions)
        finally:
            await consumer.stop()


async def report(bootstrap: str, topics: list[str]) -> str:
    """One line per topic: records, batches, batches per partition."""
    lines = []
    for topic in topics:
        records, batches, partitions = await stored(bootstrap, topic)
        per = batches / partitions if partitions else 0.0
        lines.append(f"  {topic:<34} {records:>10,} records in {batches:>8,} batches ({per:,.0f} per partition)")
    return "\n".join(lines)


if __name__ == "__main__":  # ad hoc: python -m loadtests.batches BOOTSTRAP TOPIC...
    import sys

    print(asyncio.run(report(sys.argv[1], sys.argv[2:])))
