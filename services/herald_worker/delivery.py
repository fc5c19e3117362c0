"""Delivering one message: TTL check, provider call with bounded retries, the resulting events.

Every call to `deliver` returns at least one event and exactly one of them is final-or-sent:
`expired`, `failed`, or `sent` (plus `delivered` when the provider's acceptance is final). So
every message a worker commits past has a recorded outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from herald import metrics
from herald.domain.models import KeyKind
from herald.domain.records import OutboundMessageV1, StatusEventV1
from herald.domain.status import Status
from herald_worker.providers.base import Accepted, PermanentError, Provider, RetryableError

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_BACKOFF = wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1)
MAX_RETRY_AFTER_SECONDS = 10.0
"""A longer Retry-After is not waited out in process (it would hold the whole batch); the
message fails with the reason instead (the retry topic of issue #4 will carry it)."""


def provider_wait(state: RetryCallState) -> float:
    """Exponential backoff with jitter, but never sooner than the provider's Retry-After."""
    backoff = _BACKOFF(state)
    exc = state.outcome.exception() if state.outcome is not None else None
    if isinstance(exc, RetryableError) and exc.retry_after is not None:
        return max(backoff, min(exc.retry_after, MAX_RETRY_AFTER_SECONDS))
    return backoff


RETRIES_EXHAUSTED = "_retries_exhausted"


class Deliverer:
    def __init__(self, live: Provider, test: Provider, attempts: int, clock: Callable[[], int] = _now_ms) -> None:
        self._live = live
        self._test = test
        self._attempts = attempts
        self._clock = clock

    def _event(
        self, m: OutboundMessageV1, status: Status, reason: str | None = None, provider_id: str | None = None
    ) -> StatusEventV1:
        return StatusEventV1(
            message_id=m.id,
            tenant_id=m.tenant_id,
            status=status,
            at_ms=self._clock(),
            reason=reason,
            provider_message_id=provider_id,
        )

    async def deliver(self, message: OutboundMessageV1) -> list[StatusEventV1]:
        if self._clock() >= message.expires_at_ms:
            metrics.MESSAGES_FINAL.labels(Status.EXPIRED.value).inc()
            return [self._event(message, Status.EXPIRED, "ttl_elapsed")]
        provider = self._test if message.key_kind is KeyKind.TEST else self._live
        try:
            accepted = await self._send_with_retries(provider, message)
        except PermanentError as exc:
            metrics.PROVIDER_OUTCOMES.labels(provider.name, "permanent").inc()
            metrics.MESSAGES_FINAL.labels(Status.FAILED.value).inc()
            return [self._event(message, Status.FAILED, exc.reason)]
        except RetryableError as exc:
            # Retries exhausted in process. (The retry topic with growing delays is issue #4.)
            metrics.MESSAGES_FINAL.labels(Status.FAILED.value).inc()
            return [self._event(message, Status.FAILED, f"{exc.reason}{RETRIES_EXHAUSTED}")]
        metrics.PROVIDER_OUTCOMES.labels(provider.name, "success").inc()
        metrics.ACCEPTED_TO_SENT_SECONDS.labels(message.category.value).observe(
            max(0.0, (self._clock() - message.created_at_ms) / 1000)
        )
        events = [self._event(message, Status.SENT, provider_id=accepted.provider_message_id)]
        if accepted.delivered:
            metrics.MESSAGES_FINAL.labels(Status.DELIVERED.value).inc()
            events.append(self._event(message, Status.DELIVERED, provider_id=accepted.provider_message_id))
        return events

    async def _send_with_retries(self, provider: Provider, message: OutboundMessageV1) -> Accepted:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=provider_wait,
            retry=retry_if_exception_type(RetryableError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                started = time.perf_counter()
                try:
                    return await provider.send(message)
                except RetryableError:
                    metrics.PROVIDER_OUTCOMES.labels(provider.name, "retryable").inc()
                    raise
                finally:
                    metrics.PROVIDER_SECONDS.labels(provider.name).observe(time.perf_counter() - started)
        raise AssertionError("unreachable: tenacity reraises")
