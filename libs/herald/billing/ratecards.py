"""Rate cards: what one message costs, by channel x category x recipient country.

Prices are integer micro-units of the card's currency (EUR 0.035 is 35_000): sums over millions
of messages are exact, and an invoice reconciles to the cent. Every channel x category pair must
have a fallback row (`country = "*"`) so that no billable message is ever left without a price.
A card is a version with an effective date; versions are never edited (a correction is a new
version) and may not be back-dated, so a message's price only depends on when it was billed.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated

import msgspec

from herald.billing.money import is_currency
from herald.domain.models import Category, Channel
from herald.domain.patterns import whole
from herald.errors import FieldError, InvalidRequest

FALLBACK_COUNTRY = "*"
CSV_COLUMNS = ("channel", "category", "country", "unit_price_micros")
DEFAULT_CURRENCY = "EUR"


class Price(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    channel: Channel
    category: Category
    country: Annotated[
        str, msgspec.Meta(pattern=whole(r"[A-Z]{2}|\*"), description="ISO 3166-1 alpha-2, or * (fallback)")
    ]
    unit_price_micros: Annotated[int, msgspec.Meta(ge=0, le=10**12)]


class RateCardIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A new rate card version as imported (admin API body; the CLI builds it from a CSV)."""

    effective_from: Annotated[datetime, msgspec.Meta(tz=True)]
    currency: Annotated[str, msgspec.Meta(pattern=whole("[A-Z]{3}"), description="ISO 4217")]
    prices: Annotated[list[Price], msgspec.Meta(min_length=1, max_length=20_000)]
    note: Annotated[str, msgspec.Meta(max_length=500, pattern=whole(r"[^\x00-\x1f\x7f]*"))] | None = None


def check(card: RateCardIn, now: datetime) -> None:
    """Raise InvalidRequest unless the card is complete, unambiguous and not back-dated."""
    if card.effective_from < now:
        # Back-dating would re-price messages delivered before the import but not yet billed
        # (sink lag), so the same message could cost different amounts depending on timing.
        raise InvalidRequest.field("effective_from", "must not be in the past", code="rate_card_backdated")
    if not is_currency(card.currency):
        raise InvalidRequest.field("currency", "is not an ISO 4217 currency", code="invalid_currency")
    seen: set[tuple[Channel, Category, str]] = set()
    for index, price in enumerate(card.prices):
        key = (price.channel, price.category, price.country)
        if key in seen:
            raise InvalidRequest.field(
                f"prices[{index}]", f"duplicate price for {price.channel}/{price.category}/{price.country}",
                code="rate_card_duplicate",
            )  # fmt: skip
        seen.add(key)
    missing = [
        f"{channel}/{category}" for channel in Channel for category in Category
        if (channel, category, FALLBACK_COUNTRY) not in seen
    ]  # fmt: skip
    if missing:
        raise InvalidRequest(
            f'prices: every channel/category needs a fallback row (country "*"); missing: {", ".join(missing)}',
            code="rate_card_incomplete",
            fields=(FieldError("prices", "missing fallback rows"),),
        )


def parse_csv(text: str) -> list[Price]:
    """Prices from CSV with the header `channel,category,country,unit_price_micros`.

    Errors name the line (`line 7`), the way a billing analyst editing a spreadsheet reads them.
    """
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
        raise InvalidRequest.field("header", f"expected the columns {','.join(CSV_COLUMNS)}", code="rate_card_csv")
    prices = []
    for row in reader:
        line = reader.line_num
        try:
            raw = {**row, "unit_price_micros": int(row["unit_price_micros"])}
            prices.append(msgspec.convert(raw, Price))
        except (ValueError, TypeError, msgspec.ValidationError) as exc:
            raise InvalidRequest.field(f"line {line}", str(exc), code="rate_card_csv") from None
    return prices


def default_card() -> RateCardIn:
    """The card shipped with Herald (billing/default_rate_card.csv), in force from the epoch so
    that a fresh installation prices every message."""
    text = resources.files("herald.billing").joinpath("default_rate_card.csv").read_text()
    return RateCardIn(
        effective_from=datetime(1970, 1, 1, tzinfo=UTC),
        currency=DEFAULT_CURRENCY,
        prices=parse_csv(text),
        note="default rate card shipped with Herald",
    )
