"""A double of an HTTP SMS aggregator in Twilio's format (Programmable Messaging, API 2010-04-01).

Written from Twilio's public documentation (the Message resource; "Webhooks security"; error
codes 20003, 20429, 21211, 21610) and never from Herald's code: its signature is computed here.

* `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP Basic auth (Account SID, auth
  token), a form body `To`, `From`, `Body`, `StatusCallback`. Answers 201 with the Message
  resource (`sid` `SM…`, `status` `queued`, `num_segments`); errors as Twilio words them,
  `{"code", "message", "more_info", "status"}`: 401/20003 (authentication), 400/21211 (invalid
  `To`), 400/21610 (the recipient replied STOP), 429/20429 (too many requests), 503 in an outage.
* Status callbacks: form POSTs to `StatusCallback` (`MessageSid`, `MessageStatus` sent, then
  delivered or undelivered with `ErrorCode`), signed `X-Twilio-Signature`: base64 of
  HMAC-SHA1(auth token, the URL followed by each POST parameter's name and value, names sorted).
  By destination suffix: `…0000` undelivered 30003, `…0001` refused 21610, `…0005` no callback.

Control: `/_sim/faults` (outage: 503 to every send; a rate limit), `/_sim/sent`, `/_sim/reset`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.params import FromPath

from herald.ops import double_metrics, ops_handlers
from herald_twilio_sim.settings import TwilioSimSettings


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's request signature, from its "Webhooks security" page: the full URL, then every
    POST parameter name and value concatenated in name order, HMAC-SHA1 under the auth token,
    base64."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


class Faults(msgspec.Struct):
    outage: bool = False
    rate_per_second: int | None = None


def _error(status: int, code: int, message: str) -> Response[dict[str, Any]]:
    return Response(
        {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
         "status": status},
        status_code=status,
    )  # fmt: skip


def create_app(settings: TwilioSimSettings) -> Litestar:
    faults = Faults()
    sent: Counter[str] = Counter()
    counts = {"throttled": 0, "outage": 0}
    ids = itertools.count(1)
    tokens = {"n": 0.0, "at": time.monotonic()}
    tasks: set[asyncio.Task[None]] = set()
    session: dict[str, aiohttp.ClientSession] = {}
    expected = "Basic " + base64.b64encode(f"{settings.account_sid}:{settings.auth_token}".encode()).decode()

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        session["s"] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            yield
        finally:
            for task in list(tasks):
                task.cancel()
            await session["s"].close()

    def take_token() -> bool:
        rate = faults.rate_per_second
        if not rate:
            return True
        now = time.monotonic()
        tokens["n"] = min(rate / 10 + 1, tokens["n"] + (now - tokens["at"]) * rate)
        tokens["at"] = now
        if tokens["n"] < 1:
            return False
        tokens["n"] -= 1
        return True

    async def callbacks(url: str, sid: str, to: str, sender: str) -> None:
        if to.endswith("0005"):
            return
        final = {"MessageStatus": "undelivered", "ErrorCode": "30003"} if to.endswith("0000") else {
            "MessageStatus": "delivered"}  # fmt: skip
        for status in ({"MessageStatus": "sent"}, final):
            await asyncio.sleep(settings.status_delay_ms / 1000)
            form = {"MessageSid": sid, "SmsSid": sid, "AccountSid": settings.account_sid, "From": sender, "To": to,
                    "ApiVersion": "2010-04-01", **status}  # fmt: skip
            headers = {"X-Twilio-Signature": twilio_signature(settings.auth_token, url, form)}
            for attempt in range(5):  # Twilio retries a failed callback a few times
                try:
                    async with session["s"].post(url, data=form, headers=headers) as response:
                        if response.status < 500:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2 * 2**attempt)

    @post("/2010-04-01/Accounts/{account_sid:str}/Messages.json", status_code=201)
    async def create_message(account_sid: FromPath[str], request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        if request.headers.get("authorization") != expected or account_sid != settings.account_sid:
            return _error(401, 20003, "Authenticate")
        if faults.outage:
            counts["outage"] += 1
            return _error(503, 20500, "Service unavailable")
        form = dict(await request.form())
        to, body, sender = str(form.get("To", "")), str(form.get("Body", "")), str(form.get("From", ""))
        if not to.startswith("+") or not to[1:].isdigit() or not 8 <= len(to) <= 16:
            return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if to.endswith("0001"):
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        if not take_token():
            counts["throttled"] += 1
            return _error(429, 20429, "Too Many Requests")
        sid = f"SM{next(ids):032x}"
        sent[to] += 1
        if callback := str(form.get("StatusCallback", "")):
            task = asyncio.create_task(callbacks(callback, sid, to, sender))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        segments = max(1, -(-len(body) // 153)) if len(body) > 160 else 1
        return Response({
            "sid": sid, "account_sid": settings.account_sid, "to": to, "from": sender, "body": body,
            "status": "queued", "num_segments": str(segments), "direction": "outbound-api",
            "api_version": "2010-04-01", "error_code": None, "error_message": None,
            "uri": f"/2010-04-01/Accounts/{settings.account_sid}/Messages/{sid}.json",
            "date_created": time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()),
        }, status_code=201)  # fmt: skip

    @post("/_sim/faults", status_code=204)
    async def set_faults(request: Request[Any, Any, Any]) -> None:
        new = msgspec.json.decode(await request.body(), type=Faults)
        faults.outage, faults.rate_per_second = new.outage, new.rate_per_second

    @get("/_sim/sent")
    async def what_was_sent() -> dict[str, Any]:
        return {"per_destination": dict(sent), **counts}

    @post("/_sim/reset", status_code=204)
    async def reset() -> None:
        sent.clear()
        counts.update(throttled=0, outage=0)

    async def ready() -> dict[str, str]:
        return {"twilio": "ok"}

    return Litestar(
        route_handlers=[
            create_message, set_faults, what_was_sent, reset, *ops_handlers(ready),
            double_metrics("twilio_sim", lambda: {"accepted": sum(sent.values()), **counts}),
        ],
        lifespan=[lifespan], openapi_config=None, logging_config=None,
    )  # fmt: skip


__all__ = ["create_app", "twilio_signature"]
