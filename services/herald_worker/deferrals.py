"""Deferring records to `herald.retry` so that each is deferred once, whoever reads it again.

* `Backlog` decides *whether* a message waits on herald.retry instead of the buffer (its tenant
  already has more waiting than it may send in `tenant_buffer_seconds`) and *until when* (its
  turn at the tenant's rate, after what is waiting and what was deferred before it).
* `Deferrals` makes the deferral durable in order: each record is noted, with its copy's
  not-before time, *before* the copy is published; a record read again (after a crash, or by
  the partition's next owner) that has a note gets that same copy published again instead of a
  second deferral. It may never have been published; if it was, both copies are one retry key.
* `RetriesInHand` holds each herald.retry key (message id, attempt, not-before) by one record at
  a time, so a copy published twice is sent once (copies share a key, so a partition, so an owner).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Hashable, Mapping

import msgspec

from herald import metrics
from herald.db.claims import Deferral, RetryKey, Source
from herald.domain.reasons import Reason
from herald.domain.records import OutboundMessage
from herald_worker.claim_store import ClaimStore
from herald_worker.leases import Lease
from herald_worker.scheduler import Item

log = logging.getLogger(__name__)


def retry_key(message: OutboundMessage) -> RetryKey:
    return (message.id, message.attempt, message.not_before_ms)


def source(item: Item) -> Source:
    tp = item.partition
    return Source(item.message.id, tp.topic, tp.partition, item.offset)  # type: ignore[attr-defined]


class Backlog:
    def __init__(self, buffer_seconds: float, buffer_min: int) -> None:
        self._seconds = buffer_seconds
        self._min = buffer_min
        self._horizon_ms: dict[uuid.UUID, int] = {}
        """Per tenant: when its next deferred message may go (deferrals are spread at its rate)."""

    def later(self, message: OutboundMessage, waiting: int, rate: float, now_ms: int) -> OutboundMessage | None:
        """The message re-queued for later if its tenant already has `waiting` messages, more
        than it may send in `buffer_seconds` at `rate`; else None."""
        allowed = max(self._min, int(rate * self._seconds))
        if waiting < allowed:
            return None
        # Its turn: after what is already waiting and what was deferred before it, at the tenant's
        # rate, so the deferred messages come back one by one, never all at once.
        # Never the record's own not-before: a copy must not share its record's retry key.
        horizon = max(
            self._horizon_ms.get(message.tenant_id, 0), now_ms + int(1000 * waiting / rate), message.not_before_ms + 1
        )
        metrics.RETRIES_SCHEDULED.labels(Reason.TENANT_BACKLOG).inc()
        if horizon >= message.expires_at_ms:
            # Its turn would come after its TTL: it comes back at the TTL to expire, on time, and
            # takes no turn from the messages deferred after it.
            return msgspec.structs.replace(message, not_before_ms=message.expires_at_ms)
        self._horizon_ms[message.tenant_id] = horizon + max(1, int(1000 / rate))
        return msgspec.structs.replace(message, not_before_ms=horizon)


class RetriesInHand:
    """herald.retry records admitted and not finished, by key."""

    def __init__(self) -> None:
        self._items: dict[RetryKey, Item] = {}

    def __contains__(self, key: RetryKey) -> bool:
        return key in self._items

    def hold(self, item: Item, done: Collection[RetryKey]) -> bool:
        """Whether this herald.retry record is the one to handle its key: not if the key was
        handled before (`done`) or another record of it is in hand."""
        key = retry_key(item.message)
        if key in done or key in self._items:
            return False
        self._items[key] = item
        return True

    def release(self, item: Item) -> None:
        """`item` no longer holds its key (finished, or its partition lost); no-op for any other."""
        key = retry_key(item.message)
        if self._items.get(key) is item:
            del self._items[key]

    def drop(self, partitions: Collection[Hashable]) -> None:
        self._items = {k: i for k, i in self._items.items() if i.partition not in partitions}


class Deferrals:
    def __init__(self, store: ClaimStore, in_hand: RetriesInHand) -> None:
        self._store = store
        self._in_hand = in_hand

    async def noted_before(
        self, fresh: list[Item], leases: Mapping[Hashable, Lease[Hashable] | None]
    ) -> list[tuple[Item, Deferral]]:
        """Records that an earlier owner of their partition deferred (noted before their copies
        were published) and could not commit. A lease's notes from where it started reading are
        loaded once, with its first records (`leases`: each partition's lease when they were
        fetched); each note is forgotten once matched."""
        starts: dict[Hashable, int] = {}
        for i in fresh:
            lease = leases.get(i.partition)
            if lease is not None and lease.notes is None:
                starts[i.partition] = min(starts.get(i.partition, i.offset), i.offset)
        if starts:
            notes = await self._store.deferred_from(
                [(tp.topic, tp.partition, o) for tp, o in starts.items()]  # type: ignore[attr-defined]
            )
            loaded: dict[tuple[str, int], dict[int, Deferral]] = {}
            for tp in starts:
                lease = leases[tp]
                # Only a lease still open: a closed one's partition has a new lease (maybe here),
                # which loads its own notes, and this query may have missed some of them.
                if lease is not None and lease.open and lease.notes is None:
                    lease.notes = loaded[(tp.topic, tp.partition)] = {}  # type: ignore[attr-defined]
            for n in notes:
                if (known := loaded.get((n.source.topic, n.source.partition))) is not None:
                    known[n.source.offset] = n
        matched = []
        for i in fresh:
            lease = leases.get(i.partition)
            known = lease.notes if lease is not None and lease.open else None
            if known and (note := known.get(i.offset)) is not None and note.source.message_id == i.message.id:
                del known[i.offset]
                matched.append((i, note))
        if matched:
            log.info("records deferred by an earlier owner read again", extra={"count": len(matched)})
        return matched

    async def note(self, deferred: list[tuple[Item, OutboundMessage]]) -> None:
        """Note records about to be deferred, with their copies' not-before times. Before the
        copies exist: whoever reads these records again publishes the same copies."""
        if deferred:
            await self._store.note_deferred([Deferral(source(i), m.not_before_ms) for i, m in deferred])

    async def copies_to_publish_again(self, noted: list[tuple[Item, Deferral]]) -> list[tuple[Item, OutboundMessage]]:
        """The copies of records deferred by an earlier owner that may never have reached the
        broker: all of them but those already handled, or in hand here (a copy published twice is
        handled once, see `RetriesInHand`). A note without a copy time was written after its copy
        was acknowledged: nothing to publish."""
        copies = [
            (i, msgspec.structs.replace(i.message, not_before_ms=n.copy_not_before_ms))
            for i, n in noted if n.copy_not_before_ms is not None
        ]  # fmt: skip
        if not copies:
            return []  # every fetch but one after a crash or a rebalance: no query
        done = await self._store.retries_done([retry_key(m) for _, m in copies])
        return [(i, m) for i, m in copies if retry_key(m) not in done and retry_key(m) not in self._in_hand]
