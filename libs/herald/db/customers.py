"""Tenants as billing customers: legal name, external id, currency, country and VAT number."""

from __future__ import annotations

import uuid
from datetime import date

import asyncpg
import msgspec

from herald.billing.ratecards import DEFAULT_CURRENCY
from herald.errors import Conflict, InvalidRequest


class Customer(msgspec.Struct, frozen=True):
    tenant_id: uuid.UUID
    legal_name: str
    external_customer_id: str | None
    currency: str
    country: str
    vat_id: str | None


_COLUMNS = "tenant_id, legal_name, external_customer_id, currency, country, vat_id"


async def get(conn: asyncpg.Pool | asyncpg.pool.PoolConnectionProxy[asyncpg.Record], tenant_id: uuid.UUID,
              ) -> Customer | None:  # fmt: skip
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM billing_customers WHERE tenant_id = $1", tenant_id)
    return None if row is None else Customer(**dict(row))


async def currency_of(conn: asyncpg.Pool | asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
                      tenant_id: uuid.UUID) -> str:  # fmt: skip
    """The tenant's billing currency (the default card's until it has a billing profile)."""
    found: str | None = await conn.fetchval("SELECT currency FROM billing_customers WHERE tenant_id = $1", tenant_id)
    return found or DEFAULT_CURRENCY


async def put(pool: asyncpg.Pool, customer: Customer, open_from: date) -> Customer:
    """Create or replace the profile. The currency must have a rate card (or nothing could be
    priced), and may change only while the tenant has no ledger rows in an open period in
    another currency (its month would be split between two)."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM rate_cards WHERE currency = $1)", customer.currency):
            raise InvalidRequest.field("currency", "no rate card is in this currency", code="no_rate_card_in_currency")
        split = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM billing_records WHERE tenant_id = $1 AND period >= $2 AND currency <> $3)",
            customer.tenant_id, open_from, customer.currency,
        )  # fmt: skip
        if split:
            raise Conflict(
                "the tenant has usage in another currency in an open period; change it once that period is closed",
                code="currency_change_mid_period",
            )
        try:
            row = await conn.fetchrow(
                f"INSERT INTO billing_customers ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (tenant_id) DO UPDATE SET legal_name = excluded.legal_name,"
                " external_customer_id = excluded.external_customer_id, currency = excluded.currency,"
                " country = excluded.country, vat_id = excluded.vat_id, updated_at = now()"
                f" RETURNING {_COLUMNS}",
                *msgspec.structs.astuple(customer),
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("another tenant has this external customer id", code="external_customer_id_taken") from exc
    assert row is not None
    return Customer(**dict(row))
