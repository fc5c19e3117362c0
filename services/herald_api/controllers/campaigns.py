"""Campaigns: a template sent to every row of an uploaded file (`herald.domain.campaigns`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.response import Stream

from herald.domain.campaigns import Action, Campaign, Counts
from herald.domain.models import Channel
from herald.errors import FieldError, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from herald_api.auth import TENANT_AUTH, Principal
from herald_api.campaign_files import CSV, PARQUET, FileRow, csv_rows, parquet_rows
from herald_api.controllers.messages import decode_item
from herald_api.deps import Services
from herald_api.downloads import attachment
from herald_api.schemas import (
    CampaignCounts,
    CampaignCreate,
    CampaignList,
    CampaignOut,
    CampaignStart,
    CostLineOut,
    EstimateOut,
    TemplateRef,
)
from herald_api.services.campaigns import RowItem


def _out(campaign: Campaign, counts: Counts) -> CampaignOut:
    return CampaignOut(
        id=campaign.id, name=campaign.name,
        template=TemplateRef(campaign.template_name, campaign.template_language), state=campaign.state.value,
        send_at=campaign.send_at, ttl_seconds=campaign.ttl_seconds, created_at=campaign.created_at,
        started_at=campaign.started_at, finished_at=campaign.finished_at, cancelled_at=campaign.cancelled_at,
        counts=msgspec.convert(counts, CampaignCounts, from_attributes=True),
    )  # fmt: skip


async def _items(
    rows: AsyncIterator[list[FileRow]], channel: Channel, campaign: Campaign
) -> AsyncIterator[Sequence[RowItem]]:
    """Each row as the batch item it stands for, validated as one (`decode_item`)."""
    template = {"name": campaign.template_name, "language": campaign.template_language}
    async for batch in rows:
        items: list[RowItem] = []
        for row in batch:
            if row.problem is not None:
                items.append((row.row, InvalidRequest("the row's cells do not match the header", code=row.problem)))
                continue
            item: dict[str, Any] = {"to": row.to, "channel": channel.value, "template": template, "params": row.params}
            if row.reference is not None:
                item["reference"] = row.reference
            if campaign.ttl_seconds is not None:
                item["ttl_seconds"] = campaign.ttl_seconds
            items.append((row.row, decode_item(item)))
        yield items


class CampaignController(Controller):
    path = "/v1/campaigns"
    tags = ["campaigns"]
    middleware = [TENANT_AUTH]

    async def _view(self, svc: Services, campaign: Campaign) -> CampaignOut:
        return _out(campaign, await svc.campaigns.counts(campaign))

    @post("/", status_code=201, summary="Create a draft campaign of one template; its rows come next")
    async def create(
        self, data: JSONBody[CampaignCreate], request: Request[Principal, None, State], svc: NamedDependency[Services]
    ) -> CampaignOut:
        principal = request.user
        campaign = await svc.campaigns.create(
            principal.tenant, principal.key_kind, data.name, data.template.name, data.template.language,
            data.send_at, data.ttl_seconds,
        )  # fmt: skip
        return await self._view(svc, campaign)

    @get("/", summary="The tenant's campaigns, newest first")
    async def list_campaigns(
        self, principal: NamedDependency[Principal], svc: NamedDependency[Services],
        limit: FromQuery[Annotated[int, Parameter(ge=1, le=200)]] = 50,
    ) -> CampaignList:  # fmt: skip
        found = await svc.campaigns.listed(principal.tenant.id, limit)
        return CampaignList(items=[await self._view(svc, c) for c in found])

    @get("/{campaign_id:uuid}", summary="A campaign: its state and live counts")
    async def read(
        self, campaign_id: FromPath[uuid.UUID], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> CampaignOut:
        return await self._view(svc, await svc.campaigns.get(principal.tenant.id, campaign_id))

    @put(
        "/{campaign_id:uuid}/recipients",
        status_code=200,
        request_max_body_size=None,
        summary="Upload a draft's rows: CSV (`text/csv`, UTF-8, a header row) or Parquet; replaces any before",
        description="Columns: `to`, optional `reference`, and the template's params by name. Streamed, up to"
        " 10,000,000 rows. Each row is validated as a batch item: the refused ones are listed by row number at"
        " `GET .../rejections`. All or nothing: a failed upload leaves the draft as it was.",
    )  # fmt: skip
    async def upload(
        self, campaign_id: FromPath[uuid.UUID], request: Request[Principal, None, State],
        svc: NamedDependency[Services],
    ) -> CampaignOut:  # fmt: skip
        principal = request.user
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        campaign = await svc.campaigns.get(principal.tenant.id, campaign_id)
        template = await svc.campaigns.template(principal.tenant, campaign.template_name, campaign.template_language)
        limit = svc.settings.campaigns.max_upload_bytes
        body = _bounded(request.stream(), limit)
        if media == CSV:
            rows = csv_rows(body)
        elif media in PARQUET:
            rows = parquet_rows(body, svc.settings.campaigns.spool_dir)
        else:
            raise UnsupportedMediaType(f"send text/csv or {PARQUET[0]}", code="unsupported_media_type",
                                       fields=(FieldError("content-type", "not a recipients file type"),))  # fmt: skip
        updated = await svc.campaigns.upload(principal.tenant, campaign_id, _items(rows, template.channel, campaign))
        return await self._view(svc, updated)

    @get("/{campaign_id:uuid}/rejections", summary="The refused rows as CSV: row number, problem code, field")
    async def rejections(
        self, campaign_id: FromPath[uuid.UUID], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> Stream:
        campaign = await svc.campaigns.get(principal.tenant.id, campaign_id)
        return Stream(svc.campaigns.rejections_csv(campaign), media_type="text/csv",
                      headers=attachment(f"campaign-{campaign.id}-rejections.csv"))  # fmt: skip

    @get("/{campaign_id:uuid}/estimate",
         summary="Before it starts: cost, recipients added to the daily limit, time at the tenant's rate")  # fmt: skip
    async def estimate(
        self, campaign_id: FromPath[uuid.UUID], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> EstimateOut:
        campaign = await svc.campaigns.get(principal.tenant.id, campaign_id)
        e = await svc.campaigns.estimate(principal.tenant, campaign)
        return EstimateOut(
            channel=e.channel, category=e.category, billed=e.billed, currency=e.currency,
            lines=[msgspec.convert(line, CostLineOut, from_attributes=True) for line in e.lines],
            total_micros=e.total_micros, messages=e.messages, new_recipients=e.new_recipients,
            recipients_used_24h=e.recipients_used_24h, daily_recipient_limit=e.daily_limit,
            rate_per_second=e.rate_per_second, send_seconds=e.send_seconds, ttl_seconds=e.ttl_seconds,
            outlasts_ttl=e.outlasts_ttl, over_daily_limit=e.over_daily_limit,
        )  # fmt: skip

    async def _act(self, svc: Services, principal: Principal, campaign_id: uuid.UUID, action: Action,
                   accept_tail: bool = False) -> CampaignOut:  # fmt: skip
        return await self._view(svc, await svc.campaigns.act(principal.tenant, campaign_id, action, accept_tail))

    @post("/{campaign_id:uuid}/start", status_code=200,
          summary="Start now, or at `send_at`; refused when the tail would expire or pass the daily limit")  # fmt: skip
    async def start(
        self, campaign_id: FromPath[uuid.UUID], principal: NamedDependency[Principal], svc: NamedDependency[Services],
        data: JSONBody[CampaignStart | None] = None,
    ) -> CampaignOut:  # fmt: skip
        return await self._act(svc, principal, campaign_id, Action.START, data is not None and data.accept_tail)

    @post("/{campaign_id:uuid}/pause", status_code=200, summary="Stop producing its messages until resumed")
    async def pause(
        self, campaign_id: FromPath[uuid.UUID], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> CampaignOut:
        return await self._act(svc, principal, campaign_id, Action.PAUSE)

    @post("/{campaign_id:uuid}/resume", status_code=200, summary="Go on where it paused")
    async def resume(
        self, campaign_id: FromPath[uuid.UUID], principal: NamedDependency[Principal], svc: NamedDependency[Services],
        data: JSONBody[CampaignStart | None] = None,
    ) -> CampaignOut:  # fmt: skip
        return await self._act(svc, principal, campaign_id, Action.RESUME, data is not None and data.accept_tail)

    @post("/{campaign_id:uuid}/cancel", status_code=200,
          summary="Cancel: nothing more is queued; no queued message a provider lacks is sent")  # fmt: skip
    async def cancel(
        self, campaign_id: FromPath[uuid.UUID], principal: NamedDependency[Principal], svc: NamedDependency[Services]
    ) -> CampaignOut:
        return await self._act(svc, principal, campaign_id, Action.CANCEL)


async def _bounded(chunks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise PayloadTooLarge(f"the file is larger than {limit} bytes", code="payload_too_large",
                                  fields=(FieldError("recipients", "too large"),))  # fmt: skip
        yield chunk
