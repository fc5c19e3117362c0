"""Which offsets may be committed when records finish out of order.

The pipelined worker delivers many records of a partition at once, and they finish in any order
(a paced tenant's message waits while a later one goes out). Kafka keeps one committed offset
per partition, so only the prefix of finished records may be committed: a record still in hand
holds back every later offset of its partition. After a crash the records after that point are
read again; those already sent are the duplicates, bounded by what was in hand.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

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
