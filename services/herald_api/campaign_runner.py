"""The campaign producer: each API process produces the rows of running campaigns it holds.

A campaign is held by lease (`herald.db.campaigns.claim`), so a campaign is produced by one
process at a time and taken over by another when its holder dies (the lease lapses). Rows are
produced at the tenant's rate times `campaigns.rate_share`, in the order of the file, through
the same accept path as the API's sends; each row's message id derives from the campaign and
the row (`row_key`), so rows produced again after a crash, before the cursor moved, are the same
messages, which the worker delivers once. Template-wide refusals (the template paused or
disabled, the account disconnected) pause the campaign instead of refusing every row.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import msgspec
from aiokafka.errors import KafkaError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald import clock, metrics
from herald.db import campaigns as store
from herald.db.campaigns import StoredRow
from herald.db.content_keys import ContentKeys
from herald.domain.campaigns import Campaign, CampaignState, Rejection, RowOutcome, row_key
from herald.domain.records import OutboundMessage
from herald.domain.sends import SendRequest
from herald.domain.tenants import Tenant
from herald.errors import HeraldError, NotFound, Unavailable
from herald.sealing import ContentUnavailable, open_blob
from herald_api.services.campaigns import row_binding
from herald_api.services.sending import Sender
from herald_api.settings import CampaignSettings

log = logging.getLogger(__name__)
_ROW = msgspec.msgpack.Decoder(tuple[str, dict[str, str], str | None])
_FAILURES = (asyncpg.PostgresError, OSError, TimeoutError, KafkaError, Unavailable)


@dataclass(frozen=True)
class _Parts:
    """What producing a campaign uses; `owner` names this process's leases."""

    pool: asyncpg.Pool
    sender: Sender
    keys: ContentKeys
    settings: CampaignSettings
    tenant: Callable[[uuid.UUID], Awaitable[Tenant | None]]
    owner: uuid.UUID


class CampaignRunner:
    def __init__(
        self, pool: asyncpg.Pool, sender: Sender, keys: ContentKeys, settings: CampaignSettings,
        tenant: Callable[[uuid.UUID], Awaitable[Tenant | None]],
    ) -> None:  # fmt: skip
        self._parts = _Parts(pool, sender, keys, settings, tenant, uuid.uuid4())
        self._producing: dict[uuid.UUID, asyncio.Task[None]] = {}
        metrics.every_series(metrics.CAMPAIGN_ROWS, RowOutcome)

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`: take due campaigns (up to `max_concurrent`) and produce each in its own task."""
        p = self._parts
        try:
            while not stop.is_set():
                if len(self._producing) < p.settings.max_concurrent:
                    try:
                        campaign = await store.claim(p.pool, p.owner, p.settings.lease_seconds)
                    except _FAILURES as exc:
                        log.warning("campaigns not claimed this round", extra={"error": type(exc).__name__})
                        campaign = None
                    if campaign is not None:
                        task = asyncio.create_task(self._produce(campaign), name=f"campaign-{campaign.id}")
                        self._producing[campaign.id] = task
                        task.add_done_callback(functools.partial(self._done, campaign.id))
                        metrics.CAMPAIGNS_PRODUCING.inc()
                        continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), p.settings.poll_seconds)
        finally:
            tasks = list(self._producing.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _done(self, campaign_id: uuid.UUID, _: asyncio.Task[None]) -> None:
        self._producing.pop(campaign_id, None)

    async def _produce(self, campaign: Campaign) -> None:
        try:
            await _Production(self._parts, campaign).run()
        except asyncio.CancelledError:
            raise
        except Exception:  # one campaign's failure must not stop the others; its lease lapses
            log.exception("campaign production failed", extra={"campaign": str(campaign.id)})
        finally:
            metrics.CAMPAIGNS_PRODUCING.dec()
            with contextlib.suppress(*_FAILURES):
                await store.release(self._parts.pool, campaign.id, self._parts.owner)


class _Production:
    """One lease's production of one campaign: the cursor, the tokens, the content key."""

    def __init__(self, parts: _Parts, campaign: Campaign) -> None:
        self._p = parts
        self._campaign = campaign
        self._next = campaign.next_row
        self._tokens = 0.0
        self._filled = time.monotonic()

    async def run(self) -> None:
        c = self._campaign
        settings = self._p.settings
        if c.content_key is None:
            return
        try:
            aead = await self._p.keys.opening_key(c.content_key)
        except ContentUnavailable:
            log.error("campaign rows past retention: cancelling it", extra={"campaign": str(c.id)})
            await self._finish_unreadable()
            return
        while True:
            tenant = await self._p.tenant(c.tenant_id)
            if tenant is None or tenant.suspended:
                await asyncio.sleep(settings.poll_seconds)
                if not await self._renew():
                    return
                continue
            take = await self._take(tenant.limits.rate_per_second * settings.rate_share)
            rows = await store.next_rows(self._p.pool, c.id, self._next, take)
            finished = len(rows) < take
            try:
                queued, refused = await self._queue(tenant, rows, aead)
            except HeraldError as exc:
                if isinstance(exc, Unavailable):
                    await asyncio.sleep(exc.retry_after or 1)
                    continue
                log.warning("campaign paused: its template cannot be sent",
                            extra={"campaign": str(c.id), "code": exc.code})  # fmt: skip
                await self._pause()
                return
            next_row = rows[-1].row_no + 1 if rows else self._next
            state = await store.advance(self._p.pool, c.id, self._p.owner, next_row, queued, refused,
                                        settings.lease_seconds, finished=finished)  # fmt: skip
            metrics.CAMPAIGN_ROWS.labels(RowOutcome.QUEUED.value).inc(queued)
            metrics.CAMPAIGN_ROWS.labels(RowOutcome.REFUSED_AT_SEND.value).inc(len(refused))
            self._next = next_row
            if state is not CampaignState.SENDING or finished:
                return

    async def _take(self, rate: float) -> int:
        """Wait for at least one token at `rate` per second; how many rows to produce now."""
        rate = max(rate, 0.1)
        burst = max(1.0, rate * 0.5)
        while True:
            now = time.monotonic()
            self._tokens = min(burst, self._tokens + (now - self._filled) * rate)
            self._filled = now
            if self._tokens >= 1:
                take = min(int(self._tokens), self._p.settings.chunk_rows)
                self._tokens -= take
                return take
            await asyncio.sleep((1 - self._tokens) / rate)

    async def _queue(self, tenant: Tenant, rows: list[StoredRow], aead: AESGCM) -> tuple[int, list[Rejection]]:
        c = self._campaign
        if not rows:
            return 0, []
        template = await self._p.sender.template(tenant.id, c.template_name, c.template_language)
        if template is None:
            raise NotFound("the campaign's template no longer exists", code="template_not_found")
        make = await self._p.sender.preparer(
            tenant, c.key_kind, template.channel, c.template_name, c.template_language
        )
        now_ms = clock.now_ms()
        messages: list[OutboundMessage] = []
        numbers: list[int] = []
        refused: list[Rejection] = []
        for row in rows:
            to, params, reference = _ROW.decode(open_blob(aead, row.content, row_binding(c.id, row.row_no)))
            request = SendRequest(to, template.channel, c.template_name, c.template_language, params, reference,
                                  c.ttl_seconds, row_key(c.id, row.row_no), campaign_id=c.id)  # fmt: skip
            try:
                messages.append(make(request, now_ms))
                numbers.append(row.row_no)
            except HeraldError as exc:
                refused.append(Rejection.of(row.row_no, exc))
        outcomes = await self._p.sender.accept_many(tenant, messages)
        queued = 0
        for number, outcome in zip(numbers, outcomes, strict=True):
            if isinstance(outcome, HeraldError):
                refused.append(Rejection.of(number, outcome))
            else:
                queued += 1
        return queued, refused

    async def _renew(self) -> bool:
        state = await store.advance(self._p.pool, self._campaign.id, self._p.owner, self._next, 0, [],
                                    self._p.settings.lease_seconds, finished=False)  # fmt: skip
        return state is CampaignState.SENDING

    async def _pause(self) -> None:
        async with self._p.pool.acquire() as conn, conn.transaction():
            locked = await store.get(conn, self._campaign.tenant_id, self._campaign.id, lock=True)
            if locked is not None and locked.state is CampaignState.SENDING:
                await store.set_state(conn, self._campaign.id, CampaignState.PAUSED)

    async def _finish_unreadable(self) -> None:
        async with self._p.pool.acquire() as conn, conn.transaction():
            await store.set_state(conn, self._campaign.id, CampaignState.CANCELLED)
