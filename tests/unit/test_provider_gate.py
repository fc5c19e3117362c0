"""The provider gate: capacity tokens, the Retry-After shut, and the worker's own rate after a 429."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from herald.domain.models import Tier
from herald.domain.records import OutboundMessage
from herald_worker.pacing import TenantPacer
from herald_worker.provider_gate import MAX_PAUSE_SECONDS, RELEASE_AFTER_SECONDS, ProviderGate, Throttled
from herald_worker.providers.base import Accepted, RetryableError
from tests.unit.test_delivery import message as make_message


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _gate(clock: Clock) -> ProviderGate:
    return ProviderGate("carrier", 0.0, None, clock=clock)


def _accept(gate: ProviderGate, clock: Clock, n: int, over: float) -> None:
    for _ in range(n):
        clock.now += over / n
        gate.accepted()


def test_without_capacity_or_throttling_the_gate_is_always_open() -> None:
    clock = Clock()
    gate = _gate(clock)
    for _ in range(1000):
        assert gate.ready()
        gate.take()
    assert gate.opens_at() is None


def test_a_429_shuts_the_gate_for_its_retry_after_capped() -> None:
    clock = Clock()
    gate = _gate(clock)
    gate.throttled(2.0)
    assert not gate.ready()
    assert gate.opens_at() == clock.now + 2.0
    clock.now += 2.0
    gate.throttled(3600.0)  # an hour is an outage, not a throttle: never shut that long
    assert gate.opens_at() == clock.now + MAX_PAUSE_SECONDS


def test_after_a_429_the_worker_sends_at_half_what_the_provider_accepted() -> None:
    clock = Clock()
    gate = _gate(clock)
    _accept(gate, clock, 100, over=1.0)  # 100 msg/s accepted
    gate.throttled(0.0)
    gate.throttled(0.0)  # answers to sends already in flight: one cut, not two
    clock.now += 10.0
    assert 45 <= _sent_in_one_second(gate, clock) <= 56  # 50 msg/s, plus a tenth of a second of burst


def _sent_in_one_second(gate: ProviderGate, clock: Clock) -> int:
    sent = 0
    for _ in range(10_000):  # 0.1 ms steps
        clock.now += 0.0001
        if gate.ready():
            gate.take()
            sent += 1
    return sent


def test_the_own_rate_grows_a_tenth_a_second_and_is_lifted_after_a_quiet_minute() -> None:
    clock = Clock()
    gate = _gate(clock)
    _accept(gate, clock, 100, over=1.0)
    gate.throttled(0.0)  # 50 msg/s
    _accept(gate, clock, 1, over=1.0)  # a second without a 429: 55 msg/s
    _sent_in_one_second(gate, clock)  # (spends the burst)
    assert 53 <= _sent_in_one_second(gate, clock) <= 57
    clock.now += RELEASE_AFTER_SECONDS
    gate.accepted()
    assert _sent_in_one_second(gate, clock) == 10_000  # lifted: every step may send


def test_a_second_429_halves_the_own_rate_again() -> None:
    clock = Clock()
    gate = _gate(clock)
    _accept(gate, clock, 80, over=1.0)
    gate.throttled(0.0)  # 40 msg/s
    clock.now += 1.0
    gate.throttled(0.0)  # 20 msg/s
    clock.now += 10.0
    assert 18 <= _sent_in_one_second(gate, clock) <= 23


async def test_capacity_tokens_come_from_the_shared_bucket_only_when_asked() -> None:
    asked: list[int] = []
    woken = asyncio.Event()

    async def take_tokens(bucket: uuid.UUID, rate: float, burst: float, want: int) -> int:
        asked.append(want)
        return want

    async def rate(_: uuid.UUID) -> tuple[Tier | None, float]:
        return None, 80.0

    gate = ProviderGate("carrier", 80.0, lambda wake: TenantPacer(take_tokens, rate, wake, on_granted=lambda *_: None))
    gate.attach(woken.set)
    await asyncio.sleep(0.05)
    assert asked == []  # idle: nothing ready, nothing taken
    assert not gate.ready()  # no tokens in hand yet: a refill starts
    await asyncio.wait_for(woken.wait(), 1)
    assert asked == [8]  # 100 ms of 80 msg/s
    for _ in range(8):
        assert gate.ready()
        gate.take()
    assert not gate.ready()
    await gate.close()


class Answers:
    name = "scripted"

    def __init__(self, *answers: Exception | Accepted) -> None:
        self.answers = list(answers)

    async def send(self, message: OutboundMessage) -> Accepted:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def close(self) -> None:
        pass


async def test_only_a_throttle_shuts_the_gate_and_every_answer_still_reaches_the_deliverer() -> None:
    message = make_message()
    clock = Clock()
    gate = _gate(clock)
    provider = Throttled(
        Answers(RetryableError("recipient_busy", 5.0), RetryableError("throttled", 0.5), Accepted("p-1")), gate
    )
    with pytest.raises(RetryableError, match="recipient_busy"):
        await provider.send(message)
    assert gate.ready()
    with pytest.raises(RetryableError, match="throttled"):
        await provider.send(message)
    assert not gate.ready()
    clock.now += 0.5
    gate.take(message.id)  # the dispatcher let this attempt through: no second token, no wait
    assert await provider.send(message) == Accepted("p-1")
