"""The status projection sink (group `herald-sinks-status`).

Reads the three class topics (a message's `accepted` fact) and `herald.events` (every later
transition), and applies each batch to Postgres in one transaction before the loop commits the
offsets. `db.messages.apply_batch` is idempotent and order-independent, so replays are harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import asyncpg
from aiokafka import TopicPartition

from herald import metrics
from herald.db import messages as message_store
from herald.db.pool import until_written
from herald.domain.records import EVENT_DECODER, MESSAGE_DECODER, MessageEnvelope, SealedMessageV2, StatusEventV1
from herald.domain.status import Status
from herald.kafka.consumer import Batch, decoded
from herald.kafka.topics import EVENTS, Names
from herald_sinks.tenant_board import TenantBoard

log = logging.getLogger(__name__)


SendsRecorded = Callable[[Sequence[tuple[str, str]]], None]
"""Told the (provider, provider's id) of the sends a batch recorded, once it is committed."""


class StatusProjection:
    def __init__(
        self,
        pool: asyncpg.Pool,
        names: Names,
        sends_recorded: SendsRecorded | None = None,
        board: TenantBoard | None = None,
    ) -> None:
        self._pool = pool
        self._names = names
        self._sends_recorded = sends_recorded
        self._board = board

    async def __call__(self, batch: Batch) -> None:
        messages: list[MessageEnvelope] = []
        events: list[StatusEventV1] = []
        for _, _, value in decoded(batch, self._decode):
            if isinstance(value, StatusEventV1):
                events.append(value)
            else:
                messages.append(value)
        # A record the database refuses raises out of here; the consumer loop isolates and parks it.
        await self._apply(messages, events)
        metrics.STATUS_ROWS.labels("message").inc(len(messages))
        metrics.STATUS_ROWS.labels("event").inc(len(events))

    def _decode(self, tp: TopicPartition, value: bytes) -> StatusEventV1 | SealedMessageV2:
        if self._names.unprefixed(tp.topic) == EVENTS:
            return EVENT_DECODER.decode(value)
        return MESSAGE_DECODER.decode(value)

    async def _apply(self, messages: list[MessageEnvelope], events: list[StatusEventV1]) -> None:
        # A database outage must not skip records: retry until it is back (or we are stopped,
        # in which case nothing is committed and the batch is replayed). Data errors are not
        # transient and are not retried here.
        applied = await until_written(lambda: message_store.apply_batch(self._pool, messages, events))
        metrics.DUPLICATE_SENDS.inc(applied.duplicate_sends)
        if self._sends_recorded is not None:
            self._sends_recorded(
                [(e.provider, e.provider_message_id) for e in events
                 if e.status is Status.SENT and e.provider and e.provider_message_id]
            )  # fmt: skip
        for t in applied.transitions:
            if t.status in (Status.DELIVERED, Status.FAILED, Status.EXPIRED, Status.CANCELLED):
                metrics.MESSAGES_FINAL.labels(t.status.value, t.channel, t.category).inc()
                metrics.ACCEPTED_TO_FINAL_SECONDS.labels(t.category, t.status.value).observe(t.seconds_since_accepted)
        if self._board is not None:
            self._board.add(applied.transitions)
