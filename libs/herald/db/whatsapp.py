"""Tenants' WhatsApp Business Accounts (migration 0021): stored with their secrets wrapped under
the KEK (`herald.keyring`), read back opened only by `secrets`."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

import asyncpg
import msgspec

from herald.domain.whatsapp import Account, AccountStatus, MessagingTier, PhoneNumber, Secrets
from herald.keyring import KeyRing

_COLUMNS = (
    "a.tenant_id, a.waba_id, a.display_name, a.status, a.suspended_reason, a.messaging_limit, a.quality,"
    " a.connected_at, a.rotated_at,"
    " coalesce((SELECT jsonb_agg(jsonb_build_object('id', n.phone_number_id, 'throughput', n.throughput,"
    "   'display_phone_number', n.display_phone_number) ORDER BY n.position)"
    "   FROM whatsapp_numbers n WHERE n.tenant_id = a.tenant_id), '[]') AS numbers"
)
_NUMBERS = msgspec.json.Decoder(tuple[PhoneNumber, ...])


class WabaTaken(Exception):
    """The WABA id or a phone number id is another tenant's already."""


def _context(tenant_id: uuid.UUID, field: str) -> str:
    return f"whatsapp:{tenant_id}:{field}"


def verify_token_hash(token: str) -> bytes:
    return hashlib.sha256(b"herald/whatsapp-verify-token/v1:" + token.encode()).digest()


def _account(row: asyncpg.Record) -> Account:
    return Account(
        tenant_id=row["tenant_id"], waba_id=row["waba_id"], display_name=row["display_name"],
        numbers=_NUMBERS.decode(row["numbers"]),  # jsonb arrives as its text (no codec is set)
        status=AccountStatus(row["status"]), messaging_limit=MessagingTier(row["messaging_limit"]),
        connected_at=row["connected_at"], rotated_at=row["rotated_at"], suspended_reason=row["suspended_reason"],
        quality=row["quality"],
    )  # fmt: skip


async def connect(
    pool: asyncpg.Pool,
    ring: KeyRing,
    tenant_id: uuid.UUID,
    *,
    waba_id: str,
    display_name: str,
    numbers: list[PhoneNumber],
    secrets: Secrets,
    verify_token: str,
) -> Account:
    """Connect the tenant's account, or replace what was connected (a rotation: new secrets, and
    a suspended account is active again). Raises WabaTaken if another tenant holds the WABA or a
    number. All or nothing."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO whatsapp_accounts (tenant_id, waba_id, display_name, access_token, app_secret,"
                " verify_token_hash) VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT (tenant_id) DO UPDATE SET waba_id = $2, display_name = $3, access_token = $4,"
                " app_secret = $5, verify_token_hash = $6, status = 'active', suspended_reason = NULL,"
                " rotated_at = now()",
                tenant_id, waba_id, display_name,
                ring.wrap(secrets.access_token.encode(), _context(tenant_id, "access_token")),
                ring.wrap(secrets.app_secret.encode(), _context(tenant_id, "app_secret")),
                verify_token_hash(verify_token),
            )  # fmt: skip
            await conn.execute("DELETE FROM whatsapp_numbers WHERE tenant_id = $1", tenant_id)
            await conn.executemany(
                "INSERT INTO whatsapp_numbers (phone_number_id, tenant_id, position, throughput, display_phone_number)"
                " VALUES ($1, $2, $3, $4, $5)",
                [(n.id, tenant_id, i, n.throughput, n.display_phone_number) for i, n in enumerate(numbers)],
            )
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM whatsapp_accounts a WHERE a.tenant_id = $1", tenant_id)
    except asyncpg.UniqueViolationError as exc:
        raise WabaTaken(str(exc.constraint_name)) from None
    assert row is not None
    return _account(row)


async def get(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> Account | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM whatsapp_accounts a WHERE a.tenant_id = $1", tenant_id)
    return None if row is None else _account(row)


async def connected(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> bool:
    return bool(await pool.fetchval("SELECT true FROM whatsapp_accounts WHERE tenant_id = $1", tenant_id))


async def by_waba(pool: asyncpg.Pool, waba_id: str) -> Account | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM whatsapp_accounts a WHERE a.waba_id = $1", waba_id)
    return None if row is None else _account(row)


async def everyone(pool: asyncpg.Pool) -> list[Account]:
    return [_account(r) for r in await pool.fetch(f"SELECT {_COLUMNS} FROM whatsapp_accounts a ORDER BY a.waba_id")]


async def secrets(pool: asyncpg.Pool, ring: KeyRing, tenant_id: uuid.UUID) -> Secrets | None:
    """The account's secrets, opened (raises `Unwrappable` if no configured KEK opens them)."""
    row = await pool.fetchrow("SELECT access_token, app_secret FROM whatsapp_accounts WHERE tenant_id = $1", tenant_id)
    if row is None:
        return None
    return Secrets(
        access_token=ring.unwrap(row["access_token"], _context(tenant_id, "access_token")).decode(),
        app_secret=ring.unwrap(row["app_secret"], _context(tenant_id, "app_secret")).decode(),
    )


async def rewrap(pool: asyncpg.Pool, ring: KeyRing) -> int:
    """Every account's secrets wrapped under the current KEK (after a rotation); how many rows
    changed. Each row in its own statement, guarded by what it read: a tenant rotating its token
    meanwhile keeps its new one."""
    changed = 0
    for row in await pool.fetch("SELECT tenant_id, access_token, app_secret FROM whatsapp_accounts"):
        tenant_id = row["tenant_id"]
        token, secret = (
            ring.rewrapped(row[f], _context(tenant_id, f)) or row[f] for f in ("access_token", "app_secret")
        )
        if (token, secret) == (row["access_token"], row["app_secret"]):
            continue  # both under the current KEK already
        status = await pool.execute(
            "UPDATE whatsapp_accounts SET access_token = $2, app_secret = $3"
            " WHERE tenant_id = $1 AND access_token = $4 AND app_secret = $5",
            tenant_id, token, secret, row["access_token"], row["app_secret"],
        )  # fmt: skip
        changed += status == "UPDATE 1"
    return changed


async def verify_token_matches(pool: asyncpg.Pool, token: str) -> bool:
    """Whether some connected account chose this verify token (Meta's subscription handshake)."""
    found = await pool.fetchval(
        "SELECT true FROM whatsapp_accounts WHERE verify_token_hash = $1 LIMIT 1", verify_token_hash(token)
    )
    return bool(found)


async def disconnect(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> bool:
    status = await pool.execute("DELETE FROM whatsapp_accounts WHERE tenant_id = $1", tenant_id)
    return bool(status == "DELETE 1")


async def suspend(pool: asyncpg.Pool, tenant_id: uuid.UUID, reason: str, rotated_at: datetime) -> bool:
    """Mark the account suspended (Meta refused its token); True if this call changed it. Only
    while the secrets read at `rotated_at` are still the stored ones: a token rotated meanwhile
    is not suspended by an answer about the old one."""
    status = await pool.execute(
        "UPDATE whatsapp_accounts SET status = 'suspended', suspended_reason = $2"
        " WHERE tenant_id = $1 AND status = 'active' AND rotated_at = $3",
        tenant_id, reason, rotated_at,
    )  # fmt: skip
    return bool(status == "UPDATE 1")


async def set_quality(pool: asyncpg.Pool, waba_id: str, limit: MessagingTier | None, quality: str | None) -> bool:
    status = await pool.execute(
        "UPDATE whatsapp_accounts SET messaging_limit = coalesce($2, messaging_limit),"
        " quality = coalesce($3, quality) WHERE waba_id = $1",
        waba_id, None if limit is None else limit.value, quality,
    )  # fmt: skip
    return bool(status == "UPDATE 1")


async def tenant_of_number(pool: asyncpg.Pool, phone_number_id: str) -> uuid.UUID | None:
    found: uuid.UUID | None = await pool.fetchval(
        "SELECT tenant_id FROM whatsapp_numbers WHERE phone_number_id = $1", phone_number_id
    )
    return found
