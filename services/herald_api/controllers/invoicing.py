"""The billing team's month close: periods, customers, credits and corrections, invoices."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from herald.billing import invoices as invoice_rules
from herald.billing.countries import is_country
from herald.billing.invoices import Invoice, Party
from herald.billing.ledger import EntryKind
from herald.billing.money import is_currency
from herald.billing.pdf import render
from herald.billing.period import MONTH_PATTERN, Month
from herald.billing.tax import eu_rates
from herald.db import closes, customers, entries, invoices, tenants
from herald.db.closes import Close
from herald.db.customers import Customer
from herald.db.entries import Entry, NewEntry
from herald.errors import InvalidRequest, NotFound
from herald_api.auth import admin_guard
from herald_api.schemas import CloseIn, CustomerIn, EntryIn, InvoiceFormat
from herald_api.services import Services

MonthPath = Annotated[str, Parameter(pattern=MONTH_PATTERN, description="UTC calendar month, YYYY-MM")]


async def _tenant(svc: Services, tenant_id: uuid.UUID) -> None:
    if await tenants.get(svc.pool, tenant_id) is None:
        raise NotFound("no such tenant", code="tenant_not_found")


class PeriodController(Controller):
    path = "/v1/admin/billing/periods"
    guards = [admin_guard]
    tags = ["billing"]

    @post("/{month:str}/close", status_code=201, summary="Close a month: its ledger and exports never change again")
    async def close(self, month: FromPath[MonthPath], data: JSONBody[CloseIn], svc: NamedDependency[Services]) -> Close:
        return await closes.close(svc.pool, Month.parse(month), data.closed_by, datetime.now(UTC))

    @get("/", summary="Closed months, oldest first, with the totals each held when it closed")
    async def list_closes(self, svc: NamedDependency[Services]) -> list[Close]:
        return await closes.closes(svc.pool)


class CustomerController(Controller):
    path = "/v1/admin/tenants/{tenant_id:uuid}/billing"
    guards = [admin_guard]
    tags = ["billing"]

    @put("/", summary="Set the tenant's billing profile (legal name, external id, currency, country, VAT number)")
    async def put_profile(
        self, tenant_id: FromPath[uuid.UUID], data: JSONBody[CustomerIn], svc: NamedDependency[Services]
    ) -> Customer:
        await _tenant(svc, tenant_id)
        if not is_currency(data.currency):
            raise InvalidRequest.field("currency", "is not an ISO 4217 currency", code="invalid_currency")
        if not is_country(data.country):
            raise InvalidRequest.field("country", "is not an ISO 3166-1 alpha-2 country", code="invalid_country")
        open_from = await closes.first_open(svc.pool)
        profile = Customer(
            tenant_id=tenant_id, legal_name=data.legal_name, external_customer_id=data.external_customer_id,
            currency=data.currency, country=data.country, vat_id=data.vat_id,
        )  # fmt: skip
        return await customers.put(svc.pool, profile, open_from or datetime(1970, 1, 1, tzinfo=UTC).date())

    @get("/", summary="The tenant's billing profile")
    async def get_profile(self, tenant_id: FromPath[uuid.UUID], svc: NamedDependency[Services]) -> Customer:
        found = await customers.get(svc.pool, tenant_id)
        if found is None:
            raise NotFound("the tenant has no billing profile", code="billing_profile_missing")
        return found

    @post("/entries", status_code=201, summary="A credit or a correction in an open month (never edited after)")
    async def add_entry(
        self, tenant_id: FromPath[uuid.UUID], data: JSONBody[EntryIn], svc: NamedDependency[Services]
    ) -> Entry:
        await _tenant(svc, tenant_id)
        now = datetime.now(UTC)
        month = Month.parse(data.month) if data.month else Month.of(now)
        # A credit is given as the amount credited; the ledger stores what it does to the bill.
        amount = -data.amount_micros if data.kind is EntryKind.CREDIT else data.amount_micros
        if data.kind is EntryKind.CREDIT and data.amount_micros <= 0:
            raise InvalidRequest.field("amount_micros", "a credit is a positive amount", code="invalid_entry")
        if data.kind is EntryKind.CORRECTION and data.corrects_message_id is None and data.corrects_entry_id is None:
            raise InvalidRequest.field(
                "corrects_message_id", "a correction names what it corrects", code="invalid_entry"
            )
        entry = NewEntry(
            kind=data.kind, amount_micros=amount, reason=data.reason, created_by=data.created_by,
            corrects_message_id=data.corrects_message_id, corrects_entry_id=data.corrects_entry_id,
        )  # fmt: skip
        return await entries.add(svc.pool, tenant_id, month, entry, now)

    @get("/entries", summary="The tenant's credits and corrections in a month")
    async def list_entries(
        self, tenant_id: FromPath[uuid.UUID], svc: NamedDependency[Services], month: FromQuery[MonthPath]
    ) -> list[Entry]:
        await _tenant(svc, tenant_id)
        return await entries.in_period(svc.pool, Month.parse(month), tenant_id)


def seller(svc: Services) -> Party:
    b = svc.settings.billing
    return Party(legal_name=b.seller_name, country=b.seller_country, vat_id=b.seller_vat_id, address=b.seller_address)


class InvoiceController(Controller):
    path = "/v1/admin/invoices"
    guards = [admin_guard]
    tags = ["billing"]

    @get("/", summary="Every invoice of a month as CSV lines (each tenant needs a billing profile)")
    async def month_lines(self, svc: NamedDependency[Services], month: FromQuery[MonthPath]) -> Response[bytes]:
        period = Month.parse(month)
        found = await invoices.month(svc.pool, period, seller(svc), eu_rates())
        disposition = f'attachment; filename="herald-invoices-{period.label}.csv"'
        return Response(_csv(found), media_type="text/csv",
                        headers={"content-disposition": disposition, "cache-control": "no-store"})  # fmt: skip

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
        found = await invoices.invoice(svc.pool, Month.parse(month), tenant_id, currency, seller(svc), eu_rates())
        name = f"{found.number}.{format.value}"
        disposition = {"content-disposition": f'attachment; filename="{name}"', "cache-control": "no-store"}
        if format is InvoiceFormat.PDF:
            return Response(render(found), media_type="application/pdf", headers=disposition)
        if format is InvoiceFormat.CSV:
            return Response(_csv([found]), media_type="text/csv", headers=disposition)
        return Response(found)


def _csv(found: list[Invoice]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(invoice_rules.CSV_COLUMNS)
    for one in found:
        writer.writerows(invoice_rules.csv_rows(one))
    return buffer.getvalue().encode()
