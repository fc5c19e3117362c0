"""Campaigns, their rows and their refused rows (migration 0032); policy in `herald.domain.campaigns`.

* An upload replaces a draft's rows inside the caller's transaction, which holds the campaign's
  row lock from the first row to the last: a failed upload leaves the draft as it was, and a
  start waits for the upload in progress.
* The producer holds a campaign by lease (`claim`, renewed by `advance`). `advance` moves the
  cursor, counts what was queued and records what was refused in one transaction, after the
  broker has the messages: a producer that dies before it produces the same rows again, as the
  same messages (their ids derive from the row: the worker delivers each once).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from herald.billing.ratecards import DEFAULT_CURRENCY
from herald.db.billing import price_lookup
from herald.db.pool import Conn
from herald.domain.campaigns import Campaign, CampaignSpec, CampaignState, Rejection
from herald.domain.limits import WINDOW_SECONDS
from herald.domain.models import Category, Channel

COLUMNS = (
    "id, tenant_id, key_kind, name, template_name, template_language, send_at, ttl_seconds, state, content_key,"
    " rows_total, rejected, accepted, next_row, accept_tail, created_at, updated_at, started_at, finished_at,"
    " cancelled_at"
)


class StoredRow(msgspec.Struct, frozen=True, array_like=True):
    """A valid row as kept: `content` sealed (`herald.sealing.seal_blob`) under the campaign's key."""

    row_no: int
    country: str | None
    segments: int
    recipient: bytes
    content: bytes


class PricedGroup(msgspec.Struct, frozen=True):
    country: str | None
    messages: int
    quantity: int
    """Units billed: segments for sms, messages elsewhere."""
    unit_price_micros: int | None
    currency: str | None


def _campaign(row: asyncpg.Record) -> Campaign:
    return msgspec.convert(dict(row), Campaign)


async def create(conn: Conn, new: CampaignSpec) -> Campaign:
    row = await conn.fetchrow(
        "INSERT INTO campaigns (id, tenant_id, key_kind, name, template_name, template_language, send_at, ttl_seconds)"
        f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}",
        new.id, new.tenant_id, new.key_kind.value, new.name, new.template_name, new.template_language, new.send_at,
        new.ttl_seconds,
    )  # fmt: skip
    assert row is not None
    return _campaign(row)


async def get(conn: Conn, tenant_id: uuid.UUID, campaign_id: uuid.UUID, *, lock: bool = False) -> Campaign | None:
    """The tenant's campaign (None for another tenant's); `lock`: held until the transaction ends."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM campaigns WHERE id = $1 AND tenant_id = $2{' FOR UPDATE' if lock else ''}",
        campaign_id, tenant_id,
    )  # fmt: skip
    return None if row is None else _campaign(row)


async def listed(conn: Conn, tenant_id: uuid.UUID, limit: int) -> list[Campaign]:
    rows = await conn.fetch(
        f"SELECT {COLUMNS} FROM campaigns WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        tenant_id, limit,
    )  # fmt: skip
    return [_campaign(r) for r in rows]


async def clear_rows(conn: Conn, campaign_id: uuid.UUID, content_key: int) -> None:
    await conn.execute("DELETE FROM campaign_rows WHERE campaign_id = $1", campaign_id)
    await conn.execute("DELETE FROM campaign_rejections WHERE campaign_id = $1", campaign_id)
    await conn.execute(
        "UPDATE campaigns SET content_key = $2, rows_total = 0, rejected = 0, updated_at = now() WHERE id = $1",
        campaign_id, content_key,
    )  # fmt: skip


async def copy_rows(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], campaign_id: uuid.UUID,
                    rows: Sequence[StoredRow]) -> None:  # fmt: skip
    await conn.copy_records_to_table(
        "campaign_rows",
        columns=("campaign_id", "row_no", "country", "segments", "recipient", "content"),
        records=[(campaign_id, r.row_no, r.country, r.segments, r.recipient, r.content) for r in rows],
    )


async def copy_rejections(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], campaign_id: uuid.UUID,
                          rejections: Sequence[Rejection]) -> None:  # fmt: skip
    await conn.copy_records_to_table(
        "campaign_rejections",
        columns=("campaign_id", "row_no", "code", "field"),
        records=[(campaign_id, r.row, r.code, r.field) for r in rejections],
    )


async def uploaded(conn: Conn, campaign_id: uuid.UUID, rows_total: int, rejected: int) -> Campaign:
    row = await conn.fetchrow(
        "UPDATE campaigns SET rows_total = $2, rejected = $3, updated_at = now() WHERE id = $1"
        f" RETURNING {COLUMNS}", campaign_id, rows_total, rejected,
    )  # fmt: skip
    assert row is not None
    return _campaign(row)


async def set_state(conn: Conn, campaign_id: uuid.UUID, state: CampaignState, *, accept_tail: bool = False) -> Campaign:
    """Into `state`, with the times that state records (the caller checked the transition)."""
    row = await conn.fetchrow(
        "UPDATE campaigns SET state = $2, updated_at = now(), accept_tail = accept_tail OR $3,"
        " started_at = CASE WHEN $2 IN ('scheduled', 'sending') THEN coalesce(started_at, now()) ELSE started_at END,"
        " cancelled_at = CASE WHEN $2 = 'cancelled' THEN now() ELSE cancelled_at END,"
        " finished_at = CASE WHEN $2 = 'cancelled' THEN now() ELSE finished_at END"
        f" WHERE id = $1 RETURNING {COLUMNS}", campaign_id, state.value, accept_tail,
    )  # fmt: skip
    assert row is not None
    return _campaign(row)


async def claim(pool: asyncpg.Pool, owner: uuid.UUID, lease_seconds: float) -> Campaign | None:
    """Take one campaign due to produce (sending, or scheduled and due) that no live lease holds."""
    row = await pool.fetchrow(
        "UPDATE campaigns SET state = 'sending', lease_owner = $1, lease_until = now() + $2, updated_at = now()"
        " WHERE id = (SELECT id FROM campaigns WHERE state IN ('scheduled', 'sending')"
        " AND (state = 'sending' OR send_at <= now()) AND (lease_until IS NULL OR lease_until < now())"
        " ORDER BY send_at NULLS FIRST, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
        f" RETURNING {COLUMNS}", owner, timedelta(seconds=lease_seconds),
    )  # fmt: skip
    return None if row is None else _campaign(row)


async def next_rows(pool: asyncpg.Pool, campaign_id: uuid.UUID, from_row: int, limit: int) -> list[StoredRow]:
    rows = await pool.fetch(
        "SELECT row_no, country, segments, recipient, content FROM campaign_rows"
        " WHERE campaign_id = $1 AND row_no >= $2 ORDER BY row_no LIMIT $3", campaign_id, from_row, limit,
    )  # fmt: skip
    return [StoredRow(r["row_no"], r["country"], r["segments"], r["recipient"], r["content"]) for r in rows]


async def advance(
    pool: asyncpg.Pool, campaign_id: uuid.UUID, owner: uuid.UUID, next_row: int, accepted: int,
    refused: Sequence[Rejection], lease_seconds: float, *, finished: bool,
) -> CampaignState | None:  # fmt: skip
    """Record a produced chunk; the campaign's state now (None: the lease was lost, and the
    chunk is another producer's to record). `finished`: that was the last row."""
    async with pool.acquire() as conn, conn.transaction():
        state = await conn.fetchval(
            "UPDATE campaigns SET next_row = $3, accepted = accepted + $4, rejected = rejected + $5,"
            " lease_until = now() + $6, updated_at = now(),"
            " state = CASE WHEN $7 AND state = 'sending' THEN 'completed' ELSE state END,"
            " finished_at = CASE WHEN $7 AND state = 'sending' THEN now() ELSE finished_at END"
            " WHERE id = $1 AND lease_owner = $2 RETURNING state",
            campaign_id, owner, next_row, accepted, len(refused), timedelta(seconds=lease_seconds), finished,
        )  # fmt: skip
        if state is None:
            return None
        if refused:
            await conn.executemany(
                "INSERT INTO campaign_rejections (campaign_id, row_no, code, field) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING", [(campaign_id, r.row, r.code, r.field) for r in refused],
            )  # fmt: skip
    return CampaignState(state)


async def release(pool: asyncpg.Pool, campaign_id: uuid.UUID, owner: uuid.UUID) -> None:
    await pool.execute(
        "UPDATE campaigns SET lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2",
        campaign_id, owner,
    )  # fmt: skip


async def message_counts(conn: Conn, campaign_id: uuid.UUID) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT status, count(*) AS n FROM messages WHERE campaign_id = $1 GROUP BY status", campaign_id
    )
    return {r["status"]: r["n"] for r in rows}


async def rejections(conn: Conn, campaign_id: uuid.UUID, after_row: int, limit: int) -> list[Rejection]:
    rows = await conn.fetch(
        "SELECT row_no, code, field FROM campaign_rejections WHERE campaign_id = $1 AND row_no > $2"
        " ORDER BY row_no LIMIT $3", campaign_id, after_row, limit,
    )  # fmt: skip
    return [Rejection(r["row_no"], r["code"], r["field"]) for r in rows]


async def cancelled(conn: Conn, campaign_id: uuid.UUID) -> bool:
    """Whether the campaign was cancelled (the worker asks, for its messages not yet sent)."""
    return bool(await conn.fetchval("SELECT state = 'cancelled' FROM campaigns WHERE id = $1", campaign_id))


async def priced_groups(
    conn: Conn, campaign: Campaign, channel: Channel, category: Category, from_row: int
) -> list[PricedGroup]:
    """The campaign's rows from `from_row` by country, priced as the ledger would price them now
    (`herald.db.billing`: the tenant's billing currency, the card in force, the fallback row)."""
    candidates = f"""
    FROM (
        SELECT r.country, count(*) AS messages, sum(r.segments) AS quantity, $3::text AS channel,
               $4::text AS category,
               coalesce((SELECT currency FROM billing_customers WHERE tenant_id = $2), '{DEFAULT_CURRENCY}') AS currency
        FROM campaign_rows r WHERE r.campaign_id = $1 AND r.row_no >= $5 GROUP BY r.country
    ) c"""
    rows = await conn.fetch(
        "SELECT c.country, c.messages, c.quantity, price.unit_price_micros, card.currency"
        f" {price_lookup(candidates, 'now()', 'LEFT JOIN LATERAL')} ORDER BY c.country NULLS LAST",
        campaign.id, campaign.tenant_id, channel.value, category.value, from_row,
    )  # fmt: skip
    return [msgspec.convert(dict(r), PricedGroup) for r in rows]


async def recipients_to_add(conn: Conn, campaign: Campaign, from_row: int) -> tuple[int, int]:
    """(distinct recipients in the rows from `from_row` not already counted in the tenant's
    rolling window, recipients the window holds now). Rows are hashed under the key of their
    upload: a key rotated since then counts them as new (the figure errs toward refusing)."""
    since = datetime.now(UTC) - timedelta(seconds=WINDOW_SECONDS)
    row = await conn.fetchrow(
        "SELECT (SELECT count(DISTINCT r.recipient) FROM campaign_rows r WHERE r.campaign_id = $1 AND r.row_no >= $4"
        "   AND NOT EXISTS (SELECT 1 FROM tenant_recipients t WHERE t.tenant_id = $2"
        "   AND t.recipient_hash = r.recipient AND t.last_sent_at > $3)) AS new,"
        " (SELECT count(*) FROM tenant_recipients WHERE tenant_id = $2 AND last_sent_at > $3) AS used",
        campaign.id, campaign.tenant_id, since, from_row,
    )  # fmt: skip
    assert row is not None
    return row["new"], row["used"]
