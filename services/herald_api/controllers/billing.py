"""Rate cards and usage: the admin side (import, list, exports) and a tenant's own month."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.response import Stream

from herald.billing import ratecards
from herald.billing.period import MONTH_PATTERN, Month
from herald.exports import MEDIA_TYPES, Detail, Format, filename
from herald_api.auth import TENANT_AUTH, Principal, admin_guard
from herald_api.deps import Services
from herald_api.downloads import attachment
from herald_api.schemas import PriceOut, RateCardOut, UsageLine, UsageOut, UsageTotal
from herald_api.services.billing import PriceRow, RateCardSummary

MonthParam = Annotated[str, Parameter(pattern=MONTH_PATTERN, description="UTC calendar month, YYYY-MM")]


class RateCardController(Controller):
    path = "/v1/admin/rate-cards"
    guards = [admin_guard]
    tags = ["billing"]

    @post("/", status_code=201, summary="Import a new rate card version (applies to messages billed from its date)")
    async def create(self, data: JSONBody[ratecards.RateCardIn], svc: NamedDependency[Services]) -> RateCardOut:
        return _card_out(*await svc.billing.import_rate_card(data))

    @get("/", summary="Rate card versions, oldest first")
    async def list_cards(self, svc: NamedDependency[Services]) -> list[RateCardSummary]:
        return await svc.billing.rate_cards()

    @get("/{version:int}", summary="One rate card version with its prices")
    async def read(
        self, version: FromPath[Annotated[int, Parameter(ge=1, le=2**31 - 1)]], svc: NamedDependency[Services]
    ) -> RateCardOut:
        return _card_out(*await svc.billing.rate_card(version))


def _card_out(summary: RateCardSummary, prices: list[PriceRow]) -> RateCardOut:
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
        return Stream(
            await svc.billing.export(period, detail, format, tenant_id),
            media_type=MEDIA_TYPES[format],
            headers=attachment(filename(period, detail, format, tenant_id)),
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
        for r in await svc.billing.tenant_month(principal.tenant.id, period):
            lines.append(UsageLine(**msgspec.structs.asdict(r)))
            total = totals.get(r.currency, UsageTotal(currency=r.currency, messages=0, amount_micros=0))
            totals[r.currency] = UsageTotal(
                currency=total.currency,
                messages=total.messages + r.messages,
                amount_micros=total.amount_micros + r.amount_micros,
            )
        return UsageOut(month=period.label, lines=lines, totals=sorted(totals.values(), key=lambda t: t.currency))
