"""Tenants' email identities (migration 0026): each with its DKIM private key wrapped under the
KEK, opened only by `signing_key` (the worker, to sign)."""

from __future__ import annotations

import uuid

import asyncpg

from herald.domain.email import Identity, IdentityStatus
from herald.keyring import KeyRing

_COLUMNS = "tenant_id, from_address, from_name, selector, public_key, status, created_at, verified_at"


def _context(tenant_id: uuid.UUID, from_address: str) -> str:
    return f"email-dkim:{tenant_id}:{from_address}"


def _identity(row: asyncpg.Record) -> Identity:
    return Identity(
        tenant_id=row["tenant_id"], from_address=row["from_address"], from_name=row["from_name"],
        selector=row["selector"], public_key=row["public_key"], status=IdentityStatus(row["status"]),
        created_at=row["created_at"], verified_at=row["verified_at"],
    )  # fmt: skip


async def put(
    pool: asyncpg.Pool, ring: KeyRing, tenant_id: uuid.UUID, from_address: str, from_name: str | None,
    selector: str, public_key: str, private_pem: bytes,
) -> Identity:  # fmt: skip
    """Create the identity, or replace its key (a rotation: it is `pending` again until the new
    record is seen in DNS)."""
    row = await pool.fetchrow(
        f"INSERT INTO email_identities (tenant_id, from_address, from_name, selector, public_key, private_key)"
        f" VALUES ($1, $2, $3, $4, $5, $6)"
        f" ON CONFLICT (tenant_id, from_address) DO UPDATE SET from_name = excluded.from_name,"
        f"   selector = excluded.selector, public_key = excluded.public_key, private_key = excluded.private_key,"
        f"   status = 'pending', verified_at = NULL, created_at = now()"
        f" RETURNING {_COLUMNS}",
        tenant_id, from_address, from_name, selector, public_key,
        ring.wrap(private_pem, _context(tenant_id, from_address)),
    )  # fmt: skip
    assert row is not None
    return _identity(row)


async def get(pool: asyncpg.Pool, tenant_id: uuid.UUID, from_address: str) -> Identity | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM email_identities WHERE tenant_id = $1 AND from_address = $2", tenant_id, from_address
    )
    return None if row is None else _identity(row)


async def listed(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> list[Identity]:
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM email_identities WHERE tenant_id = $1 ORDER BY from_address", tenant_id
    )
    return [_identity(r) for r in rows]


async def sending(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> Identity | None:
    """The verified identity the tenant's mail goes from: the first verified by address."""
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM email_identities WHERE tenant_id = $1 AND status = 'verified'"
        f" ORDER BY from_address LIMIT 1",
        tenant_id,
    )
    return None if row is None else _identity(row)


async def verified(pool: asyncpg.Pool, tenant_id: uuid.UUID, from_address: str, public_key: str) -> Identity | None:
    """Mark it verified, if its key is still the one that was found published."""
    row = await pool.fetchrow(
        f"UPDATE email_identities SET status = 'verified', verified_at = now()"
        f" WHERE tenant_id = $1 AND from_address = $2 AND public_key = $3 RETURNING {_COLUMNS}",
        tenant_id, from_address, public_key,
    )  # fmt: skip
    return None if row is None else _identity(row)


async def remove(pool: asyncpg.Pool, tenant_id: uuid.UUID, from_address: str) -> bool:
    status = await pool.execute(
        "DELETE FROM email_identities WHERE tenant_id = $1 AND from_address = $2", tenant_id, from_address
    )
    return bool(status == "DELETE 1")


async def signing_key(pool: asyncpg.Pool, ring: KeyRing, tenant_id: uuid.UUID, from_address: str) -> bytes | None:
    """The identity's DKIM private key (PEM) in clear: for signing, in memory only."""
    wrapped = await pool.fetchval(
        "SELECT private_key FROM email_identities WHERE tenant_id = $1 AND from_address = $2", tenant_id, from_address
    )
    return None if wrapped is None else ring.unwrap(bytes(wrapped), _context(tenant_id, from_address))


async def rewrap(pool: asyncpg.Pool, ring: KeyRing) -> int:
    """Every DKIM key wrapped under the current KEK (after a rotation); how many rows changed.
    Guarded by what was read: a key replaced meanwhile stays the new one."""
    changed = 0
    for row in await pool.fetch("SELECT tenant_id, from_address, private_key FROM email_identities"):
        old = bytes(row["private_key"])
        new = ring.rewrapped(old, _context(row["tenant_id"], row["from_address"]))
        if new is None:
            continue
        status = await pool.execute(
            "UPDATE email_identities SET private_key = $3 WHERE tenant_id = $1 AND from_address = $2"
            " AND private_key = $4",
            row["tenant_id"], row["from_address"], new, old,
        )  # fmt: skip
        changed += status == "UPDATE 1"
    return changed
