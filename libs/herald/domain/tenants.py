"""A tenant as every layer sees it: what it may send, and at what limits."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from herald.domain.limits import EffectiveLimits, effective
from herald.domain.models import Tier


class Tenant(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    tier: Tier
    verified: bool
    suspended: bool
    callback_url: str | None
    rate_limit_per_second: int | None
    daily_recipient_limit: int | None
    created_at: datetime
    sms_sender: str | None = None
    """Its own sender (long number, short code, alphanumeric id): its sms come from it, and a
    reply to it (STOP) is known to be its own. None: the provider's default sender."""

    @property
    def limits(self) -> EffectiveLimits:
        """Its tier's limits with its overrides, capped while it is unverified."""
        return effective(self.tier, self.verified, self.rate_limit_per_second, self.daily_recipient_limit)
