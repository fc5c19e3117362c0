"""The worker's scheduler and offset tracker: priority, fairness, recipient lanes, commit points."""

from __future__ import annotations

import uuid
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald.domain.models import Category
from herald.kafka.offsets import OffsetTracker
from herald.sealing import seal
from herald_worker.scheduler import Item, Scheduler
from tests.unit.fakes import Clock, outbound

A, B = uuid.UUID(int=1), uuid.UUID(int=2)
KEY = AESGCM(bytes(32))


def _item(tenant: uuid.UUID, to: str, category: Category, offset: int, partition: Any = "p0") -> Item:
    message = outbound(tenant_id=tenant, to=to, category=category)
    return Item(message, partition, offset, seal(KEY, 0, message))


def _yes(_: uuid.UUID) -> bool:
    return True


def test_authentication_goes_first_whatever_arrived_before_it() -> None:
    s = Scheduler(0)
    for i in range(100):
        s.add(_item(A, f"+44{i}", Category.MARKETING, i))
    s.add(_item(B, "+1", Category.UTILITY, 100))
    s.add(_item(B, "+2", Category.AUTHENTICATION, 101))
    first = [s.take(_yes) for _ in range(3)]
    assert [i.message.category for i in first if i] == [Category.AUTHENTICATION, Category.UTILITY, Category.MARKETING]
    assert s.buffered[Category.MARKETING] == 99


def test_tenants_take_turns_and_a_tenant_without_tokens_is_skipped() -> None:
    s = Scheduler(0)
    for i in range(10):
        s.add(_item(A, f"+44{i}", Category.MARKETING, i))
        s.add(_item(B, f"+33{i}", Category.MARKETING, 100 + i))
    order = [s.take(_yes) for _ in range(4)]
    assert [i.message.tenant_id for i in order if i] == [A, B, A, B]
    only_b = [s.take(lambda t: t == B) for _ in range(3)]
    assert {i.message.tenant_id for i in only_b if i} == {B}


def test_one_recipient_one_at_a_time_with_a_gap_across_classes() -> None:
    clock = Clock(100.0)
    s = Scheduler(6.0, clock)
    promo = _item(A, "+441", Category.MARKETING, 1)
    otp = _item(A, "+441", Category.AUTHENTICATION, 2)
    other = _item(A, "+442", Category.MARKETING, 3)
    for item in (promo, otp, other):
        s.add(item)
    assert s.take(_yes) is otp
    assert s.take(_yes) is other  # the lane of +441 is busy: its promotion waits
    assert s.take(_yes) is None
    s.done(otp)
    clock.now += 5.9
    assert s.take(_yes) is None
    assert s.next_wakeup() == 106.0
    clock.now += 0.1
    assert s.take(_yes) is promo
    assert len(s) == 0


def test_dropping_revoked_partitions_keeps_the_rest_in_order() -> None:
    s = Scheduler(0)
    for i in range(6):
        s.add(_item(A, "+441", Category.UTILITY, i, partition="p0" if i % 2 == 0 else "p1"))
    assert s.drop({"p1"}) == 3
    taken = []
    while (item := s.take(_yes)) is not None:
        taken.append(item.offset)
        s.done(item)
    assert taken == [0, 2, 4]


def test_commit_point_waits_for_the_oldest_record_in_hand() -> None:
    t: OffsetTracker[str] = OffsetTracker()
    for offset in range(10, 15):
        t.read("p", offset)
    for offset in (11, 12, 14):
        t.finish("p", offset)
    assert t.committable() == {"p": 10}
    t.committed({"p": 10})
    assert t.committable() == {}
    t.finish("p", 10)
    assert t.committable() == {"p": 13}
    t.finish("p", 13)
    assert t.committable() == {"p": 15}
    assert t.in_hand() == 0
    t.forget(["p"])
    assert t.committable() == {}


def test_the_oldest_buffered_message_is_known_for_the_backlog_gauge() -> None:
    scheduler = Scheduler(0.0)
    assert scheduler.oldest_accepted_ms() is None
    old, new = _item_accepted_at(1_000), _item_accepted_at(5_000)
    scheduler.add(new)
    scheduler.add(old)
    assert scheduler.oldest_accepted_ms() == 1_000
    taken = [scheduler.take(lambda _: True), scheduler.take(lambda _: True)]
    assert {t.message.created_at_ms for t in taken if t is not None} == {1_000, 5_000}
    assert scheduler.oldest_accepted_ms() is None


def _item_accepted_at(created_at_ms: int) -> Item:
    message = outbound(to=f"+4475100{created_at_ms:05d}7", created_at_ms=created_at_ms)
    return Item(message, "p0", created_at_ms, seal(KEY, 0, message))
