"""One msgspec Struct per operation's request and response. Unknown fields are rejected."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec

from herald.billing.ledger import EntryKind
from herald.billing.period import MONTH_PATTERN
from herald.domain.models import MAX_TTL_SECONDS, Category, Channel, EpochMillis, KeyKind, TemplateStatus, Tier
from herald.domain.patterns import whole
from herald.domain.reasons import Reason
from herald.domain.sends import SendRequest
from herald.domain.sms_routing import ProviderKind
from herald.domain.sms_routing import Strategy as RouteStrategy
from herald.domain.status import Status
from herald.domain.suppressions import SuppressionReason

# Control characters (NUL above all: PostgreSQL text cannot hold it) are refused at the boundary,
# so no downstream consumer can be handed a record it cannot store. Tab, CR and LF are allowed.
NO_CONTROL = whole(r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*")
"""Any text without control characters but tab, CR and LF; query parameters use it too."""
Text = Annotated[str, msgspec.Meta(pattern=NO_CONTROL)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_CONTROL)]
TemplateName = Annotated[str, msgspec.Meta(pattern=whole("[a-z0-9_]{1,64}"), description="lowercase, digits, _")]
EmailAddress = Annotated[
    str, msgspec.Meta(min_length=3, max_length=254, pattern=whole(r"[^@\s]+@[^@\s]+\.[^@\s]+"),
                      examples=["receipts@mail.example.com"])
]  # fmt: skip
Language = Annotated[str, msgspec.Meta(pattern=whole("[a-z]{2,3}([_-][A-Za-z]{2,4})?"), examples=["en", "pt_BR"])]
Url = Annotated[str, msgspec.Meta(max_length=2048, pattern=whole(r"https?://[^\x00-\x20\x7f]+"))]
SmsSender = Annotated[str, msgspec.Meta(pattern=r"^([0-9]{3,15}|[A-Za-z0-9 ]{1,11})$")]
"""SMPP source_addr / Twilio From: digits (a short code, a number without `+`) or an
alphanumeric sender id of up to 11 characters (GSM 03.40)."""
Reference = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=NO_CONTROL)]
ParamName = Annotated[str, msgspec.Meta(pattern=whole("[A-Za-z_][A-Za-z0-9_]{0,63}"))]


class Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Base for request bodies: a misspelt field is an error, not silently ignored."""


# --- admin -------------------------------------------------------------------------------------
class TenantCreate(Strict, frozen=True):
    name: Name
    tier: Tier
    verified: bool = False
    callback_url: Url | None = None


class TenantPatch(Strict, frozen=True):
    tier: Tier | msgspec.UnsetType = msgspec.UNSET
    verified: bool | msgspec.UnsetType = msgspec.UNSET
    suspended: bool | msgspec.UnsetType = msgspec.UNSET
    callback_url: Url | msgspec.UnsetType | None = msgspec.UNSET
    rate_limit_per_second: Annotated[int, msgspec.Meta(ge=1, le=100000)] | msgspec.UnsetType | None = msgspec.UNSET
    # The column is a Postgres integer: beyond it the write failed with a 500 (found by fuzzing).
    daily_recipient_limit: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)] | msgspec.UnsetType | None = msgspec.UNSET
    sms_sender: SmsSender | msgspec.UnsetType | None = msgspec.UNSET
    """Its own sender: an E.164 number without `+`, a short code, or an alphanumeric id (11)."""


class TenantOut(msgspec.Struct, frozen=True):
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
    callback_secret: str | None = None
    """Only in the creation response: shown once."""


class CallbackSecretOut(msgspec.Struct, frozen=True):
    callback_secret: str
    """Shown once. The previous secret stops signing immediately."""


class KeyCreate(Strict, frozen=True):
    kind: KeyKind


class KeyOut(msgspec.Struct, frozen=True):
    id: uuid.UUID
    kind: KeyKind
    key: str
    """The plaintext key: shown once, store it now."""


# --- templates ---------------------------------------------------------------------------------
Example = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_CONTROL)]


class ButtonIn(Strict, frozen=True):
    type: Literal["QUICK_REPLY", "URL", "PHONE_NUMBER"]
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=25, pattern=NO_CONTROL)]
    url: Url | None = None
    phone_number: Annotated[str, msgspec.Meta(pattern=whole(r"\+?[0-9]{6,20}"))] | None = None


class WhatsAppPartsIn(Strict, frozen=True):
    """What Meta reviews beside the body. Every placeholder needs an example value."""

    examples: Annotated[dict[ParamName, Example], msgspec.Meta(max_length=50)] = msgspec.field(default_factory=dict)
    header: Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=NO_CONTROL)] | None = None
    footer: Annotated[str, msgspec.Meta(min_length=1, max_length=60, pattern=NO_CONTROL)] | None = None
    buttons: Annotated[list[ButtonIn], msgspec.Meta(max_length=10)] = msgspec.field(default_factory=list)


class EmailPartsIn(Strict, frozen=True):
    """An email template's subject and HTML part; the template's `body` is its text part. The
    HTML part takes the same placeholders as the text part, and each value is escaped in it."""

    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    html: Annotated[str, msgspec.Meta(min_length=1, max_length=100_000, pattern=NO_CONTROL)] | None = None
    from_address: EmailAddress | None = None
    """One of the tenant's identities (`/v1/email/identities`); default: its first verified one."""


class TemplateCreate(Strict, frozen=True):
    name: TemplateName
    language: Language
    category: Category
    channel: Channel
    body: Annotated[str, msgspec.Meta(max_length=100_000, pattern=NO_CONTROL)]
    email: EmailPartsIn | None = None
    """For an email template (required): its subject, HTML part and sender."""
    whatsapp: WhatsAppPartsIn | None = None
    """For a whatsapp template: the examples Meta's reviewers need, and optional header, footer
    and buttons. Refused for other channels."""


class EmailPartsOut(msgspec.Struct, frozen=True, omit_defaults=True):
    subject: str
    html: str | None = None
    from_address: str | None = None


class TemplateOut(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    language: str
    version: int
    category: Category
    """For whatsapp, Meta's decision once reviewed (it may differ from what was asked)."""
    channel: Channel
    body: str
    status: TemplateStatus
    """whatsapp: `pending` until Meta reviews it; then `approved`, `rejected`, and later maybe
    `paused` or `disabled`. Other channels: `approved` at once."""
    placeholders: list[str]
    created_at: datetime
    email: EmailPartsOut | None = None
    requested_category: Category | None = None
    """Set when Meta recategorised the template: the category it was submitted with."""
    rejection_reason: str | None = None


# --- whatsapp ----------------------------------------------------------------------------------
class WhatsAppLimitsOut(msgspec.Struct, frozen=True, omit_defaults=True):
    messaging_limit: str
    """Meta's tier (`TIER_250` … `TIER_UNLIMITED`), as its last quality webhook said."""
    unique_users_24h: int | None
    """Unique users the business may start conversations with per rolling 24 h; null: unlimited."""
    phone_numbers: list[PhoneNumberOut]
    quality: str | None = None


WabaId = Annotated[str, msgspec.Meta(pattern=whole("[0-9]{1,32}"))]
Secret = Annotated[str, msgspec.Meta(min_length=8, max_length=1024, pattern=whole(r"[\x21-\x7e]+"))]


class PhoneNumberIn(Strict, frozen=True):
    id: WabaId
    throughput: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 80
    """Messages per second Meta allows the number (80 unless Meta raised it)."""


class WhatsAppAccountIn(Strict, frozen=True):
    """Connect (or replace, to rotate its secrets) the tenant's WhatsApp Business Account. The
    three secrets are write-only: stored encrypted, never answered, never logged."""

    waba_id: WabaId
    display_name: Name
    phone_numbers: Annotated[list[PhoneNumberIn], msgspec.Meta(min_length=1, max_length=20)]
    access_token: Secret
    """A system-user access token with whatsapp_business_messaging and _management."""
    app_secret: Secret
    """The Meta app's secret: webhooks are verified with it."""
    verify_token: Secret
    """What the tenant typed as the webhook's verify token in the app dashboard."""


class PhoneNumberOut(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    throughput: int
    display_phone_number: str | None = None


class WhatsAppAccountOut(msgspec.Struct, frozen=True, omit_defaults=True):
    waba_id: str
    display_name: str
    phone_numbers: list[PhoneNumberOut]
    status: str
    """`active`, or `suspended` when Meta refused the token (its messages wait for a new one)."""
    messaging_limit: str
    """Meta's tier: unique users per rolling 24 h (`TIER_250` … `TIER_UNLIMITED`)."""
    connected_at: datetime
    secrets_rotated_at: datetime
    suspended_reason: str | None = None
    quality: str | None = None


# --- messages ----------------------------------------------------------------------------------
class TemplateRef(Strict, frozen=True):
    name: TemplateName
    language: Language


class MessageCreate(Strict, frozen=True):
    to: Annotated[str, msgspec.Meta(min_length=1, max_length=320, pattern=NO_CONTROL)]
    channel: Channel
    template: TemplateRef
    params: Annotated[dict[ParamName, Text], msgspec.Meta(max_length=50)] = msgspec.field(default_factory=dict)
    reference: Reference | None = None
    ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL_SECONDS)] | None = None
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=NO_CONTROL)] | None = None
    """Same tenant + key within 24 h: same message id, one delivery, one bill."""
    send_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    """Send at this time (with its UTC offset), up to 30 days ahead: the message is `scheduled`
    until then and may be cancelled (`DELETE /v1/messages/{id}`); its TTL counts from then."""

    def request(self) -> SendRequest:
        return SendRequest(
            to=self.to, channel=self.channel, template_name=self.template.name,
            template_language=self.template.language, params=self.params, reference=self.reference,
            ttl_seconds=self.ttl_seconds, idempotency_key=self.idempotency_key, send_at=self.send_at,
        )  # fmt: skip


MAX_BATCH = 1_000


class BatchCreate(Strict, frozen=True):
    """Each item is validated on its own (as a MessageCreate); the list itself must be 1..1000."""

    messages: Annotated[list[dict[str, Any]], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


class ItemError(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str
    detail: str
    fields: list[str] = msgspec.field(default_factory=list)
    retry_after: int | None = None


class BatchItemResult(msgspec.Struct, frozen=True, omit_defaults=True):
    index: int
    id: uuid.UUID | None = None
    segments: int | None = None
    """With `id`: as in a single send's answer."""
    error: ItemError | None = None


class BatchAccepted(msgspec.Struct, frozen=True):
    accepted: int
    rejected: int
    results: list[BatchItemResult]


class LimitsOut(msgspec.Struct, frozen=True, omit_defaults=True):
    tier: Tier
    verified: bool
    rate_per_second: int
    daily_recipient_limit: int | None
    """Unique recipients per rolling 24 h; null is unlimited."""
    recipients_used_24h: int
    recipients_remaining_24h: int | None
    whatsapp: WhatsAppLimitsOut | None = None
    """Meta's limits on the connected WhatsApp account (absent when none is connected)."""


class MessageAccepted(msgspec.Struct, frozen=True):
    id: uuid.UUID
    segments: int
    """What the message is carried and billed as: an SMS's segments (160 GSM-7 or 70 UCS-2
    characters in one, 153 or 67 per part of a longer text); 1 on every other channel."""
    status: Status = Status.ACCEPTED


class TemplateUsed(msgspec.Struct, frozen=True):
    name: str
    language: str
    version: int


class EventOut(msgspec.Struct, frozen=True, omit_defaults=True):
    status: Status
    at: datetime
    detail: Reason | None = None
    """Why it failed or expired (or why it waits): one of a closed set (`herald.domain.reasons`)."""
    provider_error: str | None = None
    """On a failure the provider reported: its own code and words (WhatsApp: `131026 Message
    undeliverable`)."""
    provider: str | None = None
    """On `sent`: the provider that took it (`sms:<provider>` for a routed sms): where a route sent it."""


class MessageOut(msgspec.Struct, frozen=True, omit_defaults=True):
    id: uuid.UUID
    status: Status
    channel: Channel
    category: Category
    template: TemplateUsed
    created_at: datetime
    events: list[EventOut]
    segments: int
    """As in the send's answer."""
    reference: str | None = None
    price: Price | None = None
    """Present once the message is billed (paid tiers, live keys; delivered, or sent for email)."""
    replay_of: uuid.UUID | None = None
    """For a message re-queued from the dead-letter topic: the failed message it re-sends."""


class MessageSummaryOut(msgspec.Struct, frozen=True, omit_defaults=True):
    """A message as a listing shows it; `GET /v1/messages/{id}` has its timeline and price."""

    id: uuid.UUID
    status: Status
    channel: Channel
    category: Category
    template: TemplateUsed
    created_at: datetime
    updated_at: datetime
    """Its last status change."""
    segments: int
    reference: str | None = None


class CancellationOut(msgspec.Struct, frozen=True):
    id: uuid.UUID
    cancellation: Literal["cancelled", "requested"]
    """`cancelled`: it will never be sent (a scheduled message; its status is `cancelled`).
    `requested`: it is queued, and ends `cancelled` unless the worker had already taken it for
    its provider; its status tells which."""


class MessagePage(msgspec.Struct, frozen=True, omit_defaults=True):
    items: list[MessageSummaryOut]
    next: str | None = None
    """Pass as `after`, with the same filters, for the next page; absent on the last."""


class TenantPage(msgspec.Struct, frozen=True, omit_defaults=True):
    items: list[TenantOut]
    next: str | None = None
    """Pass as `after`, with the same filters, for the next page; absent on the last."""


class Price(msgspec.Struct, frozen=True):
    unit_price_micros: int
    """Integer micro-units of `currency` (EUR 0.035 = 35,000)."""
    currency: str
    rate_card_version: int
    billed_at: datetime
    quantity: int
    """Units charged: an SMS's segments, 1 on every other channel."""
    amount_micros: int
    """quantity x unit price."""


# --- provider receipts -------------------------------------------------------------------------
class ReceiptIn(Strict, frozen=True):
    """A delivery receipt, about the provider's own id for a send. It names no message and no
    tenant: Herald finds both from its record of that send (`herald.domain.receipts`)."""

    provider_message_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=NO_CONTROL)]
    status: Status
    at_ms: EpochMillis | None = None
    """The provider's time of the event; Herald clamps it to the message's life."""
    error_code: Annotated[str, msgspec.Meta(max_length=64, pattern=NO_CONTROL)] | None = None
    callback_data: uuid.UUID | None = None
    """What Herald attached to the send (its message id), echoed back; a hint, never trusted alone."""


class ReceiptBatchIn(Strict, frozen=True):
    receipts: Annotated[list[ReceiptIn], msgspec.Meta(min_length=1, max_length=1000)]


# --- billing -----------------------------------------------------------------------------------
class PriceOut(msgspec.Struct, frozen=True):
    channel: str
    category: str
    country: str
    """ISO 3166-1 alpha-2, or `*` for the channel/category fallback."""
    unit_price_micros: int


class RateCardOut(msgspec.Struct, frozen=True):
    version: int
    effective_from: datetime
    currency: str
    note: str | None
    imported_at: datetime
    price_count: int
    prices: list[PriceOut]


class UsageLine(msgspec.Struct, frozen=True):
    channel: str
    category: str
    country: str | None
    currency: str
    messages: int
    amount_micros: int
    """Integer micro-units of `currency` (EUR 1.00 = 1,000,000)."""


class UsageTotal(msgspec.Struct, frozen=True):
    currency: str
    messages: int
    amount_micros: int


class UsageOut(msgspec.Struct, frozen=True):
    month: str
    lines: list[UsageLine]
    totals: list[UsageTotal]


# --- the billing team's month close ------------------------------------------------------

Actor = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_CONTROL,
                                    description="who did it, as the audit trail names them")]  # fmt: skip


class CloseIn(Strict, frozen=True):
    closed_by: Actor


class CustomerIn(Strict, frozen=True):
    legal_name: Name
    currency: Annotated[str, msgspec.Meta(pattern=whole("[A-Z]{3}"), description="ISO 4217", examples=["EUR"])]
    country: Annotated[str, msgspec.Meta(pattern=whole("[A-Z]{2}"), description="ISO 3166-1 alpha-2, for tax")]
    external_customer_id: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NO_CONTROL)] | None = None
    vat_id: Annotated[str, msgspec.Meta(pattern=whole("[A-Z]{2}[0-9A-Za-z+*.]{2,13}"))] | None = None
    """A business customer's VAT number (none: a consumer, for tax)."""


class EntryIn(Strict, frozen=True):
    kind: EntryKind
    amount_micros: Annotated[int, msgspec.Meta(ge=-(10**15), le=10**15)]
    """A credit: the positive amount credited. A correction: the signed change to the bill."""
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=NO_CONTROL)]
    created_by: Actor
    month: Annotated[str, msgspec.Meta(pattern=MONTH_PATTERN)] | None = None
    """An open month, not in the future (default: the current one)."""
    corrects_message_id: uuid.UUID | None = None
    corrects_entry_id: uuid.UUID | None = None


class InvoiceFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    PDF = "pdf"


# --- the suppression list ------------------------------------------------------------------------
class SuppressionIn(Strict, frozen=True):
    channel: Channel
    recipient: Annotated[str, msgspec.Meta(min_length=1, max_length=320, pattern=NO_CONTROL)]
    """As a send's `to`: an E.164 number, or an email address."""


class SuppressionOut(msgspec.Struct, frozen=True):
    id: str
    """`<channel>:<hex>`: the recipient's keyed hash. Herald keeps no recipient in clear."""
    channel: Channel
    hint: str
    """What the entry is recognised by: `+44•••••••123`, `j•••@example.com`."""
    reason: SuppressionReason
    created_at: datetime


class SuppressionPage(msgspec.Struct, frozen=True, omit_defaults=True):
    items: list[SuppressionOut]
    next: str | None = None
    """Pass as `after` for the next page; absent on the last."""


class ImportOut(msgspec.Struct, frozen=True):
    rows: int
    added: int
    """Rows not suppressed before (the others keep their first reason and time)."""


# --- sms providers and routes (admin) ------------------------------------------------------------
CountryOrAny = Annotated[str, msgspec.Meta(pattern=r"^([A-Z]{2}|\*)$")]
ProviderName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
Micros = Annotated[int, msgspec.Meta(ge=0, le=10**12)]


class ProviderIn(Strict, frozen=True):
    """A provider account. `secret` is write-only (an SMPP password, a Twilio auth token): kept
    encrypted, never answered; leave it out of a replacement to keep the stored one."""

    kind: ProviderKind
    endpoint: Annotated[str, msgspec.Meta(min_length=1, max_length=2048, pattern=NO_CONTROL)]
    """smpp: `host:port`; twilio and carrier: the API's base URL."""
    account: Annotated[str, msgspec.Meta(max_length=64, pattern=NO_CONTROL)] = ""
    """smpp: the system_id; twilio: the Account SID."""
    secret: Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=NO_CONTROL)] | None = None
    sender: SmsSender | None = None
    rate_per_second: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 0
    window: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    binds: Annotated[int, msgspec.Meta(ge=1, le=32)] = 1
    prices: Annotated[dict[CountryOrAny, Micros], msgspec.Meta(max_length=300)] = {}
    """Micro-units per segment by country (`*`: the rest), for cost-ranked routes."""
    enabled: bool = True


class ProviderOut(msgspec.Struct, frozen=True):
    name: str
    kind: ProviderKind
    endpoint: str
    account: str
    sender: str
    rate_per_second: int
    window: int
    binds: int
    prices: dict[str, int]
    enabled: bool
    has_secret: bool


class RouteIn(Strict, frozen=True):
    country: CountryOrAny
    providers: Annotated[list[ProviderName], msgspec.Meta(min_length=1, max_length=8)]
    strategy: RouteStrategy = RouteStrategy.ORDERED
    tenant_id: uuid.UUID | None = None


class RouteOut(msgspec.Struct, frozen=True):
    country: str
    strategy: RouteStrategy
    providers: list[str]
    tenant_id: uuid.UUID | None = None


# --- email -------------------------------------------------------------------------------------
Selector = Annotated[str, msgspec.Meta(pattern=whole("[a-z0-9][a-z0-9-]{0,62}"), examples=["herald1"])]


class IdentityIn(Strict, frozen=True):
    """An address to send email from. Without `dkim_private_key` Herald generates a 2048-bit RSA
    key; with it (PEM, unencrypted, RSA of 1,024 to 4,096 bits), the tenant's own. The private key
    is write-only: stored wrapped under Herald's key-encryption key, never answered. Putting an
    existing address again replaces its key: it is `pending` until verified again."""

    from_address: EmailAddress
    from_name: Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=NO_CONTROL)] | None = None
    selector: Selector = "herald1"
    dkim_private_key: Annotated[str, msgspec.Meta(min_length=100, max_length=10_000)] | None = None


class DnsRecordOut(msgspec.Struct, frozen=True):
    type: str
    name: str
    value: str


class IdentityOut(msgspec.Struct, frozen=True):
    from_address: str
    from_name: str | None
    domain: str
    selector: str
    status: str
    """`pending` until `POST …/verify` finds `dns_records` published; then `verified`."""
    dns_records: list[DnsRecordOut]
    """What to publish in the domain's DNS: the DKIM key record."""
    created_at: datetime
    verified_at: datetime | None


# --- campaigns ---------------------------------------------------------------------------------
class CampaignCreate(Strict, frozen=True):
    name: Name
    template: TemplateRef
    send_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    """Start sending at this time (up to 30 days ahead) once started; absent: when started."""
    ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=MAX_TTL_SECONDS)] | None = None
    """Each message's time to live from when it is produced; absent: its category's default."""


class CampaignStart(Strict, frozen=True):
    accept_tail: bool = False
    """Start (or resume) even though the estimate says the last messages would expire before
    they are sent, or pass the daily recipient limit (those are then refused or expire)."""


class CampaignCounts(msgspec.Struct, frozen=True):
    rows: int
    rejected: int
    accepted: int
    scheduled: int
    queued: int
    sent: int
    delivered: int
    read: int
    failed: int
    expired: int
    cancelled: int


class CampaignOut(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    template: TemplateRef
    state: Literal["draft", "scheduled", "sending", "paused", "completed", "cancelled"]
    send_at: datetime | None
    ttl_seconds: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancelled_at: datetime | None
    counts: CampaignCounts


class CampaignList(msgspec.Struct, frozen=True):
    items: list[CampaignOut]


class CostLineOut(msgspec.Struct, frozen=True):
    country: str | None
    messages: int
    quantity: int
    """Units billed: segments for sms, messages elsewhere."""
    unit_price_micros: int | None
    """Per unit, in millionths of `currency`; null: the rate card has no price for it."""
    amount_micros: int


class EstimateOut(msgspec.Struct, frozen=True):
    channel: Channel
    category: Category
    billed: bool
    currency: str | None
    lines: list[CostLineOut]
    total_micros: int
    messages: int
    new_recipients: int
    recipients_used_24h: int
    daily_recipient_limit: int | None
    rate_per_second: float
    send_seconds: float
    ttl_seconds: int
    outlasts_ttl: bool
    over_daily_limit: bool
