"""Credits and corrections: signed amounts in a tenant's open billing period, never edited."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import asyncpg
import msgspec

from herald.billing.ledger import EntryKind, posted_amount
from herald.billing.period import Month
from herald.db import closes, customers
from herald.db.billing import hold_periods
from herald.errors import Conflict, InvalidRequest, NotFound


class NewEntry(msgspec.Struct, frozen=True):
    kind: EntryKind
    amount_micros: int
    """As the billing team gives it: a credit as the (positive) amount credited, a correction
    signed; `add` stores what it does to the bill (`posted_amount`)."""
    reason: str
    created_by: str
    corrects_message_id: uuid.UUID | None = None
    corrects_entry_id: uuid.UUID | None = None


class Entry(msgspec.Struct, frozen=True):
    id: uuid.UUID
    tenant_id: uuid.UUID
    month: str
    kind: EntryKind
    amount_micros: int
    currency: str
    reason: str
    created_by: str
    created_at: datetime
    corrects_message_id: uuid.UUID | None
    corrects_entry_id: uuid.UUID | None


_COLUMNS = (
    "id, tenant_id, period, kind, amount_micros, currency, reason, created_by, created_at, corrects_message_id,"
    " corrects_entry_id"
)


def _entry(row: asyncpg.Record) -> Entry:
    values = dict(row)
    period: date = values.pop("period")
    return Entry(month=f"{period:%Y-%m}", **values)


async def add(pool: asyncpg.Pool, tenant_id: uuid.UUID, month: Month, entry: NewEntry, now: datetime) -> Entry:
    """Post `entry` to `month` of the tenant, in its billing currency. The month must be open and
    not in the future; what it corrects must be the tenant's."""
    posted = posted_amount(entry.kind, entry.amount_micros, entry.corrects_message_id, entry.corrects_entry_id)
    if month.start > now:
        raise InvalidRequest.field("month", "is in the future", code="period_in_future")
    async with pool.acquire() as conn, conn.transaction():
        await hold_periods(conn)  # a close waits for this entry, or this entry sees the close
        first_open = await closes.first_open(conn)
        if first_open is not None and month.start.date() < first_open:
            raise Conflict(f"{month.label} is closed", code="period_closed")
        if entry.corrects_message_id is not None and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM billing_records WHERE message_id = $1 AND tenant_id = $2)",
            entry.corrects_message_id, tenant_id,
        ):  # fmt: skip
            raise NotFound("no ledger row for that message", code="ledger_row_not_found")
        if entry.corrects_entry_id is not None and not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM billing_entries WHERE id = $1 AND tenant_id = $2)",
            entry.corrects_entry_id, tenant_id,
        ):  # fmt: skip
            raise NotFound("no such entry", code="entry_not_found")
        row = await conn.fetchrow(
            f"INSERT INTO billing_entries ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), $9, $10)"
            f" RETURNING {_COLUMNS}",
            uuid.uuid4(), tenant_id, month.start.date(), entry.kind.value, posted,
            await customers.currency_of(conn, tenant_id), entry.reason, entry.created_by,
            entry.corrects_message_id, entry.corrects_entry_id,
        )  # fmt: skip
    assert row is not None
    return _entry(row)


async def in_period(pool: asyncpg.Pool, month: Month, tenant_id: uuid.UUID | None = None) -> list[Entry]:
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM billing_entries WHERE period = $1 AND ($2::uuid IS NULL OR tenant_id = $2)"
        " ORDER BY created_at, id",
        month.start.date(), tenant_id,
    )  # fmt: skip
    return [_entry(r) for r in rows]
