"""What a tenant reads about its own sending: a message's timeline, its limits and their use."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec

from herald.db import messages
from herald.db import recipients as recipient_store
from herald.db.messages import MessageView
from herald.domain.tenants import Tenant
from herald.errors import NotFound


class LimitsInUse(msgspec.Struct, frozen=True):
    rate_per_second: int
    daily_recipients: int | None
    recipients_used_24h: int

    @property
    def remaining(self) -> int | None:
        return None if self.daily_recipients is None else max(0, self.daily_recipients - self.recipients_used_24h)


class Reading:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def message(self, tenant_id: uuid.UUID, message_id: uuid.UUID) -> MessageView:
        """Raises NotFound also for another tenant's message: existence is not disclosed."""
        view = await messages.get(self._pool, tenant_id, message_id)
        if view is None:
            raise NotFound("no such message (a just-accepted message appears within moments)", code="message_not_found")
        return view

    async def limits(self, tenant: Tenant) -> LimitsInUse:
        limits = tenant.limits
        used = await recipient_store.used(self._pool, tenant.id, datetime.now(UTC))
        return LimitsInUse(limits.rate_per_second, limits.daily_recipients, used)
