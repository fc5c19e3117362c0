"""Deliverer's outcome handling with fake providers and a fake clock (no I/O)."""

from __future__ import annotations

import time

import msgspec
import pytest

from herald.domain.models import Category, KeyKind
from herald.domain.reasons import Reason
from herald.domain.records import MessageEnvelope, OutboundMessage, SealedMessageV2
from herald.domain.status import Status
from herald.kafka.topics import EVENTS
from herald_worker.delivery import Deliverer
from herald_worker.providers.base import Accepted, PermanentError, RetryableError
from herald_worker.providers.sink import SinkProvider
from herald_worker.worker import Processor
from tests.unit.fakes import Scripted, outbound

NOW = 1_764_284_400_000


def message(kind: KeyKind = KeyKind.LIVE, expires_in_ms: int = 60_000) -> OutboundMessage:
    return outbound(key_kind=kind, created_at_ms=NOW - 10, expires_at_ms=NOW + expires_in_ms)


def deliverer(live: Scripted, attempts: int = 3, delays: tuple[float, ...] = ()) -> Deliverer:
    return Deliverer(live, SinkProvider(), attempts, delays, clock=lambda: NOW)


async def test_success_emits_sent_with_provider_id() -> None:
    live = Scripted(Accepted("p-1"))
    events = (await deliverer(live).deliver(message())).events
    assert [(e.status, e.provider_message_id) for e in events] == [(Status.SENT, "p-1")]


async def test_transient_errors_are_retried_then_succeed() -> None:
    live = Scripted(RetryableError(Reason.PROVIDER_UNAVAILABLE), RetryableError(Reason.THROTTLED, 0.0), Accepted("p-2"))
    events = (await deliverer(live).deliver(message())).events
    assert live.calls == 3
    assert [e.status for e in events] == [Status.SENT]


async def test_the_first_failure_is_waited_out_like_any_other() -> None:
    # The first attempt runs outside tenacity (fast path): its failure must still be followed by
    # the provider's Retry-After before attempt 2, and count against the attempt budget.
    live = Scripted(RetryableError(Reason.THROTTLED, 0.2), Accepted("p-3"))
    started = time.monotonic()
    events = (await deliverer(live, attempts=2).deliver(message())).events
    assert time.monotonic() - started >= 0.2  # a sleep never ends early: a lower bound cannot flake
    assert (live.calls, [e.status for e in events]) == (2, [Status.SENT])
    budget = Scripted(RetryableError(Reason.THROTTLED, 0.0), RetryableError(Reason.THROTTLED, 0.0), Accepted("never"))
    assert [e.reason for e in (await deliverer(budget, attempts=2).deliver(message())).events] == [
        "throttled_retries_exhausted"
    ]
    assert budget.calls == 2


async def test_permanent_error_fails_at_once_with_reason() -> None:
    live = Scripted(PermanentError(Reason.OPTED_OUT), Accepted("never"))
    events = (await deliverer(live).deliver(message())).events
    assert live.calls == 1
    assert [(e.status, e.reason) for e in events] == [(Status.FAILED, "opted_out")]


async def test_retries_are_bounded() -> None:
    live = Scripted(*(RetryableError(Reason.PROVIDER_UNAVAILABLE) for _ in range(10)))
    events = (await deliverer(live, attempts=3).deliver(message())).events
    assert live.calls == 3
    assert [(e.status, e.reason) for e in events] == [(Status.FAILED, "provider_unavailable_retries_exhausted")]


async def test_expired_message_is_not_sent() -> None:
    live = Scripted(Accepted("never"))
    events = (await deliverer(live).deliver(message(expires_in_ms=0))).events
    assert live.calls == 0
    assert [(e.status, e.reason) for e in events] == [(Status.EXPIRED, "ttl_elapsed")]


async def test_test_keys_never_reach_the_live_provider() -> None:
    live = Scripted(Accepted("never"))
    events = (await deliverer(live).deliver(message(KeyKind.TEST))).events
    assert live.calls == 0
    assert [e.status for e in events] == [Status.SENT, Status.DELIVERED]


def test_wait_honours_retry_after_but_caps_it() -> None:
    from tenacity import RetryCallState

    from herald_worker.delivery import MAX_RETRY_AFTER_SECONDS, provider_wait

    def state_after(exc: Exception) -> RetryCallState:
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = 1
        state.set_exception((type(exc), exc, None))
        return state

    assert provider_wait(state_after(RetryableError(Reason.THROTTLED, 3.0))) >= 3.0
    assert provider_wait(state_after(RetryableError(Reason.THROTTLED, 3600.0))) <= MAX_RETRY_AFTER_SECONDS + 0.2
    assert provider_wait(state_after(RetryableError(Reason.PROVIDER_UNAVAILABLE))) < 1.0


async def test_after_in_process_retries_the_retry_topic_takes_over_with_growing_delays() -> None:
    d = deliverer(Scripted(*(RetryableError(Reason.RECIPIENT_BUSY) for _ in range(3))), delays=(30.0, 120.0))
    first = await d.deliver(message(expires_in_ms=3_600_000))
    assert first.events == []
    assert first.retry is not None
    assert (first.retry.attempt, first.retry.not_before_ms, first.retry.last_error) == (
        1,
        NOW + 30_000,
        "recipient_busy",
    )
    d = deliverer(Scripted(*(RetryableError(Reason.RECIPIENT_BUSY) for _ in range(3))), delays=(30.0, 120.0))
    second = await d.deliver(first.retry)
    assert second.retry is not None
    assert (second.retry.attempt, second.retry.not_before_ms) == (2, NOW + 120_000)
    d = deliverer(Scripted(*(RetryableError(Reason.RECIPIENT_BUSY) for _ in range(3))), delays=(30.0, 120.0))
    last = await d.deliver(second.retry)
    assert last.retry is None
    assert [(e.status, e.reason) for e in last.events] == [(Status.FAILED, "recipient_busy_retries_exhausted")]


async def test_a_wait_past_the_ttl_is_cut_to_the_ttl_and_a_daily_quota_skips_in_process_retries() -> None:
    live = Scripted(RetryableError(Reason.QUOTA_EXHAUSTED, retry_after=8 * 3600), Accepted("never"))
    outcome = await deliverer(live, delays=(30.0,)).deliver(message(expires_in_ms=600_000))
    assert live.calls == 1  # a Retry-After of hours is not waited out in process
    assert outcome.retry is not None
    assert outcome.retry.not_before_ms == NOW + 600_000  # then it expires, never sent late


def test_unreadable_content_is_never_sent_and_expires_like_any_message_past_its_ttl() -> None:
    live = Scripted()
    d = deliverer(live)
    (failed,) = d.unreadable(message(), "the content key was purged").events
    (expired,) = d.unreadable(message(expires_in_ms=0), "the content key was purged").events
    assert (failed.status, failed.reason) == (Status.FAILED, "content_unavailable")
    assert (expired.status, expired.reason) == (Status.EXPIRED, "ttl_elapsed")
    assert live.calls == 0


def test_a_named_wait_is_read_as_seconds_or_an_http_date() -> None:
    from datetime import UTC, datetime
    from email.utils import format_datetime

    from herald_worker.providers.carrier import retry_after

    now = NOW / 1000

    def date(seconds_from_now: float) -> dict[str, str]:
        return {"retry-after": format_datetime(datetime.fromtimestamp(now + seconds_from_now, UTC), usegmt=True)}

    assert retry_after({"retry-after": "7"}, now) == 7.0
    assert retry_after(date(30), now) == 30.0
    assert retry_after(date(-30), now) == 0.0  # a date already past: now
    assert retry_after({"retry-after": "soon"}, now) is None
    assert retry_after({}, now) is None


def test_a_named_wait_that_is_no_usable_number_counts_as_none_and_a_long_one_as_a_day() -> None:
    from herald_worker.providers.base import MAX_NAMED_WAIT_SECONDS

    for unusable in (float("inf"), float("nan"), -5.0):
        assert RetryableError(Reason.THROTTLED, unusable).retry_after is None, unusable
    assert RetryableError(Reason.QUOTA_EXHAUSTED, 10 * MAX_NAMED_WAIT_SECONDS).retry_after == MAX_NAMED_WAIT_SECONDS
    assert RetryableError(Reason.THROTTLED, 2.5).retry_after == 2.5


async def test_a_provider_naming_an_infinite_wait_gets_the_message_retried_not_crashed() -> None:
    # `Retry-After: inf` (or 1e999) parses as infinity; it reached the retry topic's arithmetic.
    d = deliverer(Scripted(*(RetryableError(Reason.THROTTLED, float("inf")) for _ in range(3))), delays=(30.0,))
    outcome = await d.deliver(message(expires_in_ms=3_600_000))
    assert outcome.retry is not None
    assert outcome.retry.not_before_ms == NOW + 30_000


class _Broken:
    """An adapter breaking the Provider contract: it raises what is neither outcome."""

    name = "broken"

    async def send(self, message: OutboundMessage) -> Accepted:
        raise ValueError(f"cannot route {message.to}: {message.body}")

    async def close(self) -> None:
        return None


async def test_an_adapter_raising_anything_else_fails_the_message_without_logging_its_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent = message()
    outcome = await Deliverer(_Broken(), SinkProvider(), 3, (), clock=lambda: NOW).deliver(sent)
    assert outcome.retry is None
    assert [(e.status, e.reason) for e in outcome.events] == [(Status.FAILED, "internal_error")]
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "ValueError" in logged
    assert sent.to not in logged
    assert sent.body not in logged


def test_a_suspended_tenants_message_is_held_unsent_without_spending_an_attempt() -> None:
    live = Scripted(Accepted("never"))
    outcome = deliverer(live).held(message(), 60)
    assert (outcome.events, live.calls) == ([], 0)
    assert outcome.retry is not None
    assert (outcome.retry.attempt, outcome.retry.not_before_ms, outcome.retry.last_error) == (
        0, NOW + 60_000, "tenant_suspended",
    )  # fmt: skip
    near_ttl = deliverer(live).held(message(expires_in_ms=5_000), 60)
    assert near_ttl.retry is not None
    assert near_ttl.retry.not_before_ms == NOW + 5_000  # back at its TTL, to expire then
    expired = deliverer(live).held(message(expires_in_ms=0), 60)
    assert [(e.status, e.reason) for e in expired.events] == [(Status.EXPIRED, "ttl_elapsed")]


class Suppressed:
    """A suppression list that refuses every message it is asked about."""

    def __init__(self) -> None:
        self.asked: list[OutboundMessage] = []

    async def suppressed(self, message: OutboundMessage) -> bool:
        self.asked.append(message)
        return True


async def test_a_message_the_suppression_list_refuses_by_now_fails_unsent_and_leaves_no_dead_letter() -> None:
    live, suppressions = Scripted(Accepted("never")), Suppressed()
    promo = msgspec.structs.replace(message(), category=Category.MARKETING)
    d = Deliverer(live, SinkProvider(), 3, (), clock=lambda: NOW, suppressions=suppressions)
    outcome = await d.deliver(promo)
    assert live.calls == 0
    assert [(e.status, e.reason) for e in outcome.events] == [(Status.FAILED, "recipient_suppressed")]
    envelope = {f: getattr(promo, f) for f in MessageEnvelope.__struct_fields__}
    sealed = SealedMessageV2(**envelope, content_key=0, content=b"")
    assert [r.topic for r in Processor.records(promo, sealed, outcome)] == [EVENTS]  # its event, no letter
    # A test key's message never reaches a provider: the list is not asked for it.
    await d.deliver(msgspec.structs.replace(promo, key_kind=KeyKind.TEST))
    assert suppressions.asked == [promo]
