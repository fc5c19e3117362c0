"""HTTP adapter for a carrier / WhatsApp-style gateway (the `herald carrier-sim` protocol).

Outcome mapping, modelled on Twilio and the WhatsApp Cloud API:
  2xx                          -> Accepted(provider id); the final state arrives as a receipt
  429                          -> Retryable("throttled", Retry-After)
  409 recipient_busy           -> Retryable("recipient_busy", Retry-After)
  5xx, timeouts, resets        -> Retryable("provider_unavailable")
  4xx with error.code          -> Permanent(code): invalid_number, opted_out, template_paused, ...
"""

from __future__ import annotations

import httpx
import msgspec

from herald.domain.records import OutboundMessageV1
from herald_worker.providers.base import Accepted, PermanentError, RetryableError


class _SendRequest(msgspec.Struct, frozen=True):
    to: str
    channel: str
    body: str
    metadata: dict[str, str]
    verified_sender: bool


class _SendResponse(msgspec.Struct, frozen=True):
    id: str


class _ErrorBody(msgspec.Struct, frozen=True):
    code: str = "rejected"


class _ErrorResponse(msgspec.Struct, frozen=True):
    error: _ErrorBody = msgspec.field(default_factory=_ErrorBody)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


class CarrierProvider:
    name = "carrier-sim"

    def __init__(self, base_url: str, timeout: float, max_connections: int) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def send(self, message: OutboundMessageV1) -> Accepted:
        payload = _SendRequest(
            to=message.to,
            channel=message.channel.value,
            body=message.body,
            metadata={"message_id": str(message.id), "tenant_id": str(message.tenant_id)},
            verified_sender=message.verified_sender,
        )
        try:
            response = await self._client.post(
                "/v1/messages", content=msgspec.json.encode(payload), headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise RetryableError("provider_unavailable") from exc
        if response.is_success:
            try:
                return Accepted(provider_message_id=msgspec.json.decode(response.content, type=_SendResponse).id)
            except msgspec.DecodeError as exc:
                raise RetryableError("provider_bad_response") from exc
        if response.status_code == 429:
            raise RetryableError("throttled", _retry_after(response))
        if response.status_code >= 500:
            raise RetryableError("provider_unavailable", _retry_after(response))
        try:
            code = msgspec.json.decode(response.content, type=_ErrorResponse).error.code
        except msgspec.DecodeError:
            code = f"http_{response.status_code}"
        if code == "recipient_busy":
            raise RetryableError(code, _retry_after(response))
        raise PermanentError(code)

    async def close(self) -> None:
        await self._client.aclose()
