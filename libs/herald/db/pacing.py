"""The shared token store behind per-tenant pacing (see herald_worker/pacing.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import asyncpg


class Fetches(Protocol):
    """What `TokenStore` needs of a pool."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


class TokenStore:
    """Tokens from shared buckets (a tenant's, or a provider's capacity under an id of its own:
    `herald_worker.provider_gate`): `take(bucket, rate, burst, want)` takes up to `want` from the
    bucket, refilled at `rate`/s and capped at `burst` (`herald_take_tokens`).

    The calls waiting at one moment go in one statement (`herald_take_tokens_many`): while a
    statement is out, the calls that come meanwhile wait for it and go together in the next
    (group commit). Each caller gets what a statement of its own would have granted; a statement
    that fails raises its error in each of them."""

    def __init__(self, pool: Fetches) -> None:
        self._pool = pool
        self._waiting: list[tuple[uuid.UUID, float, float, int, asyncio.Future[int]]] = []
        self._taking: asyncio.Task[None] | None = None

    async def take(self, bucket: uuid.UUID, rate: float, burst: float, want: int) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((bucket, rate, burst, want, future))
        if self._taking is None:
            self._taking = asyncio.create_task(self._take_waiting())
        return await future

    async def _take_waiting(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._take(batch)
        finally:
            self._taking = None
            for *_, future in self._waiting:  # only if this task was cancelled: none is left waiting
                future.cancel()

    async def _take(self, batch: Sequence[tuple[uuid.UUID, float, float, int, asyncio.Future[int]]]) -> None:
        try:
            rows = await self._pool.fetch(
                "SELECT idx, granted FROM herald_take_tokens_many($1::uuid[], $2::float8[], $3::float8[], $4::int[])",
                [b for b, *_ in batch], [r for _, r, *_ in batch], [u for _, _, u, *_ in batch],
                [w for _, _, _, w, _ in batch],
            )  # fmt: skip
        except asyncio.CancelledError:
            for *_, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the callers' to handle (a pacer waits and asks again)
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for row in rows:
            future = batch[row["idx"] - 1][4]
            if not future.done():  # its caller gave up (cancelled): the tokens are spent
                future.set_result(row["granted"])


async def granted_totals(pool: asyncpg.Pool) -> dict[uuid.UUID, tuple[str, float, int]]:
    """Per tenant with a bucket: (tier, current rate, tokens granted since the bucket was made).
    Buckets of no tenant (a provider's capacity, a deleted tenant's) are not a tier's."""
    rows = await pool.fetch(
        "SELECT b.tenant_id, t.tier, b.rate, b.granted_total FROM rate_buckets b JOIN tenants t ON t.id = b.tenant_id"
    )
    return {r["tenant_id"]: (r["tier"], r["rate"], r["granted_total"]) for r in rows}
