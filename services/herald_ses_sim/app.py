"""A double of Amazon SES v2: `moto`'s server (its SES model: identities, sending, verified
senders; no signature checks) behind a front that adds what moto does not simulate: throttling
and outages, as SES answers them (SES v2 API reference, "Common errors" and `SendEmail`):

* `TooManyRequestsException`, HTTP 429, `x-amzn-ErrorType` and `__type` naming it;
* `ServiceUnavailable`, HTTP 503.

It never imports Herald's code. Control endpoints: `POST /_sim/faults` (`throttle: n`,
`unavailable: n`: the next n `SendEmail` calls), `GET /_sim/sent` (mails SES accepted, raw),
`POST /_sim/reset`.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
from litestar import Litestar, Request, Response, get, post, route
from litestar.params import FromPath, JSONBody
from moto.server import ThreadedMotoServer

from herald.ops import ops_handlers
from herald_ses_sim.settings import SesSimSettings

SEND_PATH = "/v2/email/outbound-emails"


class Faults(msgspec.Struct):
    throttle: int = 0
    unavailable: int = 0


class Sent(msgspec.Struct, frozen=True):
    message_id: str
    from_address: str
    to: list[str]
    raw: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _error(status: int, code: str, message: str) -> Response[bytes]:
    body = json.dumps({"__type": code, "message": message}).encode()
    return Response(body, status_code=status, media_type="application/json", headers={"x-amzn-ErrorType": code})


def create_app(settings: SesSimSettings) -> Litestar:
    state: dict[str, Any] = {"faults": Faults(), "sent": deque(maxlen=settings.kept), "refused": 0}
    moto_port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    upstream: dict[str, aiohttp.ClientSession] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        moto.start()
        upstream["session"] = aiohttp.ClientSession(base_url=f"http://127.0.0.1:{moto_port}")
        try:
            yield
        finally:
            await upstream["session"].close()
            moto.stop()

    @route("/v2/{path:path}", http_method=["GET", "POST", "PUT", "DELETE", "PATCH"])
    async def forward(request: Request[Any, Any, Any], path: FromPath[str]) -> Response[bytes]:
        body = await request.body()
        is_send = request.method == "POST" and request.url.path == SEND_PATH
        faults: Faults = state["faults"]
        if is_send and faults.throttle > 0:
            faults.throttle -= 1
            return _error(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
        if is_send and faults.unavailable > 0:
            faults.unavailable -= 1
            return _error(503, "ServiceUnavailable", "Service is unavailable. Try again later.")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with upstream["session"].request(request.method, request.url.path, params=request.query_params.dict(),
                                               data=body, headers=headers) as answer:  # fmt: skip
            payload = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "x-amzn-errortype",
                                                                              "x-amzn-requestid")}  # fmt: skip
            status = answer.status
        if is_send and status == 200:
            sent = json.loads(body)
            raw = base64.b64decode(sent["Content"]["Raw"]["Data"]).decode("ascii", errors="replace")
            state["sent"].append(Sent(json.loads(payload)["MessageId"], sent.get("FromEmailAddress", ""),
                                      sent.get("Destination", {}).get("ToAddresses", []), raw))  # fmt: skip
        elif is_send:
            state["refused"] += 1
        return Response(payload, status_code=status, headers=kept)

    @post("/_sim/faults", status_code=204)
    async def set_faults(data: JSONBody[Faults]) -> None:
        state["faults"] = data

    @get("/_sim/sent")
    async def sent() -> dict[str, Any]:
        return {"sent": list(state["sent"]), "refused": state["refused"]}

    @post("/_sim/reset", status_code=204)
    async def reset() -> None:
        state["sent"].clear()
        state["refused"] = 0
        state["faults"] = Faults()

    async def ready() -> dict[str, str]:
        return {"moto": "ok" if "session" in upstream else "starting"}

    return Litestar(
        route_handlers=[forward, set_faults, sent, reset, *ops_handlers(ready)],
        lifespan=[lifespan], openapi_config=None, logging_config=None, request_max_body_size=20_000_000,
    )  # fmt: skip
