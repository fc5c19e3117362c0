"""The content keys table (migrations 0007, 0020; `herald.sealing`; `db.retention` deletes), each
key stored wrapped under the KEK (`herald.keyring`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Collection, Iterable, Sequence

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald import clock
from herald.domain.records import OutboundMessage, SealedMessageV2
from herald.keyring import KeyRing
from herald.sealing import ContentUnavailable, first_readable_hour, hour_of, open_with, seal


def _context(hour: int) -> str:
    return f"content_key:{hour}"


def _opened(ring: KeyRing, hour: int, key: bytes | None, wrapped: bytes | None) -> bytes:
    """The key of a row: unwrapped, or in clear for a row not wrapped yet (before migration 0020)."""
    if wrapped is not None:
        return ring.unwrap(wrapped, _context(hour))
    assert key is not None  # the table's check: one form or the other
    return key


async def ensure(pool: asyncpg.Pool, ring: KeyRing, hour: int) -> bytes:
    """The hour's key, created (and stored wrapped) if it does not exist yet. Processes racing to
    create it all get the one that was stored first.

    Two statements, not one: an INSERT that loses the race waits for the winner's commit, but a
    SELECT in the same statement still reads the snapshot taken before it and finds no row (with
    eight API processes racing, 40 hours in 200 handed someone no key: a 500 at the top of the hour).
    """
    key = os.urandom(32)
    async with pool.acquire() as conn:
        made = await conn.fetchval(
            "INSERT INTO content_keys (hour, wrapped) VALUES ($1, $2) ON CONFLICT (hour) DO NOTHING RETURNING hour",
            hour, ring.wrap(key, _context(hour)),
        )  # fmt: skip
        if made is not None:
            return key
        stored = await conn.fetchrow("SELECT key, wrapped FROM content_keys WHERE hour = $1", hour)
    if stored is None:  # only if the hour's key was deleted meanwhile (retention: hours long past)
        raise LookupError(f"the content key of hour {hour} was deleted while it was being created")
    return _opened(ring, hour, stored["key"], stored["wrapped"])


async def fetch(pool: asyncpg.Pool, ring: KeyRing, hours: Collection[int]) -> dict[int, bytes]:
    """The keys of those hours that still exist."""
    rows = await pool.fetch("SELECT hour, key, wrapped FROM content_keys WHERE hour = ANY($1::int[])", list(hours))
    return {r["hour"]: _opened(ring, r["hour"], r["key"], r["wrapped"]) for r in rows}


async def rewrap(pool: asyncpg.Pool, ring: KeyRing) -> int:
    """Wrap every key stored in clear, and rewrap every key wrapped under an earlier KEK, under
    the current KEK; how many rows changed. Idempotent; one row per statement, so it may run
    beside live traffic."""
    changed = 0
    for row in await pool.fetch("SELECT hour, key, wrapped FROM content_keys"):
        hour = row["hour"]
        if row["wrapped"] is None:  # written before migration 0020
            wrapped: bytes | None = ring.wrap(row["key"], _context(hour))
        else:
            wrapped = ring.rewrapped(row["wrapped"], _context(hour))
        if wrapped is None:
            continue
        status = await pool.execute(
            "UPDATE content_keys SET key = NULL, wrapped = $2 WHERE hour = $1 AND key IS NOT DISTINCT FROM $3"
            " AND wrapped IS NOT DISTINCT FROM $4",
            hour, wrapped, row["key"], row["wrapped"],
        )  # fmt: skip
        changed += status == "UPDATE 1"
    return changed


class ContentKeys:
    """The content keys one process uses, cached; backed by Postgres."""

    def __init__(
        self, pool: asyncpg.Pool, ring: KeyRing, retention_days: int, clock: Callable[[], int] = clock.now_ms
    ) -> None:
        self._pool = pool
        self._ring = ring
        self._retention_days = retention_days
        self._clock = clock
        self._keys: dict[int, AESGCM] = {}
        self._creating = asyncio.Lock()

    async def seal(self, messages: Sequence[OutboundMessage]) -> list[SealedMessageV2]:
        """Seal under the current hour's key (one database round trip per hour per process); a
        scheduled message under its `send_at` hour's, so that it is as readable when it is sent
        as one accepted then (retention counts from the key's hour)."""
        now = hour_of(self._clock())
        hours = [max(now, hour_of(m.not_before_ms)) for m in messages]
        aeads = {hour: await self._key(hour) for hour in set(hours)}
        return [seal(aeads[hour], hour, m) for hour, m in zip(hours, messages, strict=True)]

    async def sealing_key(self, at_ms: int = 0) -> tuple[int, AESGCM]:
        """The hour and key to seal content that must stay readable until `at_ms` (0: now)."""
        hour = max(hour_of(self._clock()), hour_of(at_ms))
        return hour, await self._key(hour)

    async def opening_key(self, hour: int) -> AESGCM:
        """The key of `hour` to open content with. Raises ContentUnavailable past retention."""
        await self.load([hour])
        aead = self._keys.get(hour)
        if aead is None:
            raise ContentUnavailable("the content is past retention or its key was purged")
        return aead

    async def _key(self, hour: int) -> AESGCM:
        aead = self._keys.get(hour)
        if aead is None:
            async with self._creating:  # one query per process, not one per waiting request
                aead = self._keys.get(hour)
                if aead is None:
                    aead = self._keys[hour] = AESGCM(await ensure(self._pool, self._ring, hour))
        return aead

    async def load(self, hours: Iterable[int]) -> None:
        """Fetch the keys `open` will need that are not cached (one query for a whole batch), and
        forget cached keys that left the retention window."""
        first = first_readable_hour(self._clock(), self._retention_days)
        for old in [h for h in self._keys if h < first]:
            del self._keys[old]
        missing = {h for h in hours if h >= first and h not in self._keys}
        if missing:
            for hour, key in (await fetch(self._pool, self._ring, missing)).items():
                self._keys[hour] = AESGCM(key)

    def open(self, sealed: SealedMessageV2) -> OutboundMessage:
        """The message in clear, from the keys `load` holds (never one past retention: `load`
        forgets those and does not fetch them). Raises ContentUnavailable."""
        aead = self._keys.get(sealed.content_key)
        if aead is None:
            raise ContentUnavailable("the content is past retention or its key was purged")
        return open_with(aead, sealed)
