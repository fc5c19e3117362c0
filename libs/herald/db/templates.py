"""Message templates: name + language, versioned. Creating an existing name+language adds a version."""

from __future__ import annotations

import uuid

import asyncpg
import msgspec

from herald.domain.models import Category, Channel, TemplateStatus
from herald.domain.templates import EmailParts, Template
from herald.domain.whatsapp import TemplateParts

_COLUMNS = (
    "name, language, version, category, channel, body, status, created_at, parts, provider_template_id,"
    " requested_category, rejection_reason"
)
_PARTS = msgspec.json.Decoder(TemplateParts)
_EMAIL = msgspec.json.Decoder(EmailParts)


def _row(row: asyncpg.Record) -> Template:
    parts = row["parts"]
    channel = Channel(row["channel"])
    return Template(
        name=row["name"],
        language=row["language"],
        version=row["version"],
        category=Category(row["category"]),
        channel=channel,
        body=row["body"],
        status=TemplateStatus(row["status"]),
        created_at=row["created_at"],
        parts=None if parts is None or channel is not Channel.WHATSAPP else _PARTS.decode(parts),
        email=None if parts is None or channel is not Channel.EMAIL else _EMAIL.decode(parts),
        provider_template_id=row["provider_template_id"],
        requested_category=None if row["requested_category"] is None else Category(row["requested_category"]),
        rejection_reason=row["rejection_reason"],
    )


async def create(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    name: str,
    language: str,
    category: Category,
    channel: Channel,
    body: str,
    *,
    status: TemplateStatus = TemplateStatus.APPROVED,
    parts: TemplateParts | EmailParts | None = None,
    provider_template_id: str | None = None,
) -> Template:
    """A new version; a whatsapp template as Meta answered its submission (`pending`, its id)."""
    async with pool.acquire() as conn, conn.transaction():
        # Serialise version allocation per (tenant, name, language) without locking the table.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{tenant_id}/{name}/{language}")
        row = await conn.fetchrow(
            f"INSERT INTO templates (tenant_id, name, language, version, category, channel, body, status, parts,"
            f" provider_template_id)"
            f" SELECT $1, $2, $3, coalesce(max(version), 0) + 1, $4, $5, $6, $7, $8::text::jsonb, $9"
            f"   FROM templates WHERE tenant_id = $1 AND name = $2 AND language = $3"
            f" RETURNING {_COLUMNS}",
            tenant_id,
            name,
            language,
            category.value,
            channel.value,
            body,
            status.value,
            None if parts is None else msgspec.json.encode(parts).decode(),
            provider_template_id,
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


async def exists(pool: asyncpg.Pool, tenant_id: uuid.UUID, name: str, language: str) -> bool:
    """Whether the tenant has (or had: deleted ones count, as Meta keeps their names) this template."""
    found = await pool.fetchval(
        "SELECT true FROM templates WHERE tenant_id = $1 AND name = $2 AND language = $3 LIMIT 1",
        tenant_id, name, language,
    )  # fmt: skip
    return bool(found)


async def set_review(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    provider_template_id: str,
    status: TemplateStatus | None,
    *,
    category: Category | None = None,
    reason: str | None = None,
) -> bool:
    """Meta's word on one of the tenant's whatsapp templates (a webhook or the sweep): its status
    (None: unchanged, for a recategorisation alone), its category if Meta decided another (the one
    asked for is kept in `requested_category`), and why it was rejected or paused. True if
    something changed. Only the tenant's own templates."""
    reason_sql = (
        "CASE WHEN $3::text IS NULL THEN rejection_reason"
        " WHEN $3::text IN ('rejected', 'paused', 'disabled') THEN $5 END"
    )
    result = await pool.execute(
        "UPDATE templates SET status = coalesce($3::text, status),"
        "   requested_category = CASE WHEN $4::text IS NOT NULL AND $4::text <> category"
        "     THEN coalesce(requested_category, category) ELSE requested_category END,"
        "   category = coalesce($4::text, category),"
        f"  rejection_reason = {reason_sql}"
        " WHERE tenant_id = $1 AND provider_template_id = $2"
        "   AND (status, category, rejection_reason) IS DISTINCT FROM"
        f"      (coalesce($3::text, status), coalesce($4::text, category), {reason_sql})",
        tenant_id, provider_template_id, None if status is None else status.value,
        None if category is None else category.value, reason,
    )  # fmt: skip
    return not result.endswith(" 0")


async def provider_ids(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> dict[str, TemplateStatus]:
    """The tenant's whatsapp templates Meta knows, by Meta's id, with their status here."""
    rows = await pool.fetch(
        "SELECT DISTINCT ON (provider_template_id) provider_template_id, status FROM templates"
        " WHERE tenant_id = $1 AND provider_template_id IS NOT NULL ORDER BY provider_template_id, version DESC",
        tenant_id,
    )
    return {r["provider_template_id"]: TemplateStatus(r["status"]) for r in rows}
