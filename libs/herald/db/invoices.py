"""Reading a period's invoices from the ledger (the figures; `herald.billing.invoices` the rules)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import asyncpg

from herald.billing.invoices import EntryRow, Invoice, Party, UsageGroup, build
from herald.billing.period import Month
from herald.db import customers, usage
from herald.errors import Conflict, NotFound

_USAGE = """
SELECT kind, channel, category, country, rate_card_version, unit_price_micros, sum(quantity) AS quantity
FROM billing_records WHERE period = $1 AND tenant_id = $2 AND currency = $3
GROUP BY kind, channel, category, country, rate_card_version, unit_price_micros
ORDER BY kind DESC, channel, category, country NULLS FIRST, rate_card_version, unit_price_micros
"""
_ENTRIES = """
SELECT id, kind, amount_micros, reason, corrects_message_id, corrects_entry_id FROM billing_entries
WHERE period = $1 AND tenant_id = $2 AND currency = $3 ORDER BY created_at, id
"""
_MONTH_USAGE = """
SELECT tenant_id, currency, kind, channel, category, country, rate_card_version, unit_price_micros,
       sum(quantity) AS quantity
FROM billing_records WHERE period = $1
GROUP BY tenant_id, currency, kind, channel, category, country, rate_card_version, unit_price_micros
ORDER BY tenant_id, currency, kind DESC, channel, category, country NULLS FIRST, rate_card_version, unit_price_micros
"""
_MONTH_ENTRIES = """
SELECT tenant_id, currency, id, kind, amount_micros, reason, corrects_message_id, corrects_entry_id
FROM billing_entries WHERE period = $1 ORDER BY tenant_id, currency, created_at, id
"""
_MONTH_CUSTOMERS = """
SELECT b.tenant_id, c.legal_name, c.external_customer_id, c.country, c.vat_id
FROM (SELECT tenant_id FROM billing_records WHERE period = $1
      UNION SELECT tenant_id FROM billing_entries WHERE period = $1) b
LEFT JOIN billing_customers c ON c.tenant_id = b.tenant_id
"""


async def month(pool: asyncpg.Pool, month: Month, seller: Party, rates: dict[str, Decimal]) -> list[Invoice]:
    """Every invoice of `month` (per tenant and currency), read in one snapshot with one pass over
    the month. Every tenant billed in it needs a billing profile."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        period = month.start.date()
        parties: dict[uuid.UUID, Party] = {}
        missing = 0
        for r in await conn.fetch(_MONTH_CUSTOMERS, period):
            if r["legal_name"] is None:
                missing += 1
                continue
            parties[r["tenant_id"]] = Party(
                legal_name=r["legal_name"], country=r["country"], vat_id=r["vat_id"],
                external_customer_id=r["external_customer_id"],
            )  # fmt: skip
        if missing:
            raise Conflict(f"{missing} tenant(s) billed in {month.label} have no billing profile",
                           code="billing_profile_missing")  # fmt: skip
        groups: dict[tuple[uuid.UUID, str], list[UsageGroup]] = {}
        for r in await conn.fetch(_MONTH_USAGE, period):
            values = dict(r)
            key = (values.pop("tenant_id"), values.pop("currency"))
            groups.setdefault(key, []).append(UsageGroup(**values))
        entries: dict[tuple[uuid.UUID, str], list[EntryRow]] = {}
        for r in await conn.fetch(_MONTH_ENTRIES, period):
            values = dict(r)
            key = (values.pop("tenant_id"), values.pop("currency"))
            entries.setdefault(key, []).append(EntryRow(**values))
        closed = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM billing_closes WHERE period = $1)", period)
        as_of = await usage.as_of(conn, month)
    return [
        build(month, tenant_id, parties[tenant_id], seller, currency, closed=closed, as_of=as_of,
              usage=groups.get((tenant_id, currency), []), entries=entries.get((tenant_id, currency), []),
              rates=rates)
        for tenant_id, currency in sorted(set(groups) | set(entries))
    ]  # fmt: skip


async def invoice(
    pool: asyncpg.Pool, month: Month, tenant_id: uuid.UUID, currency: str | None, seller: Party,
    rates: dict[str, Decimal],
) -> Invoice:  # fmt: skip
    """The tenant's invoice for `month` in `currency` (default: its billing currency), read in
    one snapshot. Needs the tenant's billing profile (legal name and country)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        customer = await customers.get(conn, tenant_id)
        if customer is None:
            if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)", tenant_id):
                raise NotFound("no such tenant", code="tenant_not_found")
            raise Conflict("the tenant has no billing profile (legal name, country)", code="billing_profile_missing")
        currency = currency or customer.currency
        args = (month.start.date(), tenant_id, currency)
        groups = [UsageGroup(**dict(r)) for r in await conn.fetch(_USAGE, *args)]
        entries = [EntryRow(**dict(r)) for r in await conn.fetch(_ENTRIES, *args)]
        closed = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM billing_closes WHERE period = $1)", args[0])
        as_of = await usage.as_of(conn, month)
    party = Party(
        legal_name=customer.legal_name, country=customer.country, vat_id=customer.vat_id,
        external_customer_id=customer.external_customer_id,
    )  # fmt: skip
    return build(month, tenant_id, party, seller, currency, closed=closed, as_of=as_of, usage=groups,
                 entries=entries, rates=rates)  # fmt: skip
