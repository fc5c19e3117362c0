"""Rolling 24 h unique-recipient reservations (free/standard tiers and unverified tenants).

`reserve` runs inside the caller's transaction and takes a per-tenant advisory lock, so
concurrent API processes admit new recipients one tenant at a time and never overshoot the
limit. The caller commits before producing and keeps the reservation if the produce fails (a
retry of the same recipient is then admitted without counting again). Unlimited tenants never
come here (no database round trip).

How many recipients the window holds is kept per tenant (`tenant_recipient_windows`): exact at
the last reservation's window start, and brought forward by counting only the recipients whose
last send fell between that start and this one's (a count over the whole window is a scan of up
to the tier's limit, 100,000 rows, on every request, which was most of the database's work for a
large standard tenant). That needs the rows it counts to exist: retention keeps them for
`KEPT_PAST_WINDOW` beyond the window (`purgeable_before`), and a window count older than
`RECOUNT_AFTER` is recounted whole instead of brought forward.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import msgspec

from herald.domain.limits import WINDOW_SECONDS

KEPT_PAST_WINDOW = timedelta(hours=1)
"""Retention deletes a recipient only this long after it left the window (`purgeable_before`)."""
RECOUNT_AFTER = timedelta(minutes=30)
"""A stored count whose window start is further than this from the new one is recounted whole:
the rows between the two may have been purged (well inside `KEPT_PAST_WINDOW`, which leaves
room for API hosts' clocks to disagree)."""

# The recipients already in the window among the candidates, and how many the window holds: the
# stored count brought forward (or back, if this host's clock is behind the last writer's) by
# the rows between its start and this one, or, with no usable stored count, a count of them all.
# COALESCE evaluates its second argument only when the first is null.
_READ = """
WITH stored AS (
    SELECT since, used FROM tenant_recipient_windows
    WHERE tenant_id = $1 AND since BETWEEN $3::timestamptz - $4::interval AND $3::timestamptz + $4::interval
)
SELECT
    ARRAY(SELECT recipient_hash FROM tenant_recipients
          WHERE tenant_id = $1 AND recipient_hash = ANY($2::bytea[]) AND last_sent_at > $3) AS stored,
    coalesce(
        (SELECT s.used - sign(extract(epoch FROM $3 - s.since))::int * (
             SELECT count(*) FROM tenant_recipients
             WHERE tenant_id = $1 AND last_sent_at > least(s.since, $3) AND last_sent_at <= greatest(s.since, $3))
         FROM stored s),
        (SELECT count(*) FROM tenant_recipients WHERE tenant_id = $1 AND last_sent_at > $3)
    )::int AS used
"""

# The chosen recipients' last send is now, and the window holds `used` from `since`.
_WRITE = """
WITH sent AS (
    INSERT INTO tenant_recipients (tenant_id, recipient_hash, last_sent_at)
    SELECT $1, h, $3 FROM unnest($2::bytea[]) h
    ON CONFLICT (tenant_id, recipient_hash) DO UPDATE SET last_sent_at = excluded.last_sent_at
)
INSERT INTO tenant_recipient_windows (tenant_id, since, used) VALUES ($1, $4, $5)
ON CONFLICT (tenant_id) DO UPDATE SET since = excluded.since, used = excluded.used
"""


def purgeable_before(now: datetime) -> datetime:
    """Recipient rows last sent at or before this may be deleted (`herald.db.retention`)."""
    return now - timedelta(seconds=WINDOW_SECONDS) - KEPT_PAST_WINDOW


class Reservation(msgspec.Struct, frozen=True):
    admitted: list[bool]
    """Per message, in order."""
    retry_after_seconds: int
    """When a rejected recipient could next be admitted (the oldest in-window entry ages out)."""


async def reserve(
    conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
    tenant_id: uuid.UUID,
    candidates: Sequence[Sequence[bytes]],
    limit: int,
    now: datetime,
) -> Reservation:
    """`candidates[i]` are message i's recipient hashes under every key, the current key's first
    (`RecipientHasher.candidates`): a recipient reserved under an earlier key is the same
    recipient, refreshed under that hash; a new one is written under the current key."""
    since = now - timedelta(seconds=WINDOW_SECONDS)
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", str(tenant_id))
    every_hash = list({h for hashes in candidates for h in hashes})
    row = await conn.fetchrow(_READ, tenant_id, every_hash, since, RECOUNT_AFTER)
    assert row is not None
    stored: set[bytes] = set(row["stored"])
    used: int = row["used"]
    admitted: list[bool] = []
    chosen: set[bytes] = set()
    for hashes in candidates:
        known = next((h for h in hashes if h in stored), None)
        if known is None and used < limit:
            known = hashes[0]
            stored.add(known)
            used += 1
        if known is not None:
            chosen.add(known)
        admitted.append(known is not None)
    if chosen:
        # Without a write the stored count stays exact at its own start: nothing changed.
        await conn.execute(_WRITE, tenant_id, list(chosen), now, since, used)
    retry_after = 0
    if not all(admitted):
        oldest = await conn.fetchval(
            "SELECT min(last_sent_at) FROM tenant_recipients WHERE tenant_id = $1 AND last_sent_at > $2",
            tenant_id,
            since,
        )
        retry_after = max(1, math.ceil(((oldest or now) - since).total_seconds()))
    return Reservation(admitted=admitted, retry_after_seconds=retry_after)


async def used(pool: asyncpg.Pool, tenant_id: uuid.UUID, now: datetime) -> int:
    since = now - timedelta(seconds=WINDOW_SECONDS)
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM tenant_recipients WHERE tenant_id = $1 AND last_sent_at > $2", tenant_id, since
        )
    )
