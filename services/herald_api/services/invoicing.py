"""The billing team's month close: periods, customers, credits and corrections, invoices."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import asyncpg

from herald.billing.countries import is_country
from herald.billing.invoices import Invoice, Party
from herald.billing.ledger import EntryKind
from herald.billing.money import is_currency
from herald.billing.period import Month
from herald.billing.tax import eu_rates
from herald.db import closes, customers, entries, invoices
from herald.db.closes import Close
from herald.db.customers import Customer
from herald.db.entries import Entry, NewEntry
from herald.errors import InvalidRequest, NotFound
from herald.settings import BillingSettings
from herald_api.services.tenancy import existing

__all__ = ["Close", "Customer", "Entry", "Invoicing"]


class Invoicing:
    def __init__(self, pool: asyncpg.Pool, settings: BillingSettings) -> None:
        self._pool = pool
        self._seller = Party.seller(settings)

    async def close(self, month: Month, closed_by: str) -> Close:
        return await closes.close(self._pool, month, closed_by, datetime.now(UTC))

    async def closes(self) -> list[Close]:
        return await closes.closes(self._pool)

    async def put_profile(self, profile: Customer) -> Customer:
        """Raises InvalidRequest for a currency or country ISO does not know."""
        await existing(self._pool, profile.tenant_id)
        if not is_currency(profile.currency):
            raise InvalidRequest.field("currency", "is not an ISO 4217 currency", code="invalid_currency")
        if not is_country(profile.country):
            raise InvalidRequest.field("country", "is not an ISO 3166-1 alpha-2 country", code="invalid_country")
        open_from = await closes.first_open(self._pool)
        return await customers.put(self._pool, profile, open_from or date(1970, 1, 1))

    async def profile(self, tenant_id: uuid.UUID) -> Customer:
        found = await customers.get(self._pool, tenant_id)
        if found is None:
            raise NotFound("the tenant has no billing profile", code="billing_profile_missing")
        return found

    async def add_entry(
        self, tenant_id: uuid.UUID, month: Month | None, kind: EntryKind, amount_micros: int, reason: str,
        created_by: str, corrects_message_id: uuid.UUID | None, corrects_entry_id: uuid.UUID | None,
    ) -> Entry:  # fmt: skip
        """A credit (the amount credited) or a correction (signed) in an open month (default: now's)."""
        await existing(self._pool, tenant_id)
        now = datetime.now(UTC)
        entry = NewEntry(
            kind=kind, amount_micros=amount_micros, reason=reason, created_by=created_by,
            corrects_message_id=corrects_message_id, corrects_entry_id=corrects_entry_id,
        )  # fmt: skip
        return await entries.add(self._pool, tenant_id, month or Month.of(now), entry, now)

    async def entries(self, tenant_id: uuid.UUID, month: Month) -> list[Entry]:
        await existing(self._pool, tenant_id)
        return await entries.in_period(self._pool, month, tenant_id)

    async def month(self, month: Month) -> list[Invoice]:
        return await invoices.month(self._pool, month, self._seller, eu_rates())

    async def invoice(self, tenant_id: uuid.UUID, month: Month, currency: str | None) -> Invoice:
        """Raises InvalidRequest for a currency ISO does not know."""
        if currency is not None and not is_currency(currency):
            raise InvalidRequest.field("currency", "is not an ISO 4217 currency", code="invalid_currency")
        return await invoices.invoice(self._pool, month, tenant_id, currency, self._seller, eu_rates())
