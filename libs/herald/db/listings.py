"""The newest-first listings (`herald.domain.search`): a tenant's messages, the platform's tenants.

Each query names only the filters given, so the planner picks the index that fits them
(migration 0030): a `$n IS NULL OR column = $n` form would leave it one generic plan for all.
The keyset condition `(created_at, id) < (cursor)` walks the same index backwards from the cursor.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import msgspec

from herald.db.tenants import TENANT_COLUMNS, tenant_from_row
from herald.domain.models import Tier
from herald.domain.search import Cursor, MessageFilter, MessageSummary, TenantFilter, TimeRange
from herald.domain.tenants import Tenant


class _Where:
    def __init__(self) -> None:
        self.args: list[Any] = []
        self.parts: list[str] = []

    def add(self, condition: str, *values: Any) -> None:
        """`condition` with `{}` for each value, in order."""
        slots = []
        for value in values:
            self.args.append(value)
            slots.append(f"${len(self.args)}")
        self.parts.append(condition.format(*slots))

    def window(self, window: TimeRange, after: Cursor | None) -> None:
        if window.created_after is not None:
            self.add("created_at >= {}", window.created_after)
        if window.created_before is not None:
            self.add("created_at < {}", window.created_before)
        if after is not None:
            self.add("(created_at, id) < ({}, {})", after.created_at, after.id)

    def sql(self, limit: int) -> str:
        self.args.append(limit)
        where = f"WHERE {' AND '.join(self.parts)} " if self.parts else ""
        return f"{where}ORDER BY created_at DESC, id DESC LIMIT ${len(self.args)}"


async def messages(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, found: MessageFilter, after: Cursor | None, limit: int
) -> list[MessageSummary]:
    """Up to `limit` of the tenant's messages matching `found`, newest first, after `after`."""
    sql, args = message_query(tenant_id, found, after, limit)
    rows = await pool.fetch(sql, *args)
    return [msgspec.convert(dict(r), MessageSummary) for r in rows]


def message_query(
    tenant_id: uuid.UUID, found: MessageFilter, after: Cursor | None, limit: int
) -> tuple[str, list[Any]]:
    """The statement `messages` runs and its arguments (the search benchmark EXPLAINs it)."""
    where = _Where()
    where.add("tenant_id = {}", tenant_id)
    if found.status is not None:
        where.add("status = {}", found.status.value)
    if found.reference is not None:
        where.add("reference = {}", found.reference)
    if found.template is not None:
        where.add("template_name = {}", found.template)
    if found.channel is not None:
        where.add("channel = {}", found.channel.value)
    if found.campaign is not None:
        where.add("campaign_id = {}", found.campaign)
    where.window(found.window, after)
    sql = (
        "SELECT id, status, channel, category, template_name, template_language, template_version, reference,"
        f" created_at, updated_at, segments FROM messages {where.sql(limit)}"
    )
    return sql, where.args


async def tenants(pool: asyncpg.Pool, found: TenantFilter, after: Cursor | None, limit: int) -> list[Tenant]:
    """Up to `limit` tenants matching `found`, newest first, after `after`."""
    where = _Where()
    if found.tier is not None:
        where.add("tier = {}", Tier(found.tier).value)
    if found.suspended is not None:
        where.add("suspended = {}", found.suspended)
    where.window(found.window, after)
    rows = await pool.fetch(f"SELECT {TENANT_COLUMNS} FROM tenants {where.sql(limit)}", *where.args)
    return [tenant_from_row(r) for r in rows]
