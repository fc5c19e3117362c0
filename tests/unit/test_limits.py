from __future__ import annotations

import uuid

import pytest

from herald.domain.limits import EffectiveLimits, effective, recipient_hash
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


def test_recipient_hash_is_per_tenant_and_hides_the_number() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    assert recipient_hash(a, "+447400123456") != recipient_hash(b, "+447400123456")
    assert recipient_hash(a, "+447400123456") == recipient_hash(a, "+447400123456")
    assert b"447400123456" not in recipient_hash(a, "+447400123456")
