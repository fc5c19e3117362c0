"""Invoice-ready lines: per tenant, billing period and currency, the ledger as a person bills it.

Usage is one line per channel, category, country, rate-card version and unit price (quantity x
unit price), late usage (posted from a closed month) in lines of its own, then each credit and
correction as a line with its reason. Amounts follow `herald.billing.money`'s rounding rule;
tax follows `herald.billing.tax`. An invoice for a closed period is final (its figures are as of
the close and never change); for an open one it is a draft.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

import msgspec

from herald.billing.money import round_amount, rounded
from herald.billing.period import Month
from herald.billing.tax import Tax, tax_for
from herald.settings import BillingSettings


class InvoiceStatus(StrEnum):
    FINAL = "final"
    DRAFT = "draft"


class Party(msgspec.Struct, frozen=True):
    legal_name: str
    country: str
    vat_id: str | None = None
    address: str | None = None
    external_customer_id: str | None = None

    @classmethod
    def seller(cls, settings: BillingSettings) -> Party:
        """Herald itself, as it sells."""
        return cls(settings.seller_name, settings.seller_country, settings.seller_vat_id, settings.seller_address)


class UsageGroup(msgspec.Struct, frozen=True):
    """Ledger rows of one kind at one price (from `herald.db.invoices`)."""

    kind: str
    channel: str
    category: str
    country: str | None
    rate_card_version: int
    unit_price_micros: int
    quantity: int


class EntryRow(msgspec.Struct, frozen=True):
    id: uuid.UUID
    kind: str
    amount_micros: int
    reason: str
    corrects_message_id: uuid.UUID | None
    corrects_entry_id: uuid.UUID | None


class InvoiceLine(msgspec.Struct, frozen=True):
    kind: str
    description: str
    quantity: int
    unit_price_micros: int | None
    amount_micros: int
    """Exact: quantity x unit price, or the entry's amount."""
    amount: Decimal
    """Rounded half-to-even to the currency's minor unit."""
    rate_card_version: int | None = None
    reference: str | None = None


class Invoice(msgspec.Struct, frozen=True):
    number: str
    status: InvoiceStatus
    month: str
    period_start: datetime
    period_end: datetime
    as_of: datetime
    tenant_id: uuid.UUID
    customer: Party
    seller: Party
    currency: str
    lines: list[InvoiceLine]
    ledger_micros: int
    """The exact sum of the lines, for reconciliation against the ledger."""
    subtotal: Decimal
    tax: Tax
    tax_amount: Decimal
    total: Decimal


def _description(g: UsageGroup) -> str:
    where = f" to {g.country}" if g.country else ""
    late = " (late usage from a closed period)" if g.kind == "adjustment" else ""
    # An SMS line counts segments (what operators bill); other channels count messages.
    unit = "segments" if g.channel == "sms" else "messages"
    return f"{g.channel.upper()} {g.category} {unit}{where}{late}"


def number(month: Month, tenant_id: uuid.UUID, customer: Party, currency: str) -> str:
    """Stable for a tenant, period and currency: the same invoice keeps its number."""
    who = customer.external_customer_id or str(tenant_id)[:8]
    return f"HER-{month.label.replace('-', '')}-{who}-{currency}"


def build(
    month: Month, tenant_id: uuid.UUID, customer: Party, seller: Party, currency: str, *,
    closed: bool, as_of: datetime, usage: list[UsageGroup], entries: list[EntryRow], rates: dict[str, Decimal],
) -> Invoice:  # fmt: skip
    lines = [
        InvoiceLine(
            kind=g.kind, description=_description(g), quantity=g.quantity, unit_price_micros=g.unit_price_micros,
            amount_micros=g.quantity * g.unit_price_micros, amount=rounded(g.quantity * g.unit_price_micros, currency),
            rate_card_version=g.rate_card_version,
        )
        for g in usage
    ]  # fmt: skip
    for e in entries:
        corrects = e.corrects_message_id or e.corrects_entry_id
        lines.append(
            InvoiceLine(
                kind=e.kind, description=f"{e.kind.capitalize()}: {e.reason}", quantity=1, unit_price_micros=None,
                amount_micros=e.amount_micros, amount=rounded(e.amount_micros, currency),
                reference=f"entry {e.id}" + (f", corrects {corrects}" if corrects else ""),
            )
        )  # fmt: skip
    subtotal = sum((line.amount for line in lines), Decimal(0))
    tax = tax_for(customer.country, customer.vat_id, seller.country, rates)
    tax_amount = round_amount(subtotal * tax.rate_percent / 100, currency)
    return Invoice(
        number=number(month, tenant_id, customer, currency),
        status=InvoiceStatus.FINAL if closed else InvoiceStatus.DRAFT,
        month=month.label, period_start=month.start, period_end=month.end, as_of=as_of, tenant_id=tenant_id,
        customer=customer, seller=seller, currency=currency, lines=lines,
        ledger_micros=sum(line.amount_micros for line in lines), subtotal=subtotal, tax=tax, tax_amount=tax_amount,
        total=subtotal + tax_amount,
    )  # fmt: skip


CSV_COLUMNS = (
    "invoice_number", "status", "month", "tenant_id", "external_customer_id", "legal_name", "currency", "kind",
    "description", "rate_card_version", "quantity", "unit_price_micros", "amount_micros", "amount", "reference",
)  # fmt: skip
"""One row per line, then `subtotal`, `tax` and `total` rows (kind) with their amounts."""


def csv_rows(invoice: Invoice) -> list[list[str]]:
    head = [invoice.number, invoice.status.value, invoice.month, str(invoice.tenant_id),
            invoice.customer.external_customer_id or "", invoice.customer.legal_name, invoice.currency]  # fmt: skip
    rows = [
        [*head, line.kind, line.description, "" if line.rate_card_version is None else str(line.rate_card_version),
         str(line.quantity), "" if line.unit_price_micros is None else str(line.unit_price_micros),
         str(line.amount_micros), str(line.amount), line.reference or ""]
        for line in invoice.lines
    ]  # fmt: skip
    tax_label = f"VAT {invoice.tax.rate_percent}% ({invoice.tax.treatment.value})"
    for kind, description, micros, amount in (
        ("subtotal", "Subtotal", str(invoice.ledger_micros), invoice.subtotal),
        ("tax", tax_label, "", invoice.tax_amount),
        ("total", "Total", "", invoice.total),
    ):
        rows.append([*head, kind, description, "", "", "", micros, str(amount), ""])
    return rows


def as_csv(invoices: Iterable[Invoice]) -> str:
    """Every line of `invoices` as CSV text, with the header (`CSV_COLUMNS`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for one in invoices:
        writer.writerows(csv_rows(one))
    return buffer.getvalue()
