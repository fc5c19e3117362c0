"""The shared token store behind per-tenant pacing (see herald_worker/pacing.py)."""

from __future__ import annotations

import uuid

import asyncpg


async def take_tokens(pool: asyncpg.Pool, tenant_id: uuid.UUID, rate: float, burst: float, want: int) -> int:
    """Up to `want` tokens from the tenant's bucket (refilled at `rate`/s, capped at `burst`)."""
    granted: int = await pool.fetchval("SELECT herald_take_tokens($1, $2, $3, $4)", tenant_id, rate, burst, want)
    return granted
