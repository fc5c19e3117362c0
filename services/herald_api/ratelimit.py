"""Rate limiting of the HTTP API itself, per API key (429 + Retry-After beyond it).

A token bucket per key in each API process, refilled at `key_requests_per_second` with one
second of burst. Per process, deliberately: the check costs a dict lookup on the hot path, where
a shared store would cost a round trip per request; with `HERALD_API_WORKERS=n` processes (or n
pods behind a balancer) a key may reach n times the figure, which is what the setting is sized
for. This protects the API; the delivery rate a tier buys is enforced by the workers' shared
buckets whatever the API accepts. A batch counts as one request.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable

from herald.errors import RateLimited


class KeyRateLimiter:
    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_second
        self._clock = clock
        self._buckets: dict[uuid.UUID, tuple[float, float]] = {}
        """key id -> (tokens, when last refilled). Only authenticated keys get here: bounded."""

    def check(self, key_id: uuid.UUID) -> None:
        """Take one request from the key's bucket, or raise RateLimited with the wait."""
        if self._rate <= 0:
            return
        now = self._clock()
        tokens, at = self._buckets.get(key_id, (self._rate, now))
        tokens = min(self._rate, tokens + (now - at) * self._rate)
        if tokens < 1:
            self._buckets[key_id] = (tokens, now)
            raise RateLimited(
                "too many requests for this API key", code="rate_limited",
                retry_after=max(1, math.ceil((1 - tokens) / self._rate)),
            )  # fmt: skip
        self._buckets[key_id] = (tokens - 1, now)


class FailedAuthLimiter:
    """Failed authentications per client address (bad API keys, a wrong admin token): a bucket
    of `per_minute` with a minute's burst, per API process. A client that has spent it is
    refused with 429 before any credential it sends is even looked at, until the bucket
    refills, so guessing the admin token or keys from one address runs at `per_minute`.

    Keyed by the address uvicorn reports: behind a reverse proxy that is the proxy unless its
    `X-Forwarded-For` is trusted (uvicorn's `--forwarded-allow-ips`): docs/security.md. The
    table is bounded: past `max_clients`, the oldest entry is forgotten (an attacker rotating
    addresses gets at most that many buckets' worth, which a proxy's own limits must cover)."""

    def __init__(
        self, per_minute: int, max_clients: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = float(per_minute)
        self._rate = per_minute / 60.0
        self._max = max_clients
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, client: str) -> None:
        """Raise RateLimited if `client` has no failed attempt left."""
        if self._rate <= 0 or client not in self._buckets:
            return
        tokens = self._tokens(client, self._clock())
        if tokens < 1:
            raise RateLimited(
                "too many failed authentications from this address", code="too_many_failed_attempts",
                retry_after=max(1, math.ceil((1 - tokens) / self._rate)),
            )  # fmt: skip

    def failed(self, client: str) -> None:
        if self._rate <= 0:
            return
        now = self._clock()
        tokens = self._tokens(client, now)
        self._buckets.pop(client, None)  # re-inserted last: dicts keep insertion order
        self._buckets[client] = (tokens - 1, now)
        if len(self._buckets) > self._max:
            del self._buckets[next(iter(self._buckets))]

    def _tokens(self, client: str, now: float) -> float:
        tokens, at = self._buckets.get(client, (self._burst, now))
        return min(self._burst, tokens + (now - at) * self._rate)
