"""Which of a worker's partitions to pause: priority between classes and bounded buffers.

A paused partition is not fetched, so what it holds stays on the broker rather than in memory:

* **Priority**: every partition of a class is paused while a higher class has records on the
  broker that this worker has not fetched yet, so a marketing backlog never stands between the
  broker and an OTP (authentication before utility before marketing).
* **Full class, with hysteresis**: a class whose waiting messages reach `buffer_per_class` is
  paused, and resumed only once half of that is spent, not at the first free place. aiokafka
  drops a partition's prefetched records when it is paused, so a class that flapped between
  paused and resumed would read the same records again and again (the worker once re-read ~25x
  what it delivered on the bench).
* **Retry timer heap**: `herald.retry` pauses while `retry_hold_max` records wait for their time.
* **In hand overall**: every partition pauses while the records read but not yet finished reach
  what the buffers and the provider slots can hold; outcomes wait for broker acks outside the
  slots, and this keeps the duplicates a SIGKILL can cause bounded.

The policy only decides; the pipeline pauses and resumes the difference, so a partition whose
state does not change keeps its prefetch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Generic, TypeVar

from herald.domain.models import Category
from herald_worker.scheduler import PRIORITY

P = TypeVar("P", bound=Hashable)


class PausePolicy(Generic[P]):
    def __init__(self, buffer_per_class: int, retry_hold_max: int, max_in_flight: int) -> None:
        self._buffer = buffer_per_class
        self._retry_hold_max = retry_hold_max
        self._in_hand_max = len(PRIORITY) * buffer_per_class + max_in_flight
        self._full: set[Category] = set()

    def paused(
        self,
        by_class: Mapping[Category, Sequence[P]],
        retry: Sequence[P],
        *,
        buffered: Mapping[Category, int],
        unfetched: Callable[[P], int],
        held: int,
        in_hand: int,
    ) -> set[P]:
        """The partitions that should be paused now.

        `by_class`/`retry`: the assigned partitions; `buffered`: messages waiting per class;
        `unfetched(p)`: records on the broker past what was fetched from `p`; `held`: retry
        records waiting for their time; `in_hand`: records read and not yet finished.
        """
        pause: set[P] = set()
        higher_backlog = False
        for category in PRIORITY:
            partitions = by_class.get(category, ())
            if buffered[category] >= self._buffer:
                self._full.add(category)
            elif buffered[category] <= self._buffer // 2:
                self._full.discard(category)
            if higher_backlog or category in self._full:
                pause.update(partitions)
            higher_backlog = higher_backlog or any(unfetched(p) > 0 for p in partitions)
        if held >= self._retry_hold_max:
            pause.update(retry)
        if in_hand >= self._in_hand_max:
            for partitions in by_class.values():
                pause.update(partitions)
            pause.update(retry)
        return pause
