"""The shared token store behind per-tenant pacing (see herald_worker/pacing.py)."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

import asyncpg

from herald.batching import Batched


class Fetches(Protocol):
    """What `TokenStore` needs of a pool."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


class TokenStore:
    """Tokens from shared buckets (a tenant's, or a provider's capacity under an id of its own:
    `herald_worker.provider_gate`): `take(bucket, rate, burst, want)` takes up to `want` from the
    bucket, refilled at `rate`/s and capped at `burst` (`herald_take_tokens`).

    The takes waiting at one moment go in one statement (`herald_take_tokens_many`, through
    `herald.batching.Batched`); each caller gets what a statement of its own would have granted,
    and a statement that fails raises its error in each of them."""

    def __init__(self, pool: Fetches) -> None:
        self._pool = pool
        self._batched: Batched[tuple[uuid.UUID, float, float, int], int] = Batched(self._take_many)

    async def take(self, bucket: uuid.UUID, rate: float, burst: float, want: int) -> int:
        return await self._batched((bucket, rate, burst, want))

    async def _take_many(self, takes: list[tuple[uuid.UUID, float, float, int]]) -> list[int]:
        buckets, rates, bursts, wants = zip(*takes, strict=True)
        rows = await self._pool.fetch(
            "SELECT idx, granted FROM herald_take_tokens_many($1::uuid[], $2::float8[], $3::float8[], $4::int[])",
            list(buckets), list(rates), list(bursts), list(wants),
        )  # fmt: skip
        granted = [0] * len(takes)
        for row in rows:  # in bucket order; `idx` is the take's position
            granted[row["idx"] - 1] = row["granted"]
        return granted


async def granted_totals(pool: asyncpg.Pool) -> dict[uuid.UUID, tuple[str, float, int]]:
    """Per tenant with a bucket: (tier, current rate, tokens granted since the bucket was made).
    Buckets of no tenant (a provider's capacity, a deleted tenant's) are not a tier's."""
    rows = await pool.fetch(
        "SELECT b.tenant_id, t.tier, b.rate, b.granted_total FROM rate_buckets b JOIN tenants t ON t.id = b.tenant_id"
    )
    return {r["tenant_id"]: (r["tier"], r["rate"], r["granted_total"]) for r in rows}
