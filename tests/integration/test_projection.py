"""The status projection against real Postgres: idempotent, order-independent, monotonic."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import timedelta

import asyncpg
import msgspec
from aiokafka import TopicPartition

from herald.db import messages as store
from herald.domain.models import Category, Channel, KeyKind
from herald.domain.records import ENCODER, OutboundMessage, StatusEventV1
from herald.domain.status import Status
from herald.kafka.consumer import ConsumerLoop, rebuilt_record
from herald.kafka.topics import EVENTS, STATUS_SINK_GROUP, Names
from herald.parking import Parking
from herald_sinks.status import StatusProjection

T0 = 1_764_284_400_000
TENANT = uuid.uuid4()
HOUR = timedelta(hours=1)


def msg(mid: uuid.UUID) -> OutboundMessage:
    return OutboundMessage(
        id=mid, tenant_id=TENANT, key_kind=KeyKind.LIVE, channel=Channel.SMS, category=Category.UTILITY,
        template_name="t", template_language="en", template_version=1, to="+447400123456", country="GB",
        body="b", created_at_ms=T0, expires_at_ms=T0 + 60_000,
    )  # fmt: skip


def ev(mid: uuid.UUID, status: Status, dt: int) -> StatusEventV1:
    return StatusEventV1(message_id=mid, tenant_id=TENANT, status=status, at_ms=T0 + dt)


async def status_of(pool: asyncpg.Pool, mid: uuid.UUID) -> str:
    return str(await pool.fetchval("SELECT status FROM messages WHERE id = $1", mid))


async def test_late_sent_never_overwrites_delivered(pool: asyncpg.Pool) -> None:
    mid = uuid.uuid4()
    await store.apply_batch(pool, [msg(mid)], [ev(mid, Status.DELIVERED, 50)])
    await store.apply_batch(pool, [], [ev(mid, Status.SENT, 10)])
    assert await status_of(pool, mid) == "delivered"


async def test_every_arrival_order_and_replays_end_the_same(pool: asyncpg.Pool) -> None:
    parts = ["message", "sent", "delivered", "read"]
    for order in itertools.permutations(parts):
        mid = uuid.uuid4()
        items = {
            "message": ([msg(mid)], []),
            "sent": ([], [ev(mid, Status.SENT, 10)]),
            "delivered": ([], [ev(mid, Status.DELIVERED, 20)]),
            "read": ([], [ev(mid, Status.READ, 30)]),
        }
        for name in [*order, *order]:  # and everything replayed once more
            await store.apply_batch(pool, *items[name])
        assert await status_of(pool, mid) == "read", order
        assert await pool.fetchval("SELECT count(*) FROM message_events WHERE message_id = $1", mid) == 3


async def test_repeats_inside_one_batch_are_applied_once_and_the_first_record_wins(pool: asyncpg.Pool) -> None:
    # An idempotent send repeated by a client puts one id on the class topic twice, and a replay
    # can put an event twice into one fetch: one statement over arrays must take each once.
    mid = uuid.uuid4()
    first, second = msg(mid), msgspec.structs.replace(msg(mid), reference="the repeat")
    sent = StatusEventV1(message_id=mid, tenant_id=TENANT, status=Status.SENT, at_ms=T0 + 10, provider_message_id="p1")
    again = msgspec.structs.replace(sent, provider_message_id="p2")
    await store.apply_batch(pool, [first, second], [sent, again, ev(mid, Status.DELIVERED, 20)])
    assert await status_of(pool, mid) == "delivered"
    assert await pool.fetchval("SELECT reference FROM messages WHERE id = $1", mid) is None
    rows = await pool.fetch("SELECT status, provider_message_id FROM message_events WHERE message_id = $1", mid)
    assert sorted((r["status"], r["provider_message_id"]) for r in rows) == [("delivered", None), ("sent", "p1")]


async def test_concurrent_sinks_on_message_and_events_agree(pool: asyncpg.Pool) -> None:
    """Two sink processes apply a message row and its events at the same moment."""
    mids = [uuid.uuid4() for _ in range(200)]
    await asyncio.gather(
        store.apply_batch(pool, [msg(m) for m in mids], []),
        store.apply_batch(pool, [], [ev(m, Status.SENT, 5) for m in mids]),
        store.apply_batch(pool, [], [ev(m, Status.DELIVERED, 9) for m in mids]),
    )
    rows = await pool.fetch("SELECT status, count(*) AS n FROM messages GROUP BY status")
    assert {r["status"]: r["n"] for r in rows} == {"delivered": 200}


async def test_read_scoped_to_tenant(pool: asyncpg.Pool) -> None:
    mid = uuid.uuid4()
    await store.apply_batch(pool, [msg(mid)], [ev(mid, Status.SENT, 10)])
    view = await store.get(pool, TENANT, mid)
    assert view is not None
    assert [e.status for e in view.events] == [Status.ACCEPTED, Status.SENT]
    assert await store.get(pool, uuid.uuid4(), mid) is None


async def test_a_record_the_database_refuses_is_parked_not_wedging(pool: asyncpg.Pool) -> None:
    """Defence in depth behind API validation: a NUL in a text field must not block the sink.
    The consumer loop isolates the refused record, applies the rest of its batch, parks it."""
    good, bad = uuid.uuid4(), uuid.uuid4()
    await store.apply_batch(pool, [msg(good), msg(bad)], [])
    events = [
        ev(good, Status.SENT, 10),
        # A free-text field the database stores (a reason is a closed vocabulary: it would not decode).
        msgspec.structs.replace(ev(bad, Status.FAILED, 10), provider_message_id="a\x00b"),
        ev(good, Status.DELIVERED, 20),
    ]
    topic = Names().topic(EVENTS)
    records = [rebuilt_record(topic, 0, offset, ENCODER.encode(event)) for offset, event in enumerate(events)]
    loop = ConsumerLoop(
        None,  # type: ignore[arg-type]  # handle() never fetches
        StatusProjection(pool, Names()), Names(), group=STATUS_SINK_GROUP, max_records=10, park=Parking(pool),
    )  # fmt: skip
    await loop.handle({TopicPartition(topic, 0): records})
    assert (await status_of(pool, good), await status_of(pool, bad)) == ("delivered", "accepted")
    parked = await pool.fetch('SELECT consumer_group, topic, partition, "offset", value, error FROM parked_records')
    assert [(r["consumer_group"], r["topic"], r["partition"], r["offset"]) for r in parked] == [
        (STATUS_SINK_GROUP, topic, 0, 1)
    ]
    assert bytes(parked[0]["value"]) == records[1].value
    assert "0x00" in parked[0]["error"]


async def test_a_second_provider_id_for_one_message_is_counted_as_a_duplicate_send(pool: asyncpg.Pool) -> None:
    mid = uuid.uuid4()

    def sent(pid: str, status: Status = Status.SENT, dt: int = 10) -> StatusEventV1:
        return msgspec.structs.replace(ev(mid, status, dt), provider_message_id=pid)

    first = await store.apply_batch(pool, [msg(mid)], [sent("sim-1"), sent("sim-1", Status.DELIVERED, 20)])
    assert first.duplicate_sends == 0
    replayed = await store.apply_batch(pool, [msg(mid)], [sent("sim-1"), sent("sim-1", Status.DELIVERED, 20)])
    assert replayed.duplicate_sends == 0  # the same events again are not a second send
    resent = await store.apply_batch(pool, [], [sent("sim-2", dt=30)])
    receipt = await store.apply_batch(pool, [], [sent("sim-2", Status.DELIVERED, 40)])
    assert (resent.duplicate_sends, receipt.duplicate_sends) == (0, 1)  # counted once, at the receipt
    # The status sink applies a batch again after a rebalance: the duplicate is not counted again.
    again = await store.apply_batch(pool, [], [sent("sim-2", dt=30), sent("sim-2", Status.DELIVERED, 40)])
    assert again.duplicate_sends == 0
    assert await status_of(pool, mid) == "delivered"


async def test_overdue_receipts_are_claimed_once_across_sweeps_until_the_claim_lapses(pool: asyncpg.Pool) -> None:
    """The receipt sweep's claim: concurrent sweeps share out the overdue messages, a later
    sweep does not take them again while they are claimed, and a lapsed claim is taken again
    if the message is still `sent` (the first sweep's events never landed)."""
    overdue = [uuid.uuid4() for _ in range(60)]
    answered = uuid.uuid4()
    await store.apply_batch(pool, [msg(m) for m in [*overdue, answered]], [ev(m, Status.SENT, 5) for m in overdue])
    await store.apply_batch(pool, [], [ev(answered, Status.SENT, 5), ev(answered, Status.DELIVERED, 9)])
    now = await pool.fetchval("SELECT now()")

    async def claim(claim_seconds: float = 60, limit: int = 25) -> list[uuid.UUID]:
        return [mid for mid, _ in await store.claim_overdue_receipts(pool, now + HOUR, claim_seconds, limit)]

    claimed = await asyncio.gather(*(claim() for _ in range(4)))
    everything = [mid for part in claimed for mid in part]
    assert sorted(everything) == sorted(overdue), "each overdue message claimed by exactly one sweep"
    assert await claim() == []
    await asyncio.sleep(0.05)
    again = await claim(claim_seconds=0.01, limit=100)
    assert sorted(again) == sorted(overdue)
    await store.apply_batch(pool, [], [ev(m, Status.FAILED, 20) for m in overdue])
    assert await claim(claim_seconds=0, limit=100) == [], "a message no longer `sent` is never claimed"
