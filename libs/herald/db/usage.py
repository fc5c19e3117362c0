"""A billing period's ledger as the exports and the tenant's usage read it (SQL only).

A period holds the usage rows billed in it, the late usage posted to it as adjustments (their
billing time in an earlier, closed month) and the credits and corrections entered in it. Every
row carries the FinOps FOCUS columns that fit Herald (billing and charge periods, charge
category and class, billed cost, pricing quantity and unit, provider, sub-account) beside the
tenant's name and its id in the billing team's own system, and the time the figures are as of:
the close for a closed month (so its exports never change), the read's snapshot otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg

from herald.billing.period import Month

PROVIDER_NAME = "Herald"
PRICING_UNIT = "Messages"

DETAIL_COLUMNS = (
    "message_id", "entry_id", "tenant_id", "tenant_name", "external_customer_id", "kind", "channel", "category",
    "country", "rate_card_version", "unit_price_micros", "quantity", "amount_micros", "currency", "billed_at",
    "BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd", "ChargeCategory",
    "ChargeClass", "BilledCost", "BillingCurrency", "PricingQuantity", "PricingUnit", "ProviderName",
    "SubAccountId", "SubAccountName", "as_of",
)  # fmt: skip
SUMMARY_COLUMNS = (
    "tenant_id", "tenant_name", "external_customer_id", "kind", "channel", "category", "country", "currency",
    "messages", "amount_micros", "BillingPeriodStart", "BillingPeriodEnd", "ChargeCategory", "ChargeClass",
    "BilledCost", "BillingCurrency", "PricingQuantity", "PricingUnit", "ProviderName", "SubAccountId",
    "SubAccountName", "as_of",
)  # fmt: skip

# $1 period (date), $2 its end (timestamptz), $3 as_of, [$4 tenant]. `charged_at` is the usage's
# billing time, or when an entry was made.
_LINES = """
SELECT r.message_id, NULL::uuid AS entry_id, r.tenant_id, r.kind, r.channel, r.category, r.country,
       r.rate_card_version, r.unit_price_micros, r.quantity, r.unit_price_micros * r.quantity AS amount_micros,
       r.currency, r.billed_at AS charged_at
FROM billing_records r WHERE r.period = $1 {tenant_r}
UNION ALL
SELECT e.corrects_message_id, e.id, e.tenant_id, e.kind, NULL, NULL, NULL, NULL, NULL, 0, e.amount_micros,
       e.currency, e.created_at
FROM billing_entries e WHERE e.period = $1 {tenant_e}
"""
_FOCUS_CATEGORY = """
CASE l.kind WHEN 'credit' THEN 'Credit' WHEN 'correction' THEN 'Adjustment' ELSE 'Usage' END AS "ChargeCategory",
CASE WHEN l.kind IN ('adjustment', 'correction') THEN 'Correction' END AS "ChargeClass"
"""


def _detail_sql(tenant: bool) -> str:
    lines = _LINES.format(tenant_r="AND r.tenant_id = $4" if tenant else "",
                          tenant_e="AND e.tenant_id = $4" if tenant else "")  # fmt: skip
    return f"""
    SELECT l.message_id, l.entry_id, l.tenant_id, t.name AS tenant_name, bc.external_customer_id, l.kind,
           l.channel, l.category, l.country, l.rate_card_version, l.unit_price_micros, l.quantity, l.amount_micros,
           l.currency, l.charged_at AS billed_at,
           $1::date::timestamp AT TIME ZONE 'UTC' AS "BillingPeriodStart", $2::timestamptz AS "BillingPeriodEnd",
           date_trunc('month', l.charged_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS "ChargePeriodStart",
           (date_trunc('month', l.charged_at AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'
               AS "ChargePeriodEnd",
           {_FOCUS_CATEGORY},
           (l.amount_micros::numeric / 1000000)::numeric(20, 6) AS "BilledCost", l.currency AS "BillingCurrency",
           l.quantity AS "PricingQuantity", '{PRICING_UNIT}' AS "PricingUnit", '{PROVIDER_NAME}' AS "ProviderName",
           l.tenant_id AS "SubAccountId", t.name AS "SubAccountName", $3::timestamptz AS as_of
    FROM ({lines}) l
    LEFT JOIN tenants t ON t.id = l.tenant_id  -- never drop a ledger row, whatever its tenant
    LEFT JOIN billing_customers bc ON bc.tenant_id = l.tenant_id
    ORDER BY l.charged_at, l.message_id, l.entry_id"""


def _summary_sql(tenant: bool) -> str:
    lines = _LINES.format(tenant_r="AND r.tenant_id = $4" if tenant else "",
                          tenant_e="AND e.tenant_id = $4" if tenant else "")  # fmt: skip
    return f"""
    SELECT l.tenant_id, min(t.name) AS tenant_name, min(bc.external_customer_id) AS external_customer_id, l.kind,
           l.channel, l.category, l.country, l.currency,
           count(*) FILTER (WHERE l.quantity > 0) AS messages, sum(l.amount_micros)::bigint AS amount_micros,
           $1::date::timestamp AT TIME ZONE 'UTC' AS "BillingPeriodStart", $2::timestamptz AS "BillingPeriodEnd",
           {_FOCUS_CATEGORY},
           (sum(l.amount_micros)::numeric / 1000000)::numeric(20, 6) AS "BilledCost", l.currency AS "BillingCurrency",
           sum(l.quantity)::bigint AS "PricingQuantity", '{PRICING_UNIT}' AS "PricingUnit",
           '{PROVIDER_NAME}' AS "ProviderName", l.tenant_id AS "SubAccountId", min(t.name) AS "SubAccountName",
           $3::timestamptz AS as_of
    FROM ({lines}) l
    LEFT JOIN tenants t ON t.id = l.tenant_id  -- never drop a ledger row, whatever its tenant
    LEFT JOIN billing_customers bc ON bc.tenant_id = l.tenant_id
    GROUP BY l.tenant_id, l.kind, l.channel, l.category, l.country, l.currency
    ORDER BY l.tenant_id, l.kind, l.channel NULLS FIRST, l.category NULLS FIRST, l.country NULLS FIRST, l.currency"""


async def as_of(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], month: Month) -> datetime:
    """When `month`'s figures were final (its close), or this transaction's snapshot time."""
    closed: datetime | None = await conn.fetchval(
        "SELECT closed_at FROM billing_closes WHERE period = $1", month.start.date()
    )
    if closed is not None:
        return closed
    now: datetime = await conn.fetchval("SELECT now()")
    return now


async def usage_rows(
    pool: asyncpg.Pool,
    month: Month,
    *,
    detail: bool,
    tenant_id: uuid.UUID | None = None,
    chunk: int = 10_000,
    query_timeout: float | None = None,
) -> AsyncIterator[list[asyncpg.Record]]:
    """The period's rows (detail: `DETAIL_COLUMNS`, one per ledger row or entry) or its totals
    (`SUMMARY_COLUMNS`, per tenant, kind, channel, category, country and currency), in chunks from
    a server-side cursor in one snapshot: memory stays at one chunk for any size. `query_timeout`
    bounds each chunk's query (None: the pool's command timeout)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        args: list[object] = [month.start.date(), month.end, await as_of(conn, month)]
        if tenant_id is not None:
            args.append(tenant_id)
        sql = _detail_sql(tenant_id is not None) if detail else _summary_sql(tenant_id is not None)
        cursor = await conn.cursor(sql, *args, timeout=query_timeout)
        while rows := await cursor.fetch(chunk, timeout=query_timeout):
            yield rows


_TENANT_USAGE = """
SELECT channel, category, country, currency, count(*) AS messages,
       sum(unit_price_micros * quantity)::bigint AS amount_micros
FROM billing_records WHERE period = $1 AND tenant_id = $2
GROUP BY channel, category, country, currency
ORDER BY channel, category, country NULLS FIRST, currency
"""


async def tenant_usage(
    pool: asyncpg.Pool, month: Month, tenant_id: uuid.UUID, query_timeout: float | None = None
) -> list[asyncpg.Record]:
    """The messages billed to a tenant in a period (usage and late usage), per channel, category,
    country and currency. Credits show on its invoice."""
    return list(await pool.fetch(_TENANT_USAGE, month.start.date(), tenant_id, timeout=query_timeout))
