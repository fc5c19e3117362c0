"""Per-provider capacity: the provider's msg/s held across workers, and its throttling obeyed.

A provider account has a throughput (the WhatsApp Cloud API allows a business phone number 80
msg/s by default; Twilio sets a rate per sender) and answers 429 beyond it. Every attempt to
send passes the gate: a first attempt in the worker's dispatcher, before a message is chosen,
and an in-process retry in `Throttled`, before it calls the provider again.

* **Capacity** (`provider_rate_per_second`, 0 = none): one token per attempt, from one bucket
  per provider in the same PostgreSQL token store as tenant pacing (`herald_take_tokens`, under
  an id derived from the provider's name), taken ~100 ms of tokens at a time (`BucketPacer`).
  Every token comes from the one bucket, so the rate holds whatever the number of workers. A
  message waiting for capacity holds no provider slot and is not chosen yet: when a token
  comes, class priority picks who gets it, so an OTP never queues behind campaign sends
  waiting for capacity. Tokens are asked for only when a message is ready, so an idle worker
  takes none. Test-key messages never reach the provider and spend no token, but they do wait
  while the gate is shut.
* **Throttling** (a 429 `throttled`, whether or not a capacity is set): the gate shuts for the
  Retry-After (at most `MAX_PAUSE_SECONDS`; without one, `DEFAULT_PAUSE_SECONDS`, doubling while
  the provider accepts nothing), for every send of this worker, retries included, not only the
  refused message's retry. And since a provider's Retry-After is often just "the
  next token" (tens of ms), the worker also paces itself, as TCP CUBIC paces a connection
  (RFC 9438; the AWS SDKs' adaptive retry mode does the same for throttled API calls): a 429
  sets a local rate of `BETA` times what the provider accepted over the last second (what it
  attempted, if nothing was accepted yet: a worker that joins a saturated provider), at most
  one cut per `CUT_SPACING_SECONDS`; the rate then grows back along a cubic, fast at first,
  flat near where the 429 came (after ~2 s for 10 msg/s, ~4 s for 100, ~9 s for 1,000), then
  probing beyond it, and is lifted after `RELEASE_AFTER_SECONDS` without a 429. The growth
  depends on time since the cut, not on a worker's share, and a larger share loses more at a
  cut, so workers sharing a provider drift towards equal shares: within a minute up to a few
  hundred msg/s in a simulation (a unit test runs two workers against a simulated provider),
  over minutes at 1,000 msg/s. Other workers learn from their own 429s; setting the capacity
  shares it exactly. A busy recipient or a spent daily quota is not the provider's throughput
  and leaves the gate open.
* **Stalls** (an attempt with no answer at all: a timeout, a connection dropped after the
  request went out). The provider may have taken that message, and a stalled provider usually
  has: requests wait in its socket buffers and are processed when it thaws, answered to nobody.
  Every attempt sent into a stall is then one more message sent twice, so after an unanswered
  attempt the gate lets one attempt through at a time (a probe; first attempts and retries
  alike) until the provider answers again with anything but an error. What a stall costs is then bounded: the
  attempts in flight when it began (at most `worker.max_in_flight`) and one probe per provider
  timeout are all that can reach the provider twice; they show as
  `herald_duplicate_sends_total` once its receipts come. Without it a 60 s stall of the
  carrier double made 475 duplicates (issue #31): every in-process retry of every in-flight
  send joined the provider's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from functools import partial

import asyncpg

from herald import metrics
from herald.domain.reasons import Reason
from herald.domain.records import OutboundMessage
from herald.metrics import ProviderOutcome
from herald_worker.pacing import BucketPacer
from herald_worker.providers.base import Accepted, PermanentError, Postponed, Provider, RetryableError, outcome_of

log = logging.getLogger(__name__)

MAX_PAUSE_SECONDS = 10.0
DEFAULT_PAUSE_SECONDS = 0.2
"""The shut after a 429 without Retry-After; doubled at each further cut before the provider
accepts a send again (a provider refusing everything is probed less and less often), up to
`MAX_PAUSE_SECONDS`. Short, because every class waits it out (an OTP too: a one-second default
put authentication's accepted -> sent p99 over its 1 s target), and the cut in the worker's
own rate, not the shut, is what keeps it under the provider's capacity."""
CUT_SPACING_SECONDS = 0.5
"""The answers to sends already in flight when the first 429 came are one signal, not several."""
BETA = 0.7
"""The share of the accepted rate kept after a 429 (CUBIC's multiplicative decrease)."""
CUBIC_SCALE = 0.4
"""msg/s per s³, RFC 9438's C: how fast the rate grows back after a cut."""
MIN_RATE = 1.0
RELEASE_AFTER_SECONDS = 60.0
STALL_POLL_SECONDS = 0.1
"""How often a send waiting behind a stalled provider's probe looks again."""
_BUCKETS = uuid.UUID("6f0d3c1e-5b8a-4f39-9d7e-2a41c8b0e5a7")


class _PerSecond:
    """How many events came over about the last second, from two one-second bins: the bin
    before the current one counts for the part of it still inside the last second. No memory
    per event: `accepted` and `take` run once per send."""

    __slots__ = ("_last", "_start", "_this")

    def __init__(self) -> None:
        self._start = float("-inf")
        self._this = self._last = 0

    def add(self, now: float) -> None:
        self._roll(now)
        self._this += 1

    def rate(self, now: float) -> float:
        self._roll(now)
        return self._last * (1.0 - (now - self._start)) + self._this

    def _roll(self, now: float) -> None:
        elapsed = now - self._start
        if elapsed >= 1.0:
            self._last = self._this if elapsed < 2.0 else 0
            self._this = 0
            self._start = self._start + 1.0 if elapsed < 2.0 else now


class _Cubic:
    """The local rate `t` seconds after a 429 that came at `w_max` msg/s:
    `CUBIC_SCALE * (t - k)³ + w_max`, which is `BETA * w_max` at the cut, flattens out at
    `w_max` after `k` seconds and then rises faster and faster (RFC 9438, section 4.2)."""

    __slots__ = ("_cut_at", "_k", "_w_max")

    def __init__(self, w_max: float, now: float) -> None:
        self._w_max, self._cut_at = w_max, now
        self._k = math.cbrt(w_max * (1 - BETA) / CUBIC_SCALE)

    def rate(self, now: float) -> float:
        return max(MIN_RATE, CUBIC_SCALE * (now - self._cut_at - self._k) ** 3 + self._w_max)


def bucket_id(provider: str) -> uuid.UUID:
    """The provider's bucket in the tenant token store (a name-based id no tenant can have)."""
    return uuid.uuid5(_BUCKETS, provider)


class ProviderGate:
    def __init__(
        self,
        provider: str,
        rate_per_second: float,
        pacer: Callable[[Callable[[], None]], BucketPacer[str]] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`pacer(wake)` makes the capacity's token pacer once the dispatcher's wake-up is known
        (`attach`); None, or a rate of 0, is no capacity limit. `provider` names the bucket (a
        tenant's phone number has its own: `whatsapp:<number id>`); metrics count it under its
        kind (`metrics.provider_label`)."""
        self.provider = metrics.provider_label(provider)
        # The provider's series exist from the first scrape (at 0), not from its first event.
        for per_provider in (metrics.PROVIDER_THROTTLE_CUTS, metrics.PROVIDER_CAPACITY_WAIT_SECONDS,
                             metrics.PROVIDER_STALLS):  # fmt: skip
            metrics.every_series(per_provider, (self.provider,))
        metrics.every_series(metrics.PROVIDER_OUTCOMES, ProviderOutcome, self.provider)
        self._bucket = bucket_id(provider)
        self._make_pacer = pacer if rate_per_second > 0 else None
        self._pacer: BucketPacer[str] | None = None
        self._clock = clock
        self._shut_until = 0.0
        self._own: _Cubic | None = None
        """The local rate since the last 429; None: not pacing itself."""
        self._own_tokens = 0.0
        self._own_at = 0.0
        self._last_cut = float("-inf")
        self._strikes = 0
        """Cuts since the provider last accepted a send."""
        self._accepted = _PerSecond()
        self._attempted = _PerSecond()
        self._admitted: set[uuid.UUID] = set()
        """Messages whose first attempt took its token in the dispatcher."""
        self._stalled_since: float | None = None
        """When an attempt last went unanswered, while the provider has answered none since."""
        self._probes: set[uuid.UUID] = set()
        """Messages whose attempt went out while the provider was stalled, until it ends."""
        self._failed = 0
        """Attempts the provider failed on its side since it last took one."""

    @classmethod
    def on_postgres(cls, pool: asyncpg.Pool, provider: str, rate_per_second: float) -> ProviderGate:
        async def rate(_: uuid.UUID) -> tuple[str, float]:
            return provider, rate_per_second

        def granted(name: str, waited: float, _: int) -> None:
            metrics.PROVIDER_CAPACITY_WAIT_SECONDS.labels(metrics.provider_label(name)).observe(waited)

        return cls(provider, rate_per_second, lambda wake: BucketPacer.on_postgres(pool, rate, wake, granted))

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
        if self._stalled_since is not None and self._probes:
            return False
        if self._own is not None:
            rate = self._own.rate(now)
            self._own_tokens = min(max(1.0, rate / 10), self._own_tokens + (now - self._own_at) * rate)
            self._own_at = now
            if self._own_tokens < 1:
                return False
        return self._pacer is None or self._pacer.available(self._bucket)

    def take(self, message_id: uuid.UUID | None = None) -> None:
        """Spend what `ready` found for an attempt; `message_id` marks a first attempt taken by
        the dispatcher, so that `Throttled` does not take a second token for it."""
        if message_id is not None:
            self._probe(message_id)
        self._attempted.add(self._clock())
        if self._own is not None:
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
        self._probe(message_id)
        self.take()

    def _probe(self, message_id: uuid.UUID) -> None:
        if self._stalled_since is not None:
            self._probes.add(message_id)

    async def through(self, message_id: uuid.UUID, send: Callable[[], Awaitable[Accepted]]) -> Accepted:
        """One attempt of `message_id`: waits for the gate, makes the call, shuts the gate on a
        429 (`throttled`), reports the answer (`reporting`) and returns or raises what the call did."""
        await self.before_attempt(message_id)
        with self.reporting(message_id):
            try:
                return await send()
            except RetryableError as exc:
                if exc.reason is Reason.THROTTLED:
                    self.throttled(exc.retry_after)
                raise

    @contextlib.contextmanager
    def reporting(self, message_id: uuid.UUID) -> Iterator[None]:
        """Around one attempt: its outcome goes to `reported` from what the block raised
        (`outcome_of`; `Postponed`, the tenant's account, is a refusal; anything else never
        reached the provider), `success` when it raised nothing."""
        try:
            yield
        except (RetryableError, PermanentError) as exc:
            self.reported(message_id, outcome_of(exc), exc.reason)
            raise
        except Postponed:
            self.reported(message_id, ProviderOutcome.REFUSED)
            raise
        except BaseException:
            self.reported(message_id, None)
            raise
        self.reported(message_id, ProviderOutcome.SUCCESS)

    def reported(self, message_id: uuid.UUID, outcome: ProviderOutcome | None, reason: str | None = None) -> None:
        """An attempt is over, with `outcome` (counted in `herald_provider_outcomes_total`), or
        with None: it ended before reaching the provider and says nothing about it. `no_answer`
        (it timed out, or the connection dropped after the request went out) begins a stall; an
        answer other than an error (an acceptance, a refusal, a 429) ends it."""
        self._probes.discard(message_id)  # a stalled provider's next probe may go
        if outcome is None:
            return
        metrics.PROVIDER_OUTCOMES.labels(self.provider, outcome).inc()
        self._log_failing(outcome, reason)
        if outcome is ProviderOutcome.SUCCESS:
            now = self._clock()
            self._accepted.add(now)
            self._strikes = 0
            if self._own is not None and now - self._last_cut >= RELEASE_AFTER_SECONDS:
                self._own = None
        if outcome is not ProviderOutcome.NO_ANSWER:
            # An error ends no stall: "no connection" or "no bind" is not an answer, and a
            # provider answering only 5xx is probed one attempt at a time all the same.
            if self._stalled_since is not None and outcome is not ProviderOutcome.ERROR:
                log.warning(
                    "provider answers again; sends resume",
                    extra={"provider": self.provider, "stalled_seconds": round(self._clock() - self._stalled_since, 1)},
                )  # fmt: skip
                self._stalled_since = None
                self._probes.clear()
            return
        if self._stalled_since is None:
            self._stalled_since = self._clock()
            metrics.PROVIDER_STALLS.labels(self.provider).inc()
            log.warning(
                "provider did not answer a send (timeout or connection lost); one attempt at a time until it answers",
                extra={"provider": self.provider},
            )  # fmt: skip

    def _log_failing(self, outcome: ProviderOutcome, reason: str | None) -> None:
        """A warning when the provider starts failing sends on its side, and when it takes one
        again (with how many failed between): an outage shows in the log, once, not per send."""
        if outcome is ProviderOutcome.ERROR:
            if self._failed == 0:
                log.warning("provider failing sends", extra={"provider": self.provider, "reason": reason or outcome})
            self._failed += 1
        elif outcome is ProviderOutcome.SUCCESS and self._failed:
            log.warning("provider takes sends again", extra={"provider": self.provider, "failed": self._failed})
            self._failed = 0

    def throttled(self, retry_after: float | None) -> None:
        now = self._clock()
        cut = now - self._last_cut >= CUT_SPACING_SECONDS
        if cut:
            self._strikes += 1
        if retry_after is None:
            # (The exponent is bounded: 0.2 s x 2^6 is past MAX_PAUSE_SECONDS already.)
            retry_after = DEFAULT_PAUSE_SECONDS * 2 ** min(6, max(0, self._strikes - 1))
        self._shut_until = max(self._shut_until, now + max(0.0, min(MAX_PAUSE_SECONDS, retry_after)))
        if not cut:
            return
        # What the provider took from this worker just now; a worker it has taken nothing from
        # yet (it joined a provider that others saturate) starts from what it tried to send.
        w = self._accepted.rate(now) or self._attempted.rate(now)
        if self._own is not None:
            w = min(w, self._own.rate(now))
        self._own = _Cubic(max(MIN_RATE, w), now)
        self._own_tokens, self._own_at = 0.0, now
        self._last_cut = now
        metrics.PROVIDER_THROTTLE_CUTS.labels(self.provider).inc()

    def opens_at(self) -> float | None:
        """When a gate that is not ready may be (monotonic), for the dispatcher's sleep; None when
        it is waiting for nothing local (open, or for a capacity refill, which wakes it)."""
        now = self._clock()
        if now < self._shut_until:
            return self._shut_until
        if self._stalled_since is not None and self._probes:
            return now + STALL_POLL_SECONDS  # woken, too, when the probe's answer comes
        if self._own is not None and self._own_tokens < 1:
            return self._own_at + (1 - self._own_tokens) / self._own.rate(now)
        return None

    async def close(self) -> None:
        if self._pacer is not None:
            await self._pacer.close()


class Throttled:
    """Wraps the live provider: each attempt passes the gate (a retry waits for it; a first
    attempt was let through by the dispatcher), and each answer is reported to it. A `throttled`
    answer still propagates: the refused message is retried by the deliverer, no sooner than
    its Retry-After."""

    def __init__(self, provider: Provider, gate: ProviderGate, *, own_gate: bool = False) -> None:
        """`own_gate`: the gate is this provider's alone (no dispatcher waits on it): it is
        attached for polling here and closed with the provider."""
        self.name = provider.name
        self._provider = provider
        self._gate = gate
        self._own_gate = own_gate
        if own_gate:
            gate.attach(lambda: None)

    async def send(self, message: OutboundMessage) -> Accepted:
        return await self._gate.through(message.id, partial(self._provider.send, message))

    async def close(self) -> None:
        await self._provider.close()
        if self._own_gate:
            await self._gate.close()
