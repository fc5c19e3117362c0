"""Effective limits of a tenant: tier defaults, per-tenant overrides, the unverified cap."""

from __future__ import annotations

import hashlib
import uuid

import msgspec

from herald.domain.models import TIER_POLICIES, UNVERIFIED_DAILY_RECIPIENTS, Tier

WINDOW_SECONDS = 24 * 3600


class EffectiveLimits(msgspec.Struct, frozen=True):
    rate_per_second: int
    daily_recipients: int | None
    """Unique recipients per rolling 24 h; None is unlimited."""


def effective(tier: Tier, verified: bool, rate_override: int | None, daily_override: int | None) -> EffectiveLimits:
    policy = TIER_POLICIES[tier]
    daily = policy.daily_recipients if daily_override is None else daily_override
    if not verified:
        # Unverified senders are capped whatever their tier or override says.
        daily = UNVERIFIED_DAILY_RECIPIENTS if daily is None else min(daily, UNVERIFIED_DAILY_RECIPIENTS)
    return EffectiveLimits(rate_per_second=rate_override or policy.rate_per_second, daily_recipients=daily)


def recipient_hash(tenant_id: uuid.UUID, address: str) -> bytes:
    """What the limit accounting stores instead of the recipient: per-tenant, not reversible by lookup
    across tenants."""
    return hashlib.sha256(tenant_id.bytes + address.encode()).digest()
