"""Rate cards, usage exports for the billing team, a tenant's own month."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import msgspec

from herald.billing import ratecards
from herald.billing.period import Month
from herald.db import billing, usage
from herald.db.billing import PriceRow, RateCardSummary
from herald.errors import NotFound
from herald.exports import Detail, Format, export
from herald_api.services.tenancy import existing

__all__ = ["Billing", "PriceRow", "RateCardSummary", "UsageCount"]


class UsageCount(msgspec.Struct, frozen=True):
    channel: str
    category: str
    country: str
    currency: str
    messages: int
    amount_micros: int


class Billing:
    def __init__(self, pool: asyncpg.Pool, month_query_timeout: float) -> None:
        """`month_query_timeout`: a month's scan may take longer than the API's short database
        timeout allows."""
        self._pool = pool
        self._timeout = month_query_timeout

    async def import_rate_card(self, card: ratecards.RateCardIn) -> tuple[RateCardSummary, list[PriceRow]]:
        ratecards.check(card, datetime.now(UTC))
        async with self._pool.acquire() as conn:
            version = await billing.import_rate_card(conn, card)
        return await self.rate_card(version)

    async def rate_cards(self) -> list[RateCardSummary]:
        return await billing.rate_cards(self._pool)

    async def rate_card(self, version: int) -> tuple[RateCardSummary, list[PriceRow]]:
        found = await billing.rate_card(self._pool, version)
        if found is None:
            raise NotFound("no such rate card version", code="rate_card_not_found")
        return found

    async def export(
        self, month: Month, detail: Detail, fmt: Format, tenant_id: uuid.UUID | None
    ) -> AsyncIterator[bytes]:
        """The export's chunks; raises NotFound for an unknown tenant before any byte is made."""
        if tenant_id is not None:
            await existing(self._pool, tenant_id)
        return export(self._pool, month, detail, fmt, tenant_id, query_timeout=self._timeout)

    async def tenant_month(self, tenant_id: uuid.UUID, month: Month) -> list[UsageCount]:
        rows = await usage.tenant_usage(self._pool, month, tenant_id, query_timeout=self._timeout)
        return [
            UsageCount(r["channel"], r["category"], r["country"], r["currency"], r["messages"], r["amount_micros"])
            for r in rows
        ]
