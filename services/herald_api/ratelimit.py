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
