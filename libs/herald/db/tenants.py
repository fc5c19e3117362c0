"""Tenants and their API keys."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

import asyncpg
import msgspec

from herald.db.pool import Conn
from herald.domain.apikeys import IssuedKey
from herald.domain.models import KeyKind, Tier
from herald.domain.tenants import Tenant

T = TypeVar("T")


class KeyLookup(msgspec.Struct, frozen=True):
    """A key row joined with the tenant state that authorisation needs."""

    key_id: uuid.UUID
    kind: KeyKind
    salt: bytes
    hash: bytes
    revoked: bool
    tenant: Tenant


TENANT_COLUMNS = (
    "id, name, tier, verified, suspended, callback_url, rate_limit_per_second, daily_recipient_limit, created_at,"
    " sms_sender"
)


def tenant_from_row(row: asyncpg.Record) -> Tenant:
    values = {k: row[k] for k in Tenant.__struct_fields__}
    values["tier"] = Tier(values["tier"])
    return Tenant(**values)


async def create(
    conn: asyncpg.Pool | asyncpg.Connection,
    tenant_id: uuid.UUID,
    name: str,
    tier: Tier,
    verified: bool,
    callback_url: str | None,
    callback_secret: str | None,
) -> Tenant:
    row = await conn.fetchrow(
        f"INSERT INTO tenants (id, name, tier, verified, callback_url, callback_secret)"
        f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {TENANT_COLUMNS}",
        tenant_id,
        name,
        tier.value,
        verified,
        callback_url,
        callback_secret,
    )
    assert row is not None
    return tenant_from_row(row)


async def get(conn: asyncpg.Pool | asyncpg.Connection, tenant_id: uuid.UUID) -> Tenant | None:
    row = await conn.fetchrow(f"SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1", tenant_id)
    return None if row is None else tenant_from_row(row)


async def get_many(conn: asyncpg.Pool | asyncpg.Connection, tenant_ids: Sequence[uuid.UUID]) -> list[Tenant | None]:
    """Each tenant, in the order asked (None: no such tenant), in one statement."""
    rows = await conn.fetch(f"SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ANY($1::uuid[])", list(tenant_ids))
    return _in_order(rows, tenant_ids, tenant_from_row)


def _in_order(
    rows: Sequence[asyncpg.Record], tenant_ids: Sequence[uuid.UUID], make: Callable[[asyncpg.Record], T | None]
) -> list[T | None]:
    """One answer per id asked, in that order, from rows in any order keyed by their `id` (None:
    no row, or `make` made none of it); a repeated id gets the same answer."""
    found = {row["id"]: make(row) for row in rows}
    return [found.get(tenant_id) for tenant_id in tenant_ids]


# Columns a PATCH may set; the mapping keeps SQL identifiers out of user input.
PATCHABLE = (
    "tier", "verified", "suspended", "callback_url", "rate_limit_per_second", "daily_recipient_limit", "sms_sender",
)  # fmt: skip


class SenderTaken(Exception):
    """Another tenant sends from that address already."""


async def patch(
    conn: asyncpg.Pool | asyncpg.Connection, tenant_id: uuid.UUID, changes: dict[str, object]
) -> Tenant | None:
    assert set(changes) <= set(PATCHABLE)
    if not changes:
        return await get(conn, tenant_id)
    assignments = ", ".join(f"{col} = ${i}" for i, col in enumerate(changes, start=2))
    try:
        row = await conn.fetchrow(
            f"UPDATE tenants SET {assignments}, updated_at = now() WHERE id = $1 RETURNING {TENANT_COLUMNS}",
            tenant_id,
            *changes.values(),
        )
    except asyncpg.UniqueViolationError:
        raise SenderTaken from None
    return None if row is None else tenant_from_row(row)


async def add_key(conn: asyncpg.Pool | asyncpg.Connection, tenant_id: uuid.UUID, key: IssuedKey) -> None:
    await conn.execute(
        "INSERT INTO api_keys (id, tenant_id, kind, salt, hash) VALUES ($1, $2, $3, $4, $5)",
        key.id,
        tenant_id,
        key.kind.value,
        key.salt,
        key.hash,
    )


async def revoke_key(conn: asyncpg.Pool | asyncpg.Connection, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
    status = await conn.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 AND tenant_id = $2",
        key_id,
        tenant_id,
    )
    return bool(status.endswith(" 1"))


async def lookup_key(conn: asyncpg.Pool | asyncpg.Connection, key_id: uuid.UUID) -> KeyLookup | None:
    row = await conn.fetchrow(
        "SELECT k.id AS key_id, k.kind, k.salt, k.hash, k.revoked_at IS NOT NULL AS revoked,"
        f" {', '.join('t.' + c.strip() for c in TENANT_COLUMNS.split(','))}"
        " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id WHERE k.id = $1",
        key_id,
    )
    if row is None:
        return None
    return KeyLookup(
        key_id=row["key_id"],
        kind=KeyKind(row["kind"]),
        salt=row["salt"],
        hash=row["hash"],
        revoked=row["revoked"],
        tenant=tenant_from_row(row),
    )


class CallbackConfig(msgspec.Struct, frozen=True):
    url: str
    secret: str


async def callback_config(pool: Conn, tenant_id: uuid.UUID) -> CallbackConfig | None:
    (config,) = await callback_configs(pool, [tenant_id])
    return config


async def callback_configs(pool: Conn, tenant_ids: Sequence[uuid.UUID]) -> list[CallbackConfig | None]:
    """Each tenant's callback URL and secret, in the order asked (None: no such tenant, or no
    callback set), in one statement."""
    rows = await pool.fetch(
        "SELECT id, callback_url, callback_secret FROM tenants WHERE id = ANY($1::uuid[])", list(tenant_ids)
    )
    return _in_order(rows, tenant_ids, _callback_config)


def _callback_config(row: asyncpg.Record) -> CallbackConfig | None:
    if not row["callback_url"] or not row["callback_secret"]:
        return None
    return CallbackConfig(url=row["callback_url"], secret=row["callback_secret"])


async def rotate_callback_secret(pool: asyncpg.Pool, tenant_id: uuid.UUID, secret: str) -> bool:
    status = await pool.execute(
        "UPDATE tenants SET callback_secret = $2, updated_at = now() WHERE id = $1", tenant_id, secret
    )
    return not status.endswith(" 0")
