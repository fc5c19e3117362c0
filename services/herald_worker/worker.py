"""What happens to one message once the scheduler picked it: deliver, then make the outcome durable.

The outcome's records (status events, a dead letter, or the message re-queued on `herald.retry`)
are acknowledged by the broker before `publish` returns, and only then does the pipeline count
the message's offset as finished. A broker that refuses is retried until it takes them (or the
worker stops, leaving the offset uncommitted for the next owner).
"""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from herald import metrics
from herald.domain.reasons import NOT_DEAD_LETTERED, LetterKind, Reason
from herald.domain.records import ENCODER, DeadLetterV2, OutboundMessage, SealedMessageV2, message_key
from herald.domain.status import Status
from herald.kafka.producer import Producer, Record
from herald.kafka.topics import DLQ, EVENTS, RETRY
from herald.retrying import retried
from herald.sealing import reseal
from herald_worker.delivery import Deliverer, Outcome

log = logging.getLogger(__name__)


class Processor:
    def __init__(self, deliverer: Deliverer, producer: Producer) -> None:
        self._deliverer = deliverer
        self._producer = producer

    async def deliver(self, message: OutboundMessage) -> Outcome:
        metrics.IN_FLIGHT.inc()
        try:
            return await self._deliverer.deliver(message)
        finally:
            metrics.IN_FLIGHT.dec()

    def held(self, message: OutboundMessage, seconds: float) -> Outcome:
        """A suspended tenant's message: not sent; back on `herald.retry` later (or expired)."""
        return self._deliverer.held(message, seconds)

    def expired(self, message: OutboundMessage) -> Outcome | None:
        """Past its TTL: its `expired` outcome, decided without a provider (None if still live)."""
        return self._deliverer.expired(message)

    async def publish(self, records: list[Record]) -> None:
        await retried(
            lambda: self._producer.send_many(records),
            lambda: AsyncRetrying(
                retry=retry_if_exception_type((KafkaError, TimeoutError)),
                wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
            ),
        )

    def unreadable(self, sealed: SealedMessageV2, why: str) -> list[Record]:
        """The records of a message whose content could not be opened: its final event only (a
        dead letter would hold nothing to replay)."""
        return _event_records(self._deliverer.unreadable(sealed, why))

    @staticmethod
    def records(message: OutboundMessage, sealed: SealedMessageV2, outcome: Outcome) -> list[Record]:
        """The outcome's records; `sealed` is the message as read, whose content they carry."""
        records = _event_records(outcome)
        if outcome.retry is not None:
            # Same key as the class topic: one recipient's retries stay in order on one partition.
            key = message_key(message.tenant_id, message.to)
            records.append(Record(RETRY, key, ENCODER.encode(reseal(sealed, outcome.retry))))
        for e in outcome.events:
            if e.status is Status.FAILED and e.reason not in NOT_DEAD_LETTERED:
                reason = e.reason or Reason.INTERNAL_ERROR  # every failure the worker decides names one
                kind = LetterKind.of(reason)
                metrics.DLQ_RECORDS.labels(kind).inc()
                letter = DeadLetterV2(message=sealed, reason=reason, kind=kind, failed_at_ms=e.at_ms)
                records.append(Record(DLQ, str(e.message_id).encode(), ENCODER.encode(letter)))
        return records


def _event_records(outcome: Outcome) -> list[Record]:
    return [Record(EVENTS, str(e.message_id).encode(), ENCODER.encode(e)) for e in outcome.events]
