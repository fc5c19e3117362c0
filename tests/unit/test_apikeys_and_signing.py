from __future__ import annotations

import uuid

import pytest

from herald import signing
from herald.domain import apikeys
from herald.domain.models import KeyKind
from herald.ids import uuid7


def test_issued_key_parses_and_verifies() -> None:
    issued = apikeys.issue(KeyKind.LIVE)
    parsed = apikeys.parse(issued.plaintext)
    assert parsed is not None
    assert (parsed.id, parsed.kind) == (issued.id, KeyKind.LIVE)
    assert apikeys.verify(parsed, issued.salt, issued.hash)
    assert issued.hash == apikeys.digest(issued.salt, parsed.secret)
    assert issued.hash != apikeys.digest(b"", parsed.secret)  # salted


def test_wrong_secret_does_not_verify() -> None:
    issued = apikeys.issue(KeyKind.TEST)
    parsed = apikeys.parse(issued.plaintext[:-1] + ("A" if issued.plaintext[-1] != "A" else "B"))
    assert parsed is not None
    assert not apikeys.verify(parsed, issued.salt, issued.hash)


def test_same_secret_different_salt_different_hash() -> None:
    assert apikeys.digest(b"a" * 16, "s") != apikeys.digest(b"b" * 16, "s")


def test_garbage_does_not_parse() -> None:
    for garbage in (
        "",
        "hk",
        "hk_live_xyz_abc",
        "hk_prod_" + "0" * 32 + "_s",
        "Bearer x",
        "hk_live_" + "g" * 32 + "_s",
    ):
        assert apikeys.parse(garbage) is None, garbage


def test_signature_round_trip_and_tamper() -> None:
    body = b'{"id":"1"}'
    header = signing.sign("secret", body, now=1_700_000_000)
    assert signing.verify("secret", header, body, now=1_700_000_100)
    assert not signing.verify("secret", header, body + b" ", now=1_700_000_100)
    assert not signing.verify("other", header, body, now=1_700_000_100)
    # Replayed outside the tolerance window:
    assert not signing.verify("secret", header, body, now=1_700_000_000 + 301)
    assert not signing.verify("secret", "garbage", body)


def test_signature_from_the_future_is_refused_beyond_clock_skew() -> None:
    """Finding 9 of the security review: a timestamp 300 s ahead was accepted, so a signature
    could be minted for later use. Only clock skew (30 s) is allowed ahead now."""
    body = b'{"a":1}'
    assert signing.verify("secret", signing.sign("secret", body, now=1_700_000_030), body, now=1_700_000_000)
    assert not signing.verify("secret", signing.sign("secret", body, now=1_700_000_031), body, now=1_700_000_000)
    assert not signing.verify("secret", signing.sign("secret", body, now=1_700_000_299), body, now=1_700_000_000)


@pytest.mark.parametrize("header", ["t=1700000000,v1=\u00e9\u00e9", "t=1700000000,v1=\u2603", "t=\u0661\u0662,v1=ab"])
def test_a_non_ascii_signature_is_refused_not_raised(header: str) -> None:
    """Finding 6: `compare_digest` raises TypeError on a non-ASCII str (a 500 per request)."""
    assert not signing.verify("secret", header, b"{}", now=1_700_000_000)


def test_uuid7_is_time_ordered_and_versioned() -> None:
    ids = [uuid7(now_ms=ms) for ms in (1_000, 2_000, 3_000)]
    assert ids == sorted(ids)
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert len({uuid7() for _ in range(1000)}) == 1000
