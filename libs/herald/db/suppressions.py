"""The suppression list's store (`herald.domain.suppressions`): keyed hashes, never addresses.

Every recipient arrives as its hash under each key (`RecipientHasher.candidates`, the current
key's first): an entry written under an earlier key still matches, and a new one is written
under the current key.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import asyncpg
import msgspec

from herald.db.pool import Conn
from herald.domain.limits import RecipientHasher
from herald.domain.models import Channel
from herald.domain.suppressions import SuppressionReason, hint


class Suppression(msgspec.Struct, frozen=True):
    id: str
    """`<channel>:<the recipient's keyed hash in hex>`: stable, and meaningless without Herald's
    key (`ENTRY_ID`)."""
    channel: Channel
    hint: str
    reason: SuppressionReason
    created_at: datetime


class Candidate(msgspec.Struct, frozen=True):
    """One recipient on one channel, as its hash under every key (the current key's first)."""

    channel: Channel
    hashes: Sequence[bytes]
    hint: str = ""

    @property
    def entry_id(self) -> str:
        """Its entry's `id` (`Suppression.id`): under the current key, the first hash."""
        return f"{self.channel.value}:{self.hashes[0].hex()}"


def candidate(hasher: RecipientHasher, tenant_id: uuid.UUID, channel: Channel, address: str) -> Candidate:
    """A normalised `address` on `channel`, as the store keeps it: its keyed hashes and its hint."""
    return Candidate(channel, hasher.candidates(tenant_id, address), hint(channel, address))


_COLUMNS = "channel || ':' || encode(recipient_hash, 'hex') AS id, channel, hint, reason, created_at"


def _key(entry_id: str) -> tuple[str, bytes]:
    """The (channel, hash) an entry id names; the API has matched it against `ENTRY_ID`."""
    channel, _, digest = entry_id.partition(":")
    return channel, bytes.fromhex(digest)


def _suppression(row: asyncpg.Record) -> Suppression:
    return Suppression(row["id"], Channel(row["channel"]), row["hint"], SuppressionReason(row["reason"]),
                       row["created_at"])  # fmt: skip


async def matching(conn: Conn, tenant_id: uuid.UUID, candidates: Sequence[Candidate]) -> list[Suppression | None]:
    """Each candidate's entry, if it is suppressed (under any key); in order."""
    if not candidates:
        return []
    channels = [c.channel.value for c in candidates for _ in c.hashes]
    hashes = [h for c in candidates for h in c.hashes]
    rows = await conn.fetch(
        f"SELECT {_COLUMNS}, recipient_hash FROM suppressions WHERE tenant_id = $1"
        " AND (channel, recipient_hash) IN (SELECT * FROM unnest($2::text[], $3::bytea[]))",
        tenant_id, channels, hashes,
    )  # fmt: skip
    found = {(r["channel"], bytes(r["recipient_hash"])): _suppression(r) for r in rows}
    return [next((s for h in c.hashes if (s := found.get((c.channel.value, h))) is not None), None) for c in candidates]


async def latest(conn: Conn, keys: Sequence[tuple[uuid.UUID, Channel]]) -> list[datetime | None]:
    """When each (tenant, channel)'s newest suppression was added (None: it has none), in order."""
    rows = await conn.fetch(
        "SELECT (SELECT max(created_at) FROM suppressions s WHERE s.tenant_id = k.tenant AND s.channel = k.channel)"
        " AS latest FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS k(tenant, channel, i) ORDER BY k.i",
        [tenant for tenant, _ in keys], [channel.value for _, channel in keys],
    )  # fmt: skip
    return [row["latest"] for row in rows]


async def add(conn: Conn, tenant_id: uuid.UUID, candidates: Sequence[Candidate], reason: SuppressionReason) -> int:
    """Suppress each candidate not suppressed yet (under any key); returns how many were new.
    An entry already there keeps its reason and time: the first opt-out is the one on record."""
    existing = await matching(conn, tenant_id, candidates)
    new = [c for c, found in zip(candidates, existing, strict=True) if found is None]
    if not new:
        return 0
    rows = await conn.fetch(
        "INSERT INTO suppressions (tenant_id, channel, recipient_hash, hint, reason)"
        " SELECT $1, channel, h, hint, $5 FROM unnest($2::text[], $3::bytea[], $4::text[]) AS n(channel, h, hint)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        tenant_id, [c.channel.value for c in new], [c.hashes[0] for c in new], [c.hint for c in new], reason.value,
    )  # fmt: skip
    return len(rows)


async def remove(conn: Conn, tenant_id: uuid.UUID, entry_id: str) -> bool:
    """Lift one entry (`ENTRY_ID`: one recipient on one channel); False if there is none."""
    done = await conn.fetch(
        "DELETE FROM suppressions WHERE tenant_id = $1 AND channel = $2 AND recipient_hash = $3 RETURNING 1",
        tenant_id, *_key(entry_id),
    )  # fmt: skip
    return bool(done)


async def page(
    conn: Conn, tenant_id: uuid.UUID, channel: Channel | None, after: str | None, limit: int
) -> list[Suppression]:
    """Up to `limit` entries after the cursor `after` (an entry id), in (hash, channel) order."""
    after_channel, after_hash = _key(after) if after is not None else (None, None)
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM suppressions WHERE tenant_id = $1 AND ($2::text IS NULL OR channel = $2)"
        " AND ($3::bytea IS NULL OR (recipient_hash, channel) > ($3, $4::text))"
        " ORDER BY recipient_hash, channel LIMIT $5",
        tenant_id, None if channel is None else channel.value, after_hash, after_channel, limit,
    )  # fmt: skip
    return [_suppression(r) for r in rows]


async def every(pool: asyncpg.Pool, tenant_id: uuid.UUID, chunk: int = 10_000) -> AsyncIterator[list[Suppression]]:
    """The tenant's whole list in chunks, from one snapshot (an export)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        cursor = await conn.cursor(
            f"SELECT {_COLUMNS} FROM suppressions WHERE tenant_id = $1 ORDER BY recipient_hash, channel", tenant_id
        )
        while rows := await cursor.fetch(chunk):
            yield [_suppression(r) for r in rows]
