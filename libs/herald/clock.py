"""Wall-clock time as integer Unix milliseconds, the unit of every time on the topics."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_datetime(ms: int) -> datetime:
    """Unix milliseconds as an aware UTC datetime (what PostgreSQL's timestamptz takes)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)
