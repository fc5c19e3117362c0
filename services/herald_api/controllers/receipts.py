"""Delivery receipts from providers, turned into status events on `herald.events`."""

from __future__ import annotations

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
from herald_api.schemas import ReceiptIn
from herald_api.services import Services

PROVIDERS = frozenset({"carrier-sim"})
RECEIPT_STATUSES = frozenset({Status.DELIVERED, Status.READ, Status.FAILED})


class ReceiptController(Controller):
    path = "/v1/providers"
    tags = ["providers"]

    @post("/{provider:str}/receipts", status_code=202, summary="Provider delivery receipt (HMAC-signed)")
    async def receipt(self, provider: FromPath[str], request: Request, svc: NamedDependency[Services]) -> None:  # type: ignore[type-arg]
        if provider not in PROVIDERS:
            raise NotFound("unknown provider", code="provider_not_found")
        raw = await request.body()
        header = request.headers.get("x-provider-signature", "")
        if not signing.verify(svc.settings.provider.receipt_secret, header, raw):
            raise Unauthenticated("bad or missing X-Provider-Signature", code="invalid_signature")
        try:
            receipt = msgspec.json.decode(raw, type=ReceiptIn)
        except msgspec.ValidationError as exc:
            raise InvalidRequest(str(exc), code="invalid_receipt") from exc
        except msgspec.DecodeError as exc:
            raise InvalidRequest("the receipt is not JSON", code="invalid_receipt") from exc
        if receipt.status not in RECEIPT_STATUSES:
            raise InvalidRequest.field("status", "must be delivered, read or failed", code="invalid_receipt")
        event = StatusEventV1(
            message_id=receipt.message_id,
            tenant_id=receipt.tenant_id,
            status=receipt.status,
            at_ms=receipt.at_ms,
            reason=receipt.error_code,
            provider_message_id=receipt.provider_message_id,
        )
        try:
            await svc.producer.send(Record(EVENTS, str(receipt.message_id).encode(), ENCODER.encode(event)))
        except KafkaError as exc:
            # The provider retries receipts it could not deliver: answering 503 keeps the receipt.
            raise Unavailable("queue unavailable", code="broker_unavailable", retry_after=1) from exc
