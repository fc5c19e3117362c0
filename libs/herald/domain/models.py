"""Closed vocabularies of the domain and the tier policies behind them."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import msgspec


class Channel(StrEnum):
    SMS = "sms"
    WHATSAPP = "whatsapp"
    EMAIL = "email"


class Category(StrEnum):
    """Service class; each has its own topic so an OTP never queues behind a campaign."""

    AUTHENTICATION = "authentication"
    UTILITY = "utility"
    MARKETING = "marketing"


class Tier(StrEnum):
    FREE = "free"
    STANDARD = "standard"
    ENTERPRISE = "enterprise"


class KeyKind(StrEnum):
    LIVE = "live"
    TEST = "test"
    """Runs the whole pipeline against the sink provider: never leaves Herald, never billed."""


class TemplateStatus(StrEnum):
    PENDING = "pending"
    """A whatsapp template Meta has not reviewed yet."""
    APPROVED = "approved"
    PAUSED = "paused"
    REJECTED = "rejected"
    DISABLED = "disabled"


class TierPolicy(msgspec.Struct, frozen=True):
    rate_per_second: int
    daily_recipients: int | None
    """Unique recipients per rolling 24 h; None is unlimited."""
    billed: bool


TIER_POLICIES: dict[Tier, TierPolicy] = {
    Tier.FREE: TierPolicy(rate_per_second=10, daily_recipients=1_000, billed=False),
    Tier.STANDARD: TierPolicy(rate_per_second=80, daily_recipients=100_000, billed=True),
    Tier.ENTERPRISE: TierPolicy(rate_per_second=1_000, daily_recipients=None, billed=True),
}
UNVERIFIED_DAILY_RECIPIENTS = 250

# Default time-to-live per class: an OTP is worthless after minutes, a receipt is not.
DEFAULT_TTL_SECONDS: dict[Category, int] = {
    Category.AUTHENTICATION: 10 * 60,
    Category.UTILITY: 24 * 3600,
    Category.MARKETING: 24 * 3600,
}
MAX_TTL_SECONDS = 7 * 24 * 3600
"""The longest `ttl_seconds` a message may ask for; content retention must outlast it."""
MAX_TIMESTAMP_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last instant a Python datetime holds."""
EpochMillis = Annotated[int, msgspec.Meta(ge=0, le=MAX_TIMESTAMP_MS)]
"""Milliseconds since the epoch that every sink can turn into a timestamp. Where a time arrives
from outside (a provider's receipt) and on the status records the sinks decode: a value beyond
it would otherwise be accepted and then stop every sink that converts it, on every restart."""
