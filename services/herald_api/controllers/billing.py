"""Rate cards and usage: the admin side (import, list, exports) and a tenant's own month."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.response import Stream

from herald.billing import ratecards
from herald.billing.period import MONTH_PATTERN, Month
from herald.db import billing, tenants, usage
from herald.errors import NotFound
from herald.exports import MEDIA_TYPES, Detail, Format, export, filename
from herald_api.auth import TENANT_AUTH, Principal, admin_guard
from herald_api.schemas import PriceOut, RateCardOut, UsageLine, UsageOut, UsageTotal
from herald_api.services import Services

MonthParam = Annotated[str, Parameter(pattern=MONTH_PATTERN, description="UTC calendar month, YYYY-MM")]


class RateCardController(Controller):
    path = "/v1/admin/rate-cards"
    guards = [admin_guard]
    tags = ["billing"]

    @post("/", status_code=201, summary="Import a new rate card version (applies to messages billed from its date)")
    async def create(self, data: JSONBody[ratecards.RateCardIn], svc: NamedDependency[Services]) -> RateCardOut:
        ratecards.check(data, datetime.now(UTC))
        async with svc.pool.acquire() as conn:
            version = await billing.import_rate_card(conn, data)
        found = await billing.rate_card(svc.pool, version)
        assert found is not None
        return _card_out(*found)

    @get("/", summary="Rate card versions, oldest first")
    async def list_cards(self, svc: NamedDependency[Services]) -> list[billing.RateCardSummary]:
        return await billing.rate_cards(svc.pool)

    @get("/{version:int}", summary="One rate card version with its prices")
    async def read(
        self, version: FromPath[Annotated[int, Parameter(ge=1, le=2**31 - 1)]], svc: NamedDependency[Services]
    ) -> RateCardOut:
        found = await billing.rate_card(svc.pool, version)
        if found is None:
            raise NotFound("no such rate card version", code="rate_card_not_found")
        return _card_out(*found)


def _card_out(summary: billing.RateCardSummary, prices: list[billing.PriceRow]) -> RateCardOut:
    return RateCardOut(
        **msgspec.structs.asdict(summary), prices=[PriceOut(**msgspec.structs.asdict(p)) for p in prices]
    )


class AdminUsageController(Controller):
    path = "/v1/admin/usage"
    guards = [admin_guard]
    tags = ["billing"]

    @get(
        "/",
        summary="Usage export for the billing team (streamed)",
        description="`detail=summary`: count and amount per tenant, channel, category, country and currency."
        " `detail=messages`: one row per billing record. Amounts are integer micro-units of the currency.",
    )
    async def export_usage(
        self,
        svc: NamedDependency[Services],
        month: FromQuery[MonthParam],
        tenant_id: FromQuery[uuid.UUID | None] = None,
        format: FromQuery[Format] = Format.CSV,
        detail: FromQuery[Detail] = Detail.SUMMARY,
    ) -> Stream:
        period = Month.parse(month)
        if tenant_id is not None and await tenants.get(svc.pool, tenant_id) is None:
            raise NotFound("no such tenant", code="tenant_not_found")
        return Stream(
            # A month's scan may take longer than the API's short database timeout allows.
            export(
                svc.pool, period, detail, format, tenant_id, query_timeout=svc.settings.database.command_timeout_seconds
            ),
            media_type=MEDIA_TYPES[format],
            headers={
                "content-disposition": f'attachment; filename="{filename(period, detail, format, tenant_id)}"',
                "cache-control": "no-store",
            },
        )


class UsageController(Controller):
    path = "/v1/usage"
    tags = ["billing"]
    middleware = [TENANT_AUTH]

    @get("/", summary="The tenant's own billed usage for a month")
    async def usage(
        self, principal: NamedDependency[Principal], svc: NamedDependency[Services], month: FromQuery[MonthParam]
    ) -> UsageOut:
        period = Month.parse(month)
        lines: list[UsageLine] = []
        totals: dict[str, UsageTotal] = {}
        timeout = svc.settings.database.command_timeout_seconds
        for r in await usage.tenant_usage(svc.pool, period, principal.tenant.id, query_timeout=timeout):
            lines.append(
                UsageLine(
                    channel=r["channel"], category=r["category"], country=r["country"], currency=r["currency"],
                    messages=r["messages"], amount_micros=r["amount_micros"],
                )
            )  # fmt: skip
            total = totals.get(r["currency"], UsageTotal(currency=r["currency"], messages=0, amount_micros=0))
            totals[r["currency"]] = UsageTotal(
                currency=total.currency,
                messages=total.messages + r["messages"],
                amount_micros=total.amount_micros + r["amount_micros"],
            )
        return UsageOut(month=period.label, lines=lines, totals=sorted(totals.values(), key=lambda t: t.currency))
