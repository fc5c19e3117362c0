"""The tests' own wait: it returns what it waited for, and fails with what it last saw."""

from __future__ import annotations

import pytest

from tests.eventually import at_least, eventually


async def test_returns_the_first_value_that_is_done_from_a_sync_or_async_probe() -> None:
    counts = iter(range(100))

    def sync_probe() -> int:
        return next(counts)

    async def async_probe() -> int:
        return next(counts)

    assert await eventually(sync_probe, lambda n: n >= 3, "three", seconds=5, every=0) == 3
    assert await eventually(async_probe, lambda n: n >= 6, "six", seconds=5, every=0) == 6
    assert await at_least(sync_probe, 9, "nine", seconds=5) == 9


async def test_fails_after_the_deadline_naming_what_and_the_last_value_seen() -> None:
    calls: list[int] = []

    def probe() -> int:
        calls.append(len(calls))
        return calls[-1]

    with pytest.raises(AssertionError, match=r"the gauge: not reached in 0.2 s; last seen (\d+)") as failed:
        await eventually(probe, lambda n: n < 0, "the gauge", seconds=0.2, every=0.01)
    assert failed.value.args[0].endswith(f"last seen {calls[-1]}")
    assert len(calls) >= 2  # it polled, and probed once more at the deadline


async def test_a_probe_done_at_once_is_called_once() -> None:
    calls: list[None] = []

    def probe() -> int:
        calls.append(None)
        return len(calls)

    assert await eventually(probe, lambda n: n == 1, "first", seconds=0) == 1
    assert len(calls) == 1
