"""How a text travels as SMS: its coding and its segments (3GPP TS 23.038, TS 23.040).

GSM 03.38's 7-bit default alphabet where every character of the text is in it (an extension
character such as € [ ] { } takes two septets, escape and code), UCS-2 otherwise. One segment
carries 140 octets of user data: 160 septets or 70 UCS-2 code units. A longer text is split, and
each part then starts with a 6-octet concatenation header (information element 0x00, an 8-bit
reference, the part count and the part's number), which leaves 153 septets or 67 code units. A
character is never cut between parts: neither an escape from its code nor a surrogate pair
(a character outside the BMP) from its other half.

Operators bill per segment, and so does Herald: the count is decided once, at accept, from the
rendered text, and the worker splits that same text with the same rules (`segment`).
"""

from __future__ import annotations

import functools
from enum import IntEnum

import gsm0338
import msgspec

SINGLE = {0: 160, 8: 70}
"""Characters (septets, code units) in an unsplit message, by coding."""
PER_PART = {0: 153, 8: 67}
"""Characters in each part of a concatenated message, by coding."""
_UNIT_OCTETS = {0: 1, 8: 2}
"""Octets per septet (SMPP carries GSM-7 unpacked, one septet per octet) or per code unit."""


class Coding(IntEnum):
    """The SMPP `data_coding` of a submit."""

    GSM7 = 0
    """The SMSC's default alphabet: GSM 03.38, unpacked."""
    UCS2 = 8


class Segmented(msgspec.Struct, frozen=True):
    coding: Coding
    parts: tuple[bytes, ...]
    """Each part's user data, encoded, without the concatenation header."""

    @property
    def segments(self) -> int:
        return len(self.parts)

    def short_messages(self, reference: int) -> list[bytes]:
        """What each `submit_sm` carries: the part alone when there is one; otherwise each part
        after its concatenation header (the submit's `esm_class` then has UDHI, 0x40, set)."""
        if len(self.parts) == 1:
            return [self.parts[0]]
        total = len(self.parts)
        ref = reference & 0xFF
        return [bytes((0x05, 0x00, 0x03, ref, total, n)) + part for n, part in enumerate(self.parts, start=1)]


_CODEC = gsm0338.Codec()


@functools.lru_cache(maxsize=4096)
def _gsm(char: str) -> bytes | None:
    """The character's septets (unpacked), or None when GSM 03.38 has no such character."""
    try:
        encoded: bytes = _CODEC.encode(char)[0]
    except UnicodeEncodeError:
        return None
    return encoded


def _units(text: str) -> tuple[Coding, list[bytes]]:
    """Each character's encoding in the coding the whole text can take."""
    septets = [_gsm(c) for c in text]
    if all(s is not None for s in septets):
        return Coding.GSM7, [s for s in septets if s is not None]
    return Coding.UCS2, [c.encode("utf-16-be") for c in text]


def segment(text: str) -> Segmented:
    """The text's coding and its parts. An empty text is one empty segment."""
    coding, chars = _units(text)
    octet = _UNIT_OCTETS[coding]
    if sum(len(c) for c in chars) <= SINGLE[coding] * octet:
        return Segmented(coding, (b"".join(chars),))
    room = PER_PART[coding] * octet
    parts: list[bytes] = []
    current = bytearray()
    for encoded in chars:
        if len(current) + len(encoded) > room:
            parts.append(bytes(current))
            current = bytearray()
        current += encoded
    parts.append(bytes(current))
    return Segmented(coding, tuple(parts))


def count(text: str) -> int:
    """Segments the text takes (`segment(text).segments`, without building the parts)."""
    coding, chars = _units(text)
    octet = _UNIT_OCTETS[coding]
    if sum(len(c) for c in chars) <= SINGLE[coding] * octet:
        return 1
    room, parts, used = PER_PART[coding] * octet, 1, 0
    for encoded in chars:
        if used + len(encoded) > room:
            parts, used = parts + 1, 0
        used += len(encoded)
    return parts
