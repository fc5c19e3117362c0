"""`LatestChange`: the costly check is skipped only for messages accepted well after the last change."""

from __future__ import annotations

from datetime import UTC, datetime

from herald_worker.recency import SKEW_SECONDS, LatestChange

CHANGED = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
AT_MS = int(CHANGED.timestamp() * 1000)


async def test_a_message_accepted_before_or_near_the_change_may_be_affected_one_well_after_may_not() -> None:
    loads: list[str] = []

    async def latest(key: str) -> datetime | None:
        loads.append(key)
        return CHANGED if key == "changed" else None

    changes: LatestChange[str] = LatestChange(latest, ttl=60)
    assert await changes.may_affect("changed", AT_MS - 3_600_000)
    assert await changes.may_affect("changed", AT_MS + int(SKEW_SECONDS * 1000))
    assert not await changes.may_affect("changed", AT_MS + int(SKEW_SECONDS * 1000) + 1)
    assert not await changes.may_affect("never", AT_MS)
    assert loads == ["changed", "never"], "one load per key while it is fresh"
