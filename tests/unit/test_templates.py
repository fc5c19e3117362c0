from __future__ import annotations

import pytest

from herald.domain.models import Category, Channel
from herald.domain.templates import lint, placeholders, render
from herald.errors import InvalidRequest


def test_placeholders_in_order_without_duplicates() -> None:
    assert placeholders("Hi {{name}}, code {{ code }} for {{name}}") == ["name", "code"]


def test_render_substitutes_every_placeholder() -> None:
    assert render("Hi {{name}}, code {{ code }}", {"name": "Ada", "code": "42"}, Channel.SMS) == "Hi Ada, code 42"


def test_render_does_not_interpret_param_values() -> None:
    # A value that looks like a placeholder is inserted literally, never expanded again.
    assert render("Hi {{name}}", {"name": "{{secret}}"}, Channel.SMS) == "Hi {{secret}}"


def test_render_names_missing_and_extra_params() -> None:
    with pytest.raises(InvalidRequest) as caught:
        render("Hi {{name}} {{code}}", {"name": "x", "coupon": "y"}, Channel.SMS)
    assert caught.value.code == "params_missing"
    assert {f.field for f in caught.value.fields} == {"params.code", "params.coupon"}


def test_render_rejects_overlong_result() -> None:
    with pytest.raises(InvalidRequest) as caught:
        render("{{a}}{{b}}", {"a": "x" * 1000, "b": "y" * 700}, Channel.SMS)
    assert caught.value.code == "body_too_long"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("Hello {{ first-name }}", "not a valid"),
        ("Hello {{name}", "not a valid"),
        ("Hello name}}", "not a valid"),
        ("x" * 1601, "1601 characters"),
        ("Our big sale starts {{day}}", "marketing"),
        ("Get 20% off now", "marketing"),
    ],
)
def test_lint_finds_problem(body: str, fragment: str) -> None:
    problems = lint(body, Channel.SMS, Category.UTILITY)
    assert problems, body
    assert any(fragment in p.message for p in problems), problems


def test_lint_accepts_marketing_words_in_marketing_templates() -> None:
    assert lint("Our big sale starts {{day}}", Channel.WHATSAPP, Category.MARKETING) == []


def test_lint_does_not_flag_words_containing_marketing_words() -> None:
    # "wholesale" and "offering" contain "sale"/"offer" but are not promotional on their own.
    assert lint("Your wholesale order {{id}} shipped", Channel.SMS, Category.UTILITY) == []


def test_lint_limit_depends_on_channel() -> None:
    body = "x" * 1500
    assert lint(body, Channel.SMS, Category.UTILITY) == []
    assert lint(body, Channel.WHATSAPP, Category.UTILITY) != []
