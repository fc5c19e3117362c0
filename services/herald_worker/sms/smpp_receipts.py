"""What an SMSC's `deliver_sm` says: a delivery receipt, or a reply from a handset.

Receipts (esm_class bits 2-5 = 0x04; SMPP 3.4 Appendix B) carry their text as
`id:IIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E
text:…`, and often the `receipted_message_id` (0x001E) and `message_state` (0x0427) TLVs.
Vendors vary: key case, missing fields, ids in decimal where the submit answered hex, seconds in
the dates, `err` in hex or decimal. So the TLVs are preferred where present, the text is read by
key wherever the keys appear, and a receipt that names no id is not a receipt.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime

import msgspec

from herald.domain.status import Status

TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427
ESM_CLASS_RECEIPT = 0x04

_FIELD = re.compile(r"(id|sub|dlvrd|submit date|done date|stat|err|text)\s*:\s*(\S*)", re.IGNORECASE)
_STAT = {
    "DELIVRD": Status.DELIVERED, "DELIVERED": Status.DELIVERED,
    "UNDELIV": Status.FAILED, "UNDELIVERABLE": Status.FAILED, "EXPIRED": Status.FAILED, "DELETED": Status.FAILED,
    "REJECTD": Status.FAILED, "REJECTED": Status.FAILED,
}  # fmt: skip
"""ACCEPTD, ENROUTE and UNKNOWN are not final: such a receipt changes nothing."""
_MESSAGE_STATE = {2: Status.DELIVERED, 3: Status.FAILED, 4: Status.FAILED, 5: Status.FAILED, 8: Status.FAILED}
"""message_state TLV: 2 DELIVERED, 3 EXPIRED, 4 DELETED, 5 UNDELIVERABLE, 8 REJECTED."""

STOP_WORDS = frozenset({
    "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE",  # CTIA's list
    "ARRET", "STOPP", "BAJA", "ALTO", "PARAR", "CANCELAR", "ABMELDEN", "AFMELDEN", "ANNULLA", "FINE",
})  # fmt: skip
"""A reply that is one of these (any case, accents and punctuation aside) opts out: the carriers'
(CTIA) keywords and their usual translations (French, German, Spanish, Portuguese, Dutch, Italian)."""


class Receipt(msgspec.Struct, frozen=True):
    provider_message_id: str
    status: Status
    at_ms: int | None
    error: str | None
    """The SMSC's words: `UNDELIV err:001`."""


def is_receipt(esm_class: int) -> bool:
    return esm_class & 0x3C == ESM_CLASS_RECEIPT


def _date(value: str | None) -> int | None:
    if value is None:
        return None
    digits = value[:12] if len(value) >= 12 else value[:10]
    try:
        at = datetime.strptime(digits, "%y%m%d%H%M%S" if len(digits) == 12 else "%y%m%d%H%M").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(at.timestamp() * 1000)


def parse_receipt(text: bytes, tlvs: dict[int, bytes]) -> Receipt | None:
    """The receipt, or None if it names no message or reports nothing final."""
    fields = {k.lower(): v for k, v in _FIELD.findall(text.decode("latin-1"))}
    tlv_id = tlvs.get(TLV_RECEIPTED_MESSAGE_ID)
    message_id = tlv_id.rstrip(b"\0").decode("latin-1") if tlv_id else fields.get("id")
    if not message_id:
        return None
    stat = fields.get("stat", "").upper()
    status = _STAT.get(stat)
    if status is None and (state := tlvs.get(TLV_MESSAGE_STATE)):
        status = _MESSAGE_STATE.get(state[0])
    if status is None:
        return None
    err = fields.get("err")
    error = None if status is Status.DELIVERED else f"{stat or 'FAILED'} err:{err or '?'}"
    # Compared without case: the submit's answer and the receipt may spell a hex id differently.
    return Receipt(message_id.lower(), status, _date(fields.get("done date")), error)


def is_stop(text: str) -> bool:
    """Whether a reply opts out: its one word (punctuation and accents aside) is a stop word."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    word = re.sub(r"[^A-Za-z]", "", folded).upper()
    return word in STOP_WORDS
