"""Delivering one message: TTL check, provider call with bounded retries, the outcome.

Outcome taxonomy (decided by the provider adapter, acted on here):
  success                    -> `sent` (+ `delivered` when acceptance is final: email, test keys)
  permanent (invalid number, opted out, template paused, rejected)  -> `failed` now, with reason
  transient (throttled, recipient busy, provider unavailable)       -> retried in process with
      tenacity (exponential backoff with jitter, never sooner than Retry-After), then handed to
      `herald.retry` with a growing delay (`retry_delays_seconds`), then `failed` with
      its reason's `..._retries_exhausted` (`herald.domain.reasons`)
  quota exhausted, or a Retry-After longer than `MAX_RETRY_AFTER_SECONDS`  -> straight to
      `herald.retry`, not before the time the provider named (tomorrow, for a daily quota)
  past its TTL (before any attempt) -> `expired`: never sent, never billed
  its tenant suspended -> back on `herald.retry` unsent (`held`), until lifted or expired
  content that cannot be opened (`herald.sealing`) -> `expired` if past its TTL, else `failed`
      with `content_unavailable`: never sent
  anything else raised (an adapter breaking the Provider contract, a defect in this module)
      -> `failed` with `internal_error`, dead-lettered like any failure and replayable once
      fixed: the record is finished instead of holding its partition's commit point for ever

Every call returns exactly one of: final-or-sent events, or a message to re-queue. So every
message a worker commits past has a recorded outcome or is durably waiting on `herald.retry`.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Mapping
from functools import partial

import msgspec
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from herald import clock, metrics
from herald.domain.models import Channel, KeyKind
from herald.domain.reasons import TRANSIENT_REASONS, LetterKind, Reason
from herald.domain.records import MessageEnvelope, OutboundMessage, StatusEventV1
from herald.domain.status import Status
from herald.retrying import retried
from herald_worker.providers.base import Accepted, PermanentError, Postponed, Provider, RetryableError
from herald_worker.schedule import CancellationCheck
from herald_worker.suppressed import SuppressionCheck

log = logging.getLogger(__name__)


_BACKOFF = wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1)
MAX_RETRY_AFTER_SECONDS = 10.0
"""A longer Retry-After is not waited out in process (it would hold a provider slot): the message
goes to `herald.retry` with that delay."""


def _retry_in_process(exc: BaseException) -> bool:
    return isinstance(exc, RetryableError) and (exc.retry_after or 0.0) <= MAX_RETRY_AFTER_SECONDS


def provider_wait(state: RetryCallState) -> float:
    """Exponential backoff with jitter, but never sooner than the provider's Retry-After."""
    backoff = _BACKOFF(state)
    exc = state.outcome.exception() if state.outcome is not None else None
    if isinstance(exc, RetryableError) and exc.retry_after is not None:
        return max(backoff, min(exc.retry_after, MAX_RETRY_AFTER_SECONDS))
    return backoff


class Outcome(msgspec.Struct, frozen=True):
    events: list[StatusEventV1]
    retry: OutboundMessage | None = None
    """The message to put on `herald.retry` (attempt + 1, not_before_ms set); no event then."""


class Deliverer:
    def __init__(
        self,
        live: Provider,
        test: Provider,
        attempts: int,
        retry_delays_seconds: tuple[float, ...] = (),
        clock: Callable[[], int] = clock.now_ms,
        routes: Mapping[Channel, Provider] | None = None,
        suppressions: SuppressionCheck | None = None,
        cancellations: CancellationCheck | None = None,
    ) -> None:
        """`live` sends every live message whose channel has no provider in `routes`; a live
        message the suppression list refuses by now (`suppressions`) fails unsent; a cancelled
        one (`cancellations`) ends `cancelled` unsent."""
        self._routes = dict(routes or {})
        self._suppressions = suppressions
        self._cancellations = cancellations
        self._live = live
        self._test = test
        self._attempts = attempts
        self._delays = retry_delays_seconds
        self._clock = clock
        # Every reason a message may wait on herald.retry for, and every kind of dead letter.
        waits = (*TRANSIENT_REASONS, Reason.TENANT_BACKLOG, Reason.TENANT_SUSPENDED, Reason.ACCOUNT_SUSPENDED)
        metrics.every_series(metrics.RETRIES_SCHEDULED, waits)
        metrics.every_series(metrics.DLQ_RECORDS, LetterKind)

    def _event(
        self,
        m: MessageEnvelope,
        status: Status,
        reason: Reason | None = None,
        provider_id: str | None = None,
        provider: str | None = None,
        provider_error: str | None = None,
    ) -> StatusEventV1:
        return StatusEventV1(
            message_id=m.id,
            tenant_id=m.tenant_id,
            status=status,
            at_ms=self._clock(),
            reason=reason,
            provider_message_id=provider_id,
            provider=provider,
            provider_error=provider_error,
        )

    def expired(self, message: MessageEnvelope) -> Outcome | None:
        """The `expired` outcome if the message is past its TTL now; else None."""
        if self._clock() < message.expires_at_ms:
            return None
        return Outcome([self._event(message, Status.EXPIRED, Reason.TTL_ELAPSED)])

    def held(self, message: OutboundMessage, seconds: float, reason: Reason = Reason.TENANT_SUSPENDED) -> Outcome:
        """A message that may not be sent now for its tenant's sake (suspended by Herald, or its
        provider account by the provider): back on `herald.retry` in `seconds` without spending
        an attempt, or `expired` once past its TTL (it comes back at the TTL at the latest, and
        expires then)."""
        if (expired := self.expired(message)) is not None:
            return expired
        # Never the record's own not-before: a held copy must not share its record's retry key.
        not_before = max(min(self._clock() + int(seconds * 1000), message.expires_at_ms), message.not_before_ms + 1)
        metrics.RETRIES_SCHEDULED.labels(reason).inc()
        held = msgspec.structs.replace(message, not_before_ms=not_before, last_error=reason)
        return Outcome([], retry=held)

    def unreadable(self, message: MessageEnvelope, why: str) -> Outcome:
        """The outcome of a message whose content could not be opened: it is never sent. Past
        its TTL (the normal case: content retention outlasts every TTL) it expired; otherwise its
        key was deleted early or the record does not authenticate."""
        if (expired := self.expired(message)) is not None:
            return expired
        log.error("message content unreadable", extra={"message_id": str(message.id), "error": why})
        return Outcome([self._event(message, Status.FAILED, Reason.CONTENT_UNAVAILABLE)])

    async def deliver(self, message: OutboundMessage) -> Outcome:
        try:
            return await self._deliver(message)
        except Exception as exc:  # a defect, not a provider's answer: those are outcomes above
            # Type and place only: an exception's text may quote the recipient or the body.
            where = traceback.extract_tb(exc.__traceback__)[-1]
            log.error(
                "delivery raised; the message fails with internal_error",
                extra={"message_id": str(message.id), "error": type(exc).__name__,
                       "at": f"{where.filename}:{where.lineno}"},
            )  # fmt: skip
            return Outcome([self._event(message, Status.FAILED, Reason.INTERNAL_ERROR)])

    async def _deliver(self, message: OutboundMessage) -> Outcome:
        if (expired := self.expired(message)) is not None:
            return expired
        if self._cancellations is not None and not await self._cancellations.may_send(message):
            return Outcome([self._event(message, Status.CANCELLED)])
        live = self._routes.get(message.channel, self._live)
        provider = self._test if message.key_kind is KeyKind.TEST else live
        if provider is live and self._suppressions is not None and await self._suppressions.suppressed(message):
            metrics.SUPPRESSED_BEFORE_SEND.labels(message.channel.value).inc()
            return Outcome([self._event(message, Status.FAILED, Reason.RECIPIENT_SUPPRESSED)])
        try:
            accepted = await self._send_with_retries(provider, message)
        except Postponed as exc:
            return self.held(message, exc.seconds, exc.reason)
        except PermanentError as exc:
            return Outcome([self._event(message, Status.FAILED, exc.reason, provider_error=exc.provider_error)])
        except RetryableError as exc:
            return self._later(message, exc)
        metrics.ACCEPTED_TO_SENT_SECONDS.labels(message.category.value).observe(
            max(0.0, (self._clock() - message.created_at_ms) / 1000)
        )
        # The provider and its id are what a receipt will be bound by (herald.domain.receipts).
        sent = partial(
            self._event, message, provider_id=accepted.provider_message_id, provider=accepted.provider or provider.name
        )
        events = [sent(Status.SENT)]
        if accepted.delivered:
            events.append(sent(Status.DELIVERED))
        return Outcome(events)

    def _later(self, message: OutboundMessage, exc: RetryableError) -> Outcome:
        """In-process retries are over: re-queue on herald.retry, or fail once the retry budget
        (one delay per attempt) is spent."""
        now = self._clock()
        if message.attempt < len(self._delays):
            delay = max(self._delays[message.attempt], exc.retry_after or 0.0)
            # Not after the TTL: a message whose wait outlasts it is picked up then and expires.
            not_before = min(now + int(delay * 1000), message.expires_at_ms)
            metrics.RETRIES_SCHEDULED.labels(exc.reason).inc()
            retry = msgspec.structs.replace(
                message, attempt=message.attempt + 1, not_before_ms=not_before, last_error=exc.reason,
                provider_pin=exc.pinned or message.provider_pin,
            )  # fmt: skip
            return Outcome([], retry=retry)
        return Outcome([self._event(message, Status.FAILED, exc.reason.exhausted())])

    async def _send_with_retries(self, provider: Provider, message: OutboundMessage) -> Accepted:
        current = message

        async def attempt() -> Accepted:
            # An attempt a provider may have taken pins the next ones to it (`provider_pin`).
            nonlocal current
            try:
                return await self._attempt(provider, current)
            except RetryableError as exc:
                if exc.pinned is not None and exc.pinned != current.provider_pin:
                    current = msgspec.structs.replace(current, provider_pin=exc.pinned)
                raise

        return await retried(
            attempt,
            lambda: AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=provider_wait,
                retry=retry_if_exception(_retry_in_process),
                reraise=True,
            ),
        )

    @staticmethod
    async def _attempt(provider: Provider, message: OutboundMessage) -> Accepted:
        started = time.perf_counter()
        try:
            return await provider.send(message)
        finally:
            metrics.PROVIDER_SECONDS.labels(provider.name).observe(time.perf_counter() - started)
