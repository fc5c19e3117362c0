"""Campaigns for a tenant: create, upload the rows, estimate, start, pause, resume, cancel, read.

An upload validates every row as a batch item is validated (the HTTP layer decodes it; here the
template renders it), keeps the valid rows sealed under the content key of the hour the
campaign will send in, and records the refused ones by row number. It runs in one transaction
holding the campaign's row: it is all or nothing, and nothing else changes the campaign meanwhile.
Production is `herald_api.campaign_runner`'s.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import asyncpg
import msgspec

from herald import clock, metrics
from herald.caches import TTLCache
from herald.db import campaigns as store
from herald.db.campaigns import PricedGroup, StoredRow
from herald.db.content_keys import ContentKeys
from herald.domain.campaigns import (
    STATE_CHECK_SECONDS,
    Action,
    Campaign,
    CampaignSpec,
    CampaignState,
    Counts,
    Rejection,
    RowOutcome,
    after,
)
from herald.domain.limits import RecipientHasher
from herald.domain.models import DEFAULT_TTL_SECONDS, TIER_POLICIES, Category, Channel, KeyKind
from herald.domain.sends import SendRequest, not_before_ms
from herald.domain.status import Status
from herald.domain.templates import Template
from herald.domain.tenants import Tenant
from herald.errors import Conflict, FieldError, HeraldError, NotFound
from herald.sealing import seal_blob
from herald_api.services.sending import Sender

ROW_CONTENT = msgspec.msgpack.Encoder()
COUNTS_SECONDS = 1.0
"""How stale a campaign's message counts may be (one query per campaign per second per process)."""
RowItem = tuple[int, SendRequest | HeraldError]
"""A file's row, by number: what it asks to send, or why it cannot be read."""


def row_binding(campaign_id: uuid.UUID, row: int) -> bytes:
    """What a row's sealed content is bound to: it opens only as that campaign's that row."""
    return campaign_id.bytes + row.to_bytes(4, "big")


class CostLine(msgspec.Struct, frozen=True):
    country: str | None
    messages: int
    quantity: int
    unit_price_micros: int | None
    """None: the rate card has no price for it (the ledger would hold it pending)."""
    amount_micros: int


class Estimate(msgspec.Struct, frozen=True):
    channel: Channel
    category: Category
    billed: bool
    """Whether these messages are billed at all (a live key on a paid tier)."""
    currency: str | None
    lines: list[CostLine]
    total_micros: int
    messages: int
    new_recipients: int
    """Distinct recipients it adds to the tenant's rolling 24 h count."""
    daily_limit: int | None
    recipients_used_24h: int
    rate_per_second: float
    """The rate its rows are produced at: the tenant's, times `campaigns.rate_share`."""
    send_seconds: float
    """How long it takes to send at the tenant's rate."""
    ttl_seconds: int

    @property
    def outlasts_ttl(self) -> bool:
        return self.send_seconds > self.ttl_seconds

    @property
    def over_daily_limit(self) -> bool:
        return self.daily_limit is not None and self.recipients_used_24h + self.new_recipients > self.daily_limit


class Campaigns:
    def __init__(
        self, pool: asyncpg.Pool, sender: Sender, keys: ContentKeys, hasher: RecipientHasher, rate_share: float
    ) -> None:
        """`rate_share`: the part of the tenant's rate its campaigns are produced at (the rest
        is headroom for its other sends)."""
        self._pool = pool
        self._sender = sender
        self._keys = keys
        self._hasher = hasher
        self._rate_share = rate_share
        # A large campaign's counts group millions of rows; clients poll them every second or so.
        self._message_counts: TTLCache[uuid.UUID, dict[str, int]] = TTLCache(COUNTS_SECONDS)

    async def template(self, tenant: Tenant, name: str, language: str) -> Template:
        template = await self._sender.template(tenant.id, name, language)
        if template is None:
            raise NotFound(f"no template {name!r} in language {language!r}", code="template_not_found",
                           fields=(FieldError("template", "no such template"),))  # fmt: skip
        return template

    async def create(
        self, tenant: Tenant, key_kind: KeyKind, name: str, template_name: str, language: str,
        send_at: datetime | None, ttl_seconds: int | None,
    ) -> Campaign:  # fmt: skip
        template = await self.template(tenant, template_name, language)
        await self._sender.preparer(tenant, key_kind, template.channel, template_name, language)
        not_before_ms(send_at, clock.now_ms())  # raises invalid_send_at
        new = CampaignSpec(id=uuid.uuid4(), tenant_id=tenant.id, key_kind=key_kind, name=name,
                           template_name=template_name, template_language=language, send_at=send_at,
                           ttl_seconds=ttl_seconds)  # fmt: skip
        return await store.create(self._pool, new)

    async def get(self, tenant_id: uuid.UUID, campaign_id: uuid.UUID) -> Campaign:
        """Raises NotFound, also for another tenant's campaign."""
        campaign = await store.get(self._pool, tenant_id, campaign_id)
        if campaign is None:
            raise NotFound("no such campaign", code="campaign_not_found")
        return campaign

    async def listed(self, tenant_id: uuid.UUID, limit: int) -> list[Campaign]:
        return await store.listed(self._pool, tenant_id, limit)

    async def counts(self, campaign: Campaign) -> Counts:
        by_status = await self._message_counts.get(campaign.id, lambda: store.message_counts(self._pool, campaign.id))
        unqueued = campaign.unqueued if campaign.state is CampaignState.CANCELLED else 0
        queued = sum(by_status.get(s, 0) for s in (Status.ACCEPTED, Status.SENDING))
        return Counts(
            rows=campaign.rows_total, rejected=campaign.rejected, accepted=campaign.accepted,
            scheduled=by_status.get(Status.SCHEDULED, 0), queued=queued, sent=by_status.get(Status.SENT, 0),
            delivered=by_status.get(Status.DELIVERED, 0), read=by_status.get(Status.READ, 0),
            failed=by_status.get(Status.FAILED, 0), expired=by_status.get(Status.EXPIRED, 0),
            cancelled=by_status.get(Status.CANCELLED, 0) + unqueued,
        )  # fmt: skip

    async def upload(
        self, tenant: Tenant, campaign_id: uuid.UUID, items: AsyncIterator[Sequence[RowItem]]
    ) -> Campaign:
        """Replace a draft's rows with `items`' valid ones; the refused by row number. Raises
        NotFound, Conflict (`campaign_state`: only a draft takes rows), and whatever the file's
        reading raises (then nothing changed)."""
        async with self._pool.acquire() as conn, conn.transaction():
            campaign = await store.get(conn, tenant.id, campaign_id, lock=True)
            if campaign is None:
                raise NotFound("no such campaign", code="campaign_not_found")
            if campaign.state is not CampaignState.DRAFT:
                raise Conflict(f"the campaign is {campaign.state}: only a draft takes rows", code="campaign_state")
            template = await self.template(tenant, campaign.template_name, campaign.template_language)
            make = await self._sender.preparer(tenant, campaign.key_kind, template.channel,
                                               campaign.template_name, campaign.template_language)  # fmt: skip
            send_at_ms = 0 if campaign.send_at is None else int(campaign.send_at.timestamp() * 1000)
            hour, aead = await self._keys.sealing_key(send_at_ms)
            await store.clear_rows(conn, campaign_id, hour)
            total = refused = 0
            async for batch in items:
                now_ms = clock.now_ms()
                kept: list[StoredRow] = []
                rejected: list[Rejection] = []
                for row, item in batch:
                    total = max(total, row)
                    if isinstance(item, SendRequest):
                        try:
                            message = make(item, now_ms)
                        except HeraldError as exc:
                            item = exc
                        else:
                            plain = ROW_CONTENT.encode((message.to, item.params, item.reference))
                            kept.append(StoredRow(
                                row, message.country, message.segments, self._hasher.current(tenant.id, message.to),
                                seal_blob(aead, plain, row_binding(campaign_id, row)),
                            ))  # fmt: skip
                            continue
                    rejected.append(Rejection.of(row, item))
                if kept:
                    await store.copy_rows(conn, campaign_id, kept)
                if rejected:
                    await store.copy_rejections(conn, campaign_id, rejected)
                refused += len(rejected)
                metrics.CAMPAIGN_ROWS.labels(RowOutcome.KEPT.value).inc(len(kept))
                metrics.CAMPAIGN_ROWS.labels(RowOutcome.REFUSED_AT_UPLOAD.value).inc(len(rejected))
                await asyncio.sleep(0)  # a large file must not hold the loop from other requests
            return await store.uploaded(conn, campaign_id, total, refused)

    async def estimate(self, tenant: Tenant, campaign: Campaign) -> Estimate:
        """What the campaign's rows not yet queued would cost, add to the daily count, and take."""
        template = await self.template(tenant, campaign.template_name, campaign.template_language)
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            groups = await store.priced_groups(conn, campaign, template.channel, template.category, campaign.next_row)
            new, used = await store.recipients_to_add(conn, campaign, campaign.next_row)
        billed = campaign.key_kind is KeyKind.LIVE and TIER_POLICIES[tenant.tier].billed
        lines = [_line(g, billed) for g in groups]
        messages = sum(g.messages for g in groups)
        rate = tenant.limits.rate_per_second * self._rate_share
        return Estimate(
            channel=template.channel, category=template.category, billed=billed,
            currency=next((g.currency for g in groups if g.currency is not None), None), lines=lines,
            total_micros=sum(line.amount_micros for line in lines), messages=messages, new_recipients=new,
            daily_limit=tenant.limits.daily_recipients, recipients_used_24h=used,
            rate_per_second=rate, send_seconds=math.ceil(messages / rate * 10) / 10,
            ttl_seconds=campaign.ttl_seconds or DEFAULT_TTL_SECONDS[template.category],
        )  # fmt: skip

    async def act(self, tenant: Tenant, campaign_id: uuid.UUID, action: Action, accept_tail: bool = False) -> Campaign:
        """Apply `action`. Raises NotFound, Conflict (`campaign_state`; `campaign_empty`: no
        valid row; `campaign_outlasts_ttl` and `campaign_over_daily_limit` at start or resume,
        with the figures, unless `accept_tail`)."""
        campaign = await self.get(tenant.id, campaign_id)
        after(action, campaign.state, campaign.send_at, datetime.now(UTC))  # refuses before the estimate's work
        if action is Action.START and campaign.rows_total - campaign.rejected <= 0:
            raise Conflict("the campaign has no valid row to send (PUT its recipients)", code="campaign_empty")
        if action in (Action.START, Action.RESUME) and not accept_tail and not campaign.accept_tail:
            _refuse_tail(await self.estimate(tenant, campaign))
        async with self._pool.acquire() as conn, conn.transaction():
            locked = await store.get(conn, tenant.id, campaign_id, lock=True)
            assert locked is not None  # campaigns are never deleted
            state = after(action, locked.state, locked.send_at, datetime.now(UTC))
            changed = await store.set_state(conn, campaign_id, state, accept_tail=accept_tail)
        if action is Action.CANCEL:
            # Every worker re-reads a campaign's cancellation within STATE_CHECK_SECONDS of its
            # last read (plus that read's own time): once this answer is sent, none of them
            # starts a send of it.
            await asyncio.sleep(STATE_CHECK_SECONDS + 0.5)
        return changed

    async def rejections_csv(self, campaign: Campaign, page: int = 10_000) -> AsyncIterator[bytes]:
        """`row,code,field` for every refused row, in row order, a page of the table at a time."""
        yield b"row,code,field\r\n"
        last = 0
        while rows := await store.rejections(self._pool, campaign.id, last, page):
            yield "".join(f"{r.row},{r.code},{r.field or ''}\r\n" for r in rows).encode()
            last = rows[-1].row


def _line(group: PricedGroup, billed: bool) -> CostLine:
    price = group.unit_price_micros if billed else 0
    return CostLine(group.country, group.messages, group.quantity, price, (price or 0) * group.quantity)


def _refuse_tail(estimate: Estimate) -> None:
    if estimate.outlasts_ttl:
        raise Conflict(
            f"at {estimate.rate_per_second} msg/s the last message goes after {estimate.send_seconds:.0f} s, past its"
            f" TTL of {estimate.ttl_seconds} s: the tail would expire (start with accept_tail to send anyway)",
            code="campaign_outlasts_ttl", fields=(FieldError("accept_tail", "required to let the tail expire"),),
        )  # fmt: skip
    if estimate.over_daily_limit:
        raise Conflict(
            f"{estimate.new_recipients} new recipients on top of {estimate.recipients_used_24h} in the last 24 h pass"
            f" the limit of {estimate.daily_limit}: the rest would be refused (start with accept_tail to send anyway)",
            code="campaign_over_daily_limit", fields=(FieldError("accept_tail", "required to send past the limit"),),
        )  # fmt: skip
