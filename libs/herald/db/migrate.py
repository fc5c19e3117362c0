"""Forward-only SQL migrations, applied in file-name order under an advisory lock.

Safe to run from several processes at once (`herald dev` and a test fixture may race): the lock
serialises them and each file runs in its own transaction with its version recorded. A database
without a rate card gets the one shipped with Herald, so every billable message has a price.
"""

from __future__ import annotations

import logging
from importlib import resources

import asyncpg

from herald.db.billing import ensure_default_rate_card

log = logging.getLogger(__name__)
_LOCK_ID = 0x4845524C  # "HERL"


def _migrations() -> list[tuple[int, str, str]]:
    folder = resources.files("herald.db").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.name, entry.read_text()))
    return sorted(found)


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; returns the file names applied."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations"
            " (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for version, name, sql in _migrations():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            applied.append(name)
            log.info("applied migration", extra={"migration": name})
        if await ensure_default_rate_card(conn) is not None:
            log.info("installed the default rate card")
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
        await conn.close()
