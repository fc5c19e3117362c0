"""What the worker notes in Postgres so that a record read again is not handled twice, as one
interface (`ClaimStore`) the admission and delivery parts take; `PostgresClaims` is the real one,
a test passes a fake.

Every call waits out a database outage (`until_written`): a worker whose database is away holds
its records, uncommitted, and never decides anything without the notes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Protocol

import asyncpg

from herald.db import claims
from herald.db.claims import Deferral, RetryKey, Source
from herald.db.pool import until_written


class ClaimStore(Protocol):
    async def claim(self, sources: Sequence[Source]) -> set[Source]:
        """Claim each id; the sources whose id a *different* record claimed (repeats)."""
        ...

    async def retries_done(self, keys: Sequence[RetryKey]) -> set[RetryKey]:
        """The herald.retry keys already handled."""
        ...

    async def retry_done(self, key: RetryKey) -> None:
        """Note a herald.retry key handled (before its offset may be committed)."""
        ...

    async def note_deferred(self, deferrals: Sequence[Deferral]) -> None:
        """Note records about to be deferred, before their copies are published."""
        ...

    async def deferred_from(self, starts: Sequence[tuple[str, int, int]]) -> list[Deferral]:
        """The notes of each (topic, partition) from its start offset on."""
        ...


class PostgresClaims:
    """`ClaimStore` on `herald.db.claims`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def claim(self, sources: Sequence[Source]) -> set[Source]:
        return await until_written(partial(claims.claim, self._pool, list(sources)))

    async def retries_done(self, keys: Sequence[RetryKey]) -> set[RetryKey]:
        return await until_written(partial(claims.retries_done, self._pool, list(keys)))

    async def retry_done(self, key: RetryKey) -> None:
        await until_written(partial(claims.retry_done, self._pool, key))

    async def note_deferred(self, deferrals: Sequence[Deferral]) -> None:
        await until_written(partial(claims.note_deferred, self._pool, list(deferrals)))

    async def deferred_from(self, starts: Sequence[tuple[str, int, int]]) -> list[Deferral]:
        return await until_written(partial(claims.deferred_from, self._pool, list(starts)))
