"""Each provider's health, from its recent outcomes in this worker (a circuit breaker).

`failures` outages in a row (no connection, no bind, 5xx, an answer lost) take a provider out of
rotation: its routes try their other providers first. After `cooldown_seconds` one message at a
time probes it (half-open); an acceptance puts it back, a failure restarts the cool-down. A
throttled answer is the provider's capacity, not its health, and counts as neither. A route
whose providers are all out still tries them, in order: sending late beats not sending.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from herald import metrics


class Health:
    def __init__(self, failures: int, cooldown_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = failures
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}
        self._probing: set[str] = set()

    def healthy(self, provider: str) -> bool:
        return provider not in self._open_until

    def usable(self, provider: str) -> bool:
        """In rotation, or due a probe (which this call takes: one at a time)."""
        until = self._open_until.get(provider)
        if until is None:
            return True
        if self._clock() < until or provider in self._probing:
            return False
        self._probing.add(provider)
        return True

    def succeeded(self, provider: str) -> None:
        self._failures[provider] = 0
        self._probing.discard(provider)
        if self._open_until.pop(provider, None) is not None:
            metrics.SMS_PROVIDER_HEALTHY.labels(provider).set(1)

    def failed(self, provider: str) -> None:
        self._probing.discard(provider)
        count = self._failures[provider] = self._failures.get(provider, 0) + 1
        if count >= self._threshold or provider in self._open_until:
            self._open_until[provider] = self._clock() + self._cooldown
            metrics.SMS_PROVIDER_HEALTHY.labels(provider).set(0)

    def settled(self, provider: str) -> None:
        """An attempt that said nothing about health (throttled) is over: a probe may go again."""
        self._probing.discard(provider)
