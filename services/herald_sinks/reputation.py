"""Each tenant's email complaint rate over the last day, for the SRE's alert: mailbox providers
(Gmail, Yahoo) throttle and junk a bulk sender whose complaints pass 0.3%."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from herald import metrics
from herald.db.email_reputation import complaints_since
from herald.db.pool import DATABASE_ERRORS
from herald.runtime import ticks

log = logging.getLogger(__name__)
WINDOW = timedelta(days=1)
MIN_DELIVERED = 100
"""Below this much mail in the window a ratio says nothing (one complaint in ten is not a trend)."""


async def report_complaint_rates(pool: asyncpg.Pool, shown: set[str]) -> None:
    """Set the gauge for every tenant with complaints and enough mail; drop the series of the
    tenants in `shown` that no longer qualify; `shown` becomes the tenants shown now."""
    found = await complaints_since(pool, datetime.now(UTC) - WINDOW)
    current = {str(c.tenant_id): c.complaints / c.delivered for c in found if c.delivered >= MIN_DELIVERED}
    for tenant in shown - current.keys():
        metrics.EMAIL_COMPLAINT_RATIO.remove(tenant)
    for tenant, ratio in current.items():
        metrics.EMAIL_COMPLAINT_RATIO.labels(tenant).set(ratio)
    shown.clear()
    shown.update(current)


async def run_complaint_report(pool: asyncpg.Pool, interval_seconds: float, stop: asyncio.Event) -> None:
    shown: set[str] = set()
    async for _ in ticks(interval_seconds, stop):
        try:
            await report_complaint_rates(pool, shown)
        except DATABASE_ERRORS as exc:
            log.warning("complaint rates not computed; will retry", extra={"error": type(exc).__name__})
