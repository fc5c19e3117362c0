"""Verifying Herald's callbacks: message statuses, and recipients suppressed.

Each callback is `POST` with `Herald-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
"<t>." + raw body)>`. Verify over the raw bytes, before parsing; reject stale timestamps; during
a secret rotation pass both secrets. Delivery is at least once: dedupe on (message_id, status)
for statuses, on (message_id, type) for suppressions.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

import msgspec

from herald_client.errors import InvalidSignature
from herald_client.models import CallbackEvent, SuppressionEvent

_DECODERS: dict[str, msgspec.json.Decoder[CallbackEvent] | msgspec.json.Decoder[SuppressionEvent]] = {
    "message.status": msgspec.json.Decoder(CallbackEvent),
    "recipient.suppressed": msgspec.json.Decoder(SuppressionEvent),
}


class _Kind(msgspec.Struct):
    type: str = "message.status"


_KIND = msgspec.json.Decoder(_Kind)


def verify_callback(
    body: bytes,
    signature_header: str | None,
    secrets: str | Sequence[str],
    *,
    tolerance_seconds: int = 300,
    now: float | None = None,
) -> CallbackEvent | SuppressionEvent:
    """The callback's event (a message's status, or a recipient suppressed: by its `type`) if
    `signature_header` signs `body` with one of `secrets` within `tolerance_seconds` of now
    (either way); raises `InvalidSignature` otherwise."""
    if not signature_header or not signature_header.isascii():
        raise InvalidSignature("missing or malformed Herald-Signature")
    fields: dict[str, list[str]] = {}
    for part in signature_header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        raise InvalidSignature("Herald-Signature has no timestamp") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance_seconds:
        raise InvalidSignature("Herald-Signature is too old or from the future")
    signed = f"{timestamp}.".encode() + body
    candidates = [c.encode() for c in fields.get("v1", [])]
    for secret in [secrets] if isinstance(secrets, str) else secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest().encode()
        if any(hmac.compare_digest(expected, c) for c in candidates):
            try:
                decoder = _DECODERS.get(_KIND.decode(body).type)
                if decoder is None:
                    raise InvalidSignature("signed, but of a callback type this client does not know")
                return decoder.decode(body)
            except msgspec.DecodeError as exc:
                raise InvalidSignature(f"signed, but not a callback this client reads: {exc}") from exc
    raise InvalidSignature("Herald-Signature does not match")
