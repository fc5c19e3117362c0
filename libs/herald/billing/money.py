"""Money on invoices: integer micro-units in the ledger, decimals of the currency's minor unit
on paper, and one rounding rule between them.

**The rounding rule**: each invoice line (quantity x unit price, or an entry's amount) is
computed exactly in micro-units, then rounded half-to-even to the currency's minor unit; the
subtotal is the sum of the rounded lines; tax is the subtotal times the rate, rounded the same
way; the total is subtotal plus tax.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import pycountry

MICROS = Decimal(1_000_000)

# ISO 4217 currencies whose minor unit is not two decimal places.
_MINOR_UNITS = {
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(
        ("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF",
         "XOF", "XPF"),
        0,
    ),
}  # fmt: skip


def is_currency(code: str) -> bool:
    """An ISO 4217 currency code."""
    return pycountry.currencies.get(alpha_3=code) is not None


def minor_unit(currency: str) -> int:
    """Decimal places of `currency`'s minor unit (ISO 4217)."""
    return _MINOR_UNITS.get(currency, 2)


def rounded(micros: int | Decimal, currency: str) -> Decimal:
    """`micros` as an amount of `currency`, rounded half-to-even to its minor unit."""
    return (Decimal(micros) / MICROS).quantize(Decimal(1).scaleb(-minor_unit(currency)), rounding=ROUND_HALF_EVEN)


def round_amount(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_unit(currency)), rounding=ROUND_HALF_EVEN)
