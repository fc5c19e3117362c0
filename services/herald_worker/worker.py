"""The delivery worker: one consumer-group member over the three class topics.

Per batch: decode, deliver concurrently with at most `max_in_flight` provider calls, produce
every resulting status event and wait for the broker's acks, and only then let the loop commit
the offsets. A SIGKILL at any point replays the uncommitted batch: messages already handed to a
provider in that batch may be sent again (at most one batch, bounded by `batch_max_records`),
never lost.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import msgspec

from herald import metrics
from herald.db import claims
from herald.domain.records import ENCODER, MESSAGE_DECODER, DeadLetterV1, OutboundMessageV1, StatusEventV1
from herald.domain.status import Status
from herald.kafka.consumer import Batch
from herald.kafka.producer import Producer, Record
from herald.kafka.topics import DLQ, EVENTS
from herald_worker.delivery import RETRIES_EXHAUSTED, Deliverer

log = logging.getLogger(__name__)


class DeliveryHandler:
    def __init__(self, deliverer: Deliverer, producer: Producer, pool: asyncpg.Pool, max_in_flight: int) -> None:
        self._deliverer = deliverer
        self._producer = producer
        self._pool = pool
        self._slots = asyncio.Semaphore(max_in_flight)

    async def __call__(self, batch: Batch) -> None:
        read: list[tuple[OutboundMessageV1, claims.Source | None]] = []
        for records in batch.values():
            for record in records:
                try:
                    message = MESSAGE_DECODER.decode(record.value or b"")
                except msgspec.DecodeError:
                    # Not something our API produced; skipping beats wedging the partition.
                    log.error(
                        "undecodable record skipped",
                        extra={"topic": record.topic, "partition": record.partition, "offset": record.offset},
                    )
                    continue
                source = claims.Source(message.id, record.topic, record.partition, record.offset)
                read.append((message, source if message.idempotent else None))
        # Idempotency: a repeated request produced a second record with the same id; only the
        # record that claimed the id first is delivered (one delivery, one bill).
        repeats = await claims.claim(self._pool, [s for _, s in read if s is not None])
        metrics.IDEMPOTENT_REPEATS.inc(len(repeats))
        messages = [m for m, source in read if source is None or source not in repeats]
        # Same tenant+recipient: in order, one after another. Different recipients: concurrently.
        lanes: dict[tuple[object, str], list[OutboundMessageV1]] = {}
        for m in messages:
            lanes.setdefault((m.tenant_id, m.to), []).append(m)
        results = await asyncio.gather(*(self._lane(lane) for lane in lanes.values()))
        events = [e for group in results for e in group]
        records = [Record(EVENTS, str(e.message_id).encode(), ENCODER.encode(e)) for e in events]
        records += self._dead_letters(messages, events)
        # Events and dead letters are acknowledged before the loop commits the offsets.
        await self._producer.send_many(records)

    def _dead_letters(self, messages: list[OutboundMessageV1], events: list[StatusEventV1]) -> list[Record]:
        by_id = {m.id: m for m in messages}
        letters = []
        for e in events:
            if e.status is Status.FAILED and e.message_id in by_id:
                reason = e.reason or "unknown"
                kind = "retries_exhausted" if reason.endswith(RETRIES_EXHAUSTED) else "permanent"
                metrics.DLQ_RECORDS.labels(kind).inc()
                letter = DeadLetterV1(message=by_id[e.message_id], reason=reason, kind=kind, failed_at_ms=e.at_ms)
                letters.append(Record(DLQ, str(e.message_id).encode(), ENCODER.encode(letter)))
        return letters

    async def _lane(self, lane: list[OutboundMessageV1]) -> list[StatusEventV1]:
        events: list[StatusEventV1] = []
        for message in lane:
            events += await self._bounded(message)
        return events

    async def _bounded(self, message: OutboundMessageV1) -> list[StatusEventV1]:
        async with self._slots:
            metrics.IN_FLIGHT.inc()
            try:
                return await self._deliverer.deliver(message)
            finally:
                metrics.IN_FLIGHT.dec()
