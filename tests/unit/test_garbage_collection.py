"""`herald.runtime.collect_garbage_rarely`: what a serving process sets before it serves."""

from __future__ import annotations

import gc
import weakref

from herald.runtime import GC_YOUNG_THRESHOLD, collect_garbage_rarely


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_what_exists_is_frozen_the_young_threshold_raised_and_cycles_still_collected() -> None:
    threshold = gc.get_threshold()
    try:
        collect_garbage_rarely()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *threshold[1:])
        assert gc.get_freeze_count() > 10_000  # this process's imports, out of every later walk
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None  # a cycle made after the freeze is still garbage
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
