"""The receipt binder: turns recorded provider receipts into status events on `herald.events`.

Every `receipt_bind_interval_seconds` (at once again after a full batch) it binds the receipts
whose send the status sink has recorded (`herald.db.receipts.bind`): the message and tenant are
Herald's own, the time is clamped to the message's life, and a report that goes back on the
message's first final status is kept apart as late. The status projection, billing and callbacks
then see only bound events, exactly like the worker's. Several sinks processes bind side by side
(`FOR UPDATE SKIP LOCKED`); a receipt waits for as long as its `sent` event takes to be
projected, and one that never binds (an id Herald never sent through that provider) waits until
`herald retention` deletes it.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiokafka.errors import KafkaError

from herald import metrics
from herald.db import receipts
from herald.db.pool import DATABASE_ERRORS
from herald.domain.records import ENCODER, StatusEventV1
from herald.kafka.producer import Producer, Record
from herald.kafka.topics import EVENTS
from herald.runtime import ticks

log = logging.getLogger(__name__)
BATCH = 1000


async def bind_once(pool: asyncpg.Pool, producer: Producer, limit: int = BATCH) -> int:
    """Bind what can be bound now, up to `limit`; the number of receipts handled."""

    async def publish(events: list[StatusEventV1]) -> None:
        await producer.send_many([Record(EVENTS, str(e.message_id).encode(), ENCODER.encode(e)) for e in events])

    bound = await receipts.bind(pool, limit, publish)
    for event in bound.events:
        metrics.RECEIPTS.labels(event.provider or "", "bound").inc()
    for late in bound.late:
        metrics.RECEIPTS.labels(late.provider, "late").inc()
        log.warning(
            "late provider report kept apart",
            extra={"message_id": str(late.message_id), "provider": late.provider, "status": late.status.value},
        )
    return len(bound.events) + len(bound.late)


async def run_binder(pool: asyncpg.Pool, producer: Producer, interval: float, stop: asyncio.Event) -> None:
    async for _ in ticks(interval, stop):
        try:
            while await bind_once(pool, producer) == BATCH and not stop.is_set():
                pass
        except (*DATABASE_ERRORS, KafkaError) as exc:
            log.warning("receipt binding failed; will retry", extra={"error": type(exc).__name__})
