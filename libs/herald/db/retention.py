"""Housekeeping deletes for tables that would otherwise grow without bound.

- `tenant_recipients` rows older than the 24 h window no longer count towards any limit;
- `message_claims` older than `claim_days` (> the 24 h idempotency promise; a repeat after that
  is delivered again, as documented);
- dead `callback_outbox` rows older than `dead_callback_days` (kept for inspection until then).
Messages and their events are kept: billing and tenants' status reads depend on them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import msgspec

from herald.domain.limits import WINDOW_SECONDS


class Purged(msgspec.Struct, frozen=True):
    recipients: int
    claims: int
    dead_callbacks: int


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def purge(pool: asyncpg.Pool, now: datetime, claim_days: int = 7, dead_callback_days: int = 30) -> Purged:
    recipients = await pool.execute(
        "DELETE FROM tenant_recipients WHERE last_sent_at <= $1", now - timedelta(seconds=WINDOW_SECONDS)
    )
    claims = await pool.execute("DELETE FROM message_claims WHERE claimed_at < $1", now - timedelta(days=claim_days))
    dead = await pool.execute(
        "DELETE FROM callback_outbox WHERE dead_at IS NOT NULL AND dead_at < $1",
        now - timedelta(days=dead_callback_days),
    )
    return Purged(recipients=_count(recipients), claims=_count(claims), dead_callbacks=_count(dead))
