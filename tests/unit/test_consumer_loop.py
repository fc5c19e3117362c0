"""ConsumerLoop's commit policy, with a scripted stand-in for the consumer (no broker).

What must hold: an offset is committed only past records whose handler returned; with a commit
interval, commits are fewer than batches but the last handled offsets are committed on stop; a
short batch is followed by the batch wait, a full one is not; a record the handler refuses on
its own is parked and the rest of its batch applied.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from herald.kafka.consumer import Batch, ConsumerLoop, Undecodable, decoded, rebuilt_record
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
    await loop.drain(task, 5)
    return consumer, handler


async def test_commits_are_batched_by_interval_and_the_last_offsets_are_committed_on_drain() -> None:
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


class Hangs(Counting):
    """Handles the first batch, then never returns from the second (a stalled database)."""

    async def __call__(self, batch: Batch) -> None:
        if self.handled:
            await asyncio.Event().wait()
        await super().__call__(batch)


async def test_a_drain_past_its_deadline_cancels_the_batch_in_hand_and_commits_only_what_was_handled() -> None:
    consumer = ScriptedConsumer(batches([5, 5, 5]))
    handler = Hangs(consumer, 5)
    loop = ConsumerLoop(consumer, handler, Names(), group="g", max_records=5, commit_interval_seconds=3600)  # type: ignore[arg-type]
    task = asyncio.create_task(loop.run())
    await asyncio.wait_for(handler.done.wait(), 5)
    await asyncio.sleep(0.05)  # the second batch is in the handler now, and stays there
    await asyncio.wait_for(loop.drain(task, 0.2), 5)
    assert task.cancelled()
    assert consumer.commits == [{TP: 5}]  # the first batch; the second is read again by the next owner


# --- poison records: isolated, parked, the rest applied --------------------------------------

OTHER = TopicPartition("herald.events", 1)


def record(tp: TopicPartition, offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return rebuilt_record(tp.topic, tp.partition, offset, value)


class RefusesBad:
    """Applies a batch all or nothing (one transaction): refuses any batch holding a b"bad" value."""

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.applied: list[tuple[int, int]] = []
        self.fail_with = fail_with

    async def __call__(self, batch: Batch) -> None:
        records = [r for rs in batch.values() for r in rs]
        if self.fail_with is not None:
            raise self.fail_with
        if any(r.value == b"bad" for r in records):
            raise ValueError("refused")
        self.applied += [(r.partition, r.offset) for r in records]


class Parked:
    def __init__(self) -> None:
        self.records: list[tuple[str, int, int, str]] = []

    async def __call__(self, group: str, rec: ConsumerRecord[bytes, bytes], error: Exception) -> None:
        self.records.append((group, rec.partition, rec.offset, str(error)))


def mixed_batch(bad: set[tuple[int, int]]) -> Batch:
    return {
        tp: [record(tp, o, b"bad" if (tp.partition, o) in bad else b"ok") for o in range(100)] for tp in (TP, OTHER)
    }


async def test_the_records_a_handler_refuses_are_parked_and_the_rest_applied_in_order() -> None:
    handler, parked = RefusesBad(), Parked()
    loop = ConsumerLoop(None, handler, Names(), group="g", max_records=200, park=parked)  # type: ignore[arg-type]
    await loop.handle(mixed_batch({(0, 17), (1, 0), (1, 99)}))
    assert parked.records == [("g", 0, 17, "refused"), ("g", 1, 0, "refused"), ("g", 1, 99, "refused")]
    for partition, bad in ((0, {17}), (1, {0, 99})):
        offsets = [o for p, o in handler.applied if p == partition]
        assert offsets == [o for o in range(100) if o not in bad]  # each good record once, in order


async def test_more_refusals_than_poison_explains_stop_the_loop_with_nothing_parked() -> None:
    handler, parked = RefusesBad(fail_with=RuntimeError("schema mismatch")), Parked()
    loop = ConsumerLoop(None, handler, Names(), group="g", max_records=200, park=parked, max_parked=10)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="schema mismatch"):
        await loop.handle(mixed_batch(set()))
    assert parked.records == []


async def test_without_a_park_a_refusal_propagates() -> None:
    loop = ConsumerLoop(None, RefusesBad(), Names(), group="g", max_records=200)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refused"):
        await loop.handle(mixed_batch({(0, 1)}))


async def test_a_transient_error_propagates_with_nothing_parked() -> None:
    # The database away is no reason to park: the process stops and its successor replays.
    handler, parked = RefusesBad(fail_with=ConnectionRefusedError("database away")), Parked()
    loop = ConsumerLoop(
        None,  # type: ignore[arg-type]
        handler, Names(), group="g", max_records=200, park=parked, transient=(OSError,),
    )  # fmt: skip
    with pytest.raises(ConnectionRefusedError):
        await loop.handle({TP: [record(TP, 0, b"ok"), record(TP, 1, b"ok")]})
    assert parked.records == []


# --- undecodable records: parked where they are, however many, the rest applied ----------------


class Decodes:
    """A handler that decodes with `decoded` (as every sink does), then applies all or nothing."""

    def __init__(self) -> None:
        self.applied: list[tuple[int, int, int]] = []

    async def __call__(self, batch: Batch) -> None:
        values = list(decoded(batch, lambda _, value: msgspec.json.decode(value, type=int)))
        self.applied += [(tp.partition, r.offset, v) for tp, r, v in values]


async def test_undecodable_records_are_parked_every_one_and_the_rest_applied_once() -> None:
    handler, parked = Decodes(), Parked()
    loop = ConsumerLoop(None, handler, Names(), group="g", max_records=200, park=parked, max_parked=2)  # type: ignore[arg-type]
    bad = {(0, o) for o in range(0, 100, 7)}  # 15 of them: more than max_parked, still no fault
    await loop.handle({
        tp: [record(tp, o, b"{not json" if (tp.partition, o) in bad else str(o).encode()) for o in range(100)]
        for tp in (TP, OTHER)
    })  # fmt: skip
    assert sorted((p, o) for _, p, o, _ in parked.records) == sorted(bad)
    assert {error for *_, error in parked.records} == {"Expected `int`, got `object`"}  # each its own error
    expected = [(p, o, o) for p in (0, 1) for o in range(100) if (p, o) not in bad]
    assert sorted(handler.applied) == expected  # each decodable record once


async def test_without_a_park_an_undecodable_record_stops_the_loop() -> None:
    loop = ConsumerLoop(None, Decodes(), Names(), group="g", max_records=200)  # type: ignore[arg-type]
    with pytest.raises(Undecodable):
        await loop.handle({TP: [record(TP, 0, b"1"), record(TP, 1, b"nope")]})
