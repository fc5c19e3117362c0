"""The Cloud API's JSON, as Meta documents it: sends, errors, templates and webhook notifications.

Sources: Meta's Cloud API reference (messages, message templates, webhooks) as summarised in
`../shared/PROVIDERS.md`, and pywa's fixtures (`tests/data/updates/message_status.json`). Every
Struct ignores fields it does not name, so a field Meta adds never breaks decoding; kinds Herald
does not act on (a status it does not know, a webhook field it does not read) are skipped by
the reader, not refused.
"""

from __future__ import annotations

from typing import Literal

import msgspec

# --- sending a template message: POST /{phone_number_id}/messages ----------------------------


class TextParameter(msgspec.Struct, frozen=True):
    text: str
    type: str = "text"


class SendComponent(msgspec.Struct, frozen=True, omit_defaults=True):
    type: Literal["header", "body", "button"]
    parameters: list[TextParameter] = msgspec.field(default_factory=list)
    sub_type: str | None = None
    index: str | None = None


class Language(msgspec.Struct, frozen=True):
    code: str
    policy: str = "deterministic"


class TemplateSend(msgspec.Struct, frozen=True):
    name: str
    language: Language
    components: list[SendComponent]


class SendRequest(msgspec.Struct, frozen=True):
    to: str
    template: TemplateSend
    biz_opaque_callback_data: str
    """Echoed in every status webhook of this message: Herald puts its message id here."""
    messaging_product: str = "whatsapp"
    recipient_type: str = "individual"
    type: str = "template"


class Contact(msgspec.Struct, frozen=True):
    input: str = ""
    wa_id: str = ""


class SentMessage(msgspec.Struct, frozen=True):
    id: str
    message_status: str | None = None
    """`accepted`, or `held_for_quality_assessment`: either way Meta took it."""


class SendResponse(msgspec.Struct, frozen=True):
    messages: list[SentMessage]
    contacts: list[Contact] = msgspec.field(default_factory=list)
    messaging_product: str = "whatsapp"


class ErrorData(msgspec.Struct, frozen=True):
    details: str | None = None
    messaging_product: str | None = None


class GraphErrorBody(msgspec.Struct, frozen=True):
    code: int
    message: str = ""
    type: str = ""
    error_subcode: int | None = None
    error_data: ErrorData | None = None
    fbtrace_id: str | None = None


class ErrorResponse(msgspec.Struct, frozen=True):
    error: GraphErrorBody


# --- message templates: POST and GET /{waba_id}/message_templates ----------------------------

MetaCategory = Literal["AUTHENTICATION", "UTILITY", "MARKETING"]


class Button(msgspec.Struct, frozen=True, omit_defaults=True):
    type: Literal["QUICK_REPLY", "URL", "PHONE_NUMBER"]
    text: str
    url: str | None = None
    phone_number: str | None = None


class BodyExample(msgspec.Struct, frozen=True):
    body_text: list[list[str]]


class TemplateComponent(msgspec.Struct, frozen=True, omit_defaults=True):
    type: Literal["HEADER", "BODY", "FOOTER", "BUTTONS"]
    format: str | None = None
    text: str | None = None
    example: BodyExample | None = None
    buttons: list[Button] | None = None


class TemplateCreate(msgspec.Struct, frozen=True):
    name: str
    language: str
    category: MetaCategory
    components: list[TemplateComponent]
    parameter_format: str = "POSITIONAL"


class TemplateCreated(msgspec.Struct, frozen=True):
    id: str
    status: str
    category: str


class ListedTemplate(msgspec.Struct, frozen=True):
    id: str
    name: str
    language: str
    status: str
    category: str
    rejected_reason: str | None = None


class Cursors(msgspec.Struct, frozen=True):
    before: str | None = None
    after: str | None = None


class Paging(msgspec.Struct, frozen=True):
    cursors: Cursors | None = None
    next: str | None = None


class TemplateList(msgspec.Struct, frozen=True):
    data: list[ListedTemplate]
    paging: Paging | None = None


# --- webhooks: POST to the app's callback URL -----------------------------------------------


class Pricing(msgspec.Struct, frozen=True):
    billable: bool | None = None
    pricing_model: str | None = None
    category: str | None = None


class StatusError(msgspec.Struct, frozen=True):
    code: int
    title: str = ""
    message: str | None = None


class MessageStatus(msgspec.Struct, frozen=True):
    id: str
    """The `wamid` the send's answer returned."""
    status: str
    """`sent`, `delivered`, `read`, `failed` (others exist and are skipped)."""
    timestamp: str
    """Unix seconds, as a string."""
    recipient_id: str | None = None
    pricing: Pricing | None = None
    errors: list[StatusError] = msgspec.field(default_factory=list)
    biz_opaque_callback_data: str | None = None


class Metadata(msgspec.Struct, frozen=True):
    phone_number_id: str
    display_phone_number: str | None = None


class MessagesValue(msgspec.Struct, frozen=True):
    """`field: messages`: statuses of sent messages (and inbound messages, which Herald ignores)."""

    metadata: Metadata
    statuses: list[MessageStatus] = msgspec.field(default_factory=list)


class TemplateStatusValue(msgspec.Struct, frozen=True):
    """`field: message_template_status_update`."""

    event: str
    message_template_id: int | str
    message_template_name: str = ""
    message_template_language: str = ""
    reason: str | None = None


class TemplateCategoryValue(msgspec.Struct, frozen=True):
    """`field: template_category_update`."""

    message_template_id: int | str
    new_category: str
    previous_category: str | None = None


class QualityValue(msgspec.Struct, frozen=True):
    """`field: phone_number_quality_update`: the messaging-limit tier and quality of a number."""

    display_phone_number: str
    event: str
    current_limit: str | None = None


class Change(msgspec.Struct, frozen=True):
    field: str
    value: msgspec.Raw


class Entry(msgspec.Struct, frozen=True):
    id: str
    """The WhatsApp Business Account id."""
    changes: list[Change] = msgspec.field(default_factory=list)


class Notification(msgspec.Struct, frozen=True):
    object: str
    entry: list[Entry]
