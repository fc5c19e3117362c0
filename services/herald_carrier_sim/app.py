"""A simulated downstream carrier over HTTP.

`POST /v1/messages` accepts `{to, channel, body, metadata, verified_sender}` and answers
201 `{id}` after `latency_ms`; `receipt_delay_ms` later it POSTs a signed delivery receipt to
Herald's receipt endpoint, echoing the metadata (as WhatsApp's `biz_opaque_callback_data` and
Twilio's status callbacks do). Deterministic outcomes by recipient suffix, for tests and demos:

    ...0000  permanent `invalid_number` (400)       ...0001  permanent `opted_out` (400)
    ...0002  accepted, then a `failed` receipt       ...0003  `recipient_busy` (409, Retry-After: 1)
    ...0004  500 on every attempt (provider outage for that recipient)
    ...0005  accepted, and no receipt ever (a lost delivery report)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import msgspec
from litestar import Litestar, Response, post
from litestar.params import JSONBody

from herald import signing
from herald.ops import ops_handlers
from herald.settings import CarrierSimSettings, ProviderSettings

log = logging.getLogger(__name__)


class SendIn(msgspec.Struct, frozen=True):
    to: str
    channel: str
    body: str
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    verified_sender: bool = False


class SendOut(msgspec.Struct, frozen=True):
    id: str


class ErrorDetail(msgspec.Struct, frozen=True):
    code: str
    message: str


class ErrorOut(msgspec.Struct, frozen=True):
    error: ErrorDetail


_PERMANENT = {"0000": "invalid_number", "0001": "opted_out"}


def create_app(settings: CarrierSimSettings, provider: ProviderSettings) -> Litestar:
    counter = itertools.count(1)
    # Accepted sends per Herald message id: lets tests count duplicate sends after crashes.
    sends: collections.Counter[str] = collections.Counter()
    pending: set[asyncio.Task[None]] = set()
    clients: list[aiohttp.ClientSession] = []

    def client() -> aiohttp.ClientSession:
        if not clients:  # created lazily, inside the running loop
            clients.append(
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=5.0), connector=aiohttp.TCPConnector(limit=32)
                )
            )
        return clients[0]

    async def send_receipt(payload: dict[str, object]) -> None:
        await asyncio.sleep(settings.receipt_delay_ms / 1000)
        payload["at_ms"] = time.time_ns() // 1_000_000
        body = msgspec.json.encode(payload)
        for attempt in range(5):
            try:
                async with client().post(
                    settings.receipt_url,
                    data=body,
                    headers={
                        "content-type": "application/json",
                        "x-provider-signature": signing.sign(provider.receipt_secret, body),
                    },
                ) as response:
                    if response.status < 500:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2 * 2**attempt)
        log.warning("receipt not delivered after retries")

    @post("/v1/messages", status_code=201)
    async def send(data: JSONBody[SendIn]) -> Response[SendOut | ErrorOut]:
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        suffix = data.to[-4:]
        if suffix in _PERMANENT:
            code = _PERMANENT[suffix]
            return Response(ErrorOut(ErrorDetail(code, "rejected")), status_code=400)
        if suffix == "0003":
            return Response(
                ErrorOut(ErrorDetail("recipient_busy", "pair rate limit")),
                status_code=409,
                headers={"retry-after": "1"},
            )
        if suffix == "0004":
            return Response(ErrorOut(ErrorDetail("internal", "outage")), status_code=500)
        provider_id = f"sim-{next(counter):012d}"
        sends[data.metadata.get("message_id", "")] += 1
        if "message_id" in data.metadata and "tenant_id" in data.metadata and suffix != "0005":
            receipt: dict[str, object] = {
                "message_id": data.metadata["message_id"],
                "tenant_id": data.metadata["tenant_id"],
                "provider_message_id": provider_id,
                "status": "failed" if suffix == "0002" else "delivered",
            }
            if suffix == "0002":
                receipt["error_code"] = "undeliverable"
            task = asyncio.create_task(send_receipt(receipt))
            pending.add(task)
            task.add_done_callback(pending.discard)
        return Response(SendOut(id=provider_id), status_code=201)

    async def ready() -> dict[str, str]:
        return {"self": "ok"}

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            # Give in-flight receipts a moment, then drop them (a real carrier would retry later).
            if pending:
                await asyncio.wait(pending, timeout=5)
            for session in clients:
                await session.close()

    app = Litestar(
        route_handlers=[send, *ops_handlers(ready)], lifespan=[lifespan], openapi_config=None, logging_config=None
    )
    app.state.sends = sends
    return app
