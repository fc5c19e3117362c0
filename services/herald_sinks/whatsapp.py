"""The sweep of every connected account's templates: Meta's listing against what Herald holds.

Template reviews arrive as webhooks; a webhook lost (Herald down longer than Meta retries, a
subscription misconfigured) would leave a template `pending` for ever, or an approved one
sendable after Meta paused it. Every `whatsapp.template_sweep_seconds` the sinks list each
account's templates and apply any status or category that differs. An account whose token Meta
refuses is skipped (the worker suspends it on its next send).
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from herald import metrics
from herald.db import templates as template_store
from herald.db import whatsapp as accounts
from herald.db.pool import DATABASE_ERRORS
from herald.keyring import KeyRing, Unwrappable
from herald.runtime import ticks
from herald.whatsapp.graph import Graph, GraphError, GraphUnavailable
from herald.whatsapp.templates import category_of, status_of

log = logging.getLogger(__name__)


async def sweep_templates(pool: asyncpg.Pool, ring: KeyRing, graph: Graph) -> int:
    """One pass over every account; how many templates changed."""
    changed = 0
    for account in await accounts.everyone(pool):
        try:
            secrets = await accounts.secrets(pool, ring, account.tenant_id)
            if secrets is None:
                continue
            listed = await graph.list_templates(account.waba_id, secrets.access_token)
        except (GraphError, GraphUnavailable, Unwrappable) as exc:
            log.warning("whatsapp template sweep skipped an account", extra={"waba_id": account.waba_id,
                                                                             "error": type(exc).__name__})  # fmt: skip
            continue
        known = await template_store.provider_ids(pool, account.tenant_id)
        for template in listed:
            status = status_of(template.status)
            if template.id not in known or status is None:
                continue
            reason = template.rejected_reason if template.rejected_reason not in (None, "NONE") else None
            if await template_store.set_review(pool, account.tenant_id, template.id, status,
                                               category=category_of(template.category), reason=reason):  # fmt: skip
                metrics.WHATSAPP_TEMPLATE_REVIEWS.labels(status.value).inc()
                changed += 1
    return changed


async def run_template_sweep(
    pool: asyncpg.Pool, ring: KeyRing, graph: Graph, interval_seconds: float, stop: asyncio.Event
) -> None:
    async for _ in ticks(interval_seconds, stop):
        try:
            if changed := await sweep_templates(pool, ring, graph):
                log.info("whatsapp template sweep applied changes a webhook had not", extra={"count": changed})
        except DATABASE_ERRORS as exc:
            log.warning("whatsapp template sweep failed; will retry", extra={"error": type(exc).__name__})
