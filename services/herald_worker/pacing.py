"""Per-tenant send rate, held across any number of worker processes.

Design: **one token bucket per tenant in PostgreSQL** (`herald_take_tokens`, migration 0006),
filled at the tenant's rate (tier default or `rate_limit_per_second`) up to a burst of half a
second's worth. A worker never asks per message: it takes a chunk of ~100 ms of tokens
(`ceil(rate / 10)`) and spends it locally, so an enterprise tenant at 1,000 msg/s costs each
worker at most ~10 small transactions per second, and the rate holds whatever the number of
workers, because every token comes from the one bucket. Chunks a worker took but did not spend
(its tenant's backlog ran out) expire after a second, so they cannot pile up into a burst.

Rejected alternatives: coordination-free partition shares (each worker paces at rate x its share
of partitions) are exact only when a tenant's traffic spreads evenly over partitions; with a few
recipients it does not (their key picks the partition), and a rebalance changes shares under
load. A Redis-like store would be one more stateful service to run, for a few thousand tiny
transactions per second that PostgreSQL absorbs.

The scheduler asks `BucketPacer.try_take(tenant)` without waiting: when the local chunk is
spent it answers False, a background refill asks the bucket (waiting out a dry bucket at the
tenant's rate), and `wake` tells the pipeline to look again. Time spent without a token is
observed per tier.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Generic, NamedTuple, TypeVar

import asyncpg

from herald import metrics
from herald.batching import BatchedCache
from herald.db import pacing, tenants
from herald.db.pool import DATABASE_ERRORS, until_written
from herald.domain.limits import effective
from herald.domain.models import Tier
from herald.domain.tenants import Tenant
from herald.runtime import ticks

log = logging.getLogger(__name__)

CHUNK_SECONDS = 0.1
BURST_SECONDS = 0.5
ALLOWANCE_TTL_SECONDS = 1.0


class TenantRates:
    """Each tenant's effective msg/s and suspension, cached for `ttl` seconds: how long a PATCH of
    the tier, of `rate_limit_per_second` or of `suspended` takes to reach the workers (the same
    default as the API's auth cache, so a suspension stops sends and new requests alike)."""

    def __init__(self, pool: asyncpg.Pool, ttl: float = 5.0) -> None:
        self._pool = pool
        # The tenants due a reload at one moment are read in one statement (many tenants: each
        # is rarely fresh, and one round trip each was one per message).
        self._rates: BatchedCache[uuid.UUID, _Rate] = BatchedCache(self._load_many, ttl)
        self._suspended: set[uuid.UUID] = set()

    async def get(self, tenant_id: uuid.UUID) -> tuple[Tier, float]:
        rate = await self._rates.get(tenant_id)
        if rate.suspended:
            self._suspended.add(tenant_id)
        else:
            self._suspended.discard(tenant_id)
        return rate.tier, rate.per_second

    def suspended(self, tenant_id: uuid.UUID) -> bool:
        """As of the tenant's last load (`get`, which reloads it once `ttl` has passed)."""
        return tenant_id in self._suspended

    async def _load_many(self, tenant_ids: list[uuid.UUID]) -> list[_Rate]:
        # Until the database answers: the fetch loop and the token refills wait for it, as pacing
        # does (its tokens come from the same database); none of their work may be skipped.
        rows = await until_written(lambda: tenants.get_many(self._pool, tenant_ids))
        return [_Rate.of(row) for row in rows]


class _Rate(NamedTuple):
    tier: Tier
    per_second: float
    suspended: bool

    @classmethod
    def of(cls, row: Tenant | None) -> _Rate:
        if row is None:
            # A deleted tenant's queued messages still drain, at the lowest tier's rate.
            return cls(Tier.FREE, float(effective(Tier.FREE, False, None, None).rate_per_second), False)
        return cls(row.tier, float(row.limits.rate_per_second), row.suspended)


L = TypeVar("L")
"""What a bucket's refills are reported under: a tenant's tier, a provider's name."""
TakeTokens = Callable[[uuid.UUID, float, float, int], Awaitable[int]]
Rates = Callable[[uuid.UUID], Awaitable[tuple[L, float]]]
"""A bucket's (label, msg/s)."""
OnGranted = Callable[[L, float, int], None]
"""Told (label, seconds waited without a token, tokens granted) after each refill."""


def observe_tier(tier: Tier, waited: float, granted: int) -> None:
    metrics.PACING_WAIT_SECONDS.labels(tier.value).observe(waited)
    metrics.PACED_TOKENS.labels(tier.value).inc(granted)


class BucketPacer(Generic[L]):
    """Tokens from shared buckets, by bucket id: a tenant's (labelled by its tier, reported with
    `observe_tier`), or a provider's capacity (`provider_gate.py`, by provider name)."""

    def __init__(
        self,
        take_tokens: TakeTokens,
        rates: Rates[L],
        wake: Callable[[], None],
        on_granted: OnGranted[L],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._take_tokens = take_tokens
        self._rates = rates
        self._wake = wake
        self._clock = clock
        self._on_granted = on_granted
        self._allowance: dict[uuid.UUID, tuple[int, float]] = {}
        """bucket -> (tokens in hand, expiry)."""
        self._refills: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._waiting_since: dict[uuid.UUID, float] = {}

    @classmethod
    def on_postgres(
        cls, pool: asyncpg.Pool, rates: Rates[L], wake: Callable[[], None], on_granted: OnGranted[L]
    ) -> BucketPacer[L]:
        # Refills of many buckets at once (many tenants) share a statement: one round trip each
        # was most of what a message cost the database at 10,000 tenants (loadtests/RESULTS.md).
        return cls(pacing.TokenStore(pool).take, rates, wake, on_granted)

    def available(self, bucket: uuid.UUID) -> bool:
        """A token is in hand (not consumed). If not, a refill is started and wakes the caller."""
        tokens, expiry = self._allowance.get(bucket, (0, 0.0))
        now = self._clock()
        if tokens > 0 and now < expiry:
            return True
        self._waiting_since.setdefault(bucket, now)
        if bucket not in self._refills:
            self._refills[bucket] = asyncio.create_task(self._refill(bucket))
        return False

    def try_take(self, bucket: uuid.UUID) -> bool:
        if not self.available(bucket):
            return False
        tokens, expiry = self._allowance[bucket]
        self._allowance[bucket] = (tokens - 1, expiry)
        return True

    async def close(self) -> None:
        for task in self._refills.values():
            task.cancel()
        for task in list(self._refills.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _refill(self, bucket: uuid.UUID) -> None:
        try:
            label, rate = await self._rates(bucket)
            want = max(1, math.ceil(rate * CHUNK_SECONDS))
            while True:
                try:
                    granted = await self._take_tokens(bucket, rate, max(1.0, rate * BURST_SECONDS), want)
                except DATABASE_ERRORS as exc:
                    log.warning("token store unavailable; pacing waits", extra={"error": type(exc).__name__})
                    granted = 0
                if granted > 0:
                    break
                # The bucket is dry: the next chunk exists in want/rate seconds at the earliest.
                await asyncio.sleep(max(0.005, want / rate))
            now = self._clock()
            self._allowance[bucket] = (granted, now + ALLOWANCE_TTL_SECONDS)
            self._on_granted(label, now - self._waiting_since.pop(bucket, now), granted)
        finally:
            self._refills.pop(bucket, None)
            self._wake()


async def report_utilisation(pool: asyncpg.Pool, interval: float, stop: asyncio.Event) -> None:
    """Every `interval` s, per tier: tokens granted by the shared buckets (to every worker) over
    what the tier's busy tenants were allowed in that time. Every worker reports the same
    cluster-wide figure (dashboards take `max by (tier)`)."""
    previous: dict[uuid.UUID, int] = {}
    last = time.monotonic()
    async for _ in ticks(interval, stop):
        try:
            totals = await pacing.granted_totals(pool)
        except DATABASE_ERRORS:
            continue
        now = time.monotonic()
        elapsed, last = now - last, now
        granted: dict[str, float] = {}
        allowed: dict[str, float] = {}
        for tenant_id, (tier, rate, total) in totals.items():
            delta = total - previous.get(tenant_id, total)
            previous[tenant_id] = total
            if delta > 0:
                granted[tier] = granted.get(tier, 0.0) + delta
                allowed[tier] = allowed.get(tier, 0.0) + rate * elapsed
        for tier in Tier:
            ratio = granted.get(tier.value, 0.0) / allowed[tier.value] if allowed.get(tier.value) else 0.0
            metrics.RATE_LIMIT_UTILISATION.labels(tier.value).set(min(ratio, 1.0))
