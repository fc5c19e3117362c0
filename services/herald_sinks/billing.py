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
import msgspec
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from herald import metrics
from herald.db import billing
from herald.domain.records import EVENT_DECODER
from herald.kafka.consumer import Batch
from herald.runtime import ticks

log = logging.getLogger(__name__)

_TRANSIENT = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)


class BillingLedger:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def __call__(self, batch: Batch) -> None:
        candidates = []
        for tp, records in batch.items():
            for record in records:
                try:
                    event = EVENT_DECODER.decode(record.value or b"")
                except msgspec.DecodeError:
                    log.error(
                        "undecodable record skipped",
                        extra={"topic": tp.topic, "partition": tp.partition, "offset": record.offset},
                    )
                    continue
                if event.status.value in billing.CANDIDATE_STATUSES:
                    at = datetime.fromtimestamp(event.at_ms / 1000, tz=UTC)
                    candidates.append(billing.Candidate(event.message_id, event.status.value, at))
        if not candidates:
            return
        recorded = billing.Recorded(written=0, deferred=0)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(_TRANSIENT), wait=wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1)
        ):
            with attempt:
                recorded = await billing.record(self._pool, candidates)
        metrics.BILLING_RECORDS.labels("written").inc(recorded.written)
        metrics.BILLING_RECORDS.labels("deferred").inc(recorded.deferred)


async def run_settler(pool: asyncpg.Pool, interval_seconds: float, stop: asyncio.Event) -> None:
    """Settle parked events every `interval_seconds` (they wait for the status projection)."""
    async for _ in ticks(interval_seconds, stop):
        try:
            written = await billing.settle_pending(pool)
        except (*_TRANSIENT, asyncpg.PostgresError) as exc:
            log.warning("billing settle failed; will retry", extra={"error": type(exc).__name__})
            continue
        metrics.BILLING_RECORDS.labels("written").inc(written)
