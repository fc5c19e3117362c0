"""The billing team's month close: periods, customers, credits and corrections, invoices."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from herald.billing.invoices import Invoice, as_csv
from herald.billing.pdf import render
from herald.billing.period import MONTH_PATTERN, Month
from herald_api.auth import admin_guard
from herald_api.deps import Services
from herald_api.downloads import attachment
from herald_api.schemas import CloseIn, CustomerIn, EntryIn, InvoiceFormat
from herald_api.services.invoicing import Close, Customer, Entry

MonthPath = Annotated[str, Parameter(pattern=MONTH_PATTERN, description="UTC calendar month, YYYY-MM")]


class PeriodController(Controller):
    path = "/v1/admin/billing/periods"
    guards = [admin_guard]
    tags = ["billing"]

    @post("/{month:str}/close", status_code=201, summary="Close a month: its ledger and exports never change again")
    async def close(self, month: FromPath[MonthPath], data: JSONBody[CloseIn], svc: NamedDependency[Services]) -> Close:
        return await svc.invoicing.close(Month.parse(month), data.closed_by)

    @get("/", summary="Closed months, oldest first, with the totals each held when it closed")
    async def list_closes(self, svc: NamedDependency[Services]) -> list[Close]:
        return await svc.invoicing.closes()


class CustomerController(Controller):
    path = "/v1/admin/tenants/{tenant_id:uuid}/billing"
    guards = [admin_guard]
    tags = ["billing"]

    @put("/", summary="Set the tenant's billing profile (legal name, external id, currency, country, VAT number)")
    async def put_profile(
        self, tenant_id: FromPath[uuid.UUID], data: JSONBody[CustomerIn], svc: NamedDependency[Services]
    ) -> Customer:
        profile = Customer(
            tenant_id=tenant_id, legal_name=data.legal_name, external_customer_id=data.external_customer_id,
            currency=data.currency, country=data.country, vat_id=data.vat_id,
        )  # fmt: skip
        return await svc.invoicing.put_profile(profile)

    @get("/", summary="The tenant's billing profile")
    async def get_profile(self, tenant_id: FromPath[uuid.UUID], svc: NamedDependency[Services]) -> Customer:
        return await svc.invoicing.profile(tenant_id)

    @post("/entries", status_code=201, summary="A credit or a correction in an open month (never edited after)")
    async def add_entry(
        self, tenant_id: FromPath[uuid.UUID], data: JSONBody[EntryIn], svc: NamedDependency[Services]
    ) -> Entry:
        return await svc.invoicing.add_entry(
            tenant_id, Month.parse(data.month) if data.month else None, data.kind, data.amount_micros, data.reason,
            data.created_by, data.corrects_message_id, data.corrects_entry_id,
        )  # fmt: skip

    @get("/entries", summary="The tenant's credits and corrections in a month")
    async def list_entries(
        self, tenant_id: FromPath[uuid.UUID], svc: NamedDependency[Services], month: FromQuery[MonthPath]
    ) -> list[Entry]:
        return await svc.invoicing.entries(tenant_id, Month.parse(month))


class InvoiceController(Controller):
    path = "/v1/admin/invoices"
    guards = [admin_guard]
    tags = ["billing"]

    @get("/", summary="Every invoice of a month as CSV lines (each tenant needs a billing profile)")
    async def month_lines(self, svc: NamedDependency[Services], month: FromQuery[MonthPath]) -> Response[bytes]:
        period = Month.parse(month)
        found = await svc.invoicing.month(period)
        return Response(as_csv(found).encode(), media_type="text/csv",
                        headers=attachment(f"herald-invoices-{period.label}.csv"))  # fmt: skip

    @get(
        "/{tenant_id:uuid}",
        summary="A tenant's invoice for a month: JSON, CSV lines or PDF",
        description="Final once the month is closed, a draft before. `currency` defaults to the tenant's.",
    )
    async def read(
        self,
        tenant_id: FromPath[uuid.UUID],
        svc: NamedDependency[Services],
        month: FromQuery[MonthPath],
        currency: FromQuery[Annotated[str, Parameter(pattern=r"^[A-Z]{3}$")] | None] = None,
        format: FromQuery[InvoiceFormat] = InvoiceFormat.JSON,
    ) -> Response[Invoice | bytes]:
        found = await svc.invoicing.invoice(tenant_id, Month.parse(month), currency)
        disposition = attachment(f"{found.number}.{format.value}")
        if format is InvoiceFormat.PDF:
            return Response(render(found), media_type="application/pdf", headers=disposition)
        if format is InvoiceFormat.CSV:
            return Response(as_csv([found]).encode(), media_type="text/csv", headers=disposition)
        return Response(found)
