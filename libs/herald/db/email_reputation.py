"""Each tenant's email reputation as mailbox providers see it: complaints against delivered mail."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec


class Complaints(msgspec.Struct, frozen=True):
    tenant_id: uuid.UUID
    complaints: int
    """Recipients who complained (each counted once: a complaint suppresses its recipient)."""
    delivered: int
    """Its email delivered in the same window."""


async def complaints_since(pool: asyncpg.Pool, since: datetime) -> list[Complaints]:
    """The tenants with a complaint since `since`, with their delivered email in that window
    (only complaining tenants are counted, so the work follows complaints, not traffic)."""
    rows = await pool.fetch(
        """
        WITH c AS (SELECT tenant_id, count(*) AS n FROM suppressions
                   WHERE channel = 'email' AND reason = 'complained' AND created_at >= $1 GROUP BY tenant_id)
        SELECT c.tenant_id, c.n AS complaints,
               (SELECT count(*) FROM messages m WHERE m.tenant_id = c.tenant_id AND m.created_at >= $1
                  AND m.channel = 'email' AND m.status IN ('delivered', 'read')) AS delivered
        FROM c""",
        since,
    )
    return [Complaints(r["tenant_id"], r["complaints"], r["delivered"]) for r in rows]
