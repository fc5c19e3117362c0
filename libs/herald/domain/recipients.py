"""Recipient validation: E.164 phone numbers (via phonenumbers) and email addresses.

The recipient's country (ISO 3166-1 alpha-2) is derived here once and travels with the message,
because pricing and billing need it and re-parsing downstream would be wasted work.
"""

from __future__ import annotations

import functools

import msgspec
import phonenumbers

from herald.domain.models import Channel
from herald.domain.patterns import compiled
from herald.errors import InvalidRequest

# Deliberately simple: one @, a dot in the domain, no spaces. Deliverability is the provider's job.
_EMAIL = compiled(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)


class Recipient(msgspec.Struct, frozen=True):
    address: str
    """E.164 (`+447700900123`) for phones, lower-cased domain for email."""
    country: str | None
    """ISO 3166-1 alpha-2 for phone numbers; None for email."""


def normalize(channel: Channel, raw: str, *, field: str = "to") -> Recipient:
    if channel is Channel.EMAIL:
        return _email(raw, field)
    result = _phone_cached(raw)
    if isinstance(result, Recipient):
        return result
    raise InvalidRequest.field(field, result, code="invalid_recipient")


@functools.lru_cache(maxsize=65_536)
def _phone_cached(raw: str) -> Recipient | str:
    """Recipient, or the reason it is invalid. Cached: large senders message the same customers
    again and again, and phonenumbers costs ~40 us per number (the API's largest CPU item)."""
    try:
        return _phone(raw, "to")
    except InvalidRequest as exc:
        return exc.fields[0].message


def _phone(raw: str, field: str) -> Recipient:
    candidate = raw.strip()
    if not candidate.startswith("+"):
        raise InvalidRequest.field(
            field, "must be an E.164 number starting with + and a country code", code="invalid_recipient"
        )
    try:
        number = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        raise InvalidRequest.field(field, "is not a phone number", code="invalid_recipient") from None
    # region_code_for_number already matches the number against each candidate region's
    # patterns; checking validity for that one region is the rest of is_valid_number's work.
    region = phonenumbers.region_code_for_number(number)
    if region is None or not phonenumbers.is_valid_number_for_region(number, region):
        raise InvalidRequest.field(field, "is not a valid phone number for its country", code="invalid_recipient")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Recipient(address=e164, country=region)


def _email(raw: str, field: str) -> Recipient:
    candidate = raw.strip()
    if len(candidate) > 254 or not _EMAIL.match(candidate):
        raise InvalidRequest.field(field, "is not a valid email address", code="invalid_recipient")
    local, _, domain = candidate.rpartition("@")
    if len(local) > 64:
        raise InvalidRequest.field(field, "is not a valid email address", code="invalid_recipient")
    return Recipient(address=f"{local}@{domain.lower()}", country=None)
