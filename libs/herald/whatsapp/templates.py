"""Herald's templates as Meta sees them, and a message's parameters as Meta takes them.

Herald names its placeholders (`{{flight}}`); Meta's positional format numbers them (`{{1}}`) in
order of first appearance, with an example value for each. The same order turns a message's
named `params` into the body's positional parameters at send time, so the sealed content of a
whatsapp message is the list of values in that order (`encode_values`), never a rendered body:
Meta renders it.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from herald.domain.models import Category, TemplateStatus
from herald.domain.templates import PLACEHOLDER, placeholders
from herald.domain.whatsapp import TemplateParts
from herald.whatsapp.wire import (
    BodyExample,
    Button,
    MetaCategory,
    SendComponent,
    TemplateComponent,
    TemplateCreate,
    TextParameter,
)

_VALUES = msgspec.json.Decoder(list[str])
_META_CATEGORY: dict[Category, MetaCategory] = {
    Category.AUTHENTICATION: "AUTHENTICATION",
    Category.UTILITY: "UTILITY",
    Category.MARKETING: "MARKETING",
}


def positional(body: str) -> str:
    """The body with `{{name}}` numbered `{{1}}`, `{{2}}`… in order of first appearance."""
    order = {name: n for n, name in enumerate(placeholders(body), start=1)}
    return PLACEHOLDER.sub(lambda m: "{{" + str(order[m.group(1)]) + "}}", body)


def submission(name: str, language: str, category: Category, body: str, parts: TemplateParts) -> TemplateCreate:
    components = []
    if parts.header:
        components.append(TemplateComponent(type="HEADER", format="TEXT", text=parts.header))
    names = placeholders(body)
    example = BodyExample(body_text=[[parts.examples[n] for n in names]]) if names else None
    components.append(TemplateComponent(type="BODY", text=positional(body), example=example))
    if parts.footer:
        components.append(TemplateComponent(type="FOOTER", text=parts.footer))
    if parts.buttons:
        buttons = [Button(type=b.type, text=b.text, url=b.url, phone_number=b.phone_number) for b in parts.buttons]  # type: ignore[arg-type]
        components.append(TemplateComponent(type="BUTTONS", buttons=buttons))
    return TemplateCreate(name=name, language=language, category=_META_CATEGORY[category], components=components)


def category_of(meta: str) -> Category | None:
    """Herald's category for Meta's, in a template's spelling (`MARKETING`) or a webhook's pricing
    (`marketing`, `authentication_international`, `marketing_lite`); None for one Herald does not
    sell (`service`, `referral_conversion`): the message's own category then prices it."""
    word = meta.lower()
    for candidate in (word, word.partition("_")[0]):
        try:
            return Category(candidate)
        except ValueError:
            continue
    return None


def encode_values(body: str, params: Mapping[str, str]) -> str:
    """A message's parameters as sealed for the worker: the values in the body's order."""
    return msgspec.json.encode([params[n] for n in placeholders(body)]).decode()


def send_components(sealed_values: str) -> list[SendComponent]:
    values = _VALUES.decode(sealed_values)
    if not values:
        return []
    return [SendComponent(type="body", parameters=[TextParameter(text=v) for v in values])]


_STATUSES = {
    "APPROVED": TemplateStatus.APPROVED,
    "REJECTED": TemplateStatus.REJECTED,
    "PAUSED": TemplateStatus.PAUSED,
    "DISABLED": TemplateStatus.DISABLED,
    "PENDING": TemplateStatus.PENDING,
    "IN_APPEAL": TemplateStatus.PENDING,
    "PENDING_DELETION": TemplateStatus.DISABLED,
    "DELETED": TemplateStatus.DISABLED,
    "LIMIT_EXCEEDED": TemplateStatus.REJECTED,
}


def status_of(meta: str) -> TemplateStatus | None:
    """Herald's status for Meta's (only an approved template may be sent); None for an event
    that is not a status (`FLAGGED`, a quality warning, changes nothing)."""
    return _STATUSES.get(meta)
