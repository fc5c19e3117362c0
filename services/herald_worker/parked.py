"""`herald parked replay --group herald-workers`: records the worker could not decode, sent again.

The worker parks a record that does not decode (a producer wrote what this version cannot read).
Once a version that reads it is deployed, replaying produces each parked record again, unchanged
(key and value, content still sealed), to the topic it was read from, where a worker takes it
like any other: it is then decoded, claimed and delivered once. A record this version still
cannot decode stays parked, refused again.
"""

from __future__ import annotations

import asyncpg
import msgspec

from herald.db import parked
from herald.domain.records import MESSAGE_DECODER
from herald.kafka.producer import Producer, Record
from herald.kafka.topics import WORKER_GROUP, Names
from herald.parking import Replayed, describe
from herald_worker.settings import WorkerConfig


async def replay(settings: WorkerConfig, pool: asyncpg.Pool, *, dry_run: bool) -> Replayed:
    """Raises NoBroker if some record is to be produced and no broker is configured."""
    entries = await parked.of_group(pool, WORKER_GROUP)
    if dry_run:
        return Replayed(parked=len(entries), applied=0, refused=0)
    readable, refused = [], 0
    for entry in entries:
        try:
            MESSAGE_DECODER.decode(entry.value or b"")
        except msgspec.DecodeError as exc:
            refused += 1
            await parked.refused_again(pool, entry, describe(exc))
        else:
            readable.append(entry)
    if not readable:
        return Replayed(parked=len(entries), applied=0, refused=refused)
    if not settings.kafka.bootstrap:
        raise NoBroker(f"{len(readable)} parked records are readable now; producing them needs HERALD_KAFKA_BOOTSTRAP")
    names = Names(settings.kafka.topic_prefix)
    producer = Producer(settings.kafka, names)
    try:
        await producer.start()  # inside: aiokafka's stop() is owed also after a failed start()
        for entry in readable:
            # Acknowledged before it is unparked: a crash in between sends it twice to the topic,
            # where the second copy is the same message id (claimed once, delivered once).
            await producer.send_many([Record(names.unprefixed(entry.topic), entry.key, entry.value or b"")])
            await parked.unpark(pool, entry)
    finally:
        await producer.stop()
    return Replayed(parked=len(entries), applied=len(readable), refused=refused)


class NoBroker(Exception):
    """Records to produce again, and no broker to produce them to."""
