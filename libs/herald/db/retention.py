"""Housekeeping deletes for tables that would otherwise grow without bound.

- `tenant_recipients` rows older than the 24 h window no longer count towards any limit;
- `message_claims` older than `claim_days` (> the 24 h idempotency promise; a repeat after that
  is delivered again, as documented);
- dead `callback_outbox` rows older than `dead_callback_days` (kept for inspection until then);
- `retries_done` rows older than `claim_days` (longer than `herald.retry`'s retention, 7 days:
  no record they guard can be read again).
Messages, their events and the billing ledger are kept.
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
    retries: int = 0


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
    retries = await pool.execute(
        "DELETE FROM retries_done WHERE done_at < $1", now - timedelta(days=max(claim_days, 8))
    )
    return Purged(
        recipients=_count(recipients), claims=_count(claims), dead_callbacks=_count(dead), retries=_count(retries)
    )
