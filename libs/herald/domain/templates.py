"""Template linting and rendering. Rendering is substitution only: no code, no expressions.

Placeholders are `{{name}}` where name is `[A-Za-z_][A-Za-z0-9_]{0,63}`, optionally padded with
spaces inside the braces. Any other use of `{{` or `}}` is a lint error, so a typo like
`{{ first-name }}` is caught when the template is created, not when a million messages go out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime

import msgspec

from herald.domain.models import Category, Channel, TemplateStatus
from herald.domain.whatsapp import TemplateParts
from herald.errors import FieldError, InvalidRequest

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")
_BRACES = re.compile(r"\{\{|\}\}")

# Per-channel body limits, after rendering too: 10 concatenated SMS segments; WhatsApp's
# template body limit; a generous cap for email.
BODY_LIMITS: dict[Channel, int] = {Channel.SMS: 1_600, Channel.WHATSAPP: 1_024, Channel.EMAIL: 100_000}
MAX_PLACEHOLDERS = 50
MAX_PARAM_LENGTH = 1_000

# Words that mark promotional content; such a body belongs in the marketing class, which is
# priced and paced differently. Lowercase, matched on word boundaries.
_MARKETING_WORDS = ("sale", "discount", "offer", "promo", "promotion", "coupon", "buy now", "% off", "deal")
_MARKETING = re.compile(r"(?<![a-z])(" + "|".join(re.escape(w) for w in _MARKETING_WORDS) + r")(?![a-z])")


def placeholders(body: str) -> list[str]:
    """Placeholder names in order of first appearance, without duplicates."""
    return list(dict.fromkeys(m.group(1) for m in PLACEHOLDER.finditer(body)))


def lint(body: str, channel: Channel, category: Category, *, field: str = "body") -> list[FieldError]:
    """All problems with a template body; empty means it may be approved."""
    errors: list[FieldError] = []
    if not body.strip():
        return [FieldError(field, "must not be empty")]
    limit = BODY_LIMITS[channel]
    if len(body) > limit:
        errors.append(FieldError(field, f"is {len(body)} characters; {channel} allows {limit}"))
    stripped = PLACEHOLDER.sub("", body)
    if _BRACES.search(stripped):
        errors.append(
            FieldError(field, "contains '{{' or '}}' that is not a valid {{placeholder}} (letters, digits, _)")
        )
    if len(placeholders(body)) > MAX_PLACEHOLDERS:
        errors.append(FieldError(field, f"has more than {MAX_PLACEHOLDERS} placeholders"))
    if category is not Category.MARKETING:
        match = _MARKETING.search(body.lower())
        if match:
            errors.append(FieldError(field, f"promotional wording ({match.group(1)!r}) needs the marketing category"))
    return errors


def render(body: str, params: Mapping[str, str], channel: Channel) -> str:
    """Substitute every placeholder. Missing or extra params raise InvalidRequest naming them."""
    check_params(set(placeholders(body)), params)
    rendered = substitute(body, params)
    if len(rendered) > BODY_LIMITS[channel]:
        raise InvalidRequest.field("params", f"the rendered body exceeds the {channel} limit", code="body_too_long")
    return rendered


def substitute(text: str, params: Mapping[str, str], escape: Callable[[str], str] = str) -> str:
    """Every placeholder of `text` replaced by its param passed through `escape`."""
    return PLACEHOLDER.sub(lambda m: escape(params[m.group(1)]), text)


def check_params(wanted: set[str], params: Mapping[str, str]) -> None:
    """Raises InvalidRequest naming each param missing from `params`, not in `wanted`, or too long."""
    missing = sorted(wanted - params.keys())
    extra = sorted(params.keys() - wanted)
    errors = [FieldError(f"params.{name}", "is required by the template") for name in missing]
    errors += [FieldError(f"params.{name}", "is not a placeholder of the template") for name in extra]
    errors += [
        FieldError(f"params.{name}", f"is longer than {MAX_PARAM_LENGTH} characters")
        for name, value in params.items()
        if len(value) > MAX_PARAM_LENGTH
    ]
    if errors:
        code = "params_missing" if missing else "params_invalid"
        raise InvalidRequest("template parameters do not match the template", code=code, fields=tuple(errors))


class EmailParts(msgspec.Struct, frozen=True, omit_defaults=True):
    """What an email template has beside its text part (its `body`): `herald.domain.email`."""

    subject: str
    html: str | None = None
    from_address: str | None = None
    """The identity it is sent from; None: the tenant's first verified identity."""


class Template(msgspec.Struct, frozen=True):
    """One version of a tenant's template."""

    name: str
    language: str
    version: int
    category: Category
    channel: Channel
    body: str
    status: TemplateStatus
    created_at: datetime
    parts: TemplateParts | None = None
    """whatsapp only: examples, header, footer, buttons."""
    email: EmailParts | None = None
    """email only: the subject, the HTML part, the identity it is sent from."""
    provider_template_id: str | None = None
    """whatsapp only: Meta's id for the template."""
    requested_category: Category | None = None
    """Set when Meta recategorised it: the category it was submitted with (`category` is Meta's)."""
    rejection_reason: str | None = None
