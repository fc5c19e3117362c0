"""A tenant's own WhatsApp Business Account as Herald knows it (its secrets are kept apart)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import msgspec


class MessagingTier(StrEnum):
    """Meta's messaging limit: unique users a business may start conversations with per rolling
    24 h, per business portfolio. Raised (or lowered) by Meta; learnt from its webhooks."""

    TIER_250 = "TIER_250"
    TIER_2K = "TIER_2K"
    TIER_10K = "TIER_10K"
    TIER_100K = "TIER_100K"
    TIER_UNLIMITED = "TIER_UNLIMITED"

    @property
    def unique_users(self) -> int | None:
        return _USERS[self]

    @classmethod
    def parse(cls, meta: str | None) -> MessagingTier | None:
        """Meta's spelling (`TIER_1K` was the old name of 2,000's tier); None if unknown."""
        if meta is None:
            return None
        try:
            return cls(_OLD_NAMES.get(meta, meta))
        except ValueError:
            return None


_USERS = {
    MessagingTier.TIER_250: 250,
    MessagingTier.TIER_2K: 2_000,
    MessagingTier.TIER_10K: 10_000,
    MessagingTier.TIER_100K: 100_000,
    MessagingTier.TIER_UNLIMITED: None,
}
_OLD_NAMES = {"TIER_1K": "TIER_2K", "TIER_50": "TIER_250"}


class AccountStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    """Meta refused its token (expired, revoked) or locked it: its messages wait until the tenant
    sets a new token."""


DEFAULT_THROUGHPUT = 80
MAX_THROUGHPUT = 1_000


class PhoneNumber(msgspec.Struct, frozen=True):
    id: str
    """Meta's phone number id: the path a send is posted to."""
    throughput: int = DEFAULT_THROUGHPUT
    """Messages per second Meta allows it (80 by default, raised by Meta up to 1,000): held
    across every worker."""
    display_phone_number: str | None = None


class Account(msgspec.Struct, frozen=True):
    tenant_id: uuid.UUID
    waba_id: str
    display_name: str
    numbers: tuple[PhoneNumber, ...]
    status: AccountStatus
    messaging_limit: MessagingTier
    connected_at: datetime
    rotated_at: datetime
    suspended_reason: str | None = None
    quality: str | None = None

    @property
    def provider(self) -> str:
        """The name its sends are recorded under: a status webhook is bound only to sends made
        through the account it came from (`herald.domain.receipts`)."""
        return provider_name(self.waba_id)


def provider_name(waba_id: str) -> str:
    return f"whatsapp:{waba_id}"


class Button(msgspec.Struct, frozen=True, omit_defaults=True):
    type: str
    """`QUICK_REPLY`, `URL` or `PHONE_NUMBER`."""
    text: str
    url: str | None = None
    phone_number: str | None = None


class TemplateParts(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a whatsapp template has beside its body (stored with it, submitted to Meta)."""

    examples: dict[str, str] = msgspec.field(default_factory=dict)
    """An example value per placeholder: Meta's reviewers read the body with these."""
    header: str | None = None
    footer: str | None = None
    buttons: tuple[Button, ...] = ()


class Secrets(msgspec.Struct, frozen=True):
    """An account's secrets in clear: in memory only, never logged, never answered."""

    access_token: str
    app_secret: str
