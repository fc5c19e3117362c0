"""The shared token store takes many buckets' refills in one statement, each exactly as its own."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest

from herald.db.pacing import TokenStore

# A rate this low adds no whole token within a test: every grant below is the bucket's burst
# minus what was taken before, whatever the timing.
RATE = 1e-6


class Counted:
    """The real pool, with its statements counted."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.statements = 0

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        self.statements += 1
        return await self.pool.fetch(query, *args)


async def test_concurrent_refills_go_in_few_statements_and_each_gets_its_own_grant(pool: asyncpg.Pool) -> None:
    counted = Counted(pool)
    store = TokenStore(counted)
    buckets = [uuid.uuid4() for _ in range(200)]
    # Each bucket starts at its burst (10): a first take of 1-9 gets it all (each caller its own
    # figure, whatever order the statement took them in), a take of 10 then gets what is left,
    # and a third nothing; the same bucket twice in one statement is two takes, in order.
    wants = [1 + i % 9 for i in range(200)]
    first = await asyncio.gather(*(store.take(b, RATE, 10.0, w) for b, w in zip(buckets, wants, strict=True)))
    assert first == wants
    assert counted.statements <= 2, counted.statements  # one, or two if the first went alone
    second = await asyncio.gather(*(store.take(b, RATE, 10.0, 10) for b in buckets[:50] for _ in (1, 2)))
    assert second == [x for w in wants[:50] for x in (10 - w, 0)]
    rows = await pool.fetch("SELECT tenant_id, granted_total FROM rate_buckets WHERE tenant_id = ANY($1)", buckets)
    totals = {r["tenant_id"]: r["granted_total"] for r in rows}
    assert [totals[b] for b in buckets] == [10] * 50 + wants[50:]


async def test_two_stores_over_the_same_buckets_in_opposite_orders_never_deadlock(pool: asyncpg.Pool) -> None:
    """Two workers refilling the same tenants: each statement locks bucket rows in bucket order."""
    buckets = [uuid.uuid4() for _ in range(100)]
    one, other = TokenStore(pool), TokenStore(pool)
    for _ in range(20):
        grants = await asyncio.gather(
            *(one.take(b, 1000.0, 1000.0, 1) for b in buckets),
            *(other.take(b, 1000.0, 1000.0, 1) for b in reversed(buckets)),
        )
        assert grants == [1] * 200


async def test_a_failing_statement_fails_every_caller_in_it_and_the_next_call_goes_again(pool: asyncpg.Pool) -> None:
    store = TokenStore(pool)
    # A want past a PostgreSQL integer fails the whole statement (asyncpg refuses the argument):
    # its neighbour in the statement gets the error too, and takes nothing.
    neighbour = uuid.uuid4()
    results = await asyncio.gather(
        store.take(uuid.uuid4(), RATE, 5.0, 2**31), store.take(neighbour, RATE, 5.0, 1), return_exceptions=True
    )
    assert all(isinstance(r, asyncpg.DataError) for r in results), results
    assert await pool.fetchval("SELECT count(*) FROM rate_buckets WHERE tenant_id = $1", neighbour) == 0
    assert await store.take(uuid.uuid4(), RATE, 5.0, 3) == 3


@pytest.mark.parametrize("cancelled", [0, 1])
async def test_a_caller_that_gives_up_leaves_the_others_their_grants(pool: asyncpg.Pool, cancelled: int) -> None:
    store = TokenStore(pool)
    buckets = [uuid.uuid4() for _ in range(3)]
    calls = [asyncio.create_task(store.take(b, RATE, 10.0, 2)) for b in buckets]
    await asyncio.sleep(0)
    calls[cancelled].cancel()
    done = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(done[cancelled], asyncio.CancelledError)
    assert [d for i, d in enumerate(done) if i != cancelled] == [2, 2]
