"""A provider's connection limit as leased slots in PostgreSQL (herald.db.connection_slots)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from herald.db import connection_slots as slots


async def test_slots_are_leased_once_each_up_to_the_limit_and_a_lapsed_lease_goes_to_another_worker(
    pool: asyncpg.Pool,
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    await slots.ensure(pool, "relay", 2)
    # Claimed at once by many tasks of two workers: every slot goes to exactly one claim.
    claims = await asyncio.gather(*(slots.claim(pool, "relay", 2, holder, 10.0) for holder in (a, b) * 5))
    assert sorted(c for c in claims if c is not None) == [0, 1]

    await slots.ensure(pool, "smtp", 2)
    assert [await slots.claim(pool, "smtp", 2, a, 10.0), await slots.claim(pool, "smtp", 2, b, 10.0)] == [0, 1]
    assert await slots.claim(pool, "smtp", 2, b, 10.0) is None
    await slots.release(pool, "smtp", a, 1)  # b's: changes nothing
    assert await slots.claim(pool, "smtp", 2, b, 10.0) is None
    await slots.release(pool, "smtp", a, 0)
    assert await slots.renew(pool, "smtp", a, {0}, 10.0) == set()  # given back: no longer a's
    assert await slots.claim(pool, "smtp", 2, b, 10.0) == 0

    # b stalls past its leases: a takes them, and b's renewal says it has lost them.
    held_by_b = {0, 1}
    await pool.execute("UPDATE connection_slots SET leased_until = now() - interval '1 second'"
                       " WHERE provider = 'smtp' AND slot = 1")  # fmt: skip
    assert await slots.claim(pool, "smtp", 2, a, 10.0) == 1
    assert await slots.claim(pool, "smtp", 2, a, 10.0) is None
    assert await slots.renew(pool, "smtp", b, held_by_b, 10.0) == {0}

    # A lower limit leaves the slots above it unused.
    await slots.release(pool, "smtp", b, 0)
    assert await slots.claim(pool, "smtp", 1, b, 10.0) == 0
    assert await slots.claim(pool, "smtp", 1, b, 10.0) is None


async def test_the_workers_wanting_connections_are_counted_until_they_leave_or_stop_being_seen(
    pool: asyncpg.Pool,
) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    assert await slots.members(pool, "smtp", a, 3.0) == 1
    assert await slots.members(pool, "smtp", b, 3.0) == 2
    assert await slots.members(pool, "ses", b, 3.0) == 1  # per provider
    await slots.leave(pool, "smtp", a)
    assert await slots.members(pool, "smtp", b, 3.0) == 1
    await pool.execute("UPDATE connection_members SET seen_until = now() - interval '1 second' WHERE member = $1", b)
    assert await slots.members(pool, "smtp", a, 3.0) == 1  # b stopped renewing: not counted
