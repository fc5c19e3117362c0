"""A double of Meta's WhatsApp Business Cloud API: what Herald talks to in `make run` and the tests.

It plays Meta from Meta's documentation (`../shared/PROVIDERS.md` summarises the sources) and never
imports Herald's protocol, signing or domain code: a double that borrowed them would agree with
any change to them and prove nothing.

Graph API (the paths carry a version, `/v21.0/...`, which is not checked):

* `POST /{v}/{phone_number_id}/messages`: a template message, with the account's bearer token.
  Answers `{"messaging_product", "contacts", "messages": [{"id": "wamid…"}]}`, then posts the
  statuses `sent`, `delivered`, `read` to the account's subscribed webhook, batched, signed with
  `X-Hub-Signature-256`, each with `pricing` (the template's category, as Meta decided it) and
  the send's `biz_opaque_callback_data`. Errors as Meta words them (`{"error": {code, …}}`):
  190 (token expired), 130429 (the number's throughput), 131056 (pair rate), 132001 (no such
  approved template), 132015 / 132016 (paused / disabled), 132000 (parameter count), 2 (outage).
  By recipient suffix, for tests and demos: `…0000` accepted then `failed` with 131026,
  `…0001` refused with 131050, `…0003` refused with 131056, `…0004` 500 with code 2 every time,
  `…0005` accepted and no status ever.
* `POST /{v}/{waba_id}/message_templates` submits a template (`PENDING`); `review_delay_ms` later
  Meta's verdict (`APPROVED`, or what a review rule says) arrives as a
  `message_template_status_update` webhook (and `template_category_update` if recategorised).
  `GET` lists them, paged by cursor.

Control endpoints (`/_sim/…`, the Meta dashboard's part): create a business account with its
numbers, token and app secret; subscribe its webhook (the `hub.challenge` handshake); expire or
rotate its token; change a template's status or a number's messaging tier (each sends its
webhook); review rules; faults (an outage, lost template webhooks); and what was sent.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import hmac
import itertools
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.params import FromPath, JSONBody

from herald.ops import double_metrics, ops_handlers
from herald_whatsapp_sim.settings import WhatsAppSimSettings

log = logging.getLogger(__name__)
WEBHOOK_RETRY_SECONDS = 300.0
_POSITIONAL = re.compile(r"\{\{(\d+)\}\}")


def hub_signature(app_secret: str, body: bytes) -> str:
    """`X-Hub-Signature-256` as Meta documents it: `sha256=` + hex HMAC-SHA256 of the raw body
    under the app secret. Written here from Meta's text, not imported from Herald."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


# --- what it stores -------------------------------------------------------------------------


class Number(msgspec.Struct):
    id: str
    display_phone_number: str
    throughput: int
    tokens: float = 0.0
    at: float = 0.0
    last_to: dict[str, float] = msgspec.field(default_factory=dict)


class Template(msgspec.Struct):
    id: str
    name: str
    language: str
    category: str
    status: str
    params: int
    rejected_reason: str = "NONE"


class Business(msgspec.Struct):
    waba_id: str
    display_name: str
    access_token: str
    app_secret: str
    numbers: dict[str, Number]
    templates: dict[str, Template] = msgspec.field(default_factory=dict)
    token_expired: bool = False
    webhook_url: str | None = None


class Rule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name_prefix: str
    action: str = "approve"
    """`approve` or `reject`."""
    category: str | None = None
    """Meta's category on approval, if not the one asked for (`MARKETING` for a promotional
    template submitted as `UTILITY`)."""
    reason: str = "INVALID_FORMAT"


# --- control bodies --------------------------------------------------------------------------


class AccountIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    display_name: str = "Herald demo"
    numbers: int = 1
    throughput: int | None = None


class WebhookIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str
    verify_token: str


class TokenIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    expire: bool = False
    rotate: bool = False


class TemplateStatusIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    status: str
    reason: str = "NONE"


class QualityIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    current_limit: str
    event: str = "UPGRADE"
    phone_number_id: str | None = None


class FaultsIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    outage_seconds: float | None = None
    drop_template_webhooks: bool | None = None
    pair_rate_seconds: float | None = None


class NumberIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    throughput: int


def _error(
    status: int, code: int, message: str, kind: str = "OAuthException", subcode: int | None = None
) -> Response[Any]:
    body: dict[str, Any] = {
        "message": message,
        "type": kind,
        "code": code,
        "fbtrace_id": base64.b64encode(secrets.token_bytes(9)).decode(),
    }
    if subcode is not None:
        body["error_subcode"] = subcode
    return Response({"error": body}, status_code=status)


def create_app(settings: WhatsAppSimSettings) -> Litestar:
    businesses: dict[str, Business] = {}
    by_number: dict[str, str] = {}
    by_template: dict[str, str] = {}
    rules: list[Rule] = []
    faults = {"outage_until": 0.0, "drop_template_webhooks": False, "pair_rate_seconds": settings.pair_rate_seconds}
    ids = itertools.count(10**14)
    sent_per_message: collections.Counter[str] = collections.Counter()
    sent_times: collections.deque[tuple[float, str]] = collections.deque(maxlen=200_000)
    refusals: collections.Counter[int] = collections.Counter()
    pending: set[asyncio.Task[None]] = set()
    sessions: list[aiohttp.ClientSession] = []
    queue: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue()

    def http() -> aiohttp.ClientSession:
        if not sessions:
            sessions.append(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)))
        return sessions[0]

    def later(delay_s: float, job: Callable[[], None]) -> None:
        asyncio.get_running_loop().call_later(delay_s, job)

    def authorised(request: Request[Any, Any, Any], business: Business) -> Response[Any] | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer ") or not hmac.compare_digest(header[7:], business.access_token):
            return _error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if business.token_expired:
            return _error(401, 190, "Error validating access token: Session has expired.", subcode=463)
        return None

    def waba_for(waba_id: str, request: Request[Any, Any, Any], verb: str) -> Business | Response[Any]:
        """The business account a Graph API path names, if it exists and the token is its own;
        else Meta's error answer."""
        business = businesses.get(waba_id)
        if business is None:
            return _error(400, 100, f"Unsupported {verb} request", "GraphMethodException", 33)
        return authorised(request, business) or business

    # --- webhooks out --------------------------------------------------------------------------

    def enqueue_status(business: Business, number: Number, status: dict[str, Any]) -> None:
        queue.put_nowait((business.waba_id, number.id, status))

    async def flush_statuses() -> None:
        while True:
            batch = [await queue.get()]
            deadline = time.monotonic() + settings.webhook_batch_ms / 1000
            while len(batch) < settings.webhook_batch_max and (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    batch.append(await asyncio.wait_for(queue.get(), left))
            grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for waba_id, number_id, status in batch:
                grouped.setdefault((waba_id, number_id), []).append(status)
            by_waba: dict[str, list[dict[str, Any]]] = {}
            for (waba_id, number_id), statuses in grouped.items():
                number = businesses[waba_id].numbers[number_id]
                metadata = {"display_phone_number": number.display_phone_number, "phone_number_id": number_id}
                value = {"messaging_product": "whatsapp", "metadata": metadata, "statuses": statuses}
                by_waba.setdefault(waba_id, []).append({"field": "messages", "value": value})
            for waba_id, changes in by_waba.items():
                deliver(businesses[waba_id], changes)

    def deliver(business: Business, changes: list[dict[str, Any]]) -> None:
        if business.webhook_url is None:
            return  # not subscribed: Meta sends nothing
        payload = {"object": "whatsapp_business_account", "entry": [{"id": business.waba_id, "changes": changes}]}
        task = asyncio.create_task(post_webhook(business, msgspec.json.encode(payload)))
        pending.add(task)
        task.add_done_callback(pending.discard)

    async def post_webhook(business: Business, body: bytes) -> None:
        # Meta retries a webhook that is not answered 200, for days; minutes here.
        deadline, delay = time.monotonic() + WEBHOOK_RETRY_SECONDS, 0.2
        while business.webhook_url is not None:
            headers = {
                "content-type": "application/json",
                "x-hub-signature-256": hub_signature(business.app_secret, body),
            }
            try:
                async with http().post(business.webhook_url, data=body, headers=headers) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() + delay > deadline:
                log.warning("webhook not delivered after retries")
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def template_event(business: Business, template: Template) -> None:
        if faults["drop_template_webhooks"]:
            return
        value = {
            "event": template.status,
            "message_template_id": int(template.id),
            "message_template_name": template.name,
            "message_template_language": template.language,
            "reason": template.rejected_reason,
        }
        deliver(business, [{"field": "message_template_status_update", "value": value}])

    # --- the Graph API -------------------------------------------------------------------------

    @post("/{version:str}/{node:str}/messages", status_code=200)
    async def send(version: FromPath[str], node: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
        del version
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        waba_id = by_number.get(node)
        if waba_id is None:
            return _error(
                400,
                100,
                f"Unsupported post request. Object with ID '{node}' does not exist",
                "GraphMethodException",
                33,
            )
        business = businesses[waba_id]
        if (refused := authorised(request, business)) is not None:
            refusals[190] += 1
            return refused
        if time.monotonic() < faults["outage_until"]:
            refusals[2] += 1
            return _error(503, 2, "Service temporarily unavailable", "OAuthException")
        try:
            body = msgspec.json.decode(await request.body())
            to, template = str(body["to"]), body["template"]
            name, language = template["name"], template["language"]["code"]
            parameters = [p for c in template.get("components", []) if c.get("type") == "body" for p in c["parameters"]]
            if body.get("messaging_product") != "whatsapp" or body.get("type") != "template":
                raise KeyError("type")
        except (msgspec.DecodeError, KeyError, TypeError) as exc:
            return _error(400, 100, f"Invalid parameter: {exc}")
        number = business.numbers[node]
        now = time.monotonic()
        number.tokens = min(number.throughput, number.tokens + (now - number.at) * number.throughput)
        number.at = now
        if number.tokens < 1:
            refusals[130429] += 1
            return _error(400, 130429, "Rate limit hit", "OAuthException")
        number.tokens -= 1
        digits = to.lstrip("+")
        suffix = digits[-4:]
        if suffix == "0004":
            return _error(500, 2, "Service temporarily unavailable")
        if suffix == "0001":
            return _error(400, 131050, "Unable to deliver message: the user has stopped marketing messages")
        last = number.last_to.get(digits)
        if suffix == "0003" or (
            faults["pair_rate_seconds"] and last is not None and now - last < faults["pair_rate_seconds"]
        ):
            refusals[131056] += 1
            return _error(400, 131056, "(Business Account, Consumer Account) pair rate limit hit")
        found = next((t for t in business.templates.values() if (t.name, t.language) == (name, language)), None)
        if found is None or found.status in ("PENDING", "REJECTED"):
            return _error(404, 132001, "Template name does not exist in the translation")
        if found.status == "PAUSED":
            return _error(400, 132015, "Template is paused")
        if found.status == "DISABLED":
            return _error(400, 132016, "Template is disabled")
        if len(parameters) != found.params:
            return _error(400, 132000, "Number of parameters does not match the expected number of params")
        number.last_to[digits] = now
        wamid = "wamid." + base64.b64encode(f"HBgM{digits}{next(ids)}".encode()).decode()
        callback = body.get("biz_opaque_callback_data")
        sent_per_message[callback or wamid] += 1
        sent_times.append((now, node))
        if suffix != "0005":
            schedule_statuses(business, number, wamid, digits, found.category, callback, failed=suffix == "0000")
        return Response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": digits}],
                "messages": [{"id": wamid, "message_status": "accepted"}],
            }
        )

    def schedule_statuses(
        business: Business, number: Number, wamid: str, to: str, category: str, callback: str | None, *, failed: bool
    ) -> None:
        pricing = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": category.lower()}
        steps = ["failed"] if failed else ["sent", "delivered", "read"]
        for n, kind in enumerate(steps, start=1):
            status: dict[str, Any] = {"id": wamid, "status": kind, "recipient_id": to}
            if callback is not None:
                status["biz_opaque_callback_data"] = callback
            if kind == "failed":
                status["errors"] = [
                    {
                        "code": 131026,
                        "title": "Message undeliverable",
                        "message": "Message undeliverable",
                        "error_data": {"details": "…"},
                    }
                ]
            else:
                status["pricing"] = pricing

            def due(status: dict[str, Any] = status) -> None:
                status["timestamp"] = str(int(time.time()))
                enqueue_status(business, number, status)

            later(n * settings.status_delay_ms / 1000, due)

    @post("/{version:str}/{waba_id:str}/message_templates", status_code=200)
    async def create_template(
        version: FromPath[str], waba_id: FromPath[str], request: Request[Any, Any, Any]
    ) -> Response[Any]:
        del version
        business = waba_for(waba_id, request, "post")
        if isinstance(business, Response):
            return business
        try:
            body = msgspec.json.decode(await request.body())
            name, language, category = body["name"], body["language"], body["category"]
            components = body["components"]
            text = next(c["text"] for c in components if c["type"] == "BODY")
        except (msgspec.DecodeError, KeyError, TypeError, StopIteration):
            return _error(400, 100, "Invalid parameter: a template needs name, language, category and a BODY")
        if category not in ("AUTHENTICATION", "UTILITY", "MARKETING") or not re.fullmatch(r"[a-z0-9_]{1,512}", name):
            return _error(400, 100, "Invalid parameter")
        params = len(set(_POSITIONAL.findall(text)))
        examples = next((c.get("example") for c in components if c["type"] == "BODY"), None)
        if params and (not examples or len(examples.get("body_text", [[]])[0]) != params):
            return _error(400, 100, "Invalid parameter: each variable needs an example", subcode=2388043)
        if any((t.name, t.language) == (name, language) for t in business.templates.values()):
            return _error(400, 100, "Message template already exists in this language", subcode=2388024)
        template = Template(
            id=str(next(ids)), name=name, language=language, category=category, status="PENDING", params=params
        )
        business.templates[template.id] = template
        by_template[template.id] = waba_id
        later(settings.review_delay_ms / 1000, lambda: review(business, template))
        return Response({"id": template.id, "status": "PENDING", "category": category})

    def review(business: Business, template: Template) -> None:
        rule = next((r for r in rules if template.name.startswith(r.name_prefix)), None)
        if rule is not None and rule.action == "reject":
            template.status, template.rejected_reason = "REJECTED", rule.reason
        else:
            template.status = "APPROVED"
            if rule is not None and rule.category is not None and rule.category != template.category:
                previous, template.category = template.category, rule.category
                if not faults["drop_template_webhooks"]:
                    value = {
                        "message_template_id": int(template.id),
                        "message_template_name": template.name,
                        "message_template_language": template.language,
                        "previous_category": previous,
                        "new_category": template.category,
                    }
                    deliver(business, [{"field": "template_category_update", "value": value}])
        template_event(business, template)

    @get("/{version:str}/{waba_id:str}/message_templates")
    async def list_templates(
        version: FromPath[str], waba_id: FromPath[str], request: Request[Any, Any, Any]
    ) -> Response[Any]:
        del version
        business = waba_for(waba_id, request, "get")
        if isinstance(business, Response):
            return business
        limit = int(request.query_params.get("limit", "25"))
        everything = sorted(business.templates.values(), key=lambda t: int(t.id))
        after = request.query_params.get("after")
        start = int(base64.b64decode(after).decode()) if after else 0
        page = everything[start : start + limit]
        data = [
            {
                "id": t.id,
                "name": t.name,
                "language": t.language,
                "status": t.status,
                "category": t.category,
                "rejected_reason": t.rejected_reason,
            }
            for t in page
        ]
        paging: dict[str, Any] = {
            "cursors": {
                "before": base64.b64encode(str(start).encode()).decode(),
                "after": base64.b64encode(str(start + len(page)).encode()).decode(),
            }
        }
        if start + len(page) < len(everything):
            paging["next"] = f"{request.url.path}?after={paging['cursors']['after']}"
        return Response({"data": data, "paging": paging})

    # --- the dashboard's part ------------------------------------------------------------------

    @post("/_sim/accounts", status_code=201)
    async def new_account(data: JSONBody[AccountIn]) -> dict[str, Any]:
        waba_id = str(next(ids))
        numbers = {}
        for _ in range(max(1, data.numbers)):
            number_id = str(next(ids))
            numbers[number_id] = Number(
                number_id,
                f"+1555{number_id[-7:]}",
                data.throughput or settings.default_throughput,
                tokens=float(data.throughput or settings.default_throughput),
                at=time.monotonic(),
            )
            by_number[number_id] = waba_id
        business = Business(
            waba_id, data.display_name, "EAAG" + secrets.token_urlsafe(48), secrets.token_hex(16), numbers
        )
        businesses[waba_id] = business
        return {
            "waba_id": waba_id,
            "access_token": business.access_token,
            "app_secret": business.app_secret,
            "phone_numbers": [{"id": n.id, "display_phone_number": n.display_phone_number} for n in numbers.values()],
        }

    def business_or_404(waba_id: str) -> Business | Response[Any]:
        return businesses.get(waba_id) or Response({"error": "no such account"}, status_code=404)

    @post("/_sim/accounts/{waba_id:str}/webhook", status_code=200)
    async def subscribe(waba_id: FromPath[str], data: JSONBody[WebhookIn]) -> Response[Any]:
        business = business_or_404(waba_id)
        if isinstance(business, Response):
            return business
        challenge = str(secrets.randbelow(10**9))
        query = {"hub.mode": "subscribe", "hub.verify_token": data.verify_token, "hub.challenge": challenge}
        try:
            async with http().get(data.url, params=query) as response:
                answer, status = await response.text(), response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Response({"subscribed": False, "error": type(exc).__name__}, status_code=409)
        if status != 200 or answer != challenge:
            return Response({"subscribed": False, "status": status}, status_code=409)
        business.webhook_url = data.url
        return Response({"subscribed": True})

    @post("/_sim/accounts/{waba_id:str}/token", status_code=200)
    async def token(waba_id: FromPath[str], data: JSONBody[TokenIn]) -> Response[Any]:
        business = business_or_404(waba_id)
        if isinstance(business, Response):
            return business
        if data.rotate:
            business.access_token, business.token_expired = "EAAG" + secrets.token_urlsafe(48), False
        elif data.expire:
            business.token_expired = True
        return Response({"access_token": business.access_token, "expired": business.token_expired})

    @post("/_sim/accounts/{waba_id:str}/quality", status_code=200)
    async def quality(waba_id: FromPath[str], data: JSONBody[QualityIn]) -> Response[Any]:
        business = business_or_404(waba_id)
        if isinstance(business, Response):
            return business
        number = (
            business.numbers[data.phone_number_id] if data.phone_number_id else next(iter(business.numbers.values()))
        )
        value = {
            "display_phone_number": number.display_phone_number.lstrip("+"),
            "event": data.event,
            "current_limit": data.current_limit,
        }
        deliver(business, [{"field": "phone_number_quality_update", "value": value}])
        return Response(None, status_code=204)

    @post("/_sim/numbers/{number_id:str}", status_code=200)
    async def set_number(number_id: FromPath[str], data: JSONBody[NumberIn]) -> Response[Any]:
        waba_id = by_number.get(number_id)
        if waba_id is None:
            return Response({"error": "no such number"}, status_code=404)
        businesses[waba_id].numbers[number_id].throughput = data.throughput
        return Response(None, status_code=204)

    @post("/_sim/templates/{template_id:str}/status", status_code=200)
    async def template_status(template_id: FromPath[str], data: JSONBody[TemplateStatusIn]) -> Response[Any]:
        waba_id = by_template.get(template_id)
        if waba_id is None:
            return Response({"error": "no such template"}, status_code=404)
        business = businesses[waba_id]
        template = business.templates[template_id]
        template.status, template.rejected_reason = data.status, data.reason
        template_event(business, template)
        return Response(None, status_code=204)

    @post("/_sim/review-rules", status_code=204)
    async def add_rule(data: JSONBody[Rule]) -> None:
        rules.insert(0, data)

    @post("/_sim/faults", status_code=204)
    async def set_faults(data: JSONBody[FaultsIn]) -> None:
        if data.outage_seconds is not None:
            faults["outage_until"] = time.monotonic() + data.outage_seconds
        if data.drop_template_webhooks is not None:
            faults["drop_template_webhooks"] = data.drop_template_webhooks
        if data.pair_rate_seconds is not None:
            faults["pair_rate_seconds"] = data.pair_rate_seconds

    @get("/_sim/sent")
    async def sent() -> dict[str, Any]:
        """Accepted sends per `biz_opaque_callback_data` (Herald's message id), the refusals by
        code, and the highest number of sends any number made within one second."""
        per_second: collections.Counter[tuple[str, int]] = collections.Counter(
            (number, int(at)) for at, number in sent_times
        )
        return {
            "per_message": dict(sent_per_message),
            "refusals": {str(k): v for k, v in refusals.items()},
            "max_per_second": max(per_second.values(), default=0),
        }

    async def ready() -> dict[str, str]:
        return {"self": "ok"}

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        flusher = asyncio.create_task(flush_statuses())
        try:
            yield
        finally:
            flusher.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
            for task in list(pending):
                task.cancel()
            for session in sessions:
                await session.close()

    return Litestar(
        route_handlers=[
            send,
            create_template,
            list_templates,
            new_account,
            subscribe,
            token,
            quality,
            set_number,
            template_status,
            add_rule,
            set_faults,
            sent,
            *ops_handlers(ready),
            double_metrics("whatsapp_sim", lambda: {
                "accepted": sum(sent_per_message.values()), "refused": sum(refusals.values()),
            }),
        ],
        lifespan=[lifespan],
        openapi_config=None,
        logging_config=None,
    )
