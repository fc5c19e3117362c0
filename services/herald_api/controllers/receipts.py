"""Delivery receipts from providers, turned into status events on `herald.events`."""

from __future__ import annotations

from typing import TypeVar

import msgspec
from aiokafka.errors import KafkaError
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from herald import signing
from herald.domain.records import ENCODER, StatusEventV1
from herald.domain.status import Status
from herald.errors import InvalidRequest, NotFound, Unauthenticated, Unavailable
from herald.kafka.producer import Record
from herald.kafka.topics import EVENTS
from herald_api.schemas import ReceiptBatchIn, ReceiptIn
from herald_api.services import Services

PROVIDERS = frozenset({"carrier-sim"})
_T = TypeVar("_T")
RECEIPT_STATUSES = frozenset({Status.DELIVERED, Status.READ, Status.FAILED})


class ReceiptController(Controller):
    path = "/v1/providers"
    tags = ["providers"]

    @post("/{provider:str}/receipts", status_code=202, summary="Provider delivery receipt (HMAC-signed)")
    async def receipt(self, provider: FromPath[str], request: Request, svc: NamedDependency[Services]) -> None:  # type: ignore[type-arg]
        raw = await _verified(provider, request, svc)
        await _publish(svc, [_decode(raw, ReceiptIn)])

    @post(
        "/{provider:str}/receipts/batch",
        status_code=202,
        summary="Up to 1,000 delivery receipts in one signed POST (as WhatsApp webhooks batch statuses)",
    )
    async def receipts(self, provider: FromPath[str], request: Request, svc: NamedDependency[Services]) -> None:  # type: ignore[type-arg]
        raw = await _verified(provider, request, svc)
        await _publish(svc, _decode(raw, ReceiptBatchIn).receipts)


async def _verified(provider: str, request: Request, svc: Services) -> bytes:  # type: ignore[type-arg]
    if provider not in PROVIDERS:
        raise NotFound("unknown provider", code="provider_not_found")
    raw = await request.body()
    header = request.headers.get("x-provider-signature", "")
    if not signing.verify(svc.settings.provider.receipt_secret, header, raw):
        raise Unauthenticated("bad or missing X-Provider-Signature", code="invalid_signature")
    return raw


def _decode(raw: bytes, type_: type[_T]) -> _T:
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(str(exc), code="invalid_receipt") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest("the receipt is not JSON", code="invalid_receipt") from exc


async def _publish(svc: Services, receipts: list[ReceiptIn]) -> None:
    """All or nothing: an invalid receipt refuses the batch (the provider retries it whole)."""
    for index, receipt in enumerate(receipts):
        if receipt.status not in RECEIPT_STATUSES:
            field = "status" if len(receipts) == 1 else f"receipts[{index}].status"
            raise InvalidRequest.field(field, "must be delivered, read or failed", code="invalid_receipt")
    events = [
        StatusEventV1(
            message_id=r.message_id, tenant_id=r.tenant_id, status=r.status, at_ms=r.at_ms, reason=r.error_code,
            provider_message_id=r.provider_message_id,
        )
        for r in receipts
    ]  # fmt: skip
    try:
        await svc.receipt_producer.send_many(
            [Record(EVENTS, str(e.message_id).encode(), ENCODER.encode(e)) for e in events]
        )
    except KafkaError as exc:
        # The provider retries receipts it could not deliver: answering 503 keeps the receipt.
        raise Unavailable("queue unavailable", code="broker_unavailable", retry_after=1) from exc
