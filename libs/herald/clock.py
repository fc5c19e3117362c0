"""Wall-clock time as integer Unix milliseconds, the unit of every time on the topics."""

from __future__ import annotations

import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000
