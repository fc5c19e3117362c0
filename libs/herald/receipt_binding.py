"""Binding recorded provider receipts and publishing their status events to `herald.events`.

A receipt is bound (its message, tenant and time taken from Herald's record of the send,
`herald.db.receipts.bind`) by whichever side learns last of the two facts it needs: the API
right after it records the receipt (the send is usually known by then), the sinks right after
the status projection records the send (the receipt came first). Each probes by key, so binding
costs the same whatever the number of receipts waiting. Under read committed one of the two
always sees the other's commit; a process dying or a broker refusing between the two is caught
by the sinks' slow sweep of everything still waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import asyncpg

from herald import metrics
from herald.db import receipts
from herald.domain.records import ENCODER, StatusEventV1
from herald.kafka.producer import Producer, Record
from herald.kafka.topics import EVENTS

log = logging.getLogger(__name__)
BATCH = 1000


async def bind_and_publish(
    pool: asyncpg.Pool, producer: Producer, only: Sequence[tuple[str, str]] | None = None, limit: int = BATCH
) -> int:
    """Bind what can be bound now (with `only`, the receipts of those (provider, provider's id)
    sends; otherwise every waiting receipt, oldest first), up to `limit`; the number handled.
    Raises the database's or the broker's error, leaving the receipts waiting."""

    async def publish(events: list[StatusEventV1]) -> None:
        await producer.send_many([Record(EVENTS, str(e.message_id).encode(), ENCODER.encode(e)) for e in events])

    bound = await receipts.bind(pool, limit, publish, only)
    for event in bound.events:
        metrics.RECEIPTS.labels(metrics.provider_label(event.provider or ""), "bound").inc()
    for late in bound.late:
        metrics.RECEIPTS.labels(metrics.provider_label(late.provider), "late").inc()
        log.warning(
            "late provider report kept apart",
            extra={"message_id": str(late.message_id), "provider": late.provider, "status": late.status.value},
        )
    return len(bound.events) + len(bound.late)
