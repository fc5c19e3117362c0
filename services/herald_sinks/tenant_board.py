"""Which tenant: the tenants with the most undelivered messages, the slowest deliveries and the
oldest waiting callbacks, as gauges naming at most `metrics.SHOWN_TENANTS` tenants each.

With 10,000 tenants a per-tenant series of every metric would be 10,000 times the series; an SRE
asking "which tenant?" needs the few worst, so each gauge names only those, and a tenant that
leaves the top loses its series. Undelivered counts and delivery times come from what this
process's status projection applied (its partitions: every process names its own worst, and a
tenant that fails much fails in every partition, so `sum by (tenant)` ranks it right); the
callback backlog comes from the outbox in the database, the same in every process.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import time
import uuid
from collections.abc import Callable, Iterable

import asyncpg
from prometheus_client import Gauge

from herald import metrics
from herald.db import callbacks
from herald.db.messages import Transition
from herald.db.pool import DATABASE_ERRORS
from herald.domain.status import Status
from herald.runtime import ticks

log = logging.getLogger(__name__)
WINDOW_MINUTES = 15
MIN_DELIVERED = 20
"""Below this many deliveries in the window a tenant's mean delivery time says little."""
EXPORT_SECONDS = 10.0


class _Tally:
    __slots__ = ("delivered", "seconds", "undelivered")

    def __init__(self) -> None:
        self.undelivered = self.delivered = 0
        self.seconds = 0.0


class TenantBoard:
    """Final statuses per tenant in one-minute bins over the last `WINDOW_MINUTES`: memory is
    the tenants active in the window, times the bins."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._bins: collections.deque[tuple[int, dict[uuid.UUID, _Tally]]] = collections.deque()
        self._exported_at = float("-inf")

    def add(self, transitions: Iterable[Transition]) -> None:
        minute = int(self._clock() // 60)
        if not self._bins or self._bins[-1][0] != minute:
            self._bins.append((minute, {}))
        while self._bins[0][0] <= minute - WINDOW_MINUTES:
            self._bins.popleft()
        tallies = self._bins[-1][1]
        for t in transitions:
            if t.status is Status.DELIVERED:
                tally = tallies.setdefault(t.tenant_id, _Tally())
                tally.delivered += 1
                tally.seconds += t.seconds_since_accepted
            elif t.status in (Status.FAILED, Status.EXPIRED):
                tallies.setdefault(t.tenant_id, _Tally()).undelivered += 1
        if self._clock() - self._exported_at >= EXPORT_SECONDS:
            self.export()

    def worst(self) -> tuple[list[tuple[uuid.UUID, int]], list[tuple[uuid.UUID, float]]]:
        """The tenants with the most undelivered messages, and the slowest (mean accepted ->
        delivered seconds, with `MIN_DELIVERED` or more), worst first, `SHOWN_TENANTS` each."""
        summed: dict[uuid.UUID, _Tally] = {}
        horizon = int(self._clock() // 60) - WINDOW_MINUTES
        for minute, tallies in self._bins:
            if minute <= horizon:
                continue
            for tenant, tally in tallies.items():
                total = summed.setdefault(tenant, _Tally())
                total.undelivered += tally.undelivered
                total.delivered += tally.delivered
                total.seconds += tally.seconds
        shown = metrics.SHOWN_TENANTS
        undelivered = ((t, s.undelivered) for t, s in summed.items() if s.undelivered)
        slow = ((t, s.seconds / s.delivered) for t, s in summed.items() if s.delivered >= MIN_DELIVERED)
        return heapq.nlargest(shown, undelivered, key=lambda x: x[1]), heapq.nlargest(shown, slow, key=lambda x: x[1])

    def export(self) -> None:
        self._exported_at = self._clock()
        undelivered, slow = self.worst()
        self._show(metrics.TENANT_UNDELIVERED, {str(t): float(n) for t, n in undelivered})
        self._show(metrics.TENANT_MEAN_FINAL_SECONDS, {str(t): s for t, s in slow})

    async def report_callbacks(self, pool: asyncpg.Pool) -> None:
        backlog = await callbacks.backlog(pool, metrics.SHOWN_TENANTS)
        metrics.CALLBACKS_PENDING.set(backlog.pending)
        self._show(metrics.TENANT_CALLBACKS_PENDING, {str(t.tenant_id): float(t.pending) for t in backlog.worst})
        self._show(metrics.TENANT_CALLBACKS_RETRYING, {str(t.tenant_id): float(t.retrying) for t in backlog.worst})
        self._show(metrics.TENANT_CALLBACK_OLDEST_SECONDS, {str(t.tenant_id): t.oldest_seconds for t in backlog.worst})

    @staticmethod
    def _show(gauge: Gauge, values: dict[str, float]) -> None:
        # Replaced whole: a tenant that left the top loses its series. No scrape sees the gauge
        # empty between the two, because /metrics is served on this same event loop.
        gauge.clear()
        for tenant, value in values.items():
            gauge.labels(tenant).set(value)


async def run_callback_report(
    board: TenantBoard, pool: asyncpg.Pool, interval_seconds: float, stop: asyncio.Event
) -> None:
    async for _ in ticks(interval_seconds, stop):
        try:
            board.export()  # also when no final status came for a while: old bins leave
            await board.report_callbacks(pool)
        except DATABASE_ERRORS as exc:
            log.warning("callback backlog not read; will retry", extra={"error": type(exc).__name__})
