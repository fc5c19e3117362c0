"""The suppression list: who a tenant must not send marketing to, on which channel, and why.

**Policy** (one rule, applied at accept and again by the worker before the send): a `marketing`
message to a suppressed recipient is refused with `recipient_suppressed`, per item in a batch
(or, suppressed while it waited, fails unsent with that reason). `authentication` and `utility`
messages are sent: a one-time password the recipient just asked for, or a change to a flight
they booked, is what they expect whatever they said about promotions. (An operator or provider
that blocks a number outright after STOP refuses such a send itself, and it fails as
`opted_out`.)

Recipients are kept as keyed hashes (`herald.domain.limits.RecipientHasher`); an entry is
named by its hash in hex (its `id`) and recognised by a `hint`.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from enum import StrEnum

import msgspec

from herald.domain import recipients
from herald.domain.models import Category, Channel
from herald.errors import FieldError, HeraldError, InvalidRequest

SUPPRESSED_CATEGORIES = frozenset({Category.MARKETING})
"""The categories a suppression refuses (the policy above)."""
MAX_IMPORT_ROWS = 100_000

ENTRY_ID = r"^(sms|whatsapp|email):[0-9a-f]{64}$"
"""An entry's `id`: `<channel>:<the recipient's keyed hash in hex>`, what the store's key reads back."""


class SuppressionReason(StrEnum):
    ADDED = "added"
    """Through the API, one at a time."""
    IMPORTED = "imported"
    """From a CSV import."""
    STOP_REPLY = "stop_reply"
    """The recipient replied STOP (or a translation of it) by SMS."""
    PROVIDER_OPT_OUT = "provider_opt_out"
    """The provider refused a send because the recipient opted out with it."""
    UNSUBSCRIBED = "unsubscribed"
    """One-click unsubscribe from an email."""
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class SuppressedCallbackV1(msgspec.Struct, frozen=True):
    """What a tenant's callback URL receives (type `recipient.suppressed`) when a recipient of one
    of its messages is suppressed by their own act or a provider's report: an unsubscribe, a
    hard bounce, a complaint. It names the message and the entry (`suppression_id`, as
    `/v1/suppressions` lists it), never the address. Receivers dedupe on (message_id, type)."""

    message_id: uuid.UUID
    channel: Channel
    reason: SuppressionReason
    suppression_id: str
    at: datetime
    type: str = "recipient.suppressed"


CALLBACK_STATUS = "suppressed"


def callback_key(message_id: uuid.UUID) -> uuid.UUID:
    """The callback outbox orders and de-duplicates a message's status callbacks by its id and
    their rank: this callback is kept under a key of its own, so it neither waits for nor
    outranks them (a `failed` status callback must not be taken for stale behind it)."""
    return uuid.uuid5(message_id, "recipient.suppressed")


class Entry(msgspec.Struct, frozen=True):
    """A recipient to suppress, validated: its normalised address stays in memory only."""

    channel: Channel
    address: str


def hint(channel: Channel, address: str) -> str:
    """What a tenant recognises an entry by, without the database holding the recipient:
    `+44•••••••123` for a number, `j•••@example.com` for an address."""
    if channel is Channel.EMAIL:
        local, _, domain = address.partition("@")
        return f"{local[:1]}•••@{domain}"
    return f"{address[:3]}{'•' * max(0, len(address) - 6)}{address[-3:]}"


def entry(channel: Channel, raw: str, field: str = "recipient") -> Entry:
    """Validated as a send's recipient is: the same address suppresses the same sends."""
    return Entry(channel, recipients.normalize(channel, raw, field=field).address)


def parse_csv(text: str) -> list[Entry]:
    """A CSV with a header naming `channel` and `recipient` (other columns ignored). All or
    nothing: every invalid row is reported (`rows[i].field`, i counting data rows from 0) and
    nothing is imported."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [name for name in ("channel", "recipient") if name not in header]
    if missing:
        raise InvalidRequest(
            f"the CSV header must name channel and recipient (missing: {', '.join(missing)})",
            code="invalid_csv", fields=tuple(FieldError("header", f"no {m} column") for m in missing),
        )  # fmt: skip
    entries: list[Entry] = []
    errors: list[FieldError] = []
    for index, row in enumerate(reader):
        if index >= MAX_IMPORT_ROWS:
            raise InvalidRequest.field("rows", f"more than {MAX_IMPORT_ROWS:,} rows", code="invalid_csv")
        try:
            channel = Channel((row.get("channel") or "").strip())
        except ValueError:
            errors.append(FieldError(f"rows[{index}].channel", "must be sms, whatsapp or email"))
            continue
        try:
            entries.append(entry(channel, row.get("recipient") or "", f"rows[{index}].recipient"))
        except HeraldError as exc:
            errors.extend(exc.fields)
    if errors:
        raise InvalidRequest(
            f"{len(errors)} invalid row(s); nothing was imported", code="invalid_csv", fields=tuple(errors[:100])
        )
    return entries
