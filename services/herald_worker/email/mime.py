"""A rendered email as the bytes an SMTP relay takes: MIME built by the standard library's email
package, signed with the sending identity's DKIM key (dkimpy, its RSA step on OpenSSL: `dkim_openssl`).

* `Message-ID` is `<{herald message id}@{identity domain}>`: stable across retries, so a mail
  handed over twice (an answer lost, then retried) is one message to every mailbox that
  de-duplicates by it, and a bounce or a complaint names the message it is about.
* Marketing mail carries RFC 8058 one-click unsubscribe: `List-Unsubscribe` with Herald's
  https URL (a sealed token, `herald.email.unsubscribe`) and a mailto, and `List-Unsubscribe-
  Post: List-Unsubscribe=One-Click`; both are in the DKIM signature's `h=`, as Gmail and Yahoo
  require. Authentication and utility mail carry neither.
* The envelope sender is the message's signed bounce address (`herald.email.bounces`), where
  the relay's delivery reports come back.
"""

from __future__ import annotations

import email.policy
import email.utils
from email.headerregistry import Address
from email.message import EmailMessage

import dkim

from herald.domain.email import EmailContent, Identity
from herald_worker.email import dkim_openssl

dkim_openssl.install()

SIGNED_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type",
    b"list-unsubscribe", b"list-unsubscribe-post",
)  # fmt: skip
"""`h=` of every signature; a header a mail lacks is left out by dkimpy."""
_POLICY = email.policy.SMTP.clone(max_line_length=998)


class OneClick:
    """Where a marketing mail's reader unsubscribes: Herald's URL with the token, and the mailto
    whose subject carries the same token (`unsubscribe <token>`)."""

    def __init__(self, url: str, mailto: str, token: str) -> None:
        self.url, self.mailto, self.subject = url, mailto, f"unsubscribe%20{token}"


def message_id(herald_id: str, identity: Identity) -> str:
    return f"<{herald_id}@{identity.domain}>"


def build(
    herald_id: str, to: str, content: EmailContent, identity: Identity, private_key: bytes, sent_at: float,
    unsubscribe: OneClick | None,
) -> bytes:  # fmt: skip
    """The signed message, CRLF line endings, ready for DATA."""
    mail = EmailMessage(policy=_POLICY)
    local, _, domain = identity.from_address.rpartition("@")
    mail["From"] = Address(identity.from_name or "", local, domain)
    mail["To"] = to
    mail["Subject"] = content.subject
    mail["Date"] = email.utils.formatdate(sent_at, usegmt=True)
    mail["Message-ID"] = message_id(herald_id, identity)
    if unsubscribe is not None:
        mail["List-Unsubscribe"] = f"<{unsubscribe.url}>, <mailto:{unsubscribe.mailto}?subject={unsubscribe.subject}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail.set_content(content.text, cte="quoted-printable")
    if content.html is not None:
        mail.add_alternative(content.html, subtype="html", cte="quoted-printable")
    raw = mail.as_bytes()
    signature: bytes = dkim.sign(
        raw, identity.selector.encode(), identity.domain.encode(), private_key,
        canonicalize=(b"relaxed", b"relaxed"), include_headers=list(SIGNED_HEADERS),
    )  # fmt: skip
    return signature + raw
