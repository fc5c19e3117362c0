"""`herald dlq replay`: put dead letters back in the queue, selectively.

Reads `herald.dlq` from its beginning to where it ended when the command started (no consumer
group: the DLQ is a log to inspect and replay from, not a queue to drain, so two operators can
replay different slices), keeps the letters matching every filter given, and produces each as a
**new message** on its class topic:

* Why a new id: `failed` is final for the tenant, for callbacks and for billing (a failed message
  is never billed). Re-sending under the old id would deliver a message the platform reports as
  failed and never bills. The new message says `replay_of: <failed id>` in its status reads.
* The new id is `uuid5(failed id, "replay")` and the message is marked idempotent: replaying the
  same letter twice (a second run, or a run restarted halfway) produces the same id, and the
  worker's claim delivers it once. A replay that fails again lands in the DLQ under its new id,
  from where it can be replayed in turn.
* A fresh TTL of the original length, starting at the replay; attempt 0; the original
  reference, template version and body (as rendered at acceptance), sealed again under the
  current hour's content key (the id is the associated data of the seal).
* A letter whose content is past retention (`herald.sealing`) cannot be replayed: it is counted
  as `purged` and skipped.

Filters: `--tenant-id`, `--reason` (exact, or a prefix ending in `*`), `--since`/`--until` (when
it failed, ISO 8601). `--dry-run` counts without producing. Progress goes to stderr.
"""

from __future__ import annotations

import sys
import time
import uuid

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from herald import clock
from herald.db.content_keys import ContentKeys
from herald.db.pool import create_pool
from herald.domain.records import DEAD_LETTER_DECODER, ENCODER, DeadLetterV2, OutboundMessage, message_key
from herald.kafka.producer import Producer, Record
from herald.kafka.topics import DLQ, Names, class_topic
from herald.keyring import KeyRing
from herald.sealing import ContentUnavailable
from herald_worker.settings import WorkerConfig

_REPLAY = uuid.UUID("7e0c9b1a-4d51-5c2f-9d8e-6a3b2f1c0d9e")


class Filters(msgspec.Struct, frozen=True):
    tenant_id: uuid.UUID | None = None
    reason: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def match(self, letter: DeadLetterV2) -> bool:
        if self.tenant_id is not None and letter.message.tenant_id != self.tenant_id:
            return False
        if self.reason is not None:
            if self.reason.endswith("*"):
                if not letter.reason.startswith(self.reason[:-1]):
                    return False
            elif letter.reason != self.reason:
                return False
        if self.since_ms is not None and letter.failed_at_ms < self.since_ms:
            return False
        return self.until_ms is None or letter.failed_at_ms < self.until_ms


def replayed(m: OutboundMessage, now_ms: int) -> OutboundMessage:
    """The failed message `m` (opened from its dead letter) as a new message."""
    return msgspec.structs.replace(
        m,
        id=uuid.uuid5(_REPLAY, str(m.id)),
        created_at_ms=now_ms,
        expires_at_ms=now_ms + max(1, m.expires_at_ms - m.created_at_ms),
        attempt=0,
        not_before_ms=0,
        last_error=None,
        idempotent=True,
        replay_of=m.id,
    )


class Progress(msgspec.Struct):
    read: int = 0
    matched: int = 0
    purged: int = 0
    """Matched, but the content is past retention: cannot be replayed."""
    replayed: int = 0


async def replay(settings: WorkerConfig, filters: Filters, *, dry_run: bool, report_every: float = 1.0) -> Progress:
    names = Names(settings.kafka.topic_prefix)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap, group_id=None, enable_auto_commit=False,
        fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms,
    )  # fmt: skip
    producer = Producer(settings.kafka, names)
    progress = Progress()
    pool = await create_pool(settings.database)
    keys = ContentKeys(pool, KeyRing(settings.secrets.keys()), settings.retention.content_days)
    await consumer.start()
    if not dry_run:
        await producer.start()
    try:
        topic = names.topic(DLQ)
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return progress
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # Where each partition ended when we started: the high watermark of its first fetch
        # response (end_offsets() can be stale on some brokers; the watermark is not).
        ends: dict[TopicPartition, int] = {}
        remaining = set(partitions)
        last_report = time.monotonic()
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=1000)
            for tp in remaining:
                if tp not in ends and (highwater := consumer.highwater(tp)) is not None:
                    ends[tp] = highwater
            matched: list[DeadLetterV2] = []
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends.get(tp, record.offset + 1):
                        continue
                    progress.read += 1
                    try:
                        letter = DEAD_LETTER_DECODER.decode(record.value or b"")
                    except msgspec.DecodeError:
                        continue
                    if filters.match(letter):
                        matched.append(letter)
            progress.matched += len(matched)
            await keys.load({letter.message.content_key for letter in matched})
            now_ms = clock.now_ms()
            fresh: list[OutboundMessage] = []
            for letter in matched:
                try:
                    fresh.append(replayed(keys.open(letter.message), now_ms))
                except ContentUnavailable:
                    progress.purged += 1
            for tp in list(remaining):
                if tp in ends and await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if fresh and not dry_run:
                sealed = await keys.seal(fresh)
                await producer.send_many(
                    [
                        Record(class_topic(m.category), message_key(m.tenant_id, m.to), ENCODER.encode(s))
                        for m, s in zip(fresh, sealed, strict=True)
                    ]
                )
                progress.replayed += len(fresh)
            if time.monotonic() - last_report >= report_every:
                last_report = time.monotonic()
                print(f"  read {progress.read:,}, matched {progress.matched:,} ...", file=sys.stderr, flush=True)
    finally:
        await consumer.stop()
        if not dry_run:
            await producer.stop()
        await pool.close()
    return progress
