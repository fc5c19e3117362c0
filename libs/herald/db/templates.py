"""Message templates: name + language, versioned. Creating an existing name+language adds a version."""

from __future__ import annotations

import uuid

import asyncpg

from herald.domain.models import Category, Channel, TemplateStatus
from herald.domain.templates import Template

_COLUMNS = "name, language, version, category, channel, body, status, created_at"


def _row(row: asyncpg.Record) -> Template:
    return Template(
        name=row["name"],
        language=row["language"],
        version=row["version"],
        category=Category(row["category"]),
        channel=Channel(row["channel"]),
        body=row["body"],
        status=TemplateStatus(row["status"]),
        created_at=row["created_at"],
    )


async def create(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    name: str,
    language: str,
    category: Category,
    channel: Channel,
    body: str,
) -> Template:
    async with pool.acquire() as conn, conn.transaction():
        # Serialise version allocation per (tenant, name, language) without locking the table.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{tenant_id}/{name}/{language}")
        row = await conn.fetchrow(
            f"INSERT INTO templates (tenant_id, name, language, version, category, channel, body)"
            f" SELECT $1, $2, $3, coalesce(max(version), 0) + 1, $4, $5, $6"
            f"   FROM templates WHERE tenant_id = $1 AND name = $2 AND language = $3"
            f" RETURNING {_COLUMNS}",
            tenant_id,
            name,
            language,
            category.value,
            channel.value,
            body,
        )
    assert row is not None
    return _row(row)


async def latest(pool: asyncpg.Pool, tenant_id: uuid.UUID, name: str, language: str) -> Template | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM templates WHERE tenant_id = $1 AND name = $2 AND language = $3"
        " AND deleted_at IS NULL ORDER BY version DESC LIMIT 1",
        tenant_id,
        name,
        language,
    )
    return None if row is None else _row(row)


async def list_latest(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> list[Template]:
    rows = await pool.fetch(
        f"SELECT DISTINCT ON (name, language) {_COLUMNS} FROM templates"
        " WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY name, language, version DESC",
        tenant_id,
    )
    return [_row(r) for r in rows]


async def delete(pool: asyncpg.Pool, tenant_id: uuid.UUID, name: str, language: str) -> bool:
    """Soft delete: messages already queued keep their rendered body; new sends get 404."""
    status = await pool.execute(
        "UPDATE templates SET deleted_at = now() WHERE tenant_id = $1 AND name = $2 AND language = $3"
        " AND deleted_at IS NULL",
        tenant_id,
        name,
        language,
    )
    return not status.endswith(" 0")
