"""Meta's WhatsApp Cloud API as Herald reads and writes it: webhook payloads, error codes, the
signature, and templates as Meta takes them.

The payloads follow the shapes of pywa's fixtures (`tests/data/updates/message_status.json`,
`template_status_update.json`, github.com/david-lev/pywa) and Meta's Cloud API webhook reference;
they are written here, not copied.
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec
import pytest

from herald.domain.models import Category, TemplateStatus
from herald.domain.reasons import Reason
from herald.domain.whatsapp import Button, MessagingTier, TemplateParts
from herald.whatsapp import codes, signature
from herald.whatsapp.templates import category_of, encode_values, positional, send_components, status_of, submission
from herald.whatsapp.wire import Language, MessagesValue, Notification, SendRequest, TemplateSend, TemplateStatusValue

STATUSES = b"""{
  "object": "whatsapp_business_account",
  "entry": [{
    "id": "5467539754836534",
    "changes": [{
      "field": "messages",
      "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "972123456789", "phone_number_id": "1122334455667"},
        "statuses": [
          {"id": "wamid.one", "status": "delivered", "timestamp": "1698266945", "recipient_id": "972987654321",
           "biz_opaque_callback_data": "0193a2c4-0000-7000-8000-000000000001",
           "conversation": {"id": "7270432e", "origin": {"type": "marketing"}},
           "pricing": {"billable": true, "pricing_model": "PMP", "type": "regular", "category": "marketing"}},
          {"id": "wamid.two", "status": "failed", "timestamp": "1689380458", "recipient_id": "972987654322",
           "errors": [{"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable",
                       "error_data": {"details": "..."}, "href": "https://developers.facebook.com/docs/"}]},
          {"id": "wamid.three", "status": "deleted", "timestamp": "1689380458", "a_field_meta_added": 1}
        ]
      }
    }]
  }]
}"""


def test_a_status_webhook_decodes_with_unknown_fields_and_kinds_tolerated() -> None:
    notification = msgspec.json.decode(STATUSES, type=Notification)
    (entry,) = notification.entry
    (change,) = entry.changes
    value = msgspec.json.decode(change.value, type=MessagesValue)
    assert (entry.id, value.metadata.phone_number_id) == ("5467539754836534", "1122334455667")
    delivered, failed, deleted = value.statuses
    assert delivered.pricing is not None
    assert (delivered.pricing.category, delivered.pricing.billable) == ("marketing", True)
    assert delivered.biz_opaque_callback_data == "0193a2c4-0000-7000-8000-000000000001"
    assert [e.code for e in failed.errors] == [131026]
    assert deleted.status == "deleted"  # decoded; the reader skips kinds it does not act on


def test_a_template_review_webhook_decodes() -> None:
    value = b'{"event": "APPROVED", "message_template_id": 12345678, "message_template_name": "x",'
    value += b' "message_template_language": "pt-BR", "reason": null}'
    review = msgspec.json.decode(value, type=TemplateStatusValue)
    assert (review.event, str(review.message_template_id), review.reason) == ("APPROVED", "12345678", None)
    assert status_of(review.event) is TemplateStatus.APPROVED
    assert status_of("FLAGGED") is None  # a quality warning is not a status


@pytest.mark.parametrize(
    ("code", "http", "kind", "reason"),
    [
        (130429, 400, codes.Kind.THROTTLED, Reason.THROTTLED),
        (80007, 400, codes.Kind.THROTTLED, Reason.THROTTLED),
        (131056, 400, codes.Kind.RECIPIENT_BUSY, Reason.RECIPIENT_BUSY),
        (131048, 400, codes.Kind.TENANT_LIMITED, Reason.THROTTLED),
        (190, 401, codes.Kind.CREDENTIALS, Reason.ACCOUNT_SUSPENDED),
        (132015, 400, codes.Kind.PERMANENT, Reason.TEMPLATE_PAUSED),
        (132016, 400, codes.Kind.PERMANENT, Reason.TEMPLATE_DISABLED),
        (132000, 400, codes.Kind.PERMANENT, Reason.TEMPLATE_INVALID),
        (131047, 400, codes.Kind.PERMANENT, Reason.OUTSIDE_SERVICE_WINDOW),
        (131050, 400, codes.Kind.PERMANENT, Reason.OPTED_OUT),
        (131026, 400, codes.Kind.PERMANENT, Reason.UNDELIVERABLE),
        (2, 503, codes.Kind.UNAVAILABLE, Reason.PROVIDER_UNAVAILABLE),
        (999_999, 400, codes.Kind.PERMANENT, Reason.REJECTED),  # unknown, refused
        (999_999, 502, codes.Kind.UNAVAILABLE, Reason.PROVIDER_UNAVAILABLE),  # unknown, Meta failing
    ],
)
def test_errors_are_decided_by_code_not_by_http_status(code: int, http: int, kind: codes.Kind, reason: Reason) -> None:
    assert codes.classify(code, http) == (kind, reason)


def test_a_failed_status_gives_a_permanent_reason_or_undeliverable() -> None:
    assert codes.receipt_reason(132015) is Reason.TEMPLATE_PAUSED
    assert codes.receipt_reason(130472) is Reason.UNDELIVERABLE  # "part of an experiment": not ours
    assert codes.receipt_reason(130429) is Reason.UNDELIVERABLE  # a throughput code after the fact


def test_the_signature_is_checked_over_the_raw_bytes() -> None:
    secret = b"app-secret"
    good = "sha256=" + hmac.new(secret, STATUSES, hashlib.sha256).hexdigest()
    assert signature.verify(secret, good, STATUSES)
    assert not signature.verify(secret, good, STATUSES.replace(b"delivered", b"read    "))
    assert not signature.verify(b"another-secret", good, STATUSES)
    assert not signature.verify(secret, good.replace("sha256=", "sha1="), STATUSES)
    assert not signature.verify(secret, "", STATUSES)


def test_a_template_is_submitted_positional_with_its_examples_in_order() -> None:
    body = "Hi {{name}}, flight {{flight}} leaves at {{time}}; {{name}}, be early"
    parts = TemplateParts(examples={"time": "10:40", "name": "Ada", "flight": "BA117"}, header="Flight update",
                          footer="Acme Air", buttons=(Button("QUICK_REPLY", "Stop"),))  # fmt: skip
    assert positional(body) == "Hi {{1}}, flight {{2}} leaves at {{3}}; {{1}}, be early"
    made = msgspec.to_builtins(submission("flight_update", "en_US", Category.UTILITY, body, parts))
    assert made["category"] == "UTILITY"
    assert [c["type"] for c in made["components"]] == ["HEADER", "BODY", "FOOTER", "BUTTONS"]
    assert made["components"][1]["example"] == {"body_text": [["Ada", "BA117", "10:40"]]}
    assert made["components"][3]["buttons"] == [{"type": "QUICK_REPLY", "text": "Stop"}]


def test_a_messages_parameters_travel_in_the_bodys_order_and_become_body_parameters() -> None:
    body = "Flight {{flight}} now leaves at {{time}}"
    sealed = encode_values(body, {"time": "11:05", "flight": "BA117"})
    components = send_components(sealed)
    template = TemplateSend("flight_update", Language("en_US"), components)
    request = SendRequest(to="447400123456", template=template, biz_opaque_callback_data="m-1")
    encoded = msgspec.json.decode(msgspec.json.encode(request))
    assert (encoded["messaging_product"], encoded["recipient_type"], encoded["type"]) == (
        "whatsapp", "individual", "template")  # fmt: skip
    assert encoded["template"]["language"] == {"code": "en_US", "policy": "deterministic"}
    assert encoded["template"]["components"] == [
        {"type": "body", "parameters": [{"text": "BA117", "type": "text"}, {"text": "11:05", "type": "text"}]}
    ]
    assert send_components(encode_values("No placeholders", {})) == []


def test_metas_categories_and_tiers_as_herald_reads_them() -> None:
    assert category_of("MARKETING") is Category.MARKETING
    assert category_of("authentication_international") is Category.AUTHENTICATION
    assert category_of("marketing_lite") is Category.MARKETING
    assert category_of("service") is None
    assert MessagingTier.parse("TIER_1K") is MessagingTier.TIER_2K
    assert MessagingTier.parse("TIER_100K").unique_users == 100_000  # type: ignore[union-attr]
    assert MessagingTier.parse("TIER_UNLIMITED").unique_users is None  # type: ignore[union-attr]
    assert MessagingTier.parse("SOMETHING_NEW") is None
