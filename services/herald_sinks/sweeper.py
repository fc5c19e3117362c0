"""The receipt-deadline sweep: no message stays `sent` forever.

Every `sweep_interval_seconds` the sweep finds messages that have waited longer than
`receipt_timeout_seconds` for a provider receipt and emits `failed` (reason `receipt_timeout`)
on `herald.events`, where the projection (and later billing and callbacks) see it like any
other transition. A receipt that arrives later still wins if its own time is earlier than the
sweep's (the projection folds in time order).

Several sink processes each sweep. Each sweep claims what it fails (`claim_overdue_receipts`,
on the database's clock), so a message's `failed` is emitted and counted once, however many
processes sweep and however far the projection lags; the event table's key (message, status)
would absorb a second event anyway, but the metric and the topic would not. A claim lasts
`CLAIM_INTERVALS` sweep intervals (at least `MIN_CLAIM_SECONDS`); if its events never reached
the broker, or the projection is down that long, the message is swept again, so none stays
`sent` for ever.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka.errors import KafkaError

from herald import clock, metrics
from herald.db import messages
from herald.db.pool import DATABASE_ERRORS
from herald.domain.reasons import Reason
from herald.domain.records import ENCODER, StatusEventV1
from herald.domain.status import Status
from herald.kafka.producer import Producer, Record
from herald.kafka.topics import EVENTS
from herald.runtime import ticks
from herald_sinks.settings import SinkSettings

log = logging.getLogger(__name__)


CLAIM_INTERVALS = 10
MIN_CLAIM_SECONDS = 60.0


async def sweep_once(
    pool: asyncpg.Pool, producer: Producer, timeout_seconds: float, claim_seconds: float, limit: int = 1000
) -> int:
    older_than = datetime.now(UTC) - timedelta(seconds=timeout_seconds)
    overdue = await messages.claim_overdue_receipts(pool, older_than, claim_seconds, limit)
    now_ms = clock.now_ms()
    events = [
        StatusEventV1(message_id=mid, tenant_id=tid, status=Status.FAILED, at_ms=now_ms, reason=Reason.RECEIPT_TIMEOUT)
        for mid, tid in overdue
    ]
    await producer.send_many([Record(EVENTS, str(e.message_id).encode(), ENCODER.encode(e)) for e in events])
    metrics.RECEIPT_TIMEOUTS.inc(len(events))
    return len(events)


async def run_sweeper(pool: asyncpg.Pool, producer: Producer, settings: SinkSettings, stop: asyncio.Event) -> None:
    claim_seconds = max(MIN_CLAIM_SECONDS, CLAIM_INTERVALS * settings.sweep_interval_seconds)
    async for _ in ticks(settings.sweep_interval_seconds, stop):
        try:
            swept = await sweep_once(pool, producer, settings.receipt_timeout_seconds, claim_seconds)
        except (*DATABASE_ERRORS, KafkaError) as exc:
            log.warning("receipt sweep failed; will retry", extra={"error": type(exc).__name__})
            continue
        if swept:
            log.info("messages failed for want of a receipt", extra={"count": swept})
