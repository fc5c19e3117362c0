from __future__ import annotations

import pytest

from herald.domain.models import Channel
from herald.domain.recipients import normalize
from herald.errors import InvalidRequest


@pytest.mark.parametrize(
    ("raw", "e164", "country"),
    [
        ("+44 7400 123456", "+447400123456", "GB"),
        ("+4915112345678", "+4915112345678", "DE"),
        ("+1 (415) 555-2671", "+14155552671", "US"),
        ("+919812345678", "+919812345678", "IN"),
        ("+5511987654321", "+5511987654321", "BR"),
        ("+33612345678", "+33612345678", "FR"),
    ],
)
def test_valid_numbers_normalise_to_e164_with_country(raw: str, e164: str, country: str) -> None:
    recipient = normalize(Channel.SMS, raw)
    assert (recipient.address, recipient.country) == (e164, country)


@pytest.mark.parametrize(
    "raw",
    [
        "07911123456",  # national format: no country code
        "+44791112",  # too short for GB
        "+1415555267199",  # too long for US
        "+4901234",  # invalid German number
        "+91123",  # invalid Indian number
        "+999123456789",  # no such country code
        "+44 79ab 123456",
        "",
    ],
)
def test_invalid_numbers_name_the_field(raw: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalize(Channel.WHATSAPP, raw)
    assert caught.value.code == "invalid_recipient"
    assert [f.field for f in caught.value.fields] == ["to"]


def test_email_is_validated_and_domain_lowercased() -> None:
    recipient = normalize(Channel.EMAIL, "Ada.Lovelace+x@Example.COM")
    assert (recipient.address, recipient.country) == ("Ada.Lovelace+x@example.com", None)


@pytest.mark.parametrize("raw", ["ada", "ada@", "@example.com", "ada@example", "a b@example.com", "x" * 250 + "@a.io"])
def test_invalid_email_rejected(raw: str) -> None:
    with pytest.raises(InvalidRequest):
        normalize(Channel.EMAIL, raw)
