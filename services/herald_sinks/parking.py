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

import logging

import asyncpg
from aiokafka import TopicPartition

from herald.db import parked
from herald.kafka.consumer import rebuilt_record
from herald.parking import Replayed, describe
from herald_sinks.groups import handlers
from herald_sinks.settings import SinksConfig

log = logging.getLogger(__name__)


async def replay(settings: SinksConfig, pool: asyncpg.Pool, group: str, *, dry_run: bool) -> Replayed:
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
            await parked.refused_again(pool, entry, describe(exc))
            continue
        applied += 1
        await parked.unpark(pool, entry)
    return Replayed(parked=len(entries), applied=applied, refused=refused)
