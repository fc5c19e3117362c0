"""Rolling 24 h unique-recipient reservations (free/standard tiers and unverified tenants).

`reserve` runs inside the caller's transaction and takes a per-tenant advisory lock, so
concurrent API processes admit new recipients one tenant at a time and never overshoot the
limit. The caller commits before producing and keeps the reservation if the produce fails (a
retry of the same recipient is then admitted without counting again). Unlimited tenants never
come here (no database round trip).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import msgspec

from herald.domain.limits import WINDOW_SECONDS


class Reservation(msgspec.Struct, frozen=True):
    admitted: list[bool]
    """Per message, in order."""
    retry_after_seconds: int
    """When a rejected recipient could next be admitted (the oldest in-window entry ages out)."""


async def reserve(
    conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
    tenant_id: uuid.UUID,
    candidates: Sequence[Sequence[bytes]],
    limit: int,
    now: datetime,
) -> Reservation:
    """`candidates[i]` are message i's recipient hashes under every key, the current key's first
    (`RecipientHasher.candidates`): a recipient reserved under an earlier key is the same
    recipient, refreshed under that hash; a new one is written under the current key."""
    since = now - timedelta(seconds=WINDOW_SECONDS)
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", str(tenant_id))
    stored = {
        r["recipient_hash"]
        for r in await conn.fetch(
            "SELECT recipient_hash FROM tenant_recipients"
            " WHERE tenant_id = $1 AND recipient_hash = ANY($2::bytea[]) AND last_sent_at > $3",
            tenant_id,
            list({h for hashes in candidates for h in hashes}),
            since,
        )
    }
    used: int = await conn.fetchval(
        "SELECT count(*) FROM tenant_recipients WHERE tenant_id = $1 AND last_sent_at > $2", tenant_id, since
    )
    admitted: list[bool] = []
    chosen: set[bytes] = set()
    for hashes in candidates:
        known = next((h for h in hashes if h in stored), None)
        if known is None and used < limit:
            known = hashes[0]
            stored.add(known)
            used += 1
        if known is not None:
            chosen.add(known)
        admitted.append(known is not None)
    if chosen:
        await conn.execute(
            "INSERT INTO tenant_recipients (tenant_id, recipient_hash, last_sent_at)"
            " SELECT $1, h, $3 FROM unnest($2::bytea[]) h"
            " ON CONFLICT (tenant_id, recipient_hash) DO UPDATE SET last_sent_at = excluded.last_sent_at",
            tenant_id,
            list(chosen),
            now,
        )
    retry_after = 0
    if not all(admitted):
        oldest = await conn.fetchval(
            "SELECT min(last_sent_at) FROM tenant_recipients WHERE tenant_id = $1 AND last_sent_at > $2",
            tenant_id,
            since,
        )
        retry_after = max(1, math.ceil(((oldest or now) - since).total_seconds()))
    return Reservation(admitted=admitted, retry_after_seconds=retry_after)


async def used(pool: asyncpg.Pool, tenant_id: uuid.UUID, now: datetime) -> int:
    since = now - timedelta(seconds=WINDOW_SECONDS)
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM tenant_recipients WHERE tenant_id = $1 AND last_sent_at > $2", tenant_id, since
        )
    )
