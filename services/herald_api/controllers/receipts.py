"""Delivery receipts from providers: verified, then recorded as reported.

A receipt names the provider's own id for a send, nothing else; binding
(`herald.receipt_binding`) finds the message and tenant from Herald's own record of that send
through this provider, so a provider (or anyone holding its secret) can only ever speak about
messages sent through it. 202 means the receipt is durably recorded; it is then bound at once
when its send is known, else when the status sink records the send (or by the sinks' sweep).
"""

from __future__ import annotations

import logging
from typing import TypeVar

import msgspec
from aiokafka.errors import KafkaError
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from herald import metrics, signing
from herald.db import receipts as receipt_store
from herald.db.pool import DATABASE_ERRORS
from herald.domain.receipts import RECEIPT_STATUSES, Reported
from herald.errors import InvalidRequest, NotFound, Unauthenticated
from herald.receipt_binding import bind_and_publish
from herald_api.auth import counted_failures
from herald_api.schemas import ReceiptBatchIn, ReceiptIn
from herald_api.services import Services

PROVIDERS = frozenset({"carrier-sim"})
"""Providers that post receipts here, each by the name its worker adapter records sends under."""
_T = TypeVar("_T")
log = logging.getLogger(__name__)


class ReceiptController(Controller):
    path = "/v1/providers"
    tags = ["providers"]

    @post("/{provider:str}/receipts", status_code=202, summary="Provider delivery receipt (HMAC-signed)")
    async def receipt(self, provider: FromPath[str], request: Request, svc: NamedDependency[Services]) -> None:  # type: ignore[type-arg]
        raw = await _verified(provider, request, svc)
        await _record(svc, provider, [_decode(raw, ReceiptIn)])

    @post(
        "/{provider:str}/receipts/batch",
        status_code=202,
        summary="Up to 1,000 delivery receipts in one signed POST (as WhatsApp webhooks batch statuses)",
    )
    async def receipts(self, provider: FromPath[str], request: Request, svc: NamedDependency[Services]) -> None:  # type: ignore[type-arg]
        raw = await _verified(provider, request, svc)
        await _record(svc, provider, _decode(raw, ReceiptBatchIn).receipts)


async def _verified(provider: str, request: Request, svc: Services) -> bytes:  # type: ignore[type-arg]
    if provider not in PROVIDERS:
        raise NotFound("unknown provider", code="provider_not_found")
    with counted_failures(request):
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


async def _record(svc: Services, provider: str, receipts: list[ReceiptIn]) -> None:
    """All or nothing: an invalid receipt refuses the batch (the provider retries it whole)."""
    for index, receipt in enumerate(receipts):
        if receipt.status not in RECEIPT_STATUSES:
            field = "status" if len(receipts) == 1 else f"receipts[{index}].status"
            raise InvalidRequest.field(field, "must be delivered, read or failed", code="invalid_receipt")
    # A database that does not answer is a 503 (problems.py): the provider retries the receipt.
    await receipt_store.record(
        svc.pool,
        provider,
        [Reported(r.provider_message_id, r.status, r.at_ms, r.error_code, r.callback_data) for r in receipts],
    )
    metrics.RECEIPTS.labels(provider, "recorded").inc(len(receipts))
    try:
        await bind_and_publish(svc.pool, svc.producer, sorted({(provider, r.provider_message_id) for r in receipts}))
    except (*DATABASE_ERRORS, KafkaError) as exc:
        # Recorded is what 202 promises; the sinks bind it when this could not.
        log.warning("receipt binding deferred to the sinks", extra={"error": type(exc).__name__})
