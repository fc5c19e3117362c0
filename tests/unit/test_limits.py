from __future__ import annotations

import hashlib
import uuid

import pytest

from herald.domain.limits import EffectiveLimits, RecipientHasher, effective
from herald.domain.models import Tier


@pytest.mark.parametrize(
    ("tier", "verified", "rate", "daily", "expected"),
    [
        (Tier.FREE, True, None, None, EffectiveLimits(10, 1_000)),
        (Tier.STANDARD, True, None, None, EffectiveLimits(80, 100_000)),
        (Tier.ENTERPRISE, True, None, None, EffectiveLimits(1_000, None)),
        (Tier.ENTERPRISE, False, None, None, EffectiveLimits(1_000, 250)),
        (Tier.FREE, False, None, None, EffectiveLimits(10, 250)),
        (Tier.STANDARD, True, 120, 5_000, EffectiveLimits(120, 5_000)),
        (Tier.STANDARD, False, None, 5_000, EffectiveLimits(80, 250)),  # the unverified cap wins
        (Tier.STANDARD, False, None, 10, EffectiveLimits(80, 10)),
    ],
)
def test_effective_limits(
    tier: Tier, verified: bool, rate: int | None, daily: int | None, expected: EffectiveLimits
) -> None:
    assert effective(tier, verified, rate, daily) == expected


KEK, OTHER_KEK = b"k" * 32, b"o" * 32


def test_recipient_hash_is_per_tenant_and_hides_the_number() -> None:
    hasher = RecipientHasher([KEK])
    a, b = uuid.uuid4(), uuid.uuid4()
    assert hasher.current(a, "+447400123456") != hasher.current(b, "+447400123456")
    assert hasher.current(a, "+447400123456") == hasher.current(a, "+447400123456")
    assert b"447400123456" not in hasher.current(a, "+447400123456")


def test_a_database_dump_alone_does_not_give_the_numbers_back() -> None:
    """Finding 3 of the security review: `sha256(tenant || number)` was reversed by enumerating
    a number range. Enumerating the same range now finds nothing without the KEK."""
    tenant = uuid.uuid4()
    numbers = [f"+4474001{n:05d}" for n in range(2_000)]
    stored = {RecipientHasher([KEK]).current(tenant, n) for n in numbers[:17]}
    plain = {hashlib.sha256(tenant.bytes + n.encode()).digest() for n in numbers}
    assert not stored & plain  # what the attack computed on the old scheme
    assert not stored & {RecipientHasher([OTHER_KEK]).current(tenant, n) for n in numbers}  # a guessed key
    assert len(stored & {RecipientHasher([KEK]).current(tenant, n) for n in numbers}) == 17  # with the key


def test_after_a_rotation_lookups_match_the_previous_keys_hash() -> None:
    tenant = uuid.uuid4()
    before = RecipientHasher([KEK]).current(tenant, "+447400123456")
    rotated = RecipientHasher([OTHER_KEK, KEK])
    assert rotated.candidates(tenant, "+447400123456") == [rotated.current(tenant, "+447400123456"), before]
    assert rotated.current(tenant, "+447400123456") != before
