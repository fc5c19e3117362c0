"""Worker claims for idempotent ids against real Postgres."""

from __future__ import annotations

import uuid

import asyncpg

from herald.db.claims import Source, claim


async def test_first_record_claims_and_its_redelivery_is_not_a_repeat(pool: asyncpg.Pool) -> None:
    mid = uuid.uuid4()
    original = Source(mid, "herald.messages.utility", 3, 100)
    assert await claim(pool, [original]) == set()
    # The worker crashed before committing; the same record comes back: deliver it again.
    assert await claim(pool, [original]) == set()


async def test_other_records_with_the_same_id_are_repeats(pool: asyncpg.Pool) -> None:
    mid = uuid.uuid4()
    first, again = Source(mid, "t", 0, 7), Source(mid, "t", 0, 9)
    # Both in one batch: the earlier one (listed first) wins.
    assert await claim(pool, [first, again]) == {again}
    assert await claim(pool, [Source(mid, "t", 1, 1)]) == {Source(mid, "t", 1, 1)}
    assert await claim(pool, []) == set()
