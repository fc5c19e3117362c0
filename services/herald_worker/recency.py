"""Whether something a message's send depends on changed after the message was accepted.

The worker asks two lists again just before a send (the suppression list, cancellations). Asking
for every message would be a query per send; instead each worker keeps, per key, when the list
last changed (refreshed every `ttl` seconds; the keys that need it at one moment are asked in
one statement, `herald.batching`: with thousands of tenants each is rarely fresh, and one round
trip per key was one per message). A message accepted well after that change was
checked at accept against a list that already held it, or cannot be what changed; only the
others need the costly check. "Well after" allows `SKEW_SECONDS` for the API's and the
database's clocks and for a change whose transaction began before the accept and committed after.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import datetime
from typing import Generic, TypeVar

from herald.batching import BatchedCache
from herald.db.pool import until_written

SKEW_SECONDS = 60.0

K = TypeVar("K", bound=Hashable)


class LatestChange(Generic[K]):
    def __init__(self, latest: Callable[[list[K]], Awaitable[Sequence[datetime | None]]], ttl: float) -> None:
        """`latest(keys)`: when the list last changed for each key, in order (None: never).
        Waits out a database outage, as the worker's other notes do: an outage must not fail
        messages."""
        self._latest: BatchedCache[K, datetime | None] = BatchedCache(
            lambda keys: until_written(lambda: latest(keys)), ttl
        )

    async def may_affect(self, key: K, accepted_at_ms: int) -> bool:
        """Whether a change for `key` may postdate a message accepted at `accepted_at_ms`."""
        latest = await self._latest.get(key)
        return latest is not None and latest.timestamp() + SKEW_SECONDS >= accepted_at_ms / 1000
