"""The billing ledger sink (group `herald-sinks-billing` on `herald.events`).

Its own consumer group, so billing lag never slows the status projection or callbacks. Each batch
becomes ledger rows in one transaction (see `herald.db.billing` for the billable rule and why the
writes are exactly-once) before the loop commits the offsets. A database outage is waited out,
never skipped: the batch is retried, and on shutdown it is simply replayed by the next owner.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import asyncpg

from herald import metrics
from herald.db import billing
from herald.db.pool import DATABASE_ERRORS, until_written
from herald.domain.records import decode_event
from herald.kafka.consumer import Batch, decoded
from herald.runtime import ticks

log = logging.getLogger(__name__)


class BillingLedger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def __call__(self, batch: Batch) -> None:
        candidates = []
        for _, _, event in decoded(batch, decode_event):
            if event.status.value in billing.CANDIDATE_STATUSES:
                at = datetime.fromtimestamp(event.at_ms / 1000, tz=UTC)
                category = None if event.pricing_category is None else event.pricing_category.value
                candidates.append(billing.Candidate(event.message_id, event.status.value, at, category, event.billable))
        if not candidates:
            return
        recorded = await until_written(lambda: billing.record(self._pool, candidates))
        metrics.BILLING_RECORDS.labels("written").inc(recorded.written)
        metrics.BILLING_RECORDS.labels("deferred").inc(recorded.deferred)


async def run_settler(pool: asyncpg.Pool, interval_seconds: float, stop: asyncio.Event) -> None:
    """Settle deferred events every `interval_seconds` (they wait for the status projection)."""
    async for _ in ticks(interval_seconds, stop):
        try:
            settled = await billing.settle_pending(pool)
            backlog = await billing.pending_backlog(pool)
        except DATABASE_ERRORS as exc:
            log.warning("billing settle failed; will retry", extra={"error": type(exc).__name__})
            continue
        metrics.BILLING_PENDING_OLDEST.set(backlog.oldest_seconds)
        metrics.BILLING_RECORDS.labels("written").inc(settled.written)
        metrics.BILLING_PENDING_REFUSED.set(settled.refused)
        if settled.refused:
            log.error(
                "pending billing events refused by the database; left pending", extra={"messages": settled.refused}
            )
