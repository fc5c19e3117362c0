"""Cancelling a message before a provider has it (`DELETE /v1/messages/{id}`).

A scheduled message is cancelled at once: its parked record is deleted in the same transaction
that decides the cancellation, and its `cancelled` event is published before the answer (or,
should the broker fail then, by the worker's releaser later: `herald.db.schedule.owed_events`).
A message already queued is cancelled when the worker reaches it, unless its send was decided
first (`herald_worker.schedule.Cancellations`): the answer says `requested`, and the message's
status says what happened.
"""

from __future__ import annotations

import uuid

import asyncpg
from aiokafka.errors import KafkaError

from herald import clock
from herald.db import messages, schedule
from herald.db.schedule import Cancellation
from herald.domain.records import ENCODER, StatusEventV1
from herald.domain.status import Status
from herald.errors import Conflict, NotFound, Unavailable
from herald.kafka.producer import Producer, Record
from herald.kafka.topics import EVENTS

CANCELLABLE = frozenset({Status.SCHEDULED, Status.ACCEPTED, Status.CANCELLED})


class Cancelling:
    def __init__(self, pool: asyncpg.Pool, producer: Producer) -> None:
        self._pool = pool
        self._producer = producer

    async def cancel(self, tenant_id: uuid.UUID, message_id: uuid.UUID) -> bool:
        """True: cancelled now; False: requested, for the worker to decide. Raises NotFound (also
        for another tenant's message), Conflict (`message_not_cancellable`: a provider has it or
        it ended), Unavailable (the broker did not take the event: retry)."""
        status = await messages.status_of(self._pool, tenant_id, message_id)
        # The projection may not show a message yet: one parked or cancelled before is known too.
        if (
            status is None
            and not await schedule.is_scheduled(self._pool, tenant_id, message_id)
            and not await schedule.cancel_requested(self._pool, tenant_id, message_id)
        ):
            raise NotFound("no such message (a just-accepted message appears within moments)", code="message_not_found")
        if status is not None and status not in CANCELLABLE:
            raise Conflict(f"the message is {status}: a provider has it", code="message_not_cancellable")
        outcome = await schedule.cancel(self._pool, tenant_id, message_id)
        if outcome is Cancellation.TOO_LATE:
            raise Conflict("the message is being handed to its provider", code="message_not_cancellable")
        if outcome is Cancellation.CANCELLED:
            event = StatusEventV1(message_id=message_id, tenant_id=tenant_id, status=Status.CANCELLED,
                                  at_ms=clock.now_ms())  # fmt: skip
            try:
                await self._producer.send_many([Record(EVENTS, str(message_id).encode(), ENCODER.encode(event))])
            except KafkaError as exc:
                raise Unavailable("the cancellation is decided; its event is not published yet: retry",
                                  code="broker_unavailable", retry_after=1) from exc  # fmt: skip
            await schedule.events_sent(self._pool, [message_id])
        return outcome is Cancellation.CANCELLED
