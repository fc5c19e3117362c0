"""Drain on SIGTERM: the one shutdown contract every consumer keeps (the worker and each sink)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from typing import Any

from herald.kafka.offsets import Committer

log = logging.getLogger(__name__)


async def drain(
    stop_intake: Callable[[], None],
    in_hand: Collection[asyncio.Future[Any]],
    committer: Committer[Any],
    deadline_seconds: float,
    *,
    group: str,
) -> None:
    """Stop taking records, give the work in hand `deadline_seconds` to finish, commit what finished.

    After `stop_intake()` nothing new may start. Work still running at the deadline is cancelled:
    its records stay uncommitted and the partition's next owner reads them again, which every
    consumer's effects absorb (idempotent on the message id; a send cut off in flight may go
    twice, bounded by what was in hand). `group` (unprefixed) names the consumer in the log line.
    """
    stop_intake()
    if in_hand:
        _, pending = await asyncio.wait(in_hand, timeout=deadline_seconds)
        if pending:
            log.warning(
                "drain deadline passed with work in hand; its records will be read again",
                extra={"group": group, "count": len(pending), "deadline_seconds": deadline_seconds},
            )
            for work in pending:
                work.cancel()
            await asyncio.wait(pending)
    await committer.commit()
