"""What a tenant reads about its own sending: a message's timeline, its limits and their use."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec

from herald.db import listings, messages
from herald.db import recipients as recipient_store
from herald.db.messages import MessageView
from herald.domain.search import Cursor, MessageFilter, MessageSummary
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

    async def messages(
        self, tenant_id: uuid.UUID, found: MessageFilter, after: Cursor | None, limit: int
    ) -> tuple[list[MessageSummary], Cursor | None]:
        """A page of the tenant's messages, newest first, and the cursor of the next (None: the last)."""
        found = msgspec.structs.replace(found, window=found.window.checked())
        rows = await listings.messages(self._pool, tenant_id, found, after, limit + 1)
        page = rows[:limit]
        return page, Cursor(page[-1].created_at, page[-1].id) if len(rows) > limit else None

    async def limits(self, tenant: Tenant) -> LimitsInUse:
        limits = tenant.limits
        used = await recipient_store.used(self._pool, tenant.id, datetime.now(UTC))
        return LimitsInUse(limits.rate_per_second, limits.daily_recipients, used)
