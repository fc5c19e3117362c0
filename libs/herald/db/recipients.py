"""Rolling 24 h unique-recipient reservations (free/standard tiers and unverified tenants).

`reserve` is one statement, its own transaction, that takes a per-tenant advisory lock, so
concurrent API processes admit new recipients one tenant at a time and never overshoot the
limit; the lock is held while the database works, never across a round trip to an API process
(when it was, one large tenant's requests queued behind each other's round trips). The caller
commits before producing and keeps the reservation if the produce fails (a
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


def purgeable_before(now: datetime) -> datetime:
    """Recipient rows last sent at or before this may be deleted (`herald.db.retention`)."""
    return now - timedelta(seconds=WINDOW_SECONDS) - KEPT_PAST_WINDOW


class Reservation(msgspec.Struct, frozen=True):
    admitted: list[bool]
    """Per message, in order."""
    retry_after_seconds: int
    """When a rejected recipient could next be admitted (the oldest in-window entry ages out)."""


async def reserve(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, candidates: Sequence[Sequence[bytes]], limit: int, now: datetime
) -> Reservation:
    """`candidates[i]` are message i's recipient hashes under every key, the current key's first
    (`RecipientHasher.candidates`): a recipient reserved under an earlier key is the same
    recipient, refreshed under that hash; a new one is written under the current key. One
    statement, committed when it returns (`herald_reserve_recipients`, migration 0033)."""
    row = await pool.fetchrow(
        "SELECT admitted, retry_after_seconds FROM herald_reserve_recipients($1, $2, $3, $4, $5, $6, $7)",
        tenant_id, [i for i, hashes in enumerate(candidates) for _ in hashes],
        [h for hashes in candidates for h in hashes], limit, now, timedelta(seconds=WINDOW_SECONDS), RECOUNT_AFTER,
    )  # fmt: skip
    assert row is not None
    admitted = set(row["admitted"])
    return Reservation([i in admitted for i in range(len(candidates))], row["retry_after_seconds"])


async def used(pool: asyncpg.Pool, tenant_id: uuid.UUID, now: datetime) -> int:
    since = now - timedelta(seconds=WINDOW_SECONDS)
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM tenant_recipients WHERE tenant_id = $1 AND last_sent_at > $2", tenant_id, since
        )
    )
