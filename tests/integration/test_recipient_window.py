"""The daily unique-recipient limit's reservations (`herald.db.recipients.reserve`) against a
model: a dict of each recipient's last send, counted whole at every step.

The stored window count is brought forward from the previous reservation instead of counted
whole, so these walk it through what could make it drift: recipients ageing out between two
reservations, hosts whose clocks disagree (a reservation earlier than the last), a tenant idle
long enough for its count to be recounted, retention deleting what left the window, and keys
rotated (a recipient known under an earlier hash).
"""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from herald.db import recipients
from herald.db.retention import purge
from herald.domain.limits import WINDOW_SECONDS

WINDOW = timedelta(seconds=WINDOW_SECONDS)


class Model:
    """What the limit means: a recipient counts if its last send is inside the window."""

    def __init__(self) -> None:
        self.last: dict[bytes, datetime] = {}

    def reserve(self, candidates: list[list[bytes]], limit: int, now: datetime) -> tuple[list[bool], int]:
        """Which messages are admitted, and when a refused one could be (0 if none is refused)."""
        since = now - WINDOW
        used = sum(1 for t in self.last.values() if t > since)
        admitted = []
        for hashes in candidates:
            known = next((h for h in hashes if h in self.last and self.last[h] > since), None)
            if known is None and used < limit:
                known, used = hashes[0], used + 1
            if known is not None:
                self.last[known] = now
            admitted.append(known is not None)
        if all(admitted):
            return admitted, 0
        oldest = min(t for t in self.last.values() if t > since)
        return admitted, max(1, math.ceil((oldest - since).total_seconds()))

    def purge(self, before: datetime) -> None:
        self.last = {h: t for h, t in self.last.items() if t > before}


async def _reserve(
    pool: asyncpg.Pool, tenant: uuid.UUID, candidates: list[list[bytes]], limit: int, now: datetime
) -> tuple[list[bool], int]:
    reservation = await recipients.reserve(pool, tenant, candidates, limit, now)
    return reservation.admitted, reservation.retry_after_seconds


async def test_a_walk_of_reservations_admits_exactly_what_a_whole_count_would(pool: asyncpg.Pool) -> None:
    rng = random.Random(27)
    tenant, model, limit = uuid.uuid4(), Model(), 200
    people = [f"r{i}".encode() for i in range(400)]
    clock = datetime(2026, 12, 1, tzinfo=UTC)
    refused = 0
    for step in range(450):
        # Steps of up to a minute; every 150 steps, a jump to just under a day after the phase
        # began, so the window's start then sweeps through that phase's recipients a few at a
        # time (brought forward by seconds, and back when a host's clock lags).
        move = rng.random()
        if step % 150 == 0 and step:
            clock += WINDOW - timedelta(minutes=rng.randint(60, 100))
        else:
            clock += timedelta(seconds=rng.randint(0, 60))
        now = clock
        if move < 0.1:
            # A host whose clock is behind the last writer's: the stored count is moved back.
            now = clock - timedelta(seconds=rng.randint(1, 120))
        elif move < 0.2:
            # Retention between two reservations, deleting what left the window before it.
            await purge(pool, clock, content_days=30)
            model.purge(recipients.purgeable_before(clock))
        chosen = rng.sample(people, rng.randint(1, 8))
        if rng.random() < 0.2:
            chosen.append(chosen[0])  # two messages to one recipient: counted once
        # A quarter of them also under an earlier key's hash (second: the current key's first).
        candidates = [[p, b"old-" + p] if rng.random() < 0.25 else [p] for p in chosen]
        want = model.reserve(candidates, limit, now)
        got = await _reserve(pool, tenant, candidates, limit, now)
        assert got == want, f"step {step}: {got} != {want}"
        refused += want[0].count(False)
        stored = await pool.fetchrow("SELECT since, used FROM tenant_recipient_windows WHERE tenant_id = $1", tenant)
        if stored is not None:
            whole = await pool.fetchval(
                "SELECT count(*) FROM tenant_recipients WHERE tenant_id = $1 AND last_sent_at > $2",
                tenant, stored["since"],
            )  # fmt: skip
            assert stored["used"] == whole, f"step {step}: stored {stored['used']}, rows {whole}"
    assert refused > 0, "the walk never reached the limit: it would not test admission at the limit"


async def test_a_count_left_behind_by_an_idle_tenant_is_recounted_after_retention(pool: asyncpg.Pool) -> None:
    tenant, start = uuid.uuid4(), datetime(2026, 12, 1, tzinfo=UTC)
    assert await _reserve(pool, tenant, [[b"a"], [b"b"]], 2, start) == ([True, True], 0)
    # Both leave the window and are purged; the stored count (2, from `start`) is now stale.
    later = start + WINDOW + recipients.KEPT_PAST_WINDOW + timedelta(minutes=1)
    assert (await purge(pool, later, content_days=30)).recipients == 2
    day = int(WINDOW.total_seconds())
    assert await _reserve(pool, tenant, [[b"c"], [b"d"], [b"e"]], 2, later) == ([True, True, False], day)
    # The recipient admitted first is known from then on, within the limit.
    again = later + timedelta(seconds=1)
    assert await _reserve(pool, tenant, [[b"c"], [b"e"]], 2, again) == ([True, False], day - 1)
