"""Messages that may not go before a time (`not_before_ms` on herald.retry), in a heap."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection, Hashable

from herald_worker.scheduler import Item


class RetryTimer:
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Item]] = []
        self._sequence = itertools.count()  # equal times keep their arrival order

    def __len__(self) -> int:
        return len(self._heap)

    def hold(self, item: Item) -> None:
        heapq.heappush(self._heap, (item.message.not_before_ms, next(self._sequence), item))

    def due(self, now_ms: int) -> list[Item]:
        """Take out every message whose time has come, earliest first."""
        out = []
        while self._heap and self._heap[0][0] <= now_ms:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def next_ms(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def drop(self, partitions: Collection[Hashable]) -> None:
        """Forget the messages of revoked partitions (their next owner reads them again)."""
        self._heap = [h for h in self._heap if h[2].partition not in partitions]
        heapq.heapify(self._heap)
