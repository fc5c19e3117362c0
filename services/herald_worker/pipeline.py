"""The worker's pipelined consume loop: fetch, schedule, deliver, commit — concurrently.

* **Fetch** reads the three class topics and `herald.retry`. Records enter the scheduler (class
  priority, tenant round robin, recipient lanes; see `scheduler.py`); `herald.retry` records wait
  in a timer heap until their `not_before_ms`. Fetching is bounded: a class whose waiting
  messages reach `buffer_per_class` is paused, and **lower classes are paused while a higher
  class has records on the broker not yet fetched**, so a marketing backlog never stands between
  the broker and an OTP (`pauses.py`). A tenant whose waiting messages exceed
  ~`tenant_buffer_seconds` of its rate has the excess deferred to `herald.retry` (not before its
  turn would come), so one slow tenant cannot fill the buffer and stall the partitions every
  other tenant shares.
* **Dispatch** hands the scheduler's next message to the processor while fewer than
  `max_in_flight` are in flight; a tenant is skipped while its pacer (shared token bucket) has
  no token, and every tenant while the provider gate (`provider_gate.py`: the provider's
  capacity, its Retry-After) is not ready.
* **Commit**: every `commit_interval_seconds`, each partition's offset advances past the records
  whose outcome the broker has acknowledged (out-of-order completion, `offsets.py`).

SIGTERM: fetching stops and no send starts, waiting messages are left for the next owner
(uncommitted), in-flight ones finish within `drain_seconds`, the final offsets are committed.
SIGKILL: uncommitted records are read again; those that had been sent are the duplicates,
bounded by what was in hand. Those that had been deferred are not deferred again: each deferral
is noted, with its copy's not-before time, before the copy is published; a record read again
that has a note gets that same copy published again (it may never have been), and herald.retry
records are handled once per key (message id, attempt, not-before), so a copy published twice
is sent once (`_deferred_before`, `_hold_retry_key`).
Rebalance: an admission in progress finishes first, up to `drain_seconds` (its deferral notes
are then written before the next owner loads them; one that takes longer publishes no copies for
the partitions it lost); waiting messages of revoked partitions are dropped, their in-flight
ones finished and committed before the partitions are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
import uuid
from collections.abc import Coroutine, Iterable
from functools import partial

import asyncpg
import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from herald import clock, metrics
from herald.db import claims
from herald.db.content_keys import ContentKeys
from herald.db.pool import until_written
from herald.domain.models import Category, KeyKind
from herald.domain.reasons import Reason
from herald.domain.records import ENCODER, MESSAGE_DECODER, OutboundMessage, SealedMessageV2, message_key
from herald.kafka.producer import Record
from herald.kafka.topics import RETRY, WORKER_GROUP, Names, class_topic
from herald.runtime import until_stopped
from herald.sealing import ContentUnavailable, reseal
from herald.settings import WorkerSettings
from herald_worker.delivery import Outcome
from herald_worker.offsets import OffsetTracker
from herald_worker.pacing import BucketPacer, TenantRates, observe_tier
from herald_worker.pauses import PausePolicy
from herald_worker.provider_gate import ProviderGate
from herald_worker.scheduler import PRIORITY, Item, Scheduler
from herald_worker.worker import Processor

log = logging.getLogger(__name__)


class Pipeline(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        names: Names,
        processor: Processor,
        pool: asyncpg.Pool,
        settings: WorkerSettings,
        content_keys: ContentKeys,
        gate: ProviderGate,
    ) -> None:
        self._consumer = consumer
        self._names = names
        self._processor = processor
        self._pool = pool
        self._settings = settings
        self._content_keys = content_keys
        self._scheduler = Scheduler(settings.recipient_gap_seconds)
        self._tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._wake = asyncio.Event()
        self._rates = TenantRates(pool, settings.tenant_cache_seconds)
        self._pacer = BucketPacer.on_postgres(pool, self._rates.get, self._wake.set, observe_tier)
        self._gate = gate
        gate.attach(self._wake.set)
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._tasks: dict[asyncio.Task[None], TopicPartition] = {}
        self._held: list[tuple[int, int, Item]] = []
        self._sequence = itertools.count()
        self._class_of = {names.topic(class_topic(c)): c for c in Category}
        self._retry_topic = names.topic(RETRY)
        self._fetched_next: dict[TopicPartition, int] = {}
        self._horizon_ms: dict[object, int] = {}
        """Per tenant: when its next deferred message may go (deferrals are spread at its rate)."""
        self._paused: set[TopicPartition] = set()
        self._pauses: PausePolicy[TopicPartition] = PausePolicy(
            settings.buffer_per_class, settings.retry_hold_max, settings.max_in_flight
        )
        self._stopping = asyncio.Event()
        self._assignments = itertools.count(1)
        self._assigned: dict[TopicPartition, int] = {}
        """Partition -> which assignment it came with: a fetch that waited (on the database) across
        a rebalance holds records of partitions this worker no longer owns, or owns anew."""
        self._noted_deferrals: dict[TopicPartition, dict[int, claims.Deferral]] = {}
        """Partition -> offset -> the deferral an earlier owner noted for the record there, for the
        records this assignment has not read again yet (`_deferred_before`)."""
        self._retries_in_hand: dict[claims.RetryKey, Item] = {}
        """herald.retry records admitted and not finished, by key (`_hold_retry_key`)."""
        self._admission_idle = asyncio.Event()
        self._admission_idle.set()

    # --- the three loops ----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        loops = asyncio.gather(self._fetch_loop(), self._dispatch_loop(), self._commit_loop())
        try:
            await until_stopped(loops, stop)  # a loop that dies is re-raised
            await self._drain()
        finally:
            self._stopping.set()
            loops.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loops
            await self._pacer.close()
            await self._gate.close()

    async def _fetch_loop(self) -> None:
        while not self._stopping.is_set():
            self._apply_pauses()
            batch = await self._consumer.getmany(timeout_ms=100, max_records=self._settings.batch_max_records)
            if batch:
                self._admission_idle.clear()
                try:
                    await self._admit(batch)
                finally:
                    self._admission_idle.set()
                self._report_lag(batch)
            self._release_due()

    async def _dispatch_loop(self) -> None:
        while not self._stopping.is_set():
            await self._slots.acquire()
            if self._stopping.is_set():
                # The slot came free during the drain: start nothing the drain is not waiting for.
                self._slots.release()
                return
            item = self._next()
            while item is None:
                self._wake.clear()
                await self._sleep_until_something_may_be_ready()
                if self._stopping.is_set():
                    self._slots.release()
                    return
                self._release_due()
                item = self._next()
            self._start(self._deliver(item), item)

    async def _commit_loop(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self._settings.commit_interval_seconds)
            await self._commit()

    # --- pieces ---------------------------------------------------------------------------------
    def _next(self) -> Item | None:
        """The scheduler's next message if the provider can take one now (its capacity and
        throttling, `provider_gate.py`). The gate is asked inside the scheduler's choice, for a
        tenant with a ready message, so class order decides who gets the provider's next token."""
        item = self._scheduler.take(self._allow)
        if item is not None and item.message.key_kind is not KeyKind.TEST and not self._held_back(item):
            self._gate.take(item.message.id)
        return item

    def _allow(self, tenant_id: uuid.UUID) -> bool:
        if self._rates.suspended(tenant_id):
            return True  # to go back on herald.retry, unsent: it needs no token and no provider
        return self._gate.ready() and self._pacer.try_take(tenant_id)

    def _held_back(self, item: Item) -> bool:
        return self._rates.suspended(item.message.tenant_id)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def _deliver(self, item: Item) -> None:
        # The provider slot is held for the provider call only: publishing the outcome waits for
        # broker acks, and an OTP must not wait for a slot while others wait for acks.
        try:
            if self._held_back(item):
                # A suspended tenant sends nothing: the message waits on herald.retry (or expires).
                # Its state is read again here once stale, so a lifted suspension is seen.
                await self._rates.get(item.message.tenant_id)
            if self._held_back(item):
                outcome = self._processor.held(item.message, self._settings.suspended_recheck_seconds)
            else:
                outcome = await self._processor.deliver(item.message)
        finally:
            self._gate.settle(item.message.id)
            self._scheduler.done(item)
            self._slots.release()
            self._wake.set()
        await self._record(item, outcome)

    async def _record(self, item: Item, outcome: Outcome) -> None:
        await self._processor.publish(self._processor.records(item.message, item.sealed, outcome))
        # Only now may the offset be committed: a cancelled or failed publish leaves it in hand,
        # and the record is read again by the partition's next owner.
        await self._finish(item)

    async def _finish(self, item: Item) -> None:
        """The record's outcome is durable: its offset may be committed (a herald.retry record is
        first noted as handled, see `retries_done`)."""
        if self._from_retry(item):
            await until_written(partial(claims.retry_done, self._pool, _retry_key(item.message)))
            self._release_retry_key(item)
        self._tracker.finish(item.partition, item.offset)

    def _start(self, work: Coroutine[None, None, None], item: Item) -> None:
        """Run `work` for `item` as a task the drain and a revocation wait for."""
        task = asyncio.create_task(work)
        self._tasks[task] = item.partition
        task.add_done_callback(self._forget_task)

    def _settle_if_expired(self, item: Item) -> bool:
        """A message past its TTL before its turn is settled now (`expired`), without a tenant
        token, a provider token or a slot: under overload, expired messages must not take the
        turns of live ones (they would, one by one, and the live ones behind them expire too)."""
        if self._stopping.is_set():
            return False  # the drain waits for nothing new: the next owner settles it
        outcome = self._processor.expired(item.message)
        if outcome is None:
            return False
        self._start(self._record(item, outcome), item)
        return True

    async def _admit(self, batch: dict[TopicPartition, list[object]]) -> None:
        now_ms = clock.now_ms()
        assignment = {tp: self._assigned.get(tp) for tp in batch}
        arrived: list[tuple[SealedMessageV2, TopicPartition, int]] = []
        for tp, records in batch.items():
            for record in records:
                offset: int = record.offset  # type: ignore[attr-defined]
                self._tracker.read(tp, offset)
                self._fetched_next[tp] = offset + 1
                try:
                    arrived.append((MESSAGE_DECODER.decode(record.value or b""), tp, offset))  # type: ignore[attr-defined]
                except msgspec.DecodeError:
                    log.error(
                        "undecodable record skipped",
                        extra={"topic": tp.topic, "partition": tp.partition, "offset": offset},
                    )
                    self._tracker.finish(tp, offset)
        await until_written(lambda: self._content_keys.load({sealed.content_key for sealed, _, _ in arrived}))
        fresh: list[Item] = []
        unreadable: list[tuple[SealedMessageV2, TopicPartition, int, str]] = []
        for sealed, tp, offset in arrived:
            try:
                fresh.append(Item(self._content_keys.open(sealed), tp, offset, sealed))
            except ContentUnavailable as exc:
                unreadable.append((sealed, tp, offset, str(exc)))

        # Each await below may span a rebalance. The records of a partition revoked meanwhile (in
        # an eager rebalance, every partition, even one assigned back at once) are dropped here,
        # unfinished: the partition's owner reads them again from its last commit.
        def still_owned(tp: TopicPartition) -> bool:
            return assignment[tp] is not None and self._assigned.get(tp) == assignment[tp]

        unreadable = [u for u in unreadable if still_owned(u[1])]
        if unreadable:
            await self._settle_unreadable(unreadable)
        # Idempotency: a repeated request produced a second record with the same id; only the
        # record that claimed the id first is delivered (one delivery, one bill). Only the API's
        # records claim: a herald.retry record is this message's own later attempt (deferred or
        # retried after its claim was taken), and is handled once per key instead (below).
        sources = {_source(i): i for i in fresh if i.message.idempotent and not self._from_retry(i)}
        repeats = await until_written(lambda: claims.claim(self._pool, list(sources)))
        metrics.IDEMPOTENT_REPEATS.inc(len(repeats))
        skipped = {id(sources[s]) for s in repeats}
        # herald.retry records handled before (read again after a crash), or copies of one in hand.
        retried = [i for i in fresh if self._from_retry(i) and still_owned(i.partition)]
        done = await until_written(lambda: claims.retries_done(self._pool, [_retry_key(i.message) for i in retried]))
        skipped |= {id(i) for i in retried if not self._hold_retry_key(i, done)}
        # Records an earlier owner of the partition deferred: their copy, not a second deferral.
        noted = await self._deferred_before([i for i in fresh if id(i) not in skipped], assignment)
        republished = {id(i) for i, _ in noted}
        deferred: list[tuple[Item, OutboundMessage]] = []
        # One rate lookup per tenant per fetch, not per message (the fetch loop is on the OTP path).
        rates = {t: (await self._rates.get(t))[1] for t in {i.message.tenant_id for i in fresh}}
        for item in fresh:
            if not still_owned(item.partition):
                self._release_retry_key(item)
            elif id(item) in skipped:
                self._tracker.finish(item.partition, item.offset)
            elif id(item) in republished:
                pass  # finished below, once its copy is on the broker
            elif self._settle_if_expired(item):
                pass
            elif item.message.not_before_ms > now_ms:
                heapq.heappush(self._held, (item.message.not_before_ms, next(self._sequence), item))
            elif (later := self._overflow(item, now_ms, rates)) is not None:
                deferred.append((item, later))
            else:
                self._scheduler.add(item)
        if deferred:
            # Noted before the copies exist: whoever reads these records again (after a crash, or
            # a rebalance before the commit) publishes the same copies instead of deferring anew.
            await until_written(
                partial(
                    claims.note_deferred,
                    self._pool,
                    [claims.Deferral(_source(i), m.not_before_ms) for i, m in deferred],
                )
            )
        # A partition revoked while this admission waited (a revocation waits for it, but not
        # forever) is its next owner's: that owner publishes the noted copies itself or, if it
        # loaded its notes before these were written, defers the records anew. Copies published
        # here as well could be second copies under other keys, each message sent twice.
        deferred = [(i, m) for i, m in deferred if still_owned(i.partition)]
        noted = [(i, n) for i, n in noted if still_owned(i.partition)]
        again = await self._copies_to_publish_again(noted)
        if deferred or noted:
            await self._processor.publish(
                [
                    Record(RETRY, message_key(m.tenant_id, m.to), ENCODER.encode(reseal(i.sealed, m)))
                    for i, m in deferred + again
                ]
            )
            for item in [i for i, _ in deferred] + [i for i, _ in noted]:
                await self._finish(item)
        self._wake.set()

    async def _deferred_before(
        self, fresh: list[Item], assignment: dict[TopicPartition, int | None]
    ) -> list[tuple[Item, claims.Deferral]]:
        """Records that an earlier owner of their partition deferred (noted before their copies
        were published) and could not commit. A partition's notes from where this assignment
        started reading are loaded once, with its first records; each is forgotten once matched."""
        starts: dict[TopicPartition, int] = {}
        for i in fresh:
            if i.partition not in self._noted_deferrals:
                starts[i.partition] = min(starts.get(i.partition, i.offset), i.offset)
        if starts:
            notes = await until_written(
                lambda: claims.deferred_from(self._pool, [(tp.topic, tp.partition, o) for tp, o in starts.items()])
            )
            for tp in starts:
                # Only for the assignment these records were read in: another may have begun
                # meanwhile, and with it notes this query may have missed.
                if assignment[tp] is not None and self._assigned.get(tp) == assignment[tp]:
                    self._noted_deferrals[tp] = {}
            for n in notes:
                source = n.source
                if (known := self._noted_deferrals.get(TopicPartition(source.topic, source.partition))) is not None:
                    known[source.offset] = n
        matched = []
        for i in fresh:
            known = self._noted_deferrals.get(i.partition)
            if known and (note := known.get(i.offset)) is not None and note.source.message_id == i.message.id:
                del known[i.offset]
                matched.append((i, note))
        if matched:
            log.info("records deferred by an earlier owner read again", extra={"count": len(matched)})
        return matched

    async def _copies_to_publish_again(
        self, noted: list[tuple[Item, claims.Deferral]]
    ) -> list[tuple[Item, OutboundMessage]]:
        """The copies of records deferred by an earlier owner that may never have reached the
        broker: all of them but those already handled, or in hand here (a copy published twice is
        handled once, see `_hold_retry_key`). Notes older than migration 0014 were written after
        their copy was acknowledged: nothing to publish."""
        copies = [
            (i, msgspec.structs.replace(i.message, not_before_ms=n.copy_not_before_ms))
            for i, n in noted if n.copy_not_before_ms is not None
        ]  # fmt: skip
        if not copies:
            return []  # every fetch but one after a crash or a rebalance: no query
        done = await until_written(lambda: claims.retries_done(self._pool, [_retry_key(m) for _, m in copies]))
        return [(i, m) for i, m in copies if _retry_key(m) not in done and _retry_key(m) not in self._retries_in_hand]

    def _hold_retry_key(self, item: Item, done: set[claims.RetryKey]) -> bool:
        """Whether this herald.retry record is the one to handle its key (message id, attempt,
        not-before): not if the key was handled before or another record of it is in hand. A
        deferral's copy may be published twice (its note is written first, and a worker reading
        the deferred record again publishes it again); both copies are one attempt, sent once.
        Copies share a key, so a partition, so an owner."""
        key = _retry_key(item.message)
        if key in done or key in self._retries_in_hand:
            return False
        self._retries_in_hand[key] = item
        return True

    def _release_retry_key(self, item: Item) -> None:
        """`item` no longer holds its key (finished, or its partition lost); no-op for any other."""
        key = _retry_key(item.message)
        if self._retries_in_hand.get(key) is item:
            del self._retries_in_hand[key]

    async def _settle_unreadable(self, unreadable: list[tuple[SealedMessageV2, TopicPartition, int, str]]) -> None:
        """Messages whose content could not be opened get their final status (never sent)."""
        await self._processor.publish(
            [r for sealed, _, _, why in unreadable for r in self._processor.unreadable(sealed, why)]
        )
        for _, tp, offset, _ in unreadable:
            self._tracker.finish(tp, offset)

    def _overflow(self, item: Item, now_ms: int, rates: dict[uuid.UUID, float]) -> OutboundMessage | None:
        """The message re-queued for later if its tenant already has more waiting than it may send
        in `tenant_buffer_seconds`; else None."""
        m = item.message
        waiting = self._scheduler.waiting(m.tenant_id, m.category)
        rate = rates[m.tenant_id]
        allowed = max(self._settings.tenant_buffer_min, int(rate * self._settings.tenant_buffer_seconds))
        if waiting < allowed:
            return None
        # Its turn: after what is already waiting and what was deferred before it, at the tenant's
        # rate, so the deferred messages come back one by one, never all at once.
        # Never the record's own not-before: a copy must not share its record's retry key.
        horizon = max(self._horizon_ms.get(m.tenant_id, 0), now_ms + int(1000 * waiting / rate), m.not_before_ms + 1)
        metrics.RETRIES_SCHEDULED.labels(Reason.TENANT_BACKLOG).inc()
        if horizon >= m.expires_at_ms:
            # Its turn would come after its TTL: it comes back at the TTL to expire, on time, and
            # takes no turn from the messages deferred after it.
            return msgspec.structs.replace(m, not_before_ms=m.expires_at_ms)
        self._horizon_ms[m.tenant_id] = horizon + max(1, int(1000 / rate))
        return msgspec.structs.replace(m, not_before_ms=horizon)

    def _from_retry(self, item: Item) -> bool:
        return item.partition.topic == self._retry_topic  # type: ignore[attr-defined, no-any-return]

    def _release_due(self) -> None:
        now_ms = clock.now_ms()
        while self._held and self._held[0][0] <= now_ms:
            _, _, item = heapq.heappop(self._held)
            if not self._settle_if_expired(item):
                self._scheduler.add(item)
                self._wake.set()

    async def _sleep_until_something_may_be_ready(self) -> None:
        deadlines = [0.5]
        if (resting := self._scheduler.next_wakeup()) is not None:
            deadlines.append(resting - time.monotonic())
        if self._held:
            deadlines.append((self._held[0][0] - clock.now_ms()) / 1000)
        if (opens := self._gate.opens_at()) is not None:
            deadlines.append(opens - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.001, min(deadlines)))

    def _apply_pauses(self) -> None:
        for buffered_class, waiting in self._scheduler.buffered.items():
            metrics.WORKER_BUFFERED.labels(buffered_class.value).set(waiting)
        assigned = self._consumer.assignment()
        by_class: dict[Category, list[TopicPartition]] = {c: [] for c in PRIORITY}
        retry: list[TopicPartition] = []
        for tp in assigned:
            category = self._class_of.get(tp.topic)
            if category is not None:
                by_class[category].append(tp)
            elif tp.topic == self._retry_topic:
                retry.append(tp)
        pause = self._pauses.paused(
            by_class,
            retry,
            buffered=self._scheduler.buffered,
            unfetched=self._unfetched,
            held=len(self._held),
            in_hand=self._tracker.in_hand(),
        )
        if pause != self._paused:
            if resume := [tp for tp in self._paused - pause if tp in assigned]:
                self._consumer.resume(*resume)
            if newly := [tp for tp in pause - self._paused]:
                self._consumer.pause(*newly)
            self._paused = pause

    def _unfetched(self, tp: TopicPartition) -> int:
        highwater: int | None = self._consumer.highwater(tp)
        fetched = self._fetched_next.get(tp)
        if highwater is None or fetched is None:
            return 0
        return max(0, highwater - fetched)

    def _report_lag(self, batch: dict[TopicPartition, list[object]]) -> None:
        for tp in batch:
            if tp not in self._assigned:
                continue  # revoked while the batch was admitted (aiokafka asserts on its highwater)
            metrics.CONSUMER_LAG.labels(WORKER_GROUP, self._names.unprefixed(tp.topic), str(tp.partition)).set(
                self._unfetched(tp)
            )

    async def _commit(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        offsets = self._tracker.committable()
        if partitions is not None:
            wanted = set(partitions)
            offsets = {tp: o for tp, o in offsets.items() if tp in wanted}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # A rebalance took the partitions: their next owner re-reads from the last commit.
            log.warning("commit failed; records will be re-read by the partition's owner", extra={"error": repr(exc)})
            return
        self._tracker.committed(offsets)

    async def _drain(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self._settings.drain_seconds)
            if pending:
                log.warning("drain deadline passed with messages in flight", extra={"count": len(pending)})
        await self._commit()

    # --- rebalance (aiokafka awaits these around a group rejoin) -----------------------------------
    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        # An admission in progress may be deferring records of these partitions: let it write its
        # notes (and publish their copies) before the next owner loads them. Bounded: a worker
        # stuck on its database must not hold the whole group's rebalance.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._admission_idle.wait(), self._settings.drain_seconds)
        for tp in revoked:
            self._assigned.pop(tp, None)
            self._noted_deferrals.pop(tp, None)
        self._scheduler.drop(revoked)
        self._held = [h for h in self._held if h[2].partition not in revoked]
        heapq.heapify(self._held)
        self._retries_in_hand = {k: i for k, i in self._retries_in_hand.items() if i.partition not in revoked}
        finishing = [task for task, tp in self._tasks.items() if tp in revoked]
        if finishing:
            await asyncio.wait(finishing, timeout=self._settings.drain_seconds)
        await self._commit(revoked)
        self._tracker.forget(revoked)
        for tp in revoked:
            self._fetched_next.pop(tp, None)
        self._paused -= revoked

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        number = next(self._assignments)
        for tp in assigned:
            self._assigned[tp] = number
            self._noted_deferrals.pop(tp, None)


def _retry_key(message: OutboundMessage) -> claims.RetryKey:
    return (message.id, message.attempt, message.not_before_ms)


def _source(item: Item) -> claims.Source:
    tp = item.partition
    return claims.Source(item.message.id, tp.topic, tp.partition, item.offset)  # type: ignore[attr-defined]
