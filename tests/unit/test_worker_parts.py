"""The worker's parts, each on its own, and the pipeline composed of them against a scripted
consumer and in-memory stores: no broker, no database, milliseconds per test.

The integration tests (`test_crash.py`, `test_delivery_pressure.py`) prove the same guarantees
end to end with a real broker, real Postgres and SIGKILL; these pin down each part's rule so a
broken part fails here first, and by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
import pytest
from aiokafka import TopicPartition
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald import clock
from herald.db.claims import Deferral, RetryKey, Source
from herald.domain.models import Category, Channel, Tier
from herald.domain.records import ENCODER, MESSAGE_DECODER, OutboundMessage, SealedMessageV2
from herald.kafka.consumer import rebuilt_record
from herald.kafka.producer import Record
from herald.kafka.topics import RETRY, WORKER_GROUP, Names, class_topic
from herald.sealing import hour_of, open_with, seal
from herald_worker.deferrals import Backlog, Deferrals, RetriesInHand, retry_key
from herald_worker.delivery import Deliverer
from herald_worker.dispatch import Dispatch
from herald_worker.leases import Leases
from herald_worker.pipeline import Pipeline
from herald_worker.providers.base import Accepted
from herald_worker.scheduler import Item, Scheduler
from herald_worker.settings import WorkerSettings
from herald_worker.timer import RetryTimer
from herald_worker.worker import Processor
from tests.unit.fakes import outbound

NAMES = Names()
OTP = TopicPartition(NAMES.topic(class_topic(Category.AUTHENTICATION)), 0)
RETRIES = TopicPartition(NAMES.topic(RETRY), 0)


def item(partition: Any = OTP, offset: int = 0, **fields: Any) -> Item:
    m = outbound(**fields)
    return Item(m, partition, offset, None)  # type: ignore[arg-type]


# --- leases ----------------------------------------------------------------------------------


def test_a_lease_closes_on_revocation_and_a_partition_assigned_back_gets_a_new_one() -> None:
    leases: Leases[TopicPartition] = Leases()
    leases.grant({OTP})
    first = leases.of(OTP)
    assert first is not None
    assert first.open
    leases.revoke({OTP})
    assert not first.open
    assert leases.of(OTP) is None
    leases.grant({OTP})
    second = leases.of(OTP)
    assert second is not None
    assert second is not first
    assert not first.open  # what began under the first lease stays disowned
    leases.grant({OTP})  # assigned again without a revocation in between: still a new lease
    assert not second.open


# --- the retry timer -------------------------------------------------------------------------


def test_the_timer_releases_what_is_due_in_time_order_and_forgets_revoked_partitions() -> None:
    timer = RetryTimer()
    late, early, same, other = (item(offset=o, not_before_ms=t) for o, t in ((0, 300), (1, 100), (2, 100), (3, 50)))
    other = Item(other.message, RETRIES, 3, None)  # type: ignore[arg-type]
    for i in (late, early, same, other):
        timer.hold(i)
    assert timer.next_ms() == 50
    timer.drop({RETRIES})
    assert timer.due(99) == []
    assert timer.due(100) == [early, same]  # equal times keep their arrival order
    assert timer.next_ms() == 300
    assert len(timer) == 1


# --- the backlog policy ----------------------------------------------------------------------


def test_a_tenant_over_its_buffer_is_deferred_one_turn_at_a_time_at_its_rate() -> None:
    backlog = Backlog(buffer_seconds=5.0, buffer_min=2)
    tenant = uuid.uuid4()
    m = outbound(tenant_id=tenant, created_at_ms=0, expires_at_ms=1_000_000)
    assert backlog.later(m, waiting=9, rate=2.0, now_ms=0) is None  # 2/s x 5 s = 10 may wait
    first = backlog.later(m, waiting=10, rate=2.0, now_ms=0)
    second = backlog.later(m, waiting=10, rate=2.0, now_ms=0)
    assert first is not None
    assert second is not None
    assert first.not_before_ms == 5_000  # after the 10 waiting, at 2/s
    assert second.not_before_ms == 5_500  # the next turn, not the same instant
    short = outbound(tenant_id=uuid.uuid4(), created_at_ms=0, expires_at_ms=3_000)
    expiring = backlog.later(short, waiting=10, rate=2.0, now_ms=0)
    assert expiring is not None
    assert expiring.not_before_ms == 3_000  # back at its TTL, to expire on time


def test_a_deferred_copy_never_shares_its_records_retry_key() -> None:
    backlog = Backlog(buffer_seconds=0.0, buffer_min=0)
    m = outbound(not_before_ms=10_000, expires_at_ms=1_000_000)
    copy = backlog.later(m, waiting=0, rate=1000.0, now_ms=0)
    assert copy is not None
    assert retry_key(copy) != retry_key(m)


# --- retry keys in hand ----------------------------------------------------------------------


def test_a_retry_key_is_held_by_one_record_until_released() -> None:
    in_hand = RetriesInHand()
    first = item(RETRIES, 0, attempt=1, not_before_ms=5)
    copy = Item(first.message, RETRIES, 1, None)  # type: ignore[arg-type]
    assert in_hand.hold(first, done=set())
    assert not in_hand.hold(copy, done=set())  # the same key, in hand
    in_hand.release(copy)  # not the holder: no effect
    assert retry_key(first.message) in in_hand
    in_hand.release(first)
    assert not in_hand.hold(copy, done={retry_key(first.message)})  # handled before
    assert in_hand.hold(copy, done=set())
    in_hand.drop({RETRIES})
    assert retry_key(first.message) not in in_hand


# --- deferral notes, with an in-memory claim store --------------------------------------------


class Claims:
    """`ClaimStore` in memory; `stall` makes `claim` wait until set."""

    def __init__(self) -> None:
        self.claims: dict[uuid.UUID, Source] = {}
        self.done: set[RetryKey] = set()
        self.notes: list[Deferral] = []
        self.loads = 0
        self.stall: asyncio.Event | None = None

    async def claim(self, sources: Sequence[Source]) -> set[Source]:
        if self.stall is not None and sources:
            await self.stall.wait()
        for s in sources:
            self.claims.setdefault(s.message_id, s)
        return {s for s in sources if self.claims[s.message_id] != s}

    async def retries_done(self, keys: Sequence[RetryKey]) -> set[RetryKey]:
        return {k for k in keys if k in self.done}

    async def retry_done(self, key: RetryKey) -> None:
        self.done.add(key)

    async def note_deferred(self, deferrals: Sequence[Deferral]) -> None:
        self.notes.extend(deferrals)

    async def deferred_from(self, starts: Sequence[tuple[str, int, int]]) -> list[Deferral]:
        self.loads += 1
        return [n for n in self.notes for t, p, o in starts if (n.source.topic, n.source.partition) == (t, p)
                and n.source.offset >= o]  # fmt: skip


async def test_notes_are_loaded_once_per_lease_and_matched_once() -> None:
    claims, leases = Claims(), Leases[TopicPartition]()
    leases.grant({OTP})
    deferred = item(OTP, 7)
    claims.notes.append(Deferral(Source(deferred.message.id, OTP.topic, OTP.partition, 7), 123))
    deferrals = Deferrals(claims, RetriesInHand())
    held = {OTP: leases.of(OTP)}
    assert [(i, n.copy_not_before_ms) for i, n in await deferrals.noted_before([deferred], held)] == [(deferred, 123)]
    assert await deferrals.noted_before([deferred], held) == []  # matched once
    assert claims.loads == 1
    leases.grant({OTP})  # a new ownership loads the notes again
    assert len(await deferrals.noted_before([deferred], {OTP: leases.of(OTP)})) == 1
    assert claims.loads == 2


async def test_a_noted_copy_is_published_again_unless_handled_or_in_hand() -> None:
    claims, in_hand = Claims(), RetriesInHand()
    deferrals = Deferrals(claims, in_hand)
    a, b, c, old = (item(OTP, o, expires_at_ms=10**13) for o in range(4))
    noted = [(i, Deferral(Source(i.message.id, OTP.topic, 0, i.offset), 500 + i.offset)) for i in (a, b, c)]
    noted.append((old, Deferral(Source(old.message.id, OTP.topic, 0, 3), None)))  # acknowledged before
    claims.done.add((b.message.id, 0, 501))  # b's copy was handled
    in_hand.hold(Item(msgspec.structs.replace(c.message, not_before_ms=502), RETRIES, 9, None), set())  # type: ignore[arg-type]
    again = await deferrals.copies_to_publish_again(noted)
    assert [(i, m.not_before_ms) for i, m in again] == [(a, 500)]


# --- dispatch --------------------------------------------------------------------------------


class OpenGate:
    def __init__(self) -> None:
        self.open = True
        self.taken: list[uuid.UUID | None] = []

    def ready(self) -> bool:
        return self.open

    def take(self, message_id: uuid.UUID | None = None) -> None:
        self.taken.append(message_id)

    def settle(self, _: uuid.UUID) -> None: ...

    def opens_at(self) -> float | None:
        return None


class Tokens:
    def __init__(self, denied: set[uuid.UUID] | None = None) -> None:
        self.denied = denied or set()

    def try_take(self, tenant_id: uuid.UUID) -> bool:
        return tenant_id not in self.denied

    def suspended(self, _: uuid.UUID) -> bool:
        return False


class Sends:
    """A provider whose calls end only when the test lets them."""

    def __init__(self, dispatch: Dispatch) -> None:
        self.dispatch = dispatch
        self.started: list[Item] = []
        self.release: dict[uuid.UUID, asyncio.Event] = {}

    async def __call__(self, it: Item) -> None:
        self.started.append(it)
        self.release[it.message.id] = asyncio.Event()
        try:
            await self.release[it.message.id].wait()
        finally:
            self.dispatch.finished(it)


def dispatching(*items: Item, max_in_flight: int = 2, gate: OpenGate | None = None,
                tokens: Tokens | None = None, self_gated: frozenset[Channel] = frozenset(),
                ) -> tuple[Dispatch, Scheduler, Sends]:  # fmt: skip
    scheduler = Scheduler(0.0)
    for it in items:
        scheduler.add(it)
    tokens = tokens or Tokens()
    dispatch = Dispatch(scheduler, RetryTimer(), gate or OpenGate(), tokens, tokens, max_in_flight, lambda: None,
                        asyncio.Event(), gated=lambda i: i.message.channel not in self_gated)  # fmt: skip
    return dispatch, scheduler, Sends(dispatch)


async def test_dispatch_keeps_at_most_max_in_flight_and_starts_the_next_as_one_finishes() -> None:
    waiting = [item(offset=n, to=f"+4474001234{n:02d}") for n in range(4)]
    dispatch, _, sends = dispatching(*waiting, max_in_flight=2)
    running = asyncio.create_task(dispatch.run(sends))
    await until(lambda: len(sends.started) == 2)
    await asyncio.sleep(0.05)
    assert len(sends.started) == 2
    assert len(dispatch.in_flight()) == 2
    sends.release[sends.started[0].message.id].set()
    await until(lambda: len(sends.started) == 3)
    assert len(dispatch.in_flight()) == 2
    dispatch.stop()
    for event in sends.release.values():
        event.set()
    await asyncio.wait_for(running, 2)


async def test_after_stop_a_slot_that_comes_free_starts_nothing() -> None:
    waiting = [item(offset=n, to=f"+4474001234{n:02d}") for n in range(3)]
    dispatch, scheduler, sends = dispatching(*waiting, max_in_flight=1)
    running = asyncio.create_task(dispatch.run(sends))
    await until(lambda: len(sends.started) == 1)
    dispatch.stop()
    sends.release[sends.started[0].message.id].set()
    await asyncio.wait_for(running, 2)
    assert len(sends.started) == 1  # the two waiting are left for the partition's next owner
    assert sum(scheduler.buffered.values()) == 2


async def test_a_slot_freed_in_the_loop_turn_of_the_stop_signal_starts_nothing() -> None:
    """A worker stalled across SIGTERM resumes with a provider's reply and the signal at once; the
    drain's `stop()` comes turns later, and the freed slot must not start a send meanwhile."""
    waiting = [item(offset=n, to=f"+4474001234{n:02d}") for n in range(3)]
    dispatch, scheduler, sends = dispatching(*waiting, max_in_flight=1)
    requested = asyncio.Event()
    running = asyncio.create_task(dispatch.run(sends, requested))
    await until(lambda: len(sends.started) == 1)
    sends.release[sends.started[0].message.id].set()
    requested.set()  # the signal handler's `stop.set`, in the same turn as the reply
    await asyncio.wait_for(running, 2)
    assert len(sends.started) == 1
    assert sum(scheduler.buffered.values()) == 2
    assert dispatch.stopping


async def test_a_tenant_without_a_token_is_passed_over_and_a_closed_gate_holds_everyone() -> None:
    paced, free = uuid.uuid4(), uuid.uuid4()
    first, second = item(offset=0, tenant_id=paced), item(offset=1, tenant_id=free, to="+447400123499")
    gate, tokens = OpenGate(), Tokens({paced})
    gate.open = False
    dispatch, _, sends = dispatching(first, second, gate=gate, tokens=tokens)
    running = asyncio.create_task(dispatch.run(sends))
    await asyncio.sleep(0.1)
    assert sends.started == []  # the provider cannot take one: nobody goes
    gate.open = True
    dispatch.wake()
    await until(lambda: len(sends.started) == 1)
    assert sends.started[0].message.tenant_id == free  # the paced tenant's message waits its token
    assert gate.taken == [second.message.id]
    tokens.denied.clear()
    dispatch.wake()
    await until(lambda: len(sends.started) == 2)
    dispatch.stop()
    for event in sends.release.values():
        event.set()
    await asyncio.wait_for(running, 2)


async def test_a_shut_gate_holds_only_the_channels_whose_provider_it_gates() -> None:
    """The carrier's gate shut (a 429's Retry-After) must not hold WhatsApp, whose numbers
    gate themselves; nor spend the gate's tokens on it."""
    sms = item(offset=0, channel=Channel.SMS)
    whatsapp = item(offset=1, channel=Channel.WHATSAPP, tenant_id=uuid.uuid4(), to="+447400123499")
    gate = OpenGate()
    gate.open = False
    dispatch, _, sends = dispatching(sms, whatsapp, gate=gate, self_gated=frozenset({Channel.WHATSAPP}))
    running = asyncio.create_task(dispatch.run(sends))
    await until(lambda: len(sends.started) == 1)
    await asyncio.sleep(0.05)
    assert [i.message.channel for i in sends.started] == [Channel.WHATSAPP]
    assert gate.taken == []
    gate.open = True
    dispatch.wake()
    await until(lambda: len(sends.started) == 2)
    assert gate.taken == [sms.message.id]
    dispatch.stop()
    for event in sends.release.values():
        event.set()
    await asyncio.wait_for(running, 2)


# --- the pipeline, composed ------------------------------------------------------------------


class Consumer:
    """A scripted consumer: hands out `batches` once each, then nothing."""

    def __init__(self, batches: list[dict[TopicPartition, list[Any]]]) -> None:
        self.batches = batches
        self.commits: list[dict[TopicPartition, int]] = []
        self.assigned: set[TopicPartition] = set()

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(timeout_ms / 1000)
        return {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *_: TopicPartition) -> None: ...

    def resume(self, *_: TopicPartition) -> None: ...

    def highwater(self, _: TopicPartition) -> int | None:
        return None

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


class Producer:
    """What the pipeline publishes (through the real Processor); `stall` holds every send."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.stall: asyncio.Event | None = None

    async def send_many(self, records: Sequence[Record]) -> None:
        if self.stall is not None:
            await self.stall.wait()
        self.records.extend(records)

    def retried(self) -> list[SealedMessageV2]:
        return [MESSAGE_DECODER.decode(r.value) for r in self.records if r.topic == RETRY]


class Sent:
    """The provider: accepts everything and keeps what it was handed."""

    name = "sent"

    def __init__(self) -> None:
        self.ids: list[uuid.UUID] = []

    async def send(self, message: OutboundMessage) -> Accepted:
        self.ids.append(message.id)
        return Accepted(f"p-{len(self.ids)}")

    async def close(self) -> None: ...


class Keys:
    """Content keys: one key for every hour."""

    def __init__(self) -> None:
        self.aead = AESGCM(os.urandom(32))

    async def load(self, _: object) -> None: ...

    def open(self, sealed: SealedMessageV2) -> OutboundMessage:
        return open_with(self.aead, sealed)


class Gate:
    def attach(self, _: object) -> None: ...
    def ready(self) -> bool:
        return True

    def take(self, _: object = None) -> None: ...
    def settle(self, _: object) -> None: ...
    def opens_at(self) -> float | None:
        return None

    async def close(self) -> None: ...


class Rates:
    def __init__(self, per_second: float) -> None:
        self.per_second = per_second

    async def get(self, _: uuid.UUID) -> tuple[Tier, float]:
        return Tier.ENTERPRISE, self.per_second

    def suspended(self, _: uuid.UUID) -> bool:
        return False


class Pacer:
    def try_take(self, _: uuid.UUID) -> bool:
        return True

    async def close(self) -> None: ...


class Record_:
    def __init__(self, offset: int, value: bytes) -> None:
        self.offset = offset
        self.value = value


class World:
    """One worker's pipeline over in-memory parts; several Worlds may share `claims` (the database)."""

    def __init__(self, batches: list[dict[TopicPartition, list[Any]]], claims: Claims, keys: Keys, *,
                 rate: float = 1000.0, **settings: Any) -> None:  # fmt: skip
        self.consumer, self.producer, self.provider = Consumer(batches), Producer(), Sent()
        self.parked: list[tuple[str, int, str]] = []
        self.settings = msgspec.structs.replace(
            WorkerSettings(), commit_interval_seconds=0.01, drain_seconds=0.2, recipient_gap_seconds=0.0, **settings
        )
        processor = Processor(Deliverer(self.provider, self.provider, attempts=1), self.producer)  # type: ignore[arg-type]
        self.pipeline = Pipeline(
            self.consumer, NAMES, processor, self.settings,  # type: ignore[arg-type]
            content_keys=keys, gate=Gate(), claims=claims, rates=Rates(rate),  # type: ignore[arg-type]
            pacer=lambda _: Pacer(), park=self.park,  # type: ignore[arg-type,return-value]
        )  # fmt: skip

    async def park(self, group: str, record: Any, error: Exception) -> None:
        self.parked.append((group, record.offset, type(error).__name__))

    async def assign(self, *partitions: TopicPartition) -> None:
        self.consumer.assigned |= set(partitions)
        await self.pipeline.on_partitions_assigned(set(partitions))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The pipeline runs inside the block and is stopped (drained) at its end."""
        stop = asyncio.Event()
        task = asyncio.create_task(self.pipeline.run(stop))
        try:
            yield
        finally:
            stop.set()
            await task

    def committed(self, tp: TopicPartition) -> int:
        return max((c[tp] for c in self.consumer.commits if tp in c), default=0)


def records(keys: Keys, *messages: OutboundMessage, start: int = 0) -> list[Record_]:
    return [
        Record_(start + n, ENCODER.encode(seal(keys.aead, hour_of(m.created_at_ms), m))) for n, m in enumerate(messages)
    ]


def live(**fields: Any) -> OutboundMessage:
    now = clock.now_ms()
    return outbound(created_at_ms=now, expires_at_ms=now + 600_000, **fields)


async def until(condition: Any, seconds: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_a_rebalance_during_an_admission_drops_its_records_even_if_the_partition_comes_back() -> None:
    claims, keys = Claims(), Keys()
    claims.stall = asyncio.Event()  # the claim query waits: the admission spans the rebalance
    message = live(idempotent=True)
    world = World([{OTP: records(keys, message)}], claims, keys)
    await world.assign(OTP)
    async with world.running():
        await until(lambda: claims.claims == {} and world.consumer.batches == [])
        await world.pipeline.on_partitions_revoked({OTP})  # waits drain_seconds for the admission, then goes on
        await world.assign(OTP)  # assigned straight back: a new lease
        claims.stall.set()
        await asyncio.sleep(0.2)
    assert world.provider.ids == []  # read again from the last commit by the new lease, not sent now
    assert world.committed(OTP) == 0


async def test_a_deferral_noted_but_never_published_is_published_by_the_next_reader_with_the_same_copy() -> None:
    claims, keys = Claims(), Keys()
    tenant = uuid.uuid4()
    burst = [live(tenant_id=tenant, to=f"+4474001234{n:02d}") for n in range(3)]
    # A tenant at 1 msg/s with room for one waiting: the second and third records are deferred.
    first = World([{OTP: records(keys, *burst)}], claims, keys, rate=1.0, tenant_buffer_seconds=1.0,
                  tenant_buffer_min=1)  # fmt: skip
    first.producer.stall = asyncio.Event()  # the broker takes nothing: the worker dies in between
    await first.assign(OTP)
    stop = asyncio.Event()
    running = asyncio.create_task(first.pipeline.run(stop))
    await until(lambda: len(claims.notes) == 2)
    running.cancel()  # the crash: notes written, copies never acknowledged, nothing committed
    with pytest.raises(asyncio.CancelledError):
        await running
    assert first.producer.retried() == []
    assert first.committed(OTP) == 0
    noted = {n.source.offset: n.copy_not_before_ms for n in claims.notes}

    second = World([{OTP: records(keys, *burst)}], claims, keys, rate=1.0, tenant_buffer_seconds=1.0,
                   tenant_buffer_min=1)  # fmt: skip
    await second.assign(OTP)
    async with second.running():
        await until(lambda: len(second.producer.retried()) == 2 and second.committed(OTP) == 3)
    copies = {c.id: c.not_before_ms for c in second.producer.retried()}
    assert copies == {burst[o].id: noted[o] for o in (1, 2)}  # the same copies, not new deferrals
    assert len(claims.notes) == 2  # and no second note
    assert second.provider.ids == [burst[0].id]


async def test_a_copy_published_twice_is_sent_once() -> None:
    claims, keys = Claims(), Keys()
    copy = live(attempt=1, not_before_ms=clock.now_ms() - 1)
    world = World([{RETRIES: records(keys, copy, copy)}], claims, keys)
    await world.assign(RETRIES)
    async with world.running():
        await until(lambda: world.committed(RETRIES) == 2)
    assert world.provider.ids == [copy.id]
    assert claims.done == {retry_key(copy)}


async def test_a_record_that_does_not_decode_is_parked_and_the_partition_moves_on() -> None:
    claims, keys = Claims(), Keys()
    message = live()
    good = records(keys, message, start=1)
    bad = rebuilt_record(OTP.topic, OTP.partition, 0, b'{"schema": "herald.message.v9"}')
    world = World([{OTP: [bad, *good]}], claims, keys)
    await world.assign(OTP)
    async with world.running():
        await until(lambda: world.committed(OTP) == 2)
    assert world.parked == [(WORKER_GROUP, 0, "ValidationError")]
    assert world.provider.ids == [message.id]
