"""The consumer loop shared by workers and sinks: fetch a batch, run its effects, then commit.

Commit policy (the delivery guarantee is decided here): offsets are committed only after the
handler returned, i.e. after the effects of every record up to them are durable (events
acknowledged by the broker, rows committed in Postgres). A crash before the commit replays the
batch; handlers are idempotent on the message id, so a replay changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import TypeAlias, TypeVar

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

from herald import metrics
from herald.kafka.drain import drain
from herald.kafka.offsets import CommitPolicy, Committer, OffsetTracker
from herald.kafka.topics import Names
from herald.settings import KafkaSettings

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]
Batch = dict[TopicPartition, list[Record]]
Handler = Callable[[Batch], Awaitable[None]]
Parker = Callable[[str, Record, Exception], Awaitable[None]]
"""Keeps a record the handler refused, with the consumer group and the error (`herald.db.parked`)."""
V = TypeVar("V")


class Undecodable(Exception):
    """Records of a batch that are not what their topic's contract says (`decoded`): the loop
    parks exactly these and applies the rest, without searching for them."""

    def __init__(self, refused: list[tuple[Record, msgspec.DecodeError]]) -> None:
        super().__init__(f"{len(refused)} undecodable records, the first: {refused[0][1]}")
        self.refused = refused


def decoded(batch: Batch, decode: Callable[[TopicPartition, bytes], V]) -> list[tuple[TopicPartition, Record, V]]:
    """Every record of `batch` with its value decoded by `decode` (given the partition, for
    handlers that read several topics). Decodes the whole batch before returning anything, and
    raises `Undecodable` naming every record that does not decode: a handler applies all of a
    batch or none of it, and never skips a record silently."""
    values: list[tuple[TopicPartition, Record, V]] = []
    refused: list[tuple[Record, msgspec.DecodeError]] = []
    for tp, records in batch.items():
        for record in records:
            try:
                values.append((tp, record, decode(tp, record.value or b"")))
            except msgspec.DecodeError as exc:
                refused.append((record, exc))
    if refused:
        raise Undecodable(refused)
    return values


COPARTITIONED = (RangePartitionAssignor,)
"""For `make_consumer(copartitioned=True)`. Range gives each member the same partition numbers
of every topic of equal size, so a worker owns a recipient's partition on every class topic and
on herald.retry alike: the recipient's lane (one send at a time, the gap between sends) lives in
one process. aiokafka's default round-robin does so only when the member count divides the
partition count (12; not with 5 workers). Range alone: listing round-robin second (the way to
migrate a running group) made every join take 4 s instead of 2 on the embedded broker, and no
deployment runs round-robin workers yet. Changing this again needs both listed for a release."""


def make_consumer(
    settings: KafkaSettings,
    names: Names,
    group: str,
    topics: Sequence[str],
    listener: ConsumerRebalanceListener | None = None,
    *,
    partition_fetch_bytes: int = 1024 * 1024,
    copartitioned: bool = False,
) -> AIOKafkaConsumer:
    """A group member subscribed to `topics` (with `listener` told of rebalances, if given).

    `partition_fetch_bytes` bounds what one fetch prefetches per partition; a consumer that
    pauses partitions keeps it small, because aiokafka drops a paused partition's prefetched
    records and the broker sends them again on resume."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=names.group(group),
        enable_auto_commit=False,
        # 'latest' is unreliable on Tansu (INFRA.md) and wrong for us anyway: a new group must
        # not skip messages that were accepted before it first joined.
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        max_poll_interval_ms=300_000,
        max_partition_fetch_bytes=partition_fetch_bytes,
        partition_assignment_strategy=COPARTITIONED if copartitioned else (RoundRobinPartitionAssignor,),
    )
    if topics:
        consumer.subscribe([names.topic(t) for t in topics], listener=listener)
    return consumer


class ConsumerLoop:
    """Runs `handler` over batches until `stop()`, after its current batch; `drain` stops it and commits.

    Batching for throughput (sinks are not on the send path): after a batch smaller than
    `max_records` the loop waits `batch_wait_seconds` before taking the next, so records pile up
    into fewer, larger transactions and broker fetches instead of a trickle of small ones; and
    offsets are committed at most every `commit_interval_seconds` (each commit is a broker round
    trip). A crash replays at most what was handled since the last commit, which the idempotent
    handlers absorb. Both may be 0 (a batch per fetch, a commit per batch).

    A handler that raises does not stop the loop when a `park` is given. Handlers retry
    transient database errors themselves (`herald.db.pool.until_written`), so what reaches the
    loop is a record the handler cannot take (poison) or a fault that affects every record. The
    loop halves the batch until it has the records that fail on their own, applies the rest,
    parks those and moves on: one bad record never halts a partition, let alone the three sinks
    sharing the process. More than `max_parked` in one batch is a fault, not poison: the error
    propagates with nothing parked and nothing committed, and the process stops. So does an
    error of a `transient` type (the database away): that is no reason to park anything, and the
    restarted process replays the batch.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        handler: Handler,
        names: Names,
        *,
        group: str,
        max_records: int,
        batch_wait_seconds: float = 0.0,
        commit_interval_seconds: float = 0.0,
        park: Parker | None = None,
        max_parked: int = 10,
        transient: tuple[type[BaseException], ...] = (),
    ) -> None:
        """`group` is the unprefixed consumer group, the lag metric's label (several groups read
        `herald.events` in one sinks process)."""
        self._consumer = consumer
        self._group = group
        self._handler = handler
        self._names = names
        self._max_records = max_records
        self._batch_wait = batch_wait_seconds
        self._tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._committer = Committer(consumer, self._tracker, CommitPolicy(commit_interval_seconds))
        self._park = park
        self._max_parked = max_parked
        self._transient = transient
        self._stopping = asyncio.Event()
        self._busy = busy_clock(group)

    def stop(self) -> None:
        self._stopping.set()

    async def drain(self, running: asyncio.Task[None], deadline_seconds: float) -> None:
        """`running` is this loop's `run()`: stop it after its current batch, within
        `deadline_seconds`, and commit what was handled (`herald.kafka.drain`)."""
        await drain(self.stop, [running], self._committer, deadline_seconds, group=self._group)

    async def run(self) -> None:
        while not self._stopping.is_set():
            batch: Batch = await self._consumer.getmany(timeout_ms=200, max_records=self._max_records)
            if not batch:
                continue
            with self._busy.batch():
                await self.handle(batch)
            for tp, records in batch.items():
                self._tracker.handled(tp, records[-1].offset + 1)
                report_lag(self._consumer, self._names, self._group, tp, records[-1].offset + 1)
            if self._committer.due():
                await self._committer.commit()
            if self._batch_wait and sum(map(len, batch.values())) < self._max_records:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._batch_wait)

    async def handle(self, batch: Batch) -> None:
        """Run the handler over `batch`; with a `park`, isolate and park the records it refuses.
        Records the handler could not decode (`Undecodable`) are parked at once, every one of
        them, and the rest applied: a record that breaks its topic's contract is not a fault of
        the process, however many there are."""
        try:
            await self._handler(batch)
            return
        except Undecodable as exc:
            if self._park is None:
                raise
            for record, undecodable in exc.refused:
                await self._park(self._group, record, undecodable)
            bad = {id(r) for r, _ in exc.refused}
            if rest := [r for records in batch.values() for r in records if id(r) not in bad]:
                await self.handle(_batch_of(rest))
            return
        except self._transient:
            raise
        except Exception as exc:
            if self._park is None:
                raise
            refused: list[tuple[Record, Exception]] = []
            await self._isolate([r for records in batch.values() for r in records], exc, refused)
        for record, error in refused:
            await self._park(self._group, record, error)

    async def _isolate(self, records: list[Record], error: Exception, refused: list[tuple[Record, Exception]]) -> None:
        """`records` failed together with `error`: find the ones that fail alone. Each half runs
        in turn, in offset order within each partition, so what is applied keeps its order."""
        if len(records) == 1:
            refused.append((records[0], error))
            if len(refused) > self._max_parked:
                log.error(
                    "more records of one batch refused than poison explains; stopping without parking",
                    extra={"group": self._group, "limit": self._max_parked, "error": type(error).__name__},
                )
                raise error
            return
        middle = len(records) // 2
        for half in (records[:middle], records[middle:]):
            try:
                await self._handler(_batch_of(half))
            except self._transient:
                raise
            except Exception as exc:
                await self._isolate(half, exc, refused)


class _Busy:
    """How long the loops of one consumer group in this process have been on their current
    batch (the longest, 0 between batches): `herald_consumer_busy_seconds`, read at scrape time.
    Lag is reported after a batch, so a handler blocked on its batch (a lock, a database that
    accepts connections and never answers) freezes the lag where it was; this grows instead."""

    def __init__(self, group: str) -> None:
        self._since: dict[int, float] = {}
        self._token = itertools.count()
        metrics.CONSUMER_BUSY_SECONDS.labels(group).set_function(self.seconds)

    def seconds(self) -> float:
        return time.monotonic() - min(self._since.values()) if self._since else 0.0

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        token = next(self._token)
        self._since[token] = time.monotonic()
        try:
            yield
        finally:
            del self._since[token]


_BUSY: dict[str, _Busy] = {}


def busy_clock(group: str) -> _Busy:
    """The one busy clock of `group` in this process (tests run several loops of a group)."""
    if group not in _BUSY:
        _BUSY[group] = _Busy(group)
    return _BUSY[group]


def report_lag(consumer: AIOKafkaConsumer, names: Names, group: str, tp: TopicPartition, next_offset: int) -> None:
    """`herald_consumer_lag`: records on the broker past `next_offset`, the next one this
    consumer will fetch (`group` unprefixed: several groups read one topic in a process)."""
    highwater = consumer.highwater(tp)
    if highwater is not None:
        metrics.CONSUMER_LAG.labels(group, names.unprefixed(tp.topic), str(tp.partition)).set(
            max(0, highwater - next_offset)
        )


def rebuilt_record(
    topic: str, partition: int, offset: int, value: bytes | None, *, key: bytes | None = None, timestamp_ms: int = 0
) -> Record:
    """A record as a handler receives it, rebuilt from what was kept of it (a parked record)."""
    return ConsumerRecord(
        topic=topic, partition=partition, offset=offset, timestamp=timestamp_ms, timestamp_type=0, key=key,
        value=value, checksum=None, serialized_key_size=len(key or b""), serialized_value_size=len(value or b""),
        headers=(),
    )  # fmt: skip


def _batch_of(records: list[Record]) -> Batch:
    batch: Batch = {}
    for record in records:
        batch.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
    return batch
