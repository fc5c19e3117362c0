"""Which offsets may be committed when records finish out of order, and committing them.

The pipelined worker delivers many records of a partition at once, and they finish in any order
(a paced tenant's message waits while a later one goes out); a sink handles a batch at once, in
order (`handled`). Both commit through a `Committer` under a `CommitPolicy`. Kafka keeps one committed offset
per partition, so only the prefix of finished records may be committed: a record still in hand
holds back every later offset of its partition. After a crash the records after that point are
read again; those already sent are the duplicates, bounded by what was in hand.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Hashable, Iterable
from typing import Generic, Protocol, TypeVar

import msgspec
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

P = TypeVar("P", bound=Hashable)


class OffsetTracker(Generic[P]):
    """Per partition: offsets read and not finished; `committable` gives next offsets to commit."""

    def __init__(self) -> None:
        self._pending: dict[P, list[int]] = {}
        self._finished: dict[P, set[int]] = {}
        self._next: dict[P, int] = {}
        """Per partition: the offset after the last record read (what to commit when nothing is in hand)."""
        self._committed: dict[P, int] = {}

    def read(self, partition: P, offset: int) -> None:
        heapq.heappush(self._pending.setdefault(partition, []), offset)
        self._next[partition] = max(self._next.get(partition, 0), offset + 1)

    def handled(self, partition: P, next_offset: int) -> None:
        """Every record before `next_offset` is done (a consumer that finishes in order)."""
        self._pending.setdefault(partition, [])
        self._next[partition] = max(self._next.get(partition, 0), next_offset)

    def finish(self, partition: P, offset: int) -> None:
        if partition in self._pending:
            self._finished.setdefault(partition, set()).add(offset)

    def in_hand(self, partition: P | None = None) -> int:
        if partition is not None:
            return len(self._pending.get(partition, ())) - len(self._finished.get(partition, ()))
        return sum(self.in_hand(p) for p in self._pending)

    def committable(self) -> dict[P, int]:
        """Partitions whose commit point moved since the last call, with the offset to commit."""
        moved: dict[P, int] = {}
        for partition, heap in self._pending.items():
            finished = self._finished.get(partition, set())
            while heap and heap[0] in finished:
                finished.discard(heapq.heappop(heap))
            point = heap[0] if heap else self._next[partition]
            if self._committed.get(partition) != point:
                moved[partition] = point
        return moved

    def committed(self, offsets: dict[P, int]) -> None:
        self._committed.update(offsets)

    def forget(self, partitions: Iterable[P]) -> None:
        """The partitions were revoked: their state belongs to the next owner."""
        for partition in partitions:
            for table in (self._pending, self._finished, self._next, self._committed):
                table.pop(partition, None)


class CommitPolicy(msgspec.Struct, frozen=True):
    interval_seconds: float = 0.0
    """At most one commit per interval: each is a broker round trip. A crash replays what was
    finished since the last commit, which every consumer's idempotent effects absorb. 0: commit
    whenever asked."""


class _Commits(Protocol[P]):
    async def commit(self, offsets: dict[P, int]) -> None: ...


class Committer(Generic[P]):
    """Commits what a tracker says may be committed. A commit the broker refuses (the group
    rebalanced meanwhile) is logged, not raised: the partition's next owner reads those records
    again from the last commit, and every effect is idempotent."""

    def __init__(self, consumer: _Commits[P], tracker: OffsetTracker[P], policy: CommitPolicy) -> None:
        self._consumer = consumer
        self._tracker = tracker
        self._policy = policy
        self._last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._last >= self._policy.interval_seconds

    async def commit(self, partitions: Iterable[P] | None = None) -> None:
        """Commit every partition whose commit point moved (only `partitions`, if given)."""
        offsets = self._tracker.committable()
        if partitions is not None:
            wanted = set(partitions)
            offsets = {p: o for p, o in offsets.items() if p in wanted}
        if partitions is None:
            self._last = time.monotonic()
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:  # CommitFailedError is one
            log.warning("commit failed; records will be re-read by the partition's owner", extra={"error": repr(exc)})
            return
        self._tracker.committed(offsets)
