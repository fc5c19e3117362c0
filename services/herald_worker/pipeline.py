"""The worker's pipelined consume loop: fetch, schedule, deliver, commit — concurrently.

The parts, each with one job and tested on its own: `leases.py` (ownership of a partition as a
lifetime), `timer.py` (herald.retry records waiting for their time), `dispatch.py` (who is sent
next, with at most `max_in_flight` in flight), `deferrals.py` (a tenant's
excess deferred once, whoever reads it again), `claim_store.py` (what is noted in Postgres),
`scheduler.py`, `pauses.py`, `offsets.py`, `pacing.py`, `provider_gate.py`. This module is their
composition: the fetch and commit loops, the admission of a fetched batch, the rebalance
callbacks, and the drain (`herald.kafka.drain`, shared with the sinks).

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
is sent once (`deferrals.py`).
Rebalance: each partition is owned under a `Lease` (`leases.py`) that a revocation closes;
work begun under a lease checks that lease, not the partition. An admission in progress
finishes first, up to `drain_seconds` (its deferral notes are then written before the next
owner loads them; one that takes longer publishes no copies for the partitions it lost);
waiting messages of revoked partitions are dropped, their in-flight ones finished and
committed before the partitions are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Container, Hashable

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from herald import clock, metrics
from herald.db.content_keys import ContentKeys
from herald.db.pool import until_written
from herald.domain.models import Category, Channel, Tier
from herald.domain.records import ENCODER, MESSAGE_DECODER, OutboundMessage, SealedMessageV2, message_key
from herald.kafka.consumer import Parker, Record, report_lag
from herald.kafka.drain import drain
from herald.kafka.offsets import CommitPolicy, Committer, OffsetTracker
from herald.kafka.producer import Record as Outgoing
from herald.kafka.topics import RETRY, WORKER_GROUP, Names, class_topic
from herald.runtime import until_stopped
from herald.sealing import ContentUnavailable, reseal
from herald_worker.claim_store import ClaimStore
from herald_worker.deferrals import Backlog, Deferrals, RetriesInHand, retry_key, source
from herald_worker.delivery import Outcome
from herald_worker.dispatch import Dispatch
from herald_worker.leases import Lease, Leases
from herald_worker.pacing import BucketPacer, TenantRates
from herald_worker.pauses import PausePolicy
from herald_worker.provider_gate import ProviderGate
from herald_worker.schedule import Schedule
from herald_worker.scheduler import PRIORITY, Item, Scheduler
from herald_worker.settings import WorkerSettings
from herald_worker.timer import RetryTimer
from herald_worker.worker import Processor

log = logging.getLogger(__name__)


class Pipeline(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        names: Names,
        processor: Processor,
        settings: WorkerSettings,
        *,
        content_keys: ContentKeys,
        gate: ProviderGate,
        claims: ClaimStore,
        rates: TenantRates,
        pacer: Callable[[Callable[[], None]], BucketPacer[Tier]],
        park: Parker,
        schedule: Schedule | None = None,
        self_gated: Container[Channel] = frozenset(),
    ) -> None:
        """`pacer` builds the tenants' token pacer around the callback that wakes dispatch;
        `park` keeps a record that does not decode (`herald.parking`); `gate` holds the sends of
        every channel but `self_gated`, whose providers gate themselves (WhatsApp: per number; sms
        once routes are configured: per provider). Asked per message: it may change at run time.
        `schedule` keeps records whose `send_at` is far ahead (`herald_worker.schedule`); without
        one they wait in memory like retries."""
        self._park = park
        self._schedule = schedule
        self._consumer = consumer
        self._names = names
        self._processor = processor
        self._settings = settings
        self._content_keys = content_keys
        self._claims = claims
        self._scheduler = Scheduler(settings.recipient_gap_seconds)
        metrics.WORKER_OLDEST_BUFFERED_SECONDS.set_function(self._oldest_buffered_seconds)
        self._tracker: OffsetTracker[TopicPartition] = OffsetTracker()
        self._committer = Committer(consumer, self._tracker, CommitPolicy(settings.commit_interval_seconds))
        wake = asyncio.Event()
        self._rates = rates
        self._pacer = pacer(wake.set)
        self._gate = gate
        gate.attach(wake.set)
        self._timer = RetryTimer()
        self._dispatch = Dispatch(
            self._scheduler,
            self._timer,
            gate,
            self._pacer,
            rates,
            settings.max_in_flight,
            self._release_due,
            wake,
            gated=lambda item: item.message.channel not in self_gated,
        )
        self._class_of = {names.topic(class_topic(c)): c for c in Category}
        self._retry_topic = names.topic(RETRY)
        self._paused: set[TopicPartition] = set()
        self._pauses: PausePolicy[TopicPartition] = PausePolicy(
            settings.buffer_per_class, settings.retry_hold_max, settings.max_in_flight
        )
        self._leases: Leases[TopicPartition] = Leases()
        self._in_hand = RetriesInHand()
        self._deferrals = Deferrals(claims, self._in_hand)
        self._backlog = Backlog(settings.tenant_buffer_seconds, settings.tenant_buffer_min)
        self._admission_idle = asyncio.Event()
        self._admission_idle.set()

    # --- the three loops ----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        loops = asyncio.gather(self._fetch_loop(), self._dispatch.run(self._deliver, stop), self._commit_loop())
        try:
            await until_stopped(loops, stop)  # a loop that dies is re-raised
            # Fetching stops and no send starts; waiting messages are left for the next owner.
            await drain(self._dispatch.stop, self._dispatch.in_flight(), self._committer,
                        self._settings.drain_seconds, group=WORKER_GROUP)  # fmt: skip
        finally:
            self._dispatch.stop()
            loops.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loops
            await self._pacer.close()
            await self._gate.close()

    async def _fetch_loop(self) -> None:
        while not self._dispatch.stopping:
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

    async def _commit_loop(self) -> None:
        while not self._dispatch.stopping:
            await asyncio.sleep(self._settings.commit_interval_seconds)
            await self._committer.commit()

    # --- pieces ---------------------------------------------------------------------------------
    async def _deliver(self, item: Item) -> None:
        try:
            if self._dispatch.held_back(item):
                # A suspended tenant sends nothing: the message waits on herald.retry (or expires).
                # Its state is read again here once stale, so a lifted suspension is seen.
                await self._rates.get(item.message.tenant_id)
            if self._dispatch.held_back(item):
                outcome = self._processor.held(item.message, self._settings.suspended_recheck_seconds)
            else:
                outcome = await self._processor.deliver(item.message)
        finally:
            self._dispatch.finished(item)
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
            await self._claims.retry_done(retry_key(item.message))
            self._in_hand.release(item)
        self._tracker.finish(item.partition, item.offset)

    def _settle_if_expired(self, item: Item) -> bool:
        """A message past its TTL before its turn is settled now (`expired`), without a tenant
        token, a provider token or a slot: under overload, expired messages must not take the
        turns of live ones (they would, one by one, and the live ones behind them expire too)."""
        if self._dispatch.stopping:
            return False  # the drain waits for nothing new: the next owner settles it
        outcome = self._processor.expired(item.message)
        if outcome is None:
            return False
        self._dispatch.start(self._record(item, outcome), item.partition)
        return True

    async def _admit(self, batch: dict[TopicPartition, list[Record]]) -> None:
        now_ms = clock.now_ms()
        # The leases these records were fetched under. Each await below may span a rebalance: the
        # records of a lease closed meanwhile (in an eager rebalance, every partition, even one
        # assigned back at once) are dropped unfinished, and its owner reads them again.
        leases: dict[Hashable, Lease[TopicPartition] | None] = {tp: self._leases.of(tp) for tp in batch}

        def still_owned(tp: Hashable) -> bool:
            lease = leases[tp]
            return lease is not None and lease.open

        arrived, undecodable = self._decode(batch, leases)
        for record, error in undecodable:
            # Kept whole and counted, never skipped silently: a producer that wrote what this
            # worker cannot read is a fault to fix, and `herald parked replay` sends it again then.
            await self._park(WORKER_GROUP, record, error)
            self._tracker.finish(TopicPartition(record.topic, record.partition), record.offset)
        await self._content_keys_for(arrived)
        fresh: list[Item] = []
        unreadable: list[tuple[SealedMessageV2, TopicPartition, int, str]] = []
        for sealed, tp, offset in arrived:
            try:
                fresh.append(Item(self._content_keys.open(sealed), tp, offset, sealed))
            except ContentUnavailable as exc:
                unreadable.append((sealed, tp, offset, str(exc)))
        unreadable = [u for u in unreadable if still_owned(u[1])]
        if unreadable:
            await self._settle_unreadable(unreadable)
        # Idempotency: a repeated request produced a second record with the same id; only the
        # record that claimed the id first is delivered (one delivery, one bill). Only the API's
        # records claim: a herald.retry record is this message's own later attempt (deferred or
        # retried after its claim was taken), and is handled once per key instead (below).
        sources = {source(i): i for i in fresh if i.message.idempotent and not self._from_retry(i)}
        repeats = await self._claims.claim(list(sources))
        metrics.IDEMPOTENT_REPEATS.inc(len(repeats))
        skipped = {id(sources[s]) for s in repeats}
        # herald.retry records handled before (read again after a crash), or copies of one in hand.
        retried = [i for i in fresh if self._from_retry(i) and still_owned(i.partition)]
        done = await self._claims.retries_done([retry_key(i.message) for i in retried])
        skipped |= {id(i) for i in retried if not self._in_hand.hold(i, done)}
        # Records an earlier owner of the partition deferred: their copy, not a second deferral.
        noted = await self._deferrals.noted_before([i for i in fresh if id(i) not in skipped], leases)
        republished = {id(i) for i, _ in noted}
        deferred: list[tuple[Item, OutboundMessage]] = []
        parked: list[Item] = []
        # One rate lookup per tenant per fetch, not per message (the fetch loop is on the OTP path).
        rates = {t: (await self._rates.get(t))[1] for t in {i.message.tenant_id for i in fresh}}
        for item in fresh:
            if not still_owned(item.partition):
                self._in_hand.release(item)
            elif id(item) in skipped:
                self._tracker.finish(item.partition, item.offset)
            elif id(item) in republished:
                pass  # finished below, once its copy is on the broker
            elif self._settle_if_expired(item):
                pass
            elif self._parks(item, now_ms):
                parked.append(item)
            elif item.message.not_before_ms > now_ms:
                self._timer.hold(item)
            elif (later := self._later(item, now_ms, rates)) is not None:
                deferred.append((item, later))
            else:
                self._scheduler.add(item)
        if parked and self._schedule is not None:
            await self._schedule.park(parked)
            for item in parked:
                if still_owned(item.partition):  # else its next owner reads and parks it (once) again
                    self._tracker.finish(item.partition, item.offset)
        await self._deferrals.note(deferred)
        # A lease closed while this admission waited (a revocation waits for it, but not for
        # ever): the partition is its next owner's, who publishes the noted copies itself or, if
        # it loaded its notes before these were written, defers the records anew. Copies
        # published here as well could be second copies under other keys, each message sent twice.
        deferred = [(i, m) for i, m in deferred if still_owned(i.partition)]
        noted = [(i, n) for i, n in noted if still_owned(i.partition)]
        again = await self._deferrals.copies_to_publish_again(noted)
        if deferred or noted:
            await self._processor.publish(
                [
                    Outgoing(RETRY, message_key(m.tenant_id, m.to), ENCODER.encode(reseal(i.sealed, m)))
                    for i, m in deferred + again
                ]
            )
            for item in [i for i, _ in deferred] + [i for i, _ in noted]:
                await self._finish(item)
        self._dispatch.wake()

    def _decode(
        self, batch: dict[TopicPartition, list[Record]], leases: dict[Hashable, Lease[TopicPartition] | None]
    ) -> tuple[list[tuple[SealedMessageV2, TopicPartition, int]], list[tuple[Record, msgspec.DecodeError]]]:
        """The records read, decoded; and those that do not decode, with why."""
        arrived: list[tuple[SealedMessageV2, TopicPartition, int]] = []
        undecodable: list[tuple[Record, msgspec.DecodeError]] = []
        for tp, records in batch.items():
            lease = leases[tp]
            for record in records:
                self._tracker.read(tp, record.offset)
                if lease is not None:
                    lease.fetched_next = record.offset + 1
                try:
                    arrived.append((MESSAGE_DECODER.decode(record.value or b""), tp, record.offset))
                except msgspec.DecodeError as exc:
                    undecodable.append((record, exc))
        return arrived, undecodable

    async def _content_keys_for(self, arrived: list[tuple[SealedMessageV2, TopicPartition, int]]) -> None:
        hours = {sealed.content_key for sealed, _, _ in arrived}
        await until_written(lambda: self._content_keys.load(hours))

    async def _settle_unreadable(self, unreadable: list[tuple[SealedMessageV2, TopicPartition, int, str]]) -> None:
        """Messages whose content could not be opened get their final status (never sent)."""
        await self._processor.publish(
            [r for sealed, _, _, why in unreadable for r in self._processor.unreadable(sealed, why)]
        )
        for _, tp, offset, _ in unreadable:
            self._tracker.finish(tp, offset)

    def _later(self, item: Item, now_ms: int, rates: dict[uuid.UUID, float]) -> OutboundMessage | None:
        m = item.message
        return self._backlog.later(m, self._scheduler.waiting(m.tenant_id, m.category), rates[m.tenant_id], now_ms)

    def _parks(self, item: Item, now_ms: int) -> bool:
        """A scheduled message (a class-topic record due well ahead) waits in the database."""
        return (
            self._schedule is not None
            and item.message.not_before_ms > now_ms + self._settings.schedule_park_ahead_seconds * 1000
            and not self._from_retry(item)
        )

    def _from_retry(self, item: Item) -> bool:
        return item.partition.topic == self._retry_topic  # type: ignore[attr-defined, no-any-return]

    def _release_due(self) -> None:
        for item in self._timer.due(clock.now_ms()):
            if not self._settle_if_expired(item):
                self._scheduler.add(item)
                self._dispatch.wake()

    def _oldest_buffered_seconds(self) -> float:
        oldest = self._scheduler.oldest_accepted_ms()
        return 0.0 if oldest is None else max(0.0, (clock.now_ms() - oldest) / 1000)

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
            held=len(self._timer),
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
        lease = self._leases.of(tp)
        fetched = None if lease is None else lease.fetched_next
        if highwater is None or fetched is None:
            return 0
        return max(0, highwater - fetched)

    def _report_lag(self, batch: dict[TopicPartition, list[Record]]) -> None:
        for tp in batch:
            # Not for a partition revoked while the batch was admitted (aiokafka asserts on its highwater).
            if (lease := self._leases.of(tp)) is not None and lease.fetched_next is not None:
                report_lag(self._consumer, self._names, WORKER_GROUP, tp, lease.fetched_next)

    # --- rebalance (aiokafka awaits these around a group rejoin) -----------------------------------
    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        # An admission in progress may be deferring records of these partitions: let it write its
        # notes (and publish their copies) before the next owner loads them. Bounded: a worker
        # stuck on its database must not hold the whole group's rebalance.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._admission_idle.wait(), self._settings.drain_seconds)
        self._leases.revoke(revoked)
        self._scheduler.drop(revoked)
        self._timer.drop(revoked)
        self._in_hand.drop(revoked)
        if finishing := self._dispatch.in_flight(revoked):
            await asyncio.wait(finishing, timeout=self._settings.drain_seconds)
        await self._committer.commit(revoked)
        self._tracker.forget(revoked)
        self._paused -= revoked

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._leases.grant(assigned)
