"""SMS coding and segments. The figures follow 3GPP TS 23.040 9.2.3.24.1 (a 6-octet concatenation
header) and the per-segment limits carriers publish (Twilio's "What is an SMS segment?": 160 /
153 GSM-7 characters, 70 / 67 UCS-2)."""

from __future__ import annotations

import gsm0338
import pytest
from hypothesis import given
from hypothesis import strategies as st

from herald.domain.segments import Coding, count, segment


@pytest.mark.parametrize(
    ("text", "coding", "segments"),
    [
        ("", Coding.GSM7, 1),
        ("a" * 160, Coding.GSM7, 1),
        ("a" * 161, Coding.GSM7, 2),
        ("a" * 306, Coding.GSM7, 2),
        ("a" * 307, Coding.GSM7, 3),
        ("€" * 80, Coding.GSM7, 1),  # 160 septets: each euro is escape + code
        ("€" * 81, Coding.GSM7, 2),
        ("Ça coûte 5€", Coding.UCS2, 1),  # û is not in GSM 03.38 (Ç is)
        ("ж" * 70, Coding.UCS2, 1),
        ("ж" * 71, Coding.UCS2, 2),
        ("ж" * 134, Coding.UCS2, 2),
        ("ж" * 135, Coding.UCS2, 3),
        ("😀" * 35, Coding.UCS2, 1),  # 70 code units: a surrogate pair each
        ("😀" * 36, Coding.UCS2, 2),
    ],
)
def test_coding_and_segments(text: str, coding: Coding, segments: int) -> None:
    result = segment(text)
    assert (result.coding, result.segments, count(text)) == (coding, segments, segments)


def test_an_extension_character_is_never_cut_between_parts() -> None:
    text = "a" * 152 + "€" + "b" * 10  # 164 septets; the euro's two would straddle 153
    parts = segment(text).parts
    assert [len(p) for p in parts] == [152, 12]
    assert parts[1] == b"\x1be" + b"b" * 10


def test_a_surrogate_pair_is_never_cut_between_parts() -> None:
    text = "ж" * 66 + "😀" + "ж" * 10
    parts = segment(text).parts
    assert [p.decode("utf-16-be") for p in parts] == ["ж" * 66, "😀" + "ж" * 10]


def test_concatenated_parts_carry_the_udh_with_reference_count_and_number() -> None:
    messages = segment("a" * 200).short_messages(reference=0x1A7)
    assert [m[:6] for m in messages] == [bytes((5, 0, 3, 0xA7, 2, 1)), bytes((5, 0, 3, 0xA7, 2, 2))]
    assert segment("short").short_messages(reference=1) == [b"short"]


@given(st.text(max_size=700))
def test_parts_join_back_to_the_text_and_count_agrees(text: str) -> None:
    result = segment(text)
    assert count(text) == result.segments
    if result.coding is Coding.GSM7:
        assert gsm0338.Codec().decode(b"".join(result.parts))[0] == text
        assert all(len(p) <= (160 if result.segments == 1 else 153) for p in result.parts)
    else:
        assert "".join(p.decode("utf-16-be") for p in result.parts) == text
        assert all(len(p) <= (140 if result.segments == 1 else 134) for p in result.parts)
