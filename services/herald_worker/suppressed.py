"""The suppression list asked again just before a marketing message is sent.

Accept refuses marketing to a suppressed recipient (`herald.domain.suppressions`), but a message
can wait in a queue for minutes or hours (a campaign's backlog, a tenant's pacing, a scheduled
retry) while its recipient unsubscribes, bounces or replies STOP. Sending it then is what the
one-click unsubscribe rules (RFC 8058, Gmail's and Yahoo's sender requirements) and STOP forbid.

Only a message that a suppression added since its accept may affect (`herald_worker.recency`,
per tenant and channel) is looked up, by the recipient's keyed hashes.
"""

from __future__ import annotations

import uuid
from typing import Protocol

import asyncpg

from herald.db import suppressions as store
from herald.db.pool import until_written
from herald.domain.limits import RecipientHasher
from herald.domain.models import Channel
from herald.domain.records import OutboundMessage
from herald.domain.suppressions import SUPPRESSED_CATEGORIES
from herald_worker.recency import LatestChange


class SuppressionCheck(Protocol):
    async def suppressed(self, message: OutboundMessage) -> bool:
        """Whether the suppression list now refuses this message (marketing only)."""
        ...


class PostgresSuppressions:
    def __init__(self, pool: asyncpg.Pool, hasher: RecipientHasher, ttl: float = 2.0) -> None:
        self._pool = pool
        self._hasher = hasher
        self._changed: LatestChange[tuple[uuid.UUID, Channel]] = LatestChange(
            lambda keys: store.latest(pool, keys), ttl
        )

    async def suppressed(self, message: OutboundMessage) -> bool:
        if message.category not in SUPPRESSED_CATEGORIES:
            return False
        if not await self._changed.may_affect((message.tenant_id, message.channel), message.created_at_ms):
            return False
        candidate = store.candidate(self._hasher, message.tenant_id, message.channel, message.to)
        (entry,) = await until_written(lambda: store.matching(self._pool, message.tenant_id, [candidate]))
        return entry is not None
