"""Poison records: park what a sink refuses, list it, and apply it again (`herald parked`).

The consumer loop isolates a record its handler refuses on its own and hands it to `Parking`,
which stores it in `parked_records` (`herald.db.parked`), logs where it was (never its content)
and counts it (`herald_sink_records_parked_total`). What stays parked is reported as the gauge
`herald_sink_parked_records` (alert `HeraldSinkRecordsParked` for as long as any are), so a
parked record is not forgotten once the alert that announced it would have cleared. After the
cause is fixed, `herald parked replay --group <group>` runs that group's handler over each
parked record, oldest first, and deletes those it applies. Handlers are idempotent, so a record
that was applied in the meantime (a replay of its batch) changes nothing. A record that can
never be applied is given up with `herald parked discard`, deliberately and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg
import msgspec
from aiokafka import TopicPartition

from herald import metrics
from herald.db import parked
from herald.db.pool import DATABASE_ERRORS, until_written
from herald.kafka.consumer import Record, rebuilt_record
from herald.runtime import ticks
from herald.settings import Settings
from herald_sinks.groups import SINK_GROUPS, handlers

log = logging.getLogger(__name__)


class Parking:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def __call__(self, group: str, record: Record, error: Exception) -> None:
        log.error(
            "record refused by its sink; parked",
            extra={
                "group": group, "topic": record.topic, "partition": record.partition, "offset": record.offset,
                "error": type(error).__name__,
            },
        )  # fmt: skip
        entry = parked.Parked(
            consumer_group=group, topic=record.topic, partition=record.partition, offset=record.offset,
            key=record.key, value=record.value, timestamp_ms=record.timestamp, error=_describe(error),
        )  # fmt: skip
        await until_written(lambda: parked.park(self._pool, entry))
        metrics.SINK_RECORDS_PARKED.labels(group).inc()
        await until_written(lambda: report_parked(self._pool))


async def report_parked(pool: asyncpg.Pool) -> None:
    """Set `herald_sink_parked_records` for every sink group from the table."""
    waiting = await parked.waiting(pool)
    for group in SINK_GROUPS:
        metrics.SINK_PARKED_RECORDS.labels(group).set(waiting.get(group, 0))


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


def _describe(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


class Replayed(msgspec.Struct, frozen=True):
    parked: int
    applied: int
    refused: int


async def replay(settings: Settings, pool: asyncpg.Pool, group: str, *, dry_run: bool) -> Replayed:
    entries = await parked.of_group(pool, group)
    if dry_run:
        return Replayed(parked=len(entries), applied=0, refused=0)
    handler = handlers(pool, settings)[group]
    applied = refused = 0
    for entry in entries:
        record = rebuilt_record(
            entry.topic, entry.partition, entry.offset, entry.value, key=entry.key, timestamp_ms=entry.timestamp_ms
        )
        try:
            await handler({TopicPartition(record.topic, record.partition): [record]})
        except Exception as exc:  # the same refusal as before, or a new one: keep it parked
            refused += 1
            await parked.refused_again(pool, entry, _describe(exc))
            continue
        applied += 1
        await parked.unpark(pool, entry)
    return Replayed(parked=len(entries), applied=applied, refused=refused)
