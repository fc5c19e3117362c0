"""Parking: a record its consumer cannot take is kept in Postgres (`parked_records`), counted,
and the consumer moves on; `herald parked` lists, replays and discards them.

Shared by the sinks (records a handler refuses, isolated by the consumer loop; records that do
not decode) and the worker (records that do not decode). The record is kept whole (key, value,
where it was); its content stays sealed as it was on the topic. Logs name where it was and the
error's type, never its content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
import msgspec

from herald import metrics
from herald.db import parked
from herald.db.pool import DATABASE_ERRORS, until_written
from herald.kafka.consumer import Record
from herald.kafka.topics import BILLING_SINK_GROUP, CALLBACK_SINK_GROUP, STATUS_SINK_GROUP, WORKER_GROUP
from herald.runtime import ticks

log = logging.getLogger(__name__)

PARKING_GROUPS = (STATUS_SINK_GROUP, BILLING_SINK_GROUP, CALLBACK_SINK_GROUP, WORKER_GROUP)
"""Every consumer group that parks records (the gauge has a series for each from the start)."""


class Parking:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def __call__(self, group: str, record: Record, error: Exception) -> None:
        log.error(
            "record refused by its consumer; parked",
            extra={
                "group": group, "topic": record.topic, "partition": record.partition, "offset": record.offset,
                "error": type(error).__name__,
            },
        )  # fmt: skip
        entry = parked.Parked(
            consumer_group=group, topic=record.topic, partition=record.partition, offset=record.offset,
            key=record.key, value=record.value, timestamp_ms=record.timestamp, error=describe(error),
        )  # fmt: skip
        await until_written(lambda: parked.park(self._pool, entry))
        metrics.SINK_RECORDS_PARKED.labels(group).inc()
        await until_written(lambda: report_parked(self._pool))


async def report_parked(pool: asyncpg.Pool) -> None:
    """Set `herald_sink_parked_records` for every consumer group that parks, from the table."""
    waiting = await parked.waiting(pool)
    for group in PARKING_GROUPS:
        metrics.SINK_PARKED_RECORDS.labels(group).set(waiting.get(group, 0))
    metrics.every_series(metrics.SINK_RECORDS_PARKED, PARKING_GROUPS)  # the counter too


async def run_parked_report(pool: asyncpg.Pool, interval_seconds: float, stop: asyncio.Event) -> None:
    """Recount at start (every group's series exists from the first scrape, at 0 when nothing is
    parked, so the panel is never empty) and every `interval_seconds`: replays and discards run
    in other processes."""
    with contextlib.suppress(*DATABASE_ERRORS):
        await report_parked(pool)
    async for _ in ticks(interval_seconds, stop):
        try:
            await report_parked(pool)
        except DATABASE_ERRORS as exc:
            log.warning("parked records count failed; will retry", extra={"error": type(exc).__name__})


def describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


class Replayed(msgspec.Struct, frozen=True):
    parked: int
    applied: int
    refused: int
