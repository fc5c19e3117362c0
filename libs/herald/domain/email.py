"""Email: a template's parts, a rendered mail's content, and the identities tenants send from.

An email template has three parts with one set of named params: the `subject`, the text part
(the template's `body`) and an optional `html` part. Rendering substitutes the same params into
each; in the HTML part every value is escaped (`html.escape`, quotes included), so a param is
always text there, never markup; a value with a line break or another control character is
refused for a param the subject uses, so a param can never end the subject and start a header.

What travels sealed as a message's body is the rendered content (`EmailContent`), encoded by
`encode` and read back by `decode`; the worker builds the MIME message from it.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

import msgspec

from herald.domain.models import Category, Channel
from herald.domain.templates import BODY_LIMITS, EmailParts, check_params, lint, placeholders, substitute
from herald.errors import FieldError, InvalidRequest

MAX_SUBJECT = 255
"""Characters of a rendered subject (RFC 5322 allows 998 per line; mail clients show far fewer)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class EmailContent(msgspec.Struct, frozen=True, array_like=True):
    """A rendered mail: what is sealed as the message's body."""

    subject: str
    text: str
    html: str | None = None


_CONTENT = msgspec.json.Decoder(EmailContent)


def encode(content: EmailContent) -> str:
    return msgspec.json.encode(content).decode()


def decode(body: str) -> EmailContent:
    return _CONTENT.decode(body)


def lint_parts(parts: EmailParts, body: str, category: Category) -> list[FieldError]:
    """Problems with an email template's subject and HTML part (the text part is linted as any
    body is). The HTML part, when there is one, takes the same params as the text part: a reader
    of either sees the same message."""
    errors = lint(parts.subject, Channel.EMAIL, category, field="email.subject")
    if _CONTROL.search(parts.subject):
        errors.append(FieldError("email.subject", "must be one line without control characters"))
    if len(parts.subject) > MAX_SUBJECT:
        errors.append(FieldError("email.subject", f"is {len(parts.subject)} characters; at most {MAX_SUBJECT}"))
    if parts.html is not None:
        errors += lint(parts.html, Channel.EMAIL, category, field="email.html")
        if set(placeholders(parts.html)) != set(placeholders(body)):
            errors.append(FieldError("email.html", "must use the same placeholders as the text part (body)"))
    return errors


def render(body: str, parts: EmailParts, params: Mapping[str, str]) -> EmailContent:
    """Every part rendered with `params`. Raises InvalidRequest for params that do not match the
    template, a value the subject would carry that is not one line, or a part past its limit."""
    texts = [parts.subject, body] + ([parts.html] if parts.html is not None else [])
    check_params({name for text in texts for name in placeholders(text)}, params)
    in_subject = placeholders(parts.subject)
    if broken := [name for name in in_subject if _CONTROL.search(params[name])]:
        raise InvalidRequest(
            "a param used in the subject must be one line", code="params_invalid",
            fields=tuple(FieldError(f"params.{name}", "contains a line break or control character") for name in broken),
        )  # fmt: skip
    content = EmailContent(
        subject=substitute(parts.subject, params),
        text=substitute(body, params),
        html=None if parts.html is None else substitute(parts.html, params, html.escape),
    )
    if len(content.subject) > MAX_SUBJECT:
        raise InvalidRequest.field("params", f"the rendered subject exceeds {MAX_SUBJECT} characters",
                                   code="body_too_long")  # fmt: skip
    limit = BODY_LIMITS[Channel.EMAIL]
    if len(content.text) > limit or len(content.html or "") > limit:
        raise InvalidRequest.field("params", "the rendered body exceeds the email limit", code="body_too_long")
    return content


class IdentityStatus(StrEnum):
    PENDING = "pending"
    """Created; its DKIM record is not yet seen in the domain's DNS."""
    VERIFIED = "verified"
    """Its DKIM record was found as given: the tenant may send from it."""


class DnsRecord(msgspec.Struct, frozen=True):
    """A record the tenant publishes in its domain's DNS."""

    type: str
    name: str
    value: str


class Identity(msgspec.Struct, frozen=True):
    """An address a tenant sends from, with the DKIM key that signs its mail (the private part
    wrapped under the KEK in the database, never answered)."""

    tenant_id: uuid.UUID
    from_address: str
    """`receipts@mail.example.com`: its domain is the identity's and DKIM's `d=`."""
    from_name: str | None
    selector: str
    """DKIM's `s=`: the key's record is `<selector>._domainkey.<domain>`."""
    public_key: str
    """The DKIM public key, base64 DER (SubjectPublicKeyInfo), as published in `p=`."""
    status: IdentityStatus
    created_at: datetime
    verified_at: datetime | None = None

    @property
    def domain(self) -> str:
        return self.from_address.rpartition("@")[2]

    def dns_records(self) -> list[DnsRecord]:
        """What the tenant publishes before Herald sends from the domain."""
        return [DnsRecord("TXT", f"{self.selector}._domainkey.{self.domain}", dkim_record(self.public_key))]


def dkim_record(public_key: str) -> str:
    """A DKIM key record (RFC 6376 §3.6.1)."""
    return f"v=DKIM1; k=rsa; p={public_key}"


def published(record_texts: list[str], public_key: str) -> bool:
    """Whether a DKIM TXT record found in DNS (its strings joined) publishes `public_key`."""
    for text in record_texts:
        tags = dict((k.strip(), v.strip()) for k, _, v in (t.partition("=") for t in text.split(";")) if k.strip())
        if tags.get("v", "DKIM1") == "DKIM1" and re.sub(r"\s+", "", tags.get("p", "")) == public_key:
            return True
    return False
