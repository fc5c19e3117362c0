"""The shared token store behind per-tenant pacing (see herald_worker/pacing.py)."""

from __future__ import annotations

import uuid

import asyncpg


async def take_tokens(pool: asyncpg.Pool, tenant_id: uuid.UUID, rate: float, burst: float, want: int) -> int:
    """Up to `want` tokens from the tenant's bucket (refilled at `rate`/s, capped at `burst`)."""
    granted: int = await pool.fetchval("SELECT herald_take_tokens($1, $2, $3, $4)", tenant_id, rate, burst, want)
    return granted


async def granted_totals(pool: asyncpg.Pool) -> dict[uuid.UUID, tuple[str, float, int]]:
    """Per tenant with a bucket: (tier, current rate, tokens granted since the bucket was made)."""
    rows = await pool.fetch(
        "SELECT b.tenant_id, coalesce(t.tier, 'free') AS tier, b.rate, b.granted_total"
        " FROM rate_buckets b LEFT JOIN tenants t ON t.id = b.tenant_id"
    )
    return {r["tenant_id"]: (r["tier"], r["rate"], r["granted_total"]) for r in rows}
