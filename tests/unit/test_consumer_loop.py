"""ConsumerLoop's commit policy, with a scripted stand-in for the consumer (no broker).

What must hold: an offset is committed only past records whose handler returned; with a commit
interval, commits are fewer than batches but the last handled offsets are committed on stop; a
short batch is followed by the batch wait, a full one is not.
"""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from herald.kafka.consumer import Batch, ConsumerLoop
from herald.kafka.topics import Names

TP = TopicPartition("herald.events", 0)


class Record:
    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.value = b"{}"


class ScriptedConsumer:
    """Hands out `batches` in order, then nothing; records every commit and getmany call time."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches
        self.commits: list[dict[TopicPartition, int]] = []
        self.fetched_at: list[float] = []

    async def getmany(self, timeout_ms: int, max_records: int) -> Batch:
        self.fetched_at.append(asyncio.get_running_loop().time())
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def highwater(self, tp: TopicPartition) -> int | None:
        return None


def batches(sizes: list[int]) -> list[Batch]:
    out, offset = [], 0
    for size in sizes:
        out.append({TP: [Record(offset + i) for i in range(size)]})
        offset += size
    return out  # type: ignore[return-value]


class Counting:
    """The handler: counts records, notes what was committed when each batch arrived, and says
    when `expected` records were handled."""

    def __init__(self, consumer: ScriptedConsumer, expected: int) -> None:
        self.consumer = consumer
        self.expected = expected
        self.handled = 0
        self.committed_on_arrival: list[int] = []
        self.done = asyncio.Event()

    async def __call__(self, batch: Batch) -> None:
        self.committed_on_arrival.append(max((c[TP] for c in self.consumer.commits), default=0))
        self.handled += sum(map(len, batch.values()))
        if self.handled >= self.expected:
            self.done.set()


async def run(sizes: list[int], max_records: int, **options: float) -> tuple[ScriptedConsumer, Counting]:
    """A ConsumerLoop over batches of `sizes`, stopped once every record was handled."""
    consumer = ScriptedConsumer(batches(sizes))
    handler = Counting(consumer, sum(sizes))
    loop = ConsumerLoop(consumer, handler, Names(), group="g", max_records=max_records, **options)  # type: ignore[arg-type]
    task = asyncio.create_task(loop.run())
    await asyncio.wait_for(handler.done.wait(), 5)
    loop.stop()
    await asyncio.wait_for(task, 5)
    return consumer, handler


async def test_commits_are_batched_by_interval_and_the_last_offsets_are_committed_on_stop() -> None:
    consumer, _ = await run([10] * 20, max_records=10, commit_interval_seconds=3600)
    # The interval never elapsed: no commit per batch, one on stop, past the last handled record.
    assert consumer.commits == [{TP: 200}]


async def test_without_an_interval_every_batch_is_committed_after_its_handler() -> None:
    consumer, handler = await run([5, 5, 5], max_records=5)
    assert consumer.commits == [{TP: 5}, {TP: 10}, {TP: 15}]
    # When each batch reached the handler, nothing of it was committed yet.
    assert handler.committed_on_arrival == [0, 5, 10]


async def test_a_short_batch_is_followed_by_the_batch_wait_and_a_full_one_is_not() -> None:
    consumer, _ = await run([10, 3, 10], max_records=10, batch_wait_seconds=0.3)
    first, second, third = consumer.fetched_at[:3]
    assert second - first < 0.3  # after a full batch: straight on
    assert third - second >= 0.3  # after a short one: the wait (a lower bound, it cannot flake)
