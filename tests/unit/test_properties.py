"""Property-based tests (hypothesis): template rendering and batch-item validation."""

from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.domain.models import Channel
from herald.domain.templates import render
from herald.errors import InvalidRequest
from herald_api.controllers.messages import decode_item

NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
# Literal text between placeholders: anything without braces (a brace pair would be a lint error).
TEXT = st.text(alphabet=st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)), max_size=20)
VALUES = st.text(max_size=30)  # values may contain "{{x}}": substitution must not re-expand them


@given(parts=st.lists(st.tuples(TEXT, NAMES), max_size=6), tail=TEXT, values=st.data())
@settings(max_examples=300, deadline=None)
def test_render_substitutes_each_placeholder_once_and_nothing_else(
    parts: list[tuple[str, str]], tail: str, values: st.DataObject
) -> None:
    names = list(dict.fromkeys(name for _, name in parts))
    params = {name: values.draw(VALUES, label=name) for name in names}
    body = "".join(f"{text}{{{{{name}}}}}" for text, name in parts) + tail
    expected = "".join(text + params[name] for text, name in parts) + tail
    assert render(body, params, Channel.EMAIL) == expected


@given(parts=st.lists(st.tuples(TEXT, NAMES), min_size=1, max_size=6), extra=NAMES, drop=st.integers(0, 5))
@settings(max_examples=200, deadline=None)
def test_missing_and_extra_params_are_refused_by_name(parts: list[tuple[str, str]], extra: str, drop: int) -> None:
    names = list(dict.fromkeys(name for _, name in parts))
    body = "".join(f"{text}{{{{{name}}}}}" for text, name in parts)
    params = {name: "v" for name in names}
    missing = names[drop % len(names)]
    del params[missing]
    if extra not in names:
        params[extra] = "v"
    with pytest.raises(InvalidRequest) as caught:
        render(body, params, Channel.EMAIL)
    fields = {f.field for f in caught.value.fields}
    assert f"params.{missing}" in fields
    assert extra in names or f"params.{extra}" in fields


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(string.printable, max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
ITEM_KEYS = ["to", "channel", "template", "params", "reference", "ttl_seconds", "idempotency_key", "surprise"]


@given(item=st.dictionaries(st.sampled_from(ITEM_KEYS), JSON, max_size=8) | JSON)
@settings(max_examples=400, deadline=None)
def test_a_batch_item_is_either_valid_or_refused_with_a_named_field(item: Any) -> None:
    outcome: Any
    try:
        outcome = decode_item(item)
    except InvalidRequest as exc:  # anything else escaping would be a 500
        outcome = exc
    if isinstance(outcome, InvalidRequest):
        assert outcome.fields, outcome.detail
        assert all(isinstance(f.field, str) and f.field for f in outcome.fields)
    else:
        assert outcome.channel in set(Channel)
