"""`LatestChange`: the costly check is skipped only for messages accepted well after the last change."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from herald_worker.recency import SKEW_SECONDS, LatestChange

CHANGED = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
AT_MS = int(CHANGED.timestamp() * 1000)


async def test_a_message_accepted_before_or_near_the_change_may_be_affected_one_well_after_may_not() -> None:
    loads: list[str] = []

    async def latest(keys: list[str]) -> list[datetime | None]:
        loads.extend(keys)
        return [CHANGED if key == "changed" else None for key in keys]

    changes: LatestChange[str] = LatestChange(latest, ttl=60)
    assert await changes.may_affect("changed", AT_MS - 3_600_000)
    assert await changes.may_affect("changed", AT_MS + int(SKEW_SECONDS * 1000))
    assert not await changes.may_affect("changed", AT_MS + int(SKEW_SECONDS * 1000) + 1)
    assert not await changes.may_affect("never", AT_MS)
    assert loads == ["changed", "never"], "one load per key while it is fresh"


async def test_the_keys_asked_at_one_moment_are_looked_up_together() -> None:
    batches: list[list[str]] = []

    async def latest(keys: list[str]) -> list[datetime | None]:
        batches.append(keys)
        await asyncio.sleep(0.01)
        return [CHANGED if key.startswith("changed") else None for key in keys]

    changes: LatestChange[str] = LatestChange(latest, ttl=60)
    keys = [f"changed{i}" if i % 2 else f"never{i}" for i in range(100)]
    found = await asyncio.gather(*(changes.may_affect(key, AT_MS) for key in keys))
    assert found == [bool(i % 2) for i in range(100)]  # each its own key's answer
    assert len(batches) <= 2, batches  # one, or two if the first went alone
    assert sorted(key for batch in batches for key in batch) == sorted(keys)
