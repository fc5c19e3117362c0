"""Scheduled messages (`send_at`) and cancellations, the worker's side.

A message sent with `send_at` is produced to its class topic at once (a 202 means the broker
has it), with `not_before_ms` set. The pipeline parks a record whose time is more than
`worker.schedule_park_ahead_seconds` away in PostgreSQL (`Schedule.park`) and commits past it, so millions of
them wait in the database, not in a worker's memory or in front of the records behind them on
the partition; nearer ones wait in the pipeline's timer like a retry. `Releaser` puts the due
ones back on their class topic, marked `idempotent` so that the worker claims them by id (a
release repeated after a crash is still one send), every `interval` seconds in every worker.

`Cancellations.may_send` is asked just before a message goes to its provider: it takes the
message's cancellation row for the send, or decides a cancellation that was waiting for it
(`herald.db.schedule`). Asking costs a write, so it is asked only of a tenant that asked to
cancel something lately: each worker keeps, per tenant, when it last did (refreshed every
`ttl` seconds); a message accepted well after that cannot be the one (`herald_worker.recency`).
A campaign's message is cancelled with its campaign: each worker re-reads a campaign's state
within `STATE_CHECK_SECONDS`, and the API answers a campaign's cancellation only after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg
import msgspec
from aiokafka.errors import KafkaError

from herald import clock
from herald.caches import TTLCache
from herald.db import campaigns
from herald.db import schedule as store
from herald.db.pool import until_written
from herald.db.schedule import Parked
from herald.domain.campaigns import STATE_CHECK_SECONDS
from herald.domain.records import ENCODER, MESSAGE_DECODER, OutboundMessage, StatusEventV1, message_key
from herald.domain.status import Status
from herald.kafka.producer import Producer, Record
from herald.kafka.topics import EVENTS, class_topic
from herald_worker.recency import LatestChange
from herald_worker.scheduler import Item

log = logging.getLogger(__name__)

OWED_AFTER = timedelta(seconds=10)
"""A decided cancellation whose event was not confirmed sent after this is sent again."""


class Schedule(Protocol):
    async def park(self, items: list[Item]) -> None:
        """Keep these records until their `not_before_ms` (durable when this returns)."""
        ...


class PostgresSchedule:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def park(self, items: list[Item]) -> None:
        await until_written(lambda: store.park(self._pool, [
            Parked(id=i.message.id, tenant_id=i.message.tenant_id, due_at=clock.to_datetime(i.message.not_before_ms),
                   topic=class_topic(i.message.category), key=message_key(i.message.tenant_id, i.message.to),
                   record=ENCODER.encode(i.sealed))
            for i in items
        ]))  # fmt: skip


class Releaser:
    """Puts due scheduled messages back on their class topics, and sends the `cancelled` events
    a crash left owed."""

    def __init__(self, pool: asyncpg.Pool, producer: Producer, interval: float = 0.2, batch: int = 500) -> None:
        self._pool = pool
        self._producer = producer
        self._interval = interval
        self._batch = batch

    async def run(self, stop: asyncio.Event) -> None:
        owed_check = 0.0
        while not stop.is_set():
            try:
                released = await store.release_due(self._pool, self._batch, self._publish)
                if asyncio.get_running_loop().time() >= owed_check:
                    owed_check = asyncio.get_running_loop().time() + OWED_AFTER.total_seconds()
                    await self._send_owed()
            except (asyncpg.PostgresError, OSError, TimeoutError, KafkaError) as exc:
                # The rows stay where they are (nothing was deleted): the next round tries again.
                log.warning("scheduled messages not released this round", extra={"error": type(exc).__name__})
                released = 0
            if released < self._batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._interval)

    async def _publish(self, rows: list[Parked]) -> None:
        records = []
        for row in rows:
            sealed = MESSAGE_DECODER.decode(row.record)
            released = msgspec.structs.replace(sealed, idempotent=True)
            records.append(Record(row.topic, row.key, ENCODER.encode(released)))
        await self._producer.send_many(records)

    async def _send_owed(self) -> None:
        owed = await store.owed_events(self._pool, datetime.now(UTC) - OWED_AFTER, self._batch)
        if owed:
            now = clock.now_ms()
            await self._producer.send_many([
                Record(EVENTS, str(m).encode(), ENCODER.encode(
                    StatusEventV1(message_id=m, tenant_id=t, status=Status.CANCELLED, at_ms=now)))
                for m, t in owed
            ])  # fmt: skip
            await store.events_sent(self._pool, [m for m, _ in owed])


class CancellationCheck(Protocol):
    async def may_send(self, message: OutboundMessage) -> bool:
        """False: the message was cancelled and is not to be sent (its `cancelled` is due)."""
        ...


class Cancellations:
    def __init__(self, pool: asyncpg.Pool, ttl: float = 1.0) -> None:
        self._pool = pool
        self._changed: LatestChange[uuid.UUID] = LatestChange(
            lambda tenant_ids: store.latest_cancellations(pool, tenant_ids), ttl
        )
        self._campaigns: TTLCache[uuid.UUID, bool] = TTLCache(min(ttl, STATE_CHECK_SECONDS))

    async def may_send(self, message: OutboundMessage) -> bool:
        campaign = message.campaign_id
        # A pinned message's earlier attempt may have reached its provider: not cancellable.
        if campaign is not None and message.provider_pin is None and await self._campaigns.get(
            campaign, lambda: until_written(lambda: campaigns.cancelled(self._pool, campaign))
        ):
            return await until_written(lambda: store.decide_cancelled(self._pool, message.tenant_id, message.id))
        if not await self._changed.may_affect(message.tenant_id, message.created_at_ms):
            return True
        return await until_written(lambda: store.may_send(self._pool, message.tenant_id, message.id))
