"""Worker claims for idempotent ids against real Postgres."""

from __future__ import annotations

import uuid

import asyncpg

from herald.db.claims import Deferral, Source, claim, deferred_from, note_deferred


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


async def test_deferral_notes_are_read_back_from_where_a_new_owner_starts(pool: asyncpg.Pool) -> None:
    topic = f"t-{uuid.uuid4()}"
    early, late, other = (
        Deferral(Source(uuid.uuid4(), topic, p, o), 1_800_000_000_000 + o) for p, o in ((0, 5), (0, 9), (1, 2))
    )
    await note_deferred(pool, [early, late, other])
    # A note written before migration 0014 has no copy time (its copy was acknowledged first).
    old = Source(uuid.uuid4(), topic, 1, 7)
    await pool.execute(
        'INSERT INTO deferred_records (topic, partition, "offset", message_id) VALUES ($1, $2, $3, $4)',
        old.topic, old.partition, old.offset, old.message_id,
    )  # fmt: skip
    found = await deferred_from(pool, [(topic, 0, 6), (topic, 1, 0)])
    assert sorted(found, key=lambda d: (d.source.partition, d.source.offset)) == [
        late, other, Deferral(old, None)
    ]  # fmt: skip
    # Noting the same record again (a retried write) keeps the first note.
    await note_deferred(pool, [Deferral(late.source, 1)])
    assert await deferred_from(pool, [(topic, 0, 9)]) == [late]
    assert await deferred_from(pool, []) == []
