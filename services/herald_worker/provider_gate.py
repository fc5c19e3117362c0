"""Per-provider capacity: the provider's msg/s held across workers, and its throttling obeyed.

A provider account has a throughput (the WhatsApp Cloud API allows a business phone number 80
msg/s by default; Twilio sets a rate per sender) and answers 429 beyond it. Every attempt to
send passes the gate: a first attempt in the worker's dispatcher, before a message is chosen,
and an in-process retry in `Throttled`, before it calls the provider again.

* **Capacity** (`provider_rate_per_second`, 0 = none): one token per attempt, from one bucket
  per provider in the same PostgreSQL token store as tenant pacing (`herald_take_tokens`, under
  an id derived from the provider's name), taken ~100 ms of tokens at a time (`TenantPacer`).
  Every token comes from the one bucket, so the rate holds whatever the number of workers. A
  message waiting for capacity holds no provider slot and is not chosen yet: when a token
  comes, class priority picks who gets it, so an OTP never queues behind campaign sends
  waiting for capacity. Tokens are asked for only when a message is ready, so an idle worker
  takes none. Test-key messages never reach the provider and spend no token, but they do wait
  while the gate is shut.
* **Throttling** (a 429 `throttled`, whether or not a capacity is set): the gate shuts for the
  Retry-After (at most `MAX_PAUSE_SECONDS`), for every send of this worker, retries included,
  not only the refused message's retry. And since a provider's Retry-After is often just "the
  next token" (tens of ms), the worker also paces itself: a 429 sets a local rate of half what
  the provider accepted over the last second (halved again on a later 429, at most every
  `CUT_SPACING_SECONDS`), raised by a tenth each second without one and lifted after
  `RELEASE_AFTER_SECONDS` without one (additive increase, multiplicative decrease, as TCP does).
  Other workers learn from their own 429s. A busy recipient or a spent daily quota is not the
  provider's throughput and leaves the gate open.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Callable

import asyncpg

from herald import metrics
from herald.domain.models import Tier
from herald.domain.records import OutboundMessage
from herald_worker.pacing import TenantPacer
from herald_worker.providers.base import Accepted, Provider, RetryableError

MAX_PAUSE_SECONDS = 10.0
DEFAULT_PAUSE_SECONDS = 1.0
"""A 429 without Retry-After."""
CUT_SPACING_SECONDS = 0.5
"""The answers to sends already in flight when the first 429 came are one signal, not several."""
RAISE_EVERY_SECONDS = 1.0
RELEASE_AFTER_SECONDS = 60.0
_BUCKETS = uuid.UUID("6f0d3c1e-5b8a-4f39-9d7e-2a41c8b0e5a7")


def bucket_id(provider: str) -> uuid.UUID:
    """The provider's bucket in the tenant token store (a name-based id no tenant can have)."""
    return uuid.uuid5(_BUCKETS, provider)


class ProviderGate:
    def __init__(
        self,
        provider: str,
        rate_per_second: float,
        pacer: Callable[[Callable[[], None]], TenantPacer] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`pacer(wake)` makes the capacity's token pacer once the dispatcher's wake-up is known
        (`attach`); None, or a rate of 0, is no capacity limit."""
        self.provider = provider
        self._bucket = bucket_id(provider)
        self._make_pacer = pacer if rate_per_second > 0 else None
        self._pacer: TenantPacer | None = None
        self._clock = clock
        self._shut_until = 0.0
        self._own_rate: float | None = None
        """The local rate after a 429 (msg/s); None: not pacing itself."""
        self._own_tokens = 0.0
        self._own_at = 0.0
        self._last_cut = self._last_raise = float("-inf")
        self._accepted: collections.deque[float] = collections.deque()
        """When the provider accepted this worker's sends, over the last second."""
        self._admitted: set[uuid.UUID] = set()
        """Messages whose first attempt took its token in the dispatcher."""

    @classmethod
    def on_postgres(cls, pool: asyncpg.Pool, provider: str, rate_per_second: float) -> ProviderGate:
        async def rate(_: uuid.UUID) -> tuple[Tier | None, float]:
            return None, rate_per_second

        def granted(_: Tier | None, waited: float, __: int) -> None:
            metrics.PROVIDER_CAPACITY_WAIT_SECONDS.labels(provider).observe(waited)

        return cls(
            provider, rate_per_second, lambda wake: TenantPacer.on_postgres(pool, rate, wake, on_granted=granted)
        )

    def attach(self, wake: Callable[[], None]) -> None:
        """Tell the gate how to wake the dispatcher when a refill lands (before the first `ready`)."""
        if self._make_pacer is not None:
            self._pacer = self._make_pacer(wake)

    def ready(self) -> bool:
        """An attempt may start now. False while shut, above the local rate or out of capacity
        tokens (a refill is then under way and wakes the dispatcher)."""
        now = self._clock()
        if now < self._shut_until:
            return False
        if self._own_rate is not None:
            burst = max(1.0, self._own_rate / 10)
            self._own_tokens = min(burst, self._own_tokens + (now - self._own_at) * self._own_rate)
            self._own_at = now
            if self._own_tokens < 1:
                return False
        return self._pacer is None or self._pacer.available(self._bucket)

    def take(self, message_id: uuid.UUID | None = None) -> None:
        """Spend what `ready` found for an attempt; `message_id` marks a first attempt taken by
        the dispatcher, so that `Throttled` does not take a second token for it."""
        if self._own_rate is not None:
            self._own_tokens -= 1
        if self._pacer is not None:
            self._pacer.try_take(self._bucket)
        if message_id is not None:
            self._admitted.add(message_id)

    def settle(self, message_id: uuid.UUID) -> None:
        """The message's attempts are over (it may not have reached the provider: expired)."""
        self._admitted.discard(message_id)

    async def before_attempt(self, message_id: uuid.UUID) -> None:
        """Wait for the gate unless the dispatcher already let this attempt through."""
        if message_id in self._admitted:
            self._admitted.discard(message_id)
            return
        while not self.ready():
            opens = self.opens_at()
            await asyncio.sleep(min(0.1, max(0.005, (opens - self._clock()) if opens is not None else 0.005)))
        self.take()

    def accepted(self) -> None:
        now = self._clock()
        self._accepted.append(now)
        while self._accepted[0] < now - 1.0:
            self._accepted.popleft()
        if self._own_rate is not None and now - self._last_raise >= RAISE_EVERY_SECONDS:
            self._own_rate *= 1.1
            self._last_raise = now
            if now - self._last_cut >= RELEASE_AFTER_SECONDS:
                self._own_rate = None

    def throttled(self, retry_after: float | None) -> None:
        now = self._clock()
        pause = min(MAX_PAUSE_SECONDS, retry_after if retry_after is not None else DEFAULT_PAUSE_SECONDS)
        self._shut_until = max(self._shut_until, now + max(0.0, pause))
        if now - self._last_cut < CUT_SPACING_SECONDS:
            return
        recent = sum(1 for at in self._accepted if at >= now - 1.0)
        base = self._own_rate if self._own_rate is not None else float(recent)
        self._own_rate = max(1.0, base / 2)
        self._own_tokens, self._own_at = 0.0, now
        self._last_cut = self._last_raise = now
        metrics.PROVIDER_THROTTLE_CUTS.labels(self.provider).inc()

    def opens_at(self) -> float | None:
        """When a gate that is not ready may be (monotonic), for the dispatcher's sleep; None when
        it is waiting for nothing local (open, or for a capacity refill, which wakes it)."""
        now = self._clock()
        if now < self._shut_until:
            return self._shut_until
        if self._own_rate is not None and self._own_tokens < 1:
            return self._own_at + (1 - self._own_tokens) / self._own_rate
        return None

    async def close(self) -> None:
        if self._pacer is not None:
            await self._pacer.close()


class Throttled:
    """Wraps the live provider: each attempt passes the gate (a retry waits for it; a first
    attempt was let through by the dispatcher), and each answer is reported to it. A `throttled`
    answer still propagates: the refused message is retried by the deliverer, no sooner than
    its Retry-After."""

    def __init__(self, provider: Provider, gate: ProviderGate) -> None:
        self.name = provider.name
        self._provider = provider
        self._gate = gate

    async def send(self, message: OutboundMessage) -> Accepted:
        await self._gate.before_attempt(message.id)
        try:
            accepted = await self._provider.send(message)
        except RetryableError as exc:
            if exc.reason == "throttled":
                self._gate.throttled(exc.retry_after)
            raise
        self._gate.accepted()
        return accepted

    async def close(self) -> None:
        await self._provider.close()
