"""The shared token store behind per-tenant pacing (see herald_worker/pacing.py)."""

from __future__ import annotations

import uuid

import asyncpg


async def take_tokens(pool: asyncpg.Pool, tenant_id: uuid.UUID, rate: float, burst: float, want: int) -> int:
    """Up to `want` tokens from the bucket (refilled at `rate`/s, capped at `burst`): a tenant's, or
    a provider's capacity under an id of its own (`herald_worker.provider_gate`)."""
    granted: int = await pool.fetchval("SELECT herald_take_tokens($1, $2, $3, $4)", tenant_id, rate, burst, want)
    return granted


async def granted_totals(pool: asyncpg.Pool) -> dict[uuid.UUID, tuple[str, float, int]]:
    """Per tenant with a bucket: (tier, current rate, tokens granted since the bucket was made).
    Buckets of no tenant (a provider's capacity, a deleted tenant's) are not a tier's."""
    rows = await pool.fetch(
        "SELECT b.tenant_id, t.tier, b.rate, b.granted_total FROM rate_buckets b JOIN tenants t ON t.id = b.tenant_id"
    )
    return {r["tenant_id"]: (r["tier"], r["rate"], r["granted_total"]) for r in rows}
