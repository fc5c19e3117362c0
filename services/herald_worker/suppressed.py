"""The suppression list asked again just before a marketing message is sent.

Accept refuses marketing to a suppressed recipient (`herald.domain.suppressions`), but a message
can wait in a queue for minutes or hours (a campaign's backlog, a tenant's pacing, a scheduled
retry) while its recipient unsubscribes, bounces or replies STOP. Sending it then is what the
one-click unsubscribe rules (RFC 8058, Gmail's and Yahoo's sender requirements) and STOP forbid.

Asking the list for every marketing message would be a query per send; instead each worker
keeps, per tenant and channel, when the newest suppression was added (refreshed every
`ttl` seconds). A message accepted well after that was checked at accept against a list that
already held it; only the others are looked up, by the recipient's keyed hashes. "Well after"
allows `SKEW_SECONDS` for the API's and the database's clocks and for a suppression whose
transaction began before the accept and committed after it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

import asyncpg

from herald.caches import TTLCache
from herald.db import suppressions as store
from herald.db.pool import until_written
from herald.domain.limits import RecipientHasher
from herald.domain.models import Channel
from herald.domain.records import OutboundMessage
from herald.domain.suppressions import SUPPRESSED_CATEGORIES

SKEW_SECONDS = 60.0


class SuppressionCheck(Protocol):
    async def suppressed(self, message: OutboundMessage) -> bool:
        """Whether the suppression list now refuses this message (marketing only)."""
        ...


class PostgresSuppressions:
    def __init__(self, pool: asyncpg.Pool, hasher: RecipientHasher, ttl: float = 2.0) -> None:
        self._pool = pool
        self._hasher = hasher
        self._latest: TTLCache[tuple[uuid.UUID, Channel], datetime | None] = TTLCache(ttl)

    async def suppressed(self, message: OutboundMessage) -> bool:
        if message.category not in SUPPRESSED_CATEGORIES:
            return False
        key = (message.tenant_id, message.channel)
        # Waits out a database outage, as the worker's other notes do: an outage must not fail messages.
        newest = await self._latest.get(
            key, lambda: until_written(lambda: store.latest(self._pool, message.tenant_id, message.channel))
        )
        if newest is None or newest.timestamp() + SKEW_SECONDS < message.created_at_ms / 1000:
            return False
        candidate = store.candidate(self._hasher, message.tenant_id, message.channel, message.to)
        (entry,) = await until_written(lambda: store.matching(self._pool, message.tenant_id, [candidate]))
        return entry is not None
