"""Invoice arithmetic and VAT: the rounding rule and the EU treatments, as stated in
`herald/billing/money.py` and `herald/billing/tax.py`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from herald.billing.invoices import EntryRow, InvoiceStatus, Party, UsageGroup, build, csv_rows
from herald.billing.money import minor_unit, rounded
from herald.billing.period import Month
from herald.billing.tax import Treatment, eu_rates, tax_for

RATES = eu_rates()
SELLER = Party(legal_name="Herald Messaging Ltd", country="IE", vat_id="IE0000000HA")


@pytest.mark.parametrize(
    ("micros", "currency", "expected"),
    [
        (125_000, "EUR", Decimal("0.12")),  # half to even: down
        (135_000, "EUR", Decimal("0.14")),  # half to even: up
        (124_999, "EUR", Decimal("0.12")),
        (-125_000, "EUR", Decimal("-0.12")),
        (1_500_000, "JPY", Decimal("2")),
        (2_500_000, "JPY", Decimal("2")),
        (1_234_500, "KWD", Decimal("1.234")),
    ],
)
def test_amounts_round_half_to_even_to_the_currencys_minor_unit(micros: int, currency: str, expected: Decimal) -> None:
    assert rounded(micros, currency) == expected
    assert rounded(micros, currency).as_tuple().exponent == -minor_unit(currency)


@pytest.mark.parametrize(
    ("country", "vat_id", "treatment", "rate"),
    [
        ("IE", None, Treatment.DOMESTIC, Decimal("23")),
        ("IE", "IE1234567T", Treatment.DOMESTIC, Decimal("23")),  # a business at home still pays VAT
        ("DE", "DE123456789", Treatment.REVERSE_CHARGE, Decimal("0")),
        ("FR", None, Treatment.DESTINATION, Decimal("20")),
        ("FI", None, Treatment.DESTINATION, Decimal("25.5")),
        ("US", None, Treatment.OUTSIDE_SCOPE, Decimal("0")),
        ("GB", "GB123456789", Treatment.OUTSIDE_SCOPE, Decimal("0")),  # not in the EU since 2021
    ],
)
def test_vat_follows_the_customers_country_and_vat_number(
    country: str, vat_id: str | None, treatment: Treatment, rate: Decimal
) -> None:
    tax = tax_for(country, vat_id, "IE", RATES)
    assert (tax.treatment, tax.rate_percent) == (treatment, rate)
    assert (tax.note != "") == (treatment is not Treatment.DOMESTIC)


def test_an_invoice_rounds_each_line_then_taxes_the_subtotal() -> None:
    month = Month.parse("2026-11")
    usage = [  # 3 x 0.0415 = 0.1245 -> 0.12; 7 x 0.0035 = 0.0245 -> 0.02 (half-even)
        UsageGroup("usage", "sms", "utility", "NA", 2, 41_500, 3),
        UsageGroup("adjustment", "email", "marketing", None, 1, 3_500, 7),
    ]
    credit = EntryRow(uuid.uuid4(), "credit", -50_000, "outage on 2026-11-03", None, None)
    invoice = build(
        month, uuid.uuid4(), Party(legal_name="Hôtel Ænima SAS", country="FR"), SELLER, "EUR",
        closed=True, as_of=datetime(2026, 12, 1, tzinfo=UTC), usage=usage, entries=[credit], rates=RATES,
    )  # fmt: skip
    assert [line.amount for line in invoice.lines] == [Decimal("0.12"), Decimal("0.02"), Decimal("-0.05")]
    assert invoice.ledger_micros == 124_500 + 24_500 - 50_000
    assert invoice.subtotal == Decimal("0.09")
    assert invoice.tax_amount == Decimal("0.02")  # 0.09 x 20% = 0.018 -> 0.02
    assert invoice.total == Decimal("0.11")
    assert invoice.status is InvoiceStatus.FINAL
    rows = csv_rows(invoice)
    assert [r[7] for r in rows] == ["usage", "adjustment", "credit", "subtotal", "tax", "total"]
    assert rows[-1][13] == "0.11"
