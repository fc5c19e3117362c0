"""The billing ledger, rate cards, usage reads and reconciliation (SQL only; policy is stated here once).

**Billable** (one rule, used by the ledger sink and by reconciliation alike): a message accepted
with a live key by a tenant on a paid tier at the time (standard, enterprise), at its first
billable event: `delivered` (or `read`, which implies it) for sms and whatsapp, provider
acceptance (`sent`, and only that) for email; and not if it had already failed or expired by then. `billed_at` is
that event's own time, so a replay prices a message exactly as the first pass did.

**Exactly once**: `billing_records.message_id` is the primary key and every write is
`INSERT ... ON CONFLICT DO NOTHING` in the same transaction that stages the batch, committed
before the sink commits its Kafka offsets. A redelivered batch, a replayed topic or a second sink
process can only hit the conflict. Events whose message row the status projection has not
written yet wait in `billing_pending` and are settled when it appears.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import asyncpg
import msgspec

from herald.billing.period import Month
from herald.billing.ratecards import FALLBACK_COUNTRY, RateCardIn, default_card
from herald.db.pool import TRANSIENT_ERRORS
from herald.domain.models import TIER_POLICIES

_PAID_TIERS = ", ".join(f"'{tier.value}'" for tier, policy in TIER_POLICIES.items() if policy.billed)

# `s` is an event (message_id, status, at), `m` its message row, `t` its tenant.
BILLABLE = f"""(
    m.key_kind = 'live'
    AND coalesce(m.tier, t.tier) IN ({_PAID_TIERS})
    -- Email only at `sent`: its `delivered` reaching the ledger first must not date the bill.
    AND CASE WHEN m.channel = 'email' THEN s.status = 'sent' ELSE s.status IN ('delivered', 'read') END
    AND NOT EXISTS (
        SELECT 1 FROM message_events f
        WHERE f.message_id = m.id AND f.status IN ('failed', 'expired') AND f.at <= s.at
    )
)"""


def _priced(candidates: str, at: str, join: str = "CROSS JOIN LATERAL") -> str:
    """The version in force at `at` (latest effective_from not after it), and its price for the
    message's country or the fallback row. The ledger joins inner (an unpriced event stays
    pending); reconciliation joins outer so that one shows up as a difference."""
    on = " ON true" if join.startswith("LEFT") else ""
    return f"""
    {candidates}
    {join} (
        SELECT rc.version, rc.currency FROM rate_cards rc
        WHERE rc.effective_from <= {at} ORDER BY rc.effective_from DESC, rc.version DESC LIMIT 1
    ) card{on}
    {join} (
        SELECT p.unit_price_micros FROM rate_card_prices p
        WHERE p.version = card.version AND p.channel = c.channel AND p.category = c.category
          AND p.country IN (coalesce(c.country, '{FALLBACK_COUNTRY}'), '{FALLBACK_COUNTRY}')
        ORDER BY p.country = '{FALLBACK_COUNTRY}' LIMIT 1
    ) price{on}"""


def _first_billable(source: str, extra: str = "") -> str:
    """One row per message: its earliest billable event in `source`."""
    return f"""
    SELECT DISTINCT ON (s.message_id)
        s.message_id, s.at, m.tenant_id, m.channel, m.category, m.country
    FROM {source} s
    JOIN messages m ON m.id = s.message_id
    LEFT JOIN tenants t ON t.id = m.tenant_id
    WHERE {BILLABLE} {extra}
    ORDER BY s.message_id, s.at, s.status"""


def _bill(source: str, *, defer: bool) -> str:
    """One statement over `source`'s events (message_id, status, at): insert the ledger rows they
    make due (ON CONFLICT DO NOTHING) and, with `defer`, park in billing_pending what may still
    become billable: events whose message row is not projected yet, or (never with a complete
    card) that found no price. Returns one row (written, deferred)."""
    deferred = (
        f""",
    deferred AS (
        INSERT INTO billing_pending (message_id, status, at)
        SELECT s.message_id, s.status, s.at FROM {source} s
        -- A LATERAL probe rather than NOT EXISTS: inside an OR, the planner otherwise hashes the
        -- whole messages table for every batch (measured: 70% of the statement at 200k rows).
        LEFT JOIN LATERAL (SELECT true AS projected FROM messages m WHERE m.id = s.message_id) m ON true
        WHERE m.projected IS NULL
           OR (s.message_id IN (SELECT message_id FROM due) AND s.message_id NOT IN (SELECT message_id FROM priced))
        ON CONFLICT (message_id, status) DO NOTHING
        RETURNING 1
    )"""
        if defer
        else ""
    )
    return f"""
    WITH due AS ({_first_billable(source)}),
    priced AS (
        SELECT c.message_id, c.tenant_id, c.channel, c.category, c.country, card.version,
               price.unit_price_micros, card.currency, c.at
        FROM {_priced("due c", "c.at")}
    ),
    written AS (
        INSERT INTO billing_records (message_id, tenant_id, channel, category, country,
                                     rate_card_version, unit_price_micros, currency, billed_at)
        SELECT * FROM priced
        ON CONFLICT (message_id) DO NOTHING
        RETURNING 1
    ){deferred}
    SELECT (SELECT count(*) FROM written) AS written,
           {"(SELECT count(*) FROM deferred)" if defer else "0::bigint"} AS deferred"""


_STAGING_EXISTS = "SELECT to_regclass('pg_temp.billing_staging') IS NOT NULL"
_STAGING = (
    "CREATE TEMP TABLE billing_staging (message_id uuid NOT NULL, status text NOT NULL, at timestamptz NOT NULL)"
    " ON COMMIT DELETE ROWS"
)
_RECORD = _bill("billing_staging", defer=True)
_SETTLE = _bill("billing_pending", defer=False)
_SETTLE_ONE = _bill("(SELECT * FROM billing_pending WHERE message_id = $1)", defer=False)
_SETTLEABLE = "SELECT DISTINCT p.message_id FROM billing_pending p JOIN messages m ON m.id = p.message_id"
_RESOLVED = f"""
    DELETE FROM billing_pending s USING messages m LEFT JOIN tenants t ON t.id = m.tenant_id
    WHERE m.id = s.message_id
      AND (EXISTS (SELECT 1 FROM billing_records b WHERE b.message_id = s.message_id)
           OR NOT coalesce({BILLABLE}, false))"""
_RESOLVED_ONE = _RESOLVED + " AND s.message_id = $1"

CANDIDATE_STATUSES = frozenset({"sent", "delivered", "read"})
"""Statuses that can make a message billable; the sink ignores every other event."""


class Candidate(msgspec.Struct, frozen=True, array_like=True):
    message_id: uuid.UUID
    status: str
    at: datetime


class Recorded(msgspec.Struct, frozen=True):
    written: int
    """New ledger rows."""
    deferred: int
    """Events parked in billing_pending (message row not projected yet)."""


async def record(pool: asyncpg.Pool, candidates: Sequence[Candidate]) -> Recorded:
    """Write the ledger rows a batch of events makes due, in one transaction: COPY into a
    per-connection staging table, then one statement: insert with conflict handling, defer the rest."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval(_STAGING_EXISTS):
            await conn.execute(_STAGING)
        await conn.copy_records_to_table(
            "billing_staging", records=[(c.message_id, c.status, c.at) for c in candidates],
            columns=("message_id", "status", "at"),
        )  # fmt: skip
        row = await conn.fetchrow(_RECORD)
    assert row is not None
    return Recorded(written=row["written"], deferred=row["deferred"])


class Settled(msgspec.Struct, frozen=True):
    written: int
    """New ledger rows."""
    refused: int = 0
    """Messages whose pending events the database refused to settle; they stay pending."""


async def settle_pending(pool: asyncpg.Pool) -> Settled:
    """Bill pending events whose message row has appeared; drop those that turned out not billable.

    One statement for all of them. If the database refuses it (an outage propagates, for the
    caller to retry on its next tick), one message's events must not hold back every other
    deferred bill: settle message by message and leave the refused ones pending, counted.
    """
    try:
        return Settled(await _settle(pool, _SETTLE, _RESOLVED))
    except TRANSIENT_ERRORS:
        raise
    except asyncpg.PostgresError:
        pass
    written = refused = 0
    for row in await pool.fetch(_SETTLEABLE):
        try:
            written += await _settle(pool, _SETTLE_ONE, _RESOLVED_ONE, row["message_id"])
        except TRANSIENT_ERRORS:
            raise
        except asyncpg.PostgresError:
            refused += 1
    return Settled(written, refused)


class PendingBacklog(msgspec.Struct, frozen=True):
    events: int
    """Events waiting in billing_pending."""
    oldest_seconds: float
    """How long the oldest of them has waited (0 when none)."""


async def pending_backlog(pool: asyncpg.Pool) -> PendingBacklog:
    """What waits in billing_pending, and for how long.

    An event waits there for its message row, normally a few seconds while the status projection
    catches up. One that waits for hours is a bill that will never be written by itself: its
    message's record was parked by the status sink, or lost. Unlike a refused settle, nothing
    fails, so only its age shows it.
    """
    row = await pool.fetchrow(
        "SELECT count(*) AS events,"
        " coalesce(extract(epoch FROM now() - min(received_at)), 0)::float8 AS oldest_seconds FROM billing_pending"
    )
    assert row is not None
    return PendingBacklog(events=row["events"], oldest_seconds=max(row["oldest_seconds"], 0.0))


async def _settle(pool: asyncpg.Pool, settle: str, resolved: str, *args: object) -> int:
    async with pool.acquire() as conn, conn.transaction():
        written: int = await conn.fetchval(settle, *args)
        await conn.execute(resolved, *args)
    return written


# --- rate cards ---------------------------------------------------------------------------


class RateCardSummary(msgspec.Struct, frozen=True):
    version: int
    effective_from: datetime
    currency: str
    note: str | None
    imported_at: datetime
    price_count: int


class PriceRow(msgspec.Struct, frozen=True):
    channel: str
    category: str
    country: str
    unit_price_micros: int


async def import_rate_card(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy[asyncpg.Record], card: RateCardIn
) -> int:
    """Store a new version (the next integer) with its prices; returns the version."""
    async with conn.transaction():
        # Serialises concurrent imports so versions are dense and increase with import time.
        await conn.execute("LOCK TABLE rate_cards IN EXCLUSIVE MODE")
        version: int = await conn.fetchval("SELECT coalesce(max(version), 0) + 1 FROM rate_cards")
        await conn.execute(
            "INSERT INTO rate_cards (version, effective_from, currency, note) VALUES ($1, $2, $3, $4)",
            version, card.effective_from, card.currency, card.note,
        )  # fmt: skip
        await conn.copy_records_to_table(
            "rate_card_prices",
            records=[(version, p.channel.value, p.category.value, p.country, p.unit_price_micros) for p in card.prices],
            columns=("version", "channel", "category", "country", "unit_price_micros"),
        )
    return version


async def ensure_default_rate_card(conn: asyncpg.Connection) -> int | None:
    """Install the shipped card if there is none (a fresh database must price every message)."""
    if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM rate_cards)"):
        return None
    return await import_rate_card(conn, default_card())


_CARD_SUMMARY = (
    "SELECT rc.version, rc.effective_from, rc.currency, rc.note, rc.imported_at,"
    " (SELECT count(*) FROM rate_card_prices p WHERE p.version = rc.version) AS price_count FROM rate_cards rc"
)


async def rate_cards(pool: asyncpg.Pool) -> list[RateCardSummary]:
    rows = await pool.fetch(_CARD_SUMMARY + " ORDER BY rc.version")
    return [RateCardSummary(**dict(r)) for r in rows]


async def rate_card(pool: asyncpg.Pool, version: int) -> tuple[RateCardSummary, list[PriceRow]] | None:
    row = await pool.fetchrow(_CARD_SUMMARY + " WHERE rc.version = $1", version)
    if row is None:
        return None
    prices = await pool.fetch(
        "SELECT channel, category, country, unit_price_micros FROM rate_card_prices WHERE version = $1"
        " ORDER BY channel, category, country",
        version,
    )
    return RateCardSummary(**dict(row)), [PriceRow(**dict(p)) for p in prices]


# --- usage --------------------------------------------------------------------------------

DETAIL_COLUMNS = (
    "message_id", "tenant_id", "channel", "category", "country", "rate_card_version", "unit_price_micros",
    "currency", "billed_at",
)  # fmt: skip
SUMMARY_COLUMNS = ("tenant_id", "channel", "category", "country", "currency", "messages", "amount_micros")


def _usage_sql(detail: bool, tenant_id: uuid.UUID | None) -> str:
    where = "billed_at >= $1 AND billed_at < $2" + (" AND tenant_id = $3" if tenant_id is not None else "")
    if detail:
        return f"SELECT {', '.join(DETAIL_COLUMNS)} FROM billing_records WHERE {where} ORDER BY billed_at, message_id"
    return (
        "SELECT tenant_id, channel, category, country, currency, count(*) AS messages,"
        f" sum(unit_price_micros)::bigint AS amount_micros FROM billing_records WHERE {where}"
        " GROUP BY tenant_id, channel, category, country, currency"
        " ORDER BY tenant_id, channel, category, country NULLS FIRST, currency"
    )


async def usage_rows(
    pool: asyncpg.Pool,
    month: Month,
    *,
    detail: bool,
    tenant_id: uuid.UUID | None = None,
    chunk: int = 10_000,
    query_timeout: float | None = None,
) -> AsyncIterator[list[asyncpg.Record]]:
    """The month's ledger rows (detail) or totals per tenant/channel/category/country/currency
    (summary), in chunks from a server-side cursor: memory stays at one chunk for any size.
    `query_timeout` bounds each chunk's query (None: the pool's command timeout)."""
    args: list[object] = [month.start, month.end]
    if tenant_id is not None:
        args.append(tenant_id)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = await conn.cursor(_usage_sql(detail, tenant_id), *args, timeout=query_timeout)
        while rows := await cursor.fetch(chunk, timeout=query_timeout):
            yield rows


# --- reconciliation -----------------------------------------------------------------------

BILLING_WINDOW_DAYS = 10
"""Reconciliation looks at messages accepted up to this long before the month: a message is billed
within its TTL (24 h at most by default) plus the receipt deadline (72 h) of acceptance."""


class Difference(msgspec.Struct, frozen=True):
    message_id: uuid.UUID
    tenant_id: uuid.UUID
    kind: str
    """`missing` (billable, no ledger row), `unexpected` (ledger row, not billable) or `mismatch`."""
    expected_billed_at: datetime | None
    billed_at: datetime | None
    expected_version: int | None
    rate_card_version: int | None
    expected_unit_price_micros: int | None
    unit_price_micros: int | None


class Reconciliation(msgspec.Struct, frozen=True):
    month: str
    ledger_rows: int
    billable_messages: int
    pending: int
    """Events still waiting in billing_pending (a lagging status projection); not differences."""
    differences: list[Difference]


_RECONCILE_CTES = f"""
WITH billable AS ({
    _first_billable(
        "message_events",
        f"AND m.created_at >= $1::timestamptz - interval '{BILLING_WINDOW_DAYS} days' AND m.created_at < $2",
    )
}),
expected AS (
    SELECT c.message_id, c.tenant_id, c.at, card.version, price.unit_price_micros
    FROM {_priced("billable c", "c.at", "LEFT JOIN LATERAL")}
    WHERE c.at >= $1 AND c.at < $2
),
ledger AS (SELECT * FROM billing_records WHERE billed_at >= $1 AND billed_at < $2)
"""
_DIFFERENCES = f"""{_RECONCILE_CTES}
SELECT coalesce(e.message_id, l.message_id) AS message_id, coalesce(e.tenant_id, l.tenant_id) AS tenant_id,
       CASE WHEN l.message_id IS NULL THEN 'missing' WHEN e.message_id IS NULL THEN 'unexpected'
            ELSE 'mismatch' END AS kind,
       e.at AS expected_billed_at, l.billed_at, e.version AS expected_version, l.rate_card_version,
       e.unit_price_micros AS expected_unit_price_micros, l.unit_price_micros
FROM expected e FULL JOIN ledger l ON l.message_id = e.message_id
WHERE l.message_id IS NULL OR e.message_id IS NULL
   OR (e.at, e.version, e.unit_price_micros) IS DISTINCT FROM (l.billed_at, l.rate_card_version, l.unit_price_micros)
ORDER BY 1
"""


async def reconcile(pool: asyncpg.Pool, month: Month) -> Reconciliation:
    """Compare the ledger with what the status projection says was billable in `month`."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(_DIFFERENCES, month.start, month.end)
        expected: int = await conn.fetchval(_RECONCILE_CTES + "SELECT count(*) FROM expected", month.start, month.end)
        ledger: int = await conn.fetchval(
            "SELECT count(*) FROM billing_records WHERE billed_at >= $1 AND billed_at < $2", month.start, month.end
        )
        pending: int = await conn.fetchval("SELECT count(*) FROM billing_pending")
    differences = [Difference(**dict(r)) for r in rows]
    return Reconciliation(
        month=month.label, ledger_rows=ledger, billable_messages=expected, pending=pending, differences=differences
    )
