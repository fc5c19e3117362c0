"""What comes back to a bounce address: delivery status notifications (RFC 3464) and complaint
feedback reports (ARF, RFC 5965), read with the standard library's email parser.

Only what Herald acts on is kept: per recipient, the action and the enhanced status code; the
diagnostic's SMTP reply code. A report's free text (and a diagnostic, which often quotes the
address) is never kept: recipients stay out of Herald's logs and database in clear.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage, Message, MIMEPart
from enum import StrEnum

import msgspec

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
_REPLY = re.compile(r"\b([245]\d\d)\b")


class Kind(StrEnum):
    DELIVERED = "delivered"
    """`Action: delivered` (or `relayed`/`expanded`: handed on, the last report Herald gets)."""
    FAILED = "failed"
    """`Action: failed`: a 5.x.x status is a hard bounce; a 4.x.x one, the relay gave up retrying."""
    DELAYED = "delayed"
    """`Action: delayed`: the relay keeps retrying (a soft bounce); nothing changes yet."""
    COMPLAINED = "complained"
    """An ARF report (`Feedback-Type: abuse`): the recipient marked the mail as spam."""


class Report(msgspec.Struct, frozen=True):
    kind: Kind
    recipient: str | None
    """The address the report is about (`Final-Recipient`, `Original-Rcpt-To`): for suppression,
    in memory only."""
    status: str | None = None
    """The enhanced status code (`5.1.1`)."""
    reply: int | None = None
    """The SMTP reply code of the diagnostic (`550`)."""

    @property
    def hard(self) -> bool:
        return self.kind is Kind.FAILED and (self.status or "5").startswith("5")


def parse(raw: bytes) -> list[Report]:
    """The reports a message carries; empty when it is not a report Herald reads."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    if not isinstance(message, EmailMessage) or message.get_content_type() != "multipart/report":
        return []
    report_type = str(message.get_param("report-type", "")).lower()
    parts = {part.get_content_type(): part for part in message.iter_parts()}
    if report_type == "delivery-status" and (status := parts.get("message/delivery-status")) is not None:
        return [r for block in _blocks(status)[1:] if (r := _recipient_report(block)) is not None]
    if report_type == "feedback-report" and (feedback := parts.get("message/feedback-report")) is not None:
        (fields,) = _blocks(feedback)[:1] or [Message()]
        if str(fields.get("Feedback-Type", "")).strip().lower() != "abuse":
            return []
        recipient = _address(fields.get("Original-Rcpt-To")) or _original_header(parts, "To")
        return [Report(Kind.COMPLAINED, recipient)]
    return []


def original_message_id(raw: bytes) -> str | None:
    """The Message-ID of the mail a report returns (its headers part or the whole message)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    if not isinstance(message, EmailMessage):
        return None
    parts = {part.get_content_type(): part for part in message.iter_parts()}
    found = _original_header(parts, "Message-ID")
    return None if found is None else found.strip()


def _blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    return [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []


def _recipient_report(block: Message) -> Report | None:
    action = str(block.get("Action", "")).strip().lower()
    kind = {"delivered": Kind.DELIVERED, "relayed": Kind.DELIVERED, "expanded": Kind.DELIVERED,
            "failed": Kind.FAILED, "delayed": Kind.DELAYED}.get(action)  # fmt: skip
    if kind is None:
        return None
    status = _ENHANCED.search(str(block.get("Status", "")))
    reply = _REPLY.search(str(block.get("Diagnostic-Code", "")))
    return Report(kind, _address(block.get("Final-Recipient") or block.get("Original-Recipient")),
                  status.group(0) if status else None, int(reply.group(1)) if reply else None)  # fmt: skip


def _address(field: object) -> str | None:
    """`rfc822; bob@example.org` or `<bob@example.org>` → `bob@example.org`."""
    if field is None:
        return None
    text = str(field).rpartition(";")[2].strip().strip("<>").strip()
    return text if "@" in text else None


def _original_header(parts: dict[str, MIMEPart], name: str) -> str | None:
    for content_type in ("text/rfc822-headers", "message/rfc822"):
        part = parts.get(content_type)
        if part is None:
            continue
        if content_type == "message/rfc822":
            inner = _blocks(part)
            if inner and inner[0].get(name) is not None:
                return _address(inner[0][name]) if name == "To" else str(inner[0][name])
            continue
        headers = email.message_from_string(str(part.get_content()), policy=email.policy.default)
        if headers.get(name) is not None:
            return _address(headers[name]) if name == "To" else str(headers[name])
    return None


class _SesRecipient(msgspec.Struct, frozen=True):
    emailAddress: str
    status: str | None = None


class _SesBounce(msgspec.Struct, frozen=True):
    bounceType: str
    bouncedRecipients: list[_SesRecipient] = []


class _SesComplaint(msgspec.Struct, frozen=True):
    complainedRecipients: list[_SesRecipient] = []


class _SesDelivery(msgspec.Struct, frozen=True):
    recipients: list[str] = []


class _SesMail(msgspec.Struct, frozen=True):
    messageId: str


class _SesEvent(msgspec.Struct, frozen=True):
    mail: _SesMail
    eventType: str | None = None
    notificationType: str | None = None
    bounce: _SesBounce | None = None
    complaint: _SesComplaint | None = None
    delivery: _SesDelivery | None = None


_SES_EVENT = msgspec.json.Decoder(_SesEvent)


def from_ses(message: str) -> tuple[str, list[Report]]:
    """An SES event (the `Message` of an SNS notification: SES Developer Guide, "Contents of
    event data"): the SES message id it is about and its reports. A permanent bounce is a hard
    failure, a transient one a delay (SES retries), a complaint a complaint; other event types
    (send, open, click…) carry nothing Herald acts on. Raises msgspec errors for what is not one."""
    event = _SES_EVENT.decode(message)
    kind = (event.eventType or event.notificationType or "").lower()
    reports: list[Report] = []
    if kind == "delivery" and event.delivery is not None:
        reports = [Report(Kind.DELIVERED, address) for address in event.delivery.recipients]
    elif kind == "bounce" and event.bounce is not None:
        hard = event.bounce.bounceType == "Permanent"
        reports = [
            Report(Kind.FAILED if hard else Kind.DELAYED, r.emailAddress,
                   (r.status if r.status and _ENHANCED.fullmatch(r.status) else ("5.0.0" if hard else "4.0.0")))
            for r in event.bounce.bouncedRecipients
        ]  # fmt: skip
    elif kind == "complaint" and event.complaint is not None:
        reports = [Report(Kind.COMPLAINED, r.emailAddress) for r in event.complaint.complainedRecipients]
    return event.mail.messageId, reports
