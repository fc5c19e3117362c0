"""Rate card validation, CSV parsing, and the shipped default card."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from herald.billing.period import Month
from herald.billing.ratecards import RateCardIn, check, default_card, parse_csv
from herald.domain.models import Category, Channel
from herald.errors import InvalidRequest

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def test_default_card_is_complete_and_priced_as_advertised() -> None:
    card = msgspec.structs.replace(default_card(), effective_from=NOW)
    check(card, NOW)
    prices = {(p.channel, p.category, p.country): p.unit_price_micros for p in card.prices}
    countries = {p.country for p in card.prices} - {"*"}
    assert len(countries) >= 5
    # Marketing dearer than utility, utility dearer than authentication, in every country.
    for (channel, category, country), price in prices.items():
        if category is Category.UTILITY:
            assert prices[(channel, Category.AUTHENTICATION, country)] < price
            assert price < prices[(channel, Category.MARKETING, country)]
    assert card.currency == "EUR"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"effective_from": NOW - timedelta(seconds=1)}, "rate_card_backdated"),
        ({"prices": [p for p in default_card().prices if p.country != "*"]}, "rate_card_incomplete"),
        ({"prices": [*default_card().prices, default_card().prices[0]]}, "rate_card_duplicate"),
    ],
)
def test_back_dated_incomplete_or_ambiguous_cards_are_refused(change: dict[str, object], code: str) -> None:
    card = msgspec.structs.replace(default_card(), **{"effective_from": NOW + timedelta(hours=1), **change})
    with pytest.raises(InvalidRequest) as caught:
        check(card, NOW)
    assert caught.value.code == code


def test_card_body_is_strict_about_fields_and_types() -> None:
    good = {"channel": "sms", "category": "utility", "country": "*", "unit_price_micros": 1}
    for body, needle in (
        ({"effective_from": "2030-01-01T00:00:00Z", "currency": "EUR", "prices": [good], "surprise": 1}, "surprise"),
        ({"effective_from": "2030-01-01T00:00:00", "currency": "EUR", "prices": [good]}, "effective_from"),
        ({"effective_from": "2030-01-01T00:00:00Z", "currency": "EUR", "prices": [{**good, "unit_price_micros": 0.5}]},
         "unit_price_micros"),
        ({"effective_from": "2030-01-01T00:00:00Z", "currency": "EUR", "prices": [{**good, "country": "gb"}]},
         "country"),
    ):  # fmt: skip
        with pytest.raises(msgspec.ValidationError, match=needle):
            msgspec.convert(body, RateCardIn)


def test_csv_errors_name_the_line() -> None:
    text = "channel,category,country,unit_price_micros\nsms,utility,GB,100\nsms,utility,GB,1.5\n"
    with pytest.raises(InvalidRequest) as caught:
        parse_csv(text)
    assert caught.value.fields[0].field == "line 3"
    with pytest.raises(InvalidRequest):
        parse_csv("channel,category,price\n")
    assert parse_csv("channel,category,country,unit_price_micros\nemail,marketing,*,120\n")[0].channel is Channel.EMAIL


def test_month_bounds() -> None:
    december = Month.parse("2026-12")
    assert (december.start, december.end) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert Month.of(datetime(2026, 2, 28, 23, 59, tzinfo=UTC)).label == "2026-02"
    assert Month.parse("2999-12").end.year == 3000
    for bad in ("2026-13", "2026-1", "26-01", "2026-01-01", "0000-01", "9999-12"):
        with pytest.raises(InvalidRequest):
            Month.parse(bad)
