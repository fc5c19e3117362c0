"""Housekeeping deletes for tables that would otherwise grow without bound.

- `tenant_recipients` rows an hour past the 24 h window: they no longer count towards any limit
  (the hour: `herald.db.recipients.KEPT_PAST_WINDOW`);
- `message_claims` older than `claim_days` (> the 24 h idempotency promise; a repeat after that
  is delivered again, as documented);
- dead `callback_outbox` rows older than `dead_callback_days` (kept for inspection until then);
- `retries_done` and `deferred_records` rows older than `claim_days` (longer than the topics'
  retention, 7 days: no record they guard can be read again);
- provider receipts, the sends they are bound by, the first final reports and the duplicate
  deliveries counted, after as long (a receipt days after its send finds its message failed by
  the receipt deadline, 72 h);
- `content_keys` of hours that ended more than `content_days` ago: every recipient and body
  sealed in those hours becomes unreadable, on every topic and in every copy (`herald.sealing`).
The message envelopes, the status projection and the billing ledger are kept.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg
import msgspec

from herald.db.pool import rows_affected
from herald.db.recipients import purgeable_before
from herald.sealing import first_readable_hour


class Purged(msgspec.Struct, frozen=True):
    recipients: int
    claims: int
    """Idempotency claims and cancellation notes past their use."""
    dead_callbacks: int
    retries: int = 0
    deferrals: int = 0
    receipts: int = 0
    """Provider receipts, recorded sends and first final reports."""
    content_hours: int = 0
    """Hours of message content (recipients, bodies) made unreadable."""
    campaign_rows: int = 0
    """Campaign rows whose content key went with them."""


async def purge(
    pool: asyncpg.Pool, now: datetime, *, content_days: int, claim_days: int = 7, dead_callback_days: int = 30
) -> Purged:
    recipients = await pool.execute("DELETE FROM tenant_recipients WHERE last_sent_at <= $1", purgeable_before(now))
    claims = await pool.execute("DELETE FROM message_claims WHERE claimed_at < $1", now - timedelta(days=claim_days))
    # A cancellation is kept while its message could still be read and sent (its content lives).
    cancellations = await pool.execute(
        "DELETE FROM message_cancellations WHERE created_at < $1", now - timedelta(days=content_days)
    )
    dead = await pool.execute(
        "DELETE FROM callback_outbox WHERE dead_at IS NOT NULL AND dead_at < $1",
        now - timedelta(days=dead_callback_days),
    )
    handled_before = now - timedelta(days=max(claim_days, 8))
    retries = await pool.execute("DELETE FROM retries_done WHERE done_at < $1", handled_before)
    deferrals = await pool.execute("DELETE FROM deferred_records WHERE deferred_at < $1", handled_before)
    receipts = 0
    for statement in (
        "DELETE FROM provider_receipts WHERE received_at < $1",
        "DELETE FROM provider_messages WHERE sent_at < $1",
        "DELETE FROM receipt_finals WHERE decided_at < $1",
        "DELETE FROM duplicate_deliveries WHERE counted_at < $1",
    ):
        receipts += rows_affected(await pool.execute(statement, handled_before))
    first_hour = first_readable_hour(int(now.timestamp() * 1000), content_days)
    # A campaign's rows are sealed under a content key: past it they could never be opened again.
    campaign_rows = await pool.execute(
        "DELETE FROM campaign_rows WHERE campaign_id IN (SELECT id FROM campaigns WHERE content_key < $1)", first_hour
    )
    content = await pool.execute("DELETE FROM content_keys WHERE hour < $1", first_hour)
    return Purged(
        recipients=rows_affected(recipients),
        claims=rows_affected(claims) + rows_affected(cancellations),
        dead_callbacks=rows_affected(dead),
        retries=rows_affected(retries),
        deferrals=rows_affected(deferrals),
        receipts=receipts,
        content_hours=rows_affected(content),
        campaign_rows=rows_affected(campaign_rows),
    )
