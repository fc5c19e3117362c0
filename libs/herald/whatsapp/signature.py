"""`X-Hub-Signature-256` on Meta's webhooks: `sha256=` and the hex HMAC-SHA256 of the raw body
under the app secret, compared in constant time over the bytes as received."""

from __future__ import annotations

import hashlib
import hmac


def verify(app_secret: bytes, header: str, raw: bytes) -> bool:
    scheme, _, digest = header.partition("=")
    if scheme != "sha256" or not digest:
        return False
    expected = hmac.new(app_secret, raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, digest.strip().lower())
