"""Countries as the usage exports name them: ISO 3166-1 alpha-3.

The ledger keeps the recipient's region as phonenumbers gives it (alpha-2, as the rate cards
price it). Exports spell it in three letters because default readers take `NA` (Namibia) for a
missing value (pandas reads it as NaN, quoted or not, and a `groupby` then drops it), and name
the absence of a country explicitly (`ZZZ`, from ISO's user-assigned range: email has none)
for the same reason: an empty cell is what those readers call missing.
"""

from __future__ import annotations

import pycountry

NO_COUNTRY = "ZZZ"
"""A message with no country (email)."""

# Regions phonenumbers knows that ISO 3166-1 has no alpha-3 for: ISO's exceptional
# reservations for Ascension and Tristan da Cunha, and Kosovo's code in EU and IMF use.
_NOT_IN_ISO = {"AC": "ASC", "TA": "TAA", "XK": "XKX"}
_ALPHA_3 = {c.alpha_2: c.alpha_3 for c in pycountry.countries} | _NOT_IN_ISO


def exported(alpha_2: str | None) -> str:
    """The export's spelling of a ledger country; raises KeyError for a code neither ISO 3166-1
    nor phonenumbers knows (the ledger never holds one: countries come from phonenumbers)."""
    return NO_COUNTRY if alpha_2 is None else _ALPHA_3[alpha_2]


def is_country(alpha_2: str) -> bool:
    """An ISO 3166-1 alpha-2 code (a customer's billing country)."""
    return pycountry.countries.get(alpha_2=alpha_2) is not None
