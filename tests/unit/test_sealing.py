"""Sealing of message content (herald.sealing) and the recipient-free record key."""

from __future__ import annotations

import uuid

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from herald.domain.records import ENCODER, MESSAGE_DECODER, OutboundMessage, message_key
from herald.sealing import DAY_MS, HOUR_MS, ContentUnavailable, first_readable_hour, open_with, reseal, seal
from tests.unit.fakes import outbound

KEY = AESGCM(bytes(range(32)))
TENANT = uuid.UUID(int=7)


def _message(to: str = "+447400123456", body: str = "Your code is 123456") -> OutboundMessage:
    return outbound(tenant_id=TENANT, to=to, body=body, reference="r")


def test_sealed_record_round_trips_with_nothing_in_clear() -> None:
    m = _message()
    wire = ENCODER.encode(seal(KEY, 5, m))
    assert b"+447400123456" not in wire
    assert b"Your code" not in wire
    assert open_with(KEY, MESSAGE_DECODER.decode(wire)) == m


def test_two_seals_of_one_message_differ() -> None:
    """A fresh nonce each time: equal bodies do not give equal records."""
    m = _message()
    assert seal(KEY, 5, m).content != seal(KEY, 5, m).content


def test_content_opens_only_with_its_key_and_for_its_own_message() -> None:
    a, b = seal(KEY, 5, _message()), seal(KEY, 5, _message(to="+447400999999"))
    with pytest.raises(ContentUnavailable):
        open_with(AESGCM(bytes(32)), a)
    moved = msgspec.structs.replace(b, content=a.content)  # a's content under b's id
    with pytest.raises(ContentUnavailable):
        open_with(KEY, moved)
    flipped = msgspec.structs.replace(a, content=a.content[:-1] + bytes([a.content[-1] ^ 1]))
    with pytest.raises(ContentUnavailable):
        open_with(KEY, flipped)


def test_reseal_carries_the_new_envelope_around_the_same_content() -> None:
    m = _message()
    sealed = seal(KEY, 5, m)
    later = msgspec.structs.replace(m, attempt=2, not_before_ms=9_000, last_error="throttled")
    again = reseal(sealed, later)
    assert (again.content, again.content_key) == (sealed.content, 5)
    assert open_with(KEY, again) == later
    with pytest.raises(ValueError, match="own content"):
        reseal(sealed, _message())


def test_an_hour_is_readable_until_it_ended_retention_days_ago() -> None:
    days = 30
    hour = 500_000
    end_of_hour = (hour + 1) * HOUR_MS
    assert first_readable_hour(end_of_hour + days * DAY_MS - 1, days) <= hour  # not yet N days since it ended
    assert first_readable_hour(end_of_hour + days * DAY_MS, days) > hour  # every moment of it is N days old


def test_record_key_keeps_a_recipient_on_one_key_without_naming_them() -> None:
    key = message_key(TENANT, "+447400123456")
    assert key == message_key(TENANT, "+447400123456")
    assert b"447400123456" not in key
    assert key != message_key(uuid.UUID(int=8), "+447400123456")
    # Buckets spread recipients (so partitions share the load) but are few (so they do not identify).
    buckets = {message_key(TENANT, f"+4474001{i:05d}") for i in range(20_000)}
    assert 10_000 < len(buckets) <= 65_536
