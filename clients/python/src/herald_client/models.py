"""Herald's public API as typed values: one msgspec Struct per request and answer.

Names follow the server's OpenAPI components (`MessageCreate`, `MessageOut` as `Message`, ...);
`tests/client/test_openapi_contract.py` checks every field against the served document, so the
client cannot drift from the server.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Literal

import msgspec


class Channel(StrEnum):
    SMS = "sms"
    WHATSAPP = "whatsapp"
    EMAIL = "email"


class Category(StrEnum):
    AUTHENTICATION = "authentication"
    UTILITY = "utility"
    MARKETING = "marketing"


class Status(StrEnum):
    SCHEDULED = "scheduled"
    ACCEPTED = "accepted"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


FINAL = frozenset({Status.DELIVERED, Status.READ, Status.FAILED, Status.EXPIRED, Status.CANCELLED})


class TemplateRef(msgspec.Struct, frozen=True):
    name: str
    language: str


class MessageCreate(msgspec.Struct, frozen=True, omit_defaults=True):
    """One message to send. Without `idempotency_key` the client generates one, so its own
    retries can never send twice."""

    to: str
    channel: Channel
    template: TemplateRef
    params: dict[str, str] = msgspec.field(default_factory=dict)
    reference: str | None = None
    ttl_seconds: int | None = None
    idempotency_key: str | None = None
    send_at: datetime | None = None
    """Send at this time (timezone-aware), up to 30 days ahead; `scheduled` until then."""


class MessageAccepted(msgspec.Struct, frozen=True):
    id: uuid.UUID
    segments: int = 1
    """SMS segments the message is carried and billed as; 1 on other channels."""
    status: Status = Status.ACCEPTED


class ItemError(msgspec.Struct, frozen=True):
    code: str
    detail: str
    fields: list[str] = msgspec.field(default_factory=list)
    retry_after: int | None = None


class BatchItemResult(msgspec.Struct, frozen=True):
    """`index` is the caller's own index into what it passed to `send_batch`, whatever the size."""

    index: int
    id: uuid.UUID | None = None
    segments: int | None = None
    error: ItemError | None = None


class BatchAccepted(msgspec.Struct, frozen=True):
    accepted: int
    rejected: int
    results: list[BatchItemResult]


class Button(msgspec.Struct, frozen=True, omit_defaults=True):
    type: str
    """`QUICK_REPLY`, `URL` or `PHONE_NUMBER`."""
    text: str
    url: str | None = None
    phone_number: str | None = None


class WhatsAppParts(msgspec.Struct, frozen=True, omit_defaults=True):
    """What Meta reviews beside a whatsapp template's body: an example per placeholder (required),
    and an optional header, footer and buttons."""

    examples: dict[str, str] = msgspec.field(default_factory=dict)
    header: str | None = None
    footer: str | None = None
    buttons: list[Button] = msgspec.field(default_factory=list)


class EmailParts(msgspec.Struct, frozen=True, omit_defaults=True):
    """An email template's subject and HTML part (its `body` is the text part), and the verified
    identity it is sent from (default: the tenant's first)."""

    subject: str
    html: str | None = None
    from_address: str | None = None


class TemplateCreate(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    language: str
    category: Category
    channel: Channel
    body: str
    email: EmailParts | None = None
    """Required for an email template."""
    whatsapp: WhatsAppParts | None = None
    """For a whatsapp template (submitted to Meta; `pending` until Meta approves it)."""


class Template(msgspec.Struct, frozen=True):
    name: str
    language: str
    version: int
    category: Category
    channel: Channel
    body: str
    status: str
    """`approved`; a whatsapp template is `pending` until Meta's review, then `approved`,
    `rejected`, and maybe later `paused` or `disabled`."""
    placeholders: list[str]
    created_at: datetime
    email: EmailParts | None = None
    requested_category: Category | None = None
    """Set when Meta recategorised a whatsapp template: what it was submitted as."""
    rejection_reason: str | None = None


class TemplateUsed(msgspec.Struct, frozen=True):
    name: str
    language: str
    version: int


class Event(msgspec.Struct, frozen=True):
    status: Status
    at: datetime
    detail: str | None = None
    provider_error: str | None = None
    """On a failure the provider reported: its own code and words."""
    provider: str | None = None
    """On `sent`: the provider that took it."""


class Price(msgspec.Struct, frozen=True):
    unit_price_micros: int
    currency: str
    rate_card_version: int
    billed_at: datetime
    quantity: int = 1
    """Units charged (an SMS's segments)."""
    amount_micros: int | None = None
    """quantity x unit price."""


class Message(msgspec.Struct, frozen=True):
    id: uuid.UUID
    status: Status
    channel: Channel
    category: Category
    template: TemplateUsed
    created_at: datetime
    events: list[Event]
    segments: int = 1
    reference: str | None = None
    price: Price | None = None
    replay_of: uuid.UUID | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL


class MessageSummary(msgspec.Struct, frozen=True):
    """A message as `messages()` lists it; `message(id)` has its timeline and price."""

    id: uuid.UUID
    status: Status
    channel: Channel
    category: Category
    template: TemplateUsed
    created_at: datetime
    updated_at: datetime
    segments: int = 1
    reference: str | None = None


class Cancellation(msgspec.Struct, frozen=True):
    id: uuid.UUID
    cancellation: Literal["cancelled", "requested"]
    """`cancelled`: never sent. `requested`: queued; it ends `cancelled` unless a provider had it."""


class MessagePage(msgspec.Struct, frozen=True):
    items: list[MessageSummary]
    next: str | None = None


class PhoneNumber(msgspec.Struct, frozen=True):
    id: str
    throughput: int
    display_phone_number: str | None = None


class WhatsAppLimits(msgspec.Struct, frozen=True):
    messaging_limit: str
    """Meta's tier, `TIER_250` … `TIER_UNLIMITED`."""
    unique_users_24h: int | None
    phone_numbers: list[PhoneNumber]
    quality: str | None = None


class Limits(msgspec.Struct, frozen=True):
    tier: str
    verified: bool
    rate_per_second: int
    daily_recipient_limit: int | None
    recipients_used_24h: int
    recipients_remaining_24h: int | None
    whatsapp: WhatsAppLimits | None = None
    """Present when the tenant has a WhatsApp Business Account connected."""


class UsageLine(msgspec.Struct, frozen=True):
    channel: str
    category: str
    country: str | None
    currency: str
    messages: int
    amount_micros: int


class UsageTotal(msgspec.Struct, frozen=True):
    currency: str
    messages: int
    amount_micros: int


class Usage(msgspec.Struct, frozen=True):
    month: str
    lines: list[UsageLine]
    totals: list[UsageTotal]


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class Problem(msgspec.Struct, frozen=True):
    """RFC 9457 problem+json as Herald answers it."""

    status: int
    code: str
    detail: str = ""
    title: str = ""
    type: str = ""
    errors: list[FieldError] = msgspec.field(default_factory=list)


class CallbackEvent(msgspec.Struct, frozen=True):
    """The body of a status callback (`Herald-Signature` verified by `verify_callback`)."""

    message_id: uuid.UUID
    status: Status
    at: datetime
    reason: str | None = None
    type: str = "message.status"


class SuppressionEvent(msgspec.Struct, frozen=True):
    """The body of a `recipient.suppressed` callback: a recipient of `message_id` unsubscribed,
    bounced hard or complained, and is now on the tenant's suppression list (`suppression_id`)
    for `channel`'s marketing. Dedupe on (message_id, type)."""

    message_id: uuid.UUID
    channel: Channel
    reason: str
    """`unsubscribed`, `bounced` or `complained`."""
    suppression_id: str
    at: datetime
    type: str = "recipient.suppressed"
