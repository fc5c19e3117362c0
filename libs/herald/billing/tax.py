"""VAT on an invoice, decided by the customer's billing country and VAT number.

Herald sells electronically supplied services from `billing.seller_country`. The rates are data
(`vat_rates.csv`, the EU member states' standard rates; a change of rate is a change of that
file); the treatments are the EU rules for such services (Council Directive 2006/112/EC):
- customer in the seller's country: the seller's rate (`domestic`);
- business customer (a VAT number) in another member state: no VAT charged, the customer
  accounts for it (`reverse_charge`, Article 196);
- consumer in another member state: that state's rate (`destination`, Article 58, via OSS);
- customer outside the EU: no EU VAT (`outside_scope`).
"""

from __future__ import annotations

import csv
from decimal import Decimal
from enum import StrEnum
from importlib import resources

import msgspec


class Treatment(StrEnum):
    DOMESTIC = "domestic"
    REVERSE_CHARGE = "reverse_charge"
    DESTINATION = "destination"
    OUTSIDE_SCOPE = "outside_scope"


NOTES = {
    Treatment.DOMESTIC: "",
    Treatment.REVERSE_CHARGE: "Reverse charge: VAT to be accounted for by the recipient (Article 196, "
    "Directive 2006/112/EC).",
    Treatment.DESTINATION: "VAT at the rate of the customer's member state (Article 58, Directive 2006/112/EC).",
    Treatment.OUTSIDE_SCOPE: "Outside the scope of EU VAT.",
}


class Tax(msgspec.Struct, frozen=True):
    treatment: Treatment
    rate_percent: Decimal
    note: str


def eu_rates() -> dict[str, Decimal]:
    """Standard VAT rates of the EU member states, in percent, from the shipped data."""
    text = resources.files("herald.billing").joinpath("vat_rates.csv").read_text()
    return {row["country"]: Decimal(row["standard_rate_percent"]) for row in csv.DictReader(text.splitlines())}


def tax_for(country: str, vat_id: str | None, seller_country: str, rates: dict[str, Decimal]) -> Tax:
    """The VAT treatment and rate for a customer in `country` (ISO alpha-2) with `vat_id` (None:
    a consumer), sold to from `seller_country` (an EU member state)."""
    if seller_country not in rates:
        raise ValueError(f"HERALD_BILLING_SELLER_COUNTRY {seller_country!r} is not an EU member state in vat_rates.csv")
    if country == seller_country:
        return Tax(Treatment.DOMESTIC, rates[seller_country], NOTES[Treatment.DOMESTIC])
    if country not in rates:
        return Tax(Treatment.OUTSIDE_SCOPE, Decimal(0), NOTES[Treatment.OUTSIDE_SCOPE])
    if vat_id:
        return Tax(Treatment.REVERSE_CHARGE, Decimal(0), NOTES[Treatment.REVERSE_CHARGE])
    return Tax(Treatment.DESTINATION, rates[country], NOTES[Treatment.DESTINATION])
