"""A tenant's suppression list: add, look up, lift, page through, import and export."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator

import asyncpg
import msgspec

from herald.db import suppressions as store
from herald.db.suppressions import Candidate, Suppression
from herald.domain.limits import RecipientHasher
from herald.domain.models import Channel
from herald.domain.suppressions import Entry, SuppressionReason, parse_csv
from herald.errors import NotFound

EXPORT_COLUMNS = ("id", "channel", "hint", "reason", "created_at")


class Imported(msgspec.Struct, frozen=True):
    rows: int
    added: int
    """Rows that were not suppressed yet (the others keep their first reason and time)."""


class Suppressions:
    def __init__(self, pool: asyncpg.Pool, hasher: RecipientHasher) -> None:
        self._pool = pool
        self._hasher = hasher

    def _candidate(self, tenant_id: uuid.UUID, entry: Entry) -> Candidate:
        return store.candidate(self._hasher, tenant_id, entry.channel, entry.address)

    async def add(self, tenant_id: uuid.UUID, entry: Entry, reason: SuppressionReason) -> tuple[Suppression, bool]:
        """The entry, and whether it is new (an existing one is left as it was: idempotent)."""
        candidate = self._candidate(tenant_id, entry)
        async with self._pool.acquire() as conn, conn.transaction():
            added = await store.add(conn, tenant_id, [candidate], reason)
            (found,) = await store.matching(conn, tenant_id, [candidate])
        assert found is not None  # written or already there, in this transaction
        return found, added == 1

    async def lookup(self, tenant_id: uuid.UUID, entry: Entry) -> Suppression:
        (found,) = await store.matching(self._pool, tenant_id, [self._candidate(tenant_id, entry)])
        if found is None:
            raise NotFound("the recipient is not suppressed on that channel", code="suppression_not_found")
        return found

    async def remove(self, tenant_id: uuid.UUID, entry_id: str) -> None:
        if not await store.remove(self._pool, tenant_id, entry_id):
            raise NotFound("no such suppression", code="suppression_not_found")

    async def page(
        self, tenant_id: uuid.UUID, channel: Channel | None, after: str | None, limit: int
    ) -> tuple[list[Suppression], str | None]:
        """Entries and the cursor for the next page (None at the end)."""
        items = await store.page(self._pool, tenant_id, channel, after, limit + 1)
        return items[:limit], (items[limit - 1].id if len(items) > limit else None)

    async def import_csv(self, tenant_id: uuid.UUID, text: str) -> Imported:
        """All or nothing: a file with any invalid row changes nothing (`parse_csv`)."""
        candidates = [self._candidate(tenant_id, e) for e in parse_csv(text)]
        async with self._pool.acquire() as conn, conn.transaction():
            added = await store.add(conn, tenant_id, candidates, SuppressionReason.IMPORTED)
        return Imported(rows=len(candidates), added=added)

    async def export_csv(self, tenant_id: uuid.UUID) -> AsyncIterator[bytes]:
        """The whole list as CSV (`EXPORT_COLUMNS`), streamed from one snapshot. Recipients are
        not in it: Herald keeps none in clear; `hint` and `id` name each entry."""
        yield (",".join(EXPORT_COLUMNS) + "\r\n").encode()
        async for chunk in store.every(self._pool, tenant_id):
            out = io.StringIO()
            writer = csv.writer(out)
            for s in chunk:
                writer.writerow((s.id, s.channel.value, s.hint, s.reason.value, s.created_at.isoformat()))
            yield out.getvalue().encode()
