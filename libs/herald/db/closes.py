"""Closing a billing period: after it, the period's ledger and exports never change again.

Months close in order and without gaps. The close holds every ledger write back
(`billing.close_lock`) while it checks the order, snapshots the period's totals and records
itself; ledger writes after it see the close and post late usage to the first open month
(`herald/db/billing.py`). Nothing else writes a closed period: entries go to open ones only.
"""

from __future__ import annotations

from datetime import date, datetime

import asyncpg
import msgspec

from herald.billing.period import Month
from herald.db.billing import PERIOD_TOTALS, PeriodTotal, close_lock, period_totals
from herald.errors import Conflict


class Close(msgspec.Struct, frozen=True):
    month: str
    closed_at: datetime
    closed_by: str
    totals: list[PeriodTotal]
    """What the month held when it closed, per tenant and currency."""


def _label(period: date) -> str:
    return f"{period:%Y-%m}"


def _next(period: date) -> date:
    return date(period.year + period.month // 12, period.month % 12 + 1, 1)


async def close(pool: asyncpg.Pool, month: Month, closed_by: str, now: datetime) -> Close:
    """Close `month` (it must have ended, the month before it must be closed unless none ever
    was, and no earlier month may hold ledger rows then); its totals are recorded with it."""
    if month.end > now:
        raise Conflict(f"{month.label} has not ended", code="period_not_ended")
    period = month.start.date()
    async with pool.acquire() as conn, conn.transaction():
        await close_lock(conn)
        last: date | None = await conn.fetchval("SELECT max(period) FROM billing_closes")
        if last is not None and period <= last:
            raise Conflict(f"{month.label} is closed already (closed through {_label(last)})", code="period_closed")
        if last is not None and period != _next(last):
            raise Conflict(f"close {_label(_next(last))} first", code="period_out_of_order")
        if last is None:
            earlier: date | None = await conn.fetchval("SELECT min(period) FROM billing_records WHERE period < $1",
                                                       period)  # fmt: skip
            if earlier is not None:
                raise Conflict(f"close {_label(earlier)} first", code="period_out_of_order")
        totals = await period_totals(conn, month)
        closed_at: datetime = await conn.fetchval(
            "INSERT INTO billing_closes (period, closed_by, totals) VALUES ($1, $2, $3::jsonb) RETURNING closed_at",
            period, closed_by, msgspec.json.encode(totals).decode(),
        )  # fmt: skip
    return Close(month.label, closed_at, closed_by, totals)


async def closes(pool: asyncpg.Pool) -> list[Close]:
    rows = await pool.fetch("SELECT period, closed_at, closed_by, totals FROM billing_closes ORDER BY period")
    return [Close(_label(r["period"]), r["closed_at"], r["closed_by"], PERIOD_TOTALS.decode(r["totals"])) for r in rows]


async def first_open(conn: asyncpg.Pool | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> date | None:
    """The first month after the last close (None: nothing was ever closed)."""
    last: date | None = await conn.fetchval("SELECT max(period) FROM billing_closes")
    return None if last is None else _next(last)
