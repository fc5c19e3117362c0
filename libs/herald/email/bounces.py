"""The envelope sender of every mail Herald sends (VERP, signed): where its bounces come back.

`bounces+<message id hex>-<tag>@<identity domain>`: the message id names the mail a delivery
report is about, and the tag (HMAC-SHA256 under a key derived from the KEK, 10 bytes) proves
Herald minted the address, so a report to an address Herald never used is refused at RCPT and
cannot fail or suppress anything. (Bounce Address Tag Validation, in spirit.)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Sequence

_ADDRESS = re.compile(r"bounces\+([0-9a-f]{32})-([0-9a-f]{20})@([^@\s]+)", re.IGNORECASE)


class BounceAddresses:
    def __init__(self, keks: Sequence[bytes]) -> None:
        if not keks:
            raise ValueError("bounce addresses need at least one KEK")
        self._keys = [hmac.new(k, b"herald/bounce-address/v1", hashlib.sha256).digest() for k in keks]

    def address(self, message_id: uuid.UUID, domain: str) -> str:
        return f"bounces+{message_id.hex}-{self._tag(self._keys[0], message_id)}@{domain}"

    def message_of(self, address: str) -> tuple[uuid.UUID, str] | None:
        """The message id and domain a bounce address names, if Herald minted it (under any KEK)."""
        match = _ADDRESS.fullmatch(address.strip().strip("<>"))
        if match is None:
            return None
        message_id = uuid.UUID(match.group(1))
        tag = match.group(2).lower()
        if not any(hmac.compare_digest(tag, self._tag(key, message_id)) for key in self._keys):
            return None
        return message_id, match.group(3).lower()

    @staticmethod
    def _tag(key: bytes, message_id: uuid.UUID) -> str:
        return hmac.new(key, message_id.bytes, hashlib.sha256).hexdigest()[:20]
