"""Delivery receipts from providers: verified, then recorded as reported.

A receipt names the provider's own id for a send, nothing else; binding
(`herald.receipt_binding`) finds the message and tenant from Herald's own record of that send
through this provider, so a provider (or anyone holding its secret) can only ever speak about
messages sent through it. 202 means the receipt is durably recorded; it is then bound at once
when its send is known, else when the status sink records the send (or by the sinks' sweep).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from herald import signing
from herald.domain.receipts import Reported
from herald.errors import InvalidRequest, NotFound, Unauthenticated
from herald_api.auth import counted_failures
from herald_api.deps import Services
from herald_api.schemas import ReceiptBatchIn, ReceiptIn

PROVIDERS = frozenset({"carrier-sim"})
"""Providers that post receipts here, each by the name its worker adapter records sends under."""
_T = TypeVar("_T")


class ReceiptController(Controller):
    path = "/v1/providers"
    tags = ["providers"]

    @post("/{provider:str}/receipts", status_code=202, summary="Provider delivery receipt (HMAC-signed)")
    async def receipt(self, provider: FromPath[str], request: Request, svc: NamedDependency[Services]) -> None:  # type: ignore[type-arg]
        raw = await _verified(provider, request, svc)
        await svc.receipts.record(provider, [_reported(_decode(raw, ReceiptIn))])

    @post(
        "/{provider:str}/receipts/batch",
        status_code=202,
        summary="Up to 1,000 delivery receipts in one signed POST (as WhatsApp webhooks batch statuses)",
    )
    async def receipts(self, provider: FromPath[str], request: Request, svc: NamedDependency[Services]) -> None:  # type: ignore[type-arg]
        raw = await _verified(provider, request, svc)
        await svc.receipts.record(provider, [_reported(r) for r in _decode(raw, ReceiptBatchIn).receipts])


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


def _reported(receipt: ReceiptIn) -> Reported:
    r = receipt
    return Reported(r.provider_message_id, r.status, r.at_ms, r.error_code, r.callback_data)
