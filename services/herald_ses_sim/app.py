"""A double of Amazon SES v2: `moto`'s server (its SES model: identities, sending, verified
senders; no signature checks) behind a front that adds what moto does not simulate: throttling
and outages, as SES answers them (SES v2 API reference, "Common errors" and `SendEmail`):

* `TooManyRequestsException`, HTTP 429, `x-amzn-ErrorType` and `__type` naming it;
* `ServiceUnavailable`, HTTP 503.

With `notify_url` set it plays SES's event destination too: an SNS topic with an HTTPS
subscription, posting signed SNS messages (SignatureVersion 2, RSA-SHA256 over SNS's canonical
form, its certificate at `/_sim/sns-cert.pem`) with SES's event JSON: `Delivery` for every
recipient, except by local part `bounce…@` a permanent `Bounce` (5.1.1), `softbounce…@` a
transient `Bounce` and then `Delivery`, `complain…@` `Delivery` and then `Complaint`. A
notification answered other than 2xx is sent again (SNS's delivery retries, faster).
`POST /_sim/subscribe` sends a `SubscriptionConfirmation`; its `SubscribeURL` is here.

It never imports Herald's code. Control endpoints: `POST /_sim/faults` (`throttle: n`,
`unavailable: n`: the next n `SendEmail` calls), `GET /_sim/sent` (mails SES accepted, raw),
`POST /_sim/reset`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from litestar import Litestar, Request, Response, get, post, route
from litestar.params import FromPath, FromQuery, JSONBody
from moto.server import ThreadedMotoServer

from herald.embedded import free_port
from herald.ops import double_metrics, ops_handlers
from herald_ses_sim.settings import SesSimSettings

SEND_PATH = "/v2/email/outbound-emails"
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SUBSCRIPTION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
"""What SNS signs, in order, by message type."""


class Faults(msgspec.Struct):
    throttle: int = 0
    unavailable: int = 0


class Sent(msgspec.Struct, frozen=True):
    message_id: str
    from_address: str
    to: list[str]
    raw: str


def _error(status: int, code: str, message: str) -> Response[bytes]:
    body = json.dumps({"__type": code, "message": message}).encode()
    return Response(body, status_code=status, media_type="application/json", headers={"x-amzn-ErrorType": code})


class Topic:
    """The SNS side: a signing key with its self-signed certificate, and the notifications sent."""

    def __init__(self, settings: SesSimSettings) -> None:
        self.settings = settings
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.herald-sim.invalid")])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365)).sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )  # fmt: skip
        self.delivered: Counter[str] = Counter()
        self.confirmed = 0
        self.tasks: set[asyncio.Task[None]] = set()

    def signed(self, fields: dict[str, str]) -> dict[str, str]:
        """The message with SNS's signature: each signed field's name and value on a line, in
        SNS's order (AWS SNS Developer Guide, "Verifying the signatures of Amazon SNS messages")."""
        order = NOTIFICATION_FIELDS if fields["Type"] == "Notification" else SUBSCRIPTION_FIELDS
        text = "".join(f"{k}\n{fields[k]}\n" for k in order if k in fields).encode()
        signature = self.key.sign(text, padding.PKCS1v15(), hashes.SHA256())
        base = f"http://{self.settings.host}:{self.settings.port}"
        return {**fields, "SignatureVersion": "2", "Signature": base64.b64encode(signature).decode(),
                "SigningCertURL": f"{base}/_sim/sns-cert.pem"}  # fmt: skip

    def publish(self, kind: str, fields: dict[str, str]) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        message = self.signed({"MessageId": str(uuid.uuid4()), "TopicArn": self.settings.topic_arn, "Timestamp": now,
                               **fields})  # fmt: skip
        task = asyncio.get_running_loop().create_task(self._post(kind, message))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _post(self, kind: str, message: dict[str, str]) -> None:
        async with aiohttp.ClientSession() as http:
            for attempt in range(60):
                await asyncio.sleep(min(self.settings.notify_delay_ms / 1000 * 2**attempt, 2.0))
                try:
                    async with http.post(self.settings.notify_url, data=json.dumps(message),
                                         headers={"content-type": "text/plain; charset=UTF-8",
                                                  "x-amz-sns-message-type": message["Type"]}) as answer:  # fmt: skip
                        if 200 <= answer.status < 300:
                            self.delivered[kind] += 1
                            return
                except aiohttp.ClientError:
                    continue

    def events(self, ses_id: str, source: str, to: list[str]) -> None:
        """SES's events for one accepted mail (SES Developer Guide, "Contents of event data")."""
        if not self.settings.notify_url:
            return
        mail = {"timestamp": datetime.now(UTC).isoformat(), "source": source, "messageId": ses_id, "destination": to}
        for address in to:
            local = address.partition("@")[0].lower()
            steps: list[tuple[str, dict[str, Any]]] = []
            if local.startswith("bounce"):
                steps = [("Bounce", {"bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                                                "bouncedRecipients": [{"emailAddress": address, "status": "5.1.1",
                                                                       "action": "failed"}]}})]  # fmt: skip
            elif local.startswith("softbounce"):
                steps = [("Bounce", {"bounce": {"bounceType": "Transient", "bounceSubType": "MailboxFull",
                                                "bouncedRecipients": [{"emailAddress": address}]}}),
                         ("Delivery", {"delivery": {"recipients": [address]}})]  # fmt: skip
            else:
                steps = [("Delivery", {"delivery": {"recipients": [address]}})]
                if local.startswith("complain"):
                    steps.append(("Complaint", {"complaint": {"complainedRecipients": [{"emailAddress": address}],
                                                              "complaintFeedbackType": "abuse"}}))  # fmt: skip
            for event_type, detail in steps:
                event = json.dumps({"eventType": event_type, "mail": mail, **detail})
                self.publish(event_type.lower(), {"Type": "Notification", "Message": event,
                                                  "Subject": "Amazon SES Email Event Notification"})  # fmt: skip


def create_app(settings: SesSimSettings) -> Litestar:
    state: dict[str, Any] = {"faults": Faults(), "sent": deque(maxlen=settings.kept), "refused": 0}
    topic = Topic(settings)
    moto_port = free_port()
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
            ses_id, to = json.loads(payload)["MessageId"], sent.get("Destination", {}).get("ToAddresses", [])
            state["sent"].append(Sent(ses_id, sent.get("FromEmailAddress", ""), to, raw))
            topic.events(ses_id, sent.get("FromEmailAddress", ""), to)
        elif is_send:
            state["refused"] += 1
        return Response(payload, status_code=status, headers=kept)

    @post("/_sim/faults", status_code=204)
    async def set_faults(data: JSONBody[Faults]) -> None:
        state["faults"] = data

    @get("/_sim/sent")
    async def sent() -> dict[str, Any]:
        return {"sent": list(state["sent"]), "refused": state["refused"], "notified": dict(topic.delivered),
                "confirmed": topic.confirmed}  # fmt: skip

    @get("/_sim/sns-cert.pem", media_type="application/x-pem-file")
    async def certificate() -> bytes:
        return topic.cert

    @post("/_sim/subscribe", status_code=202)
    async def subscribe() -> None:
        token = uuid.uuid4().hex
        confirm = f"http://{settings.host}:{settings.port}/_sim/confirm?Token={token}"
        text = f"You have chosen to subscribe to the topic {settings.topic_arn}."
        topic.publish("subscription", {"Type": "SubscriptionConfirmation", "Token": token, "SubscribeURL": confirm,
                                       "Message": text})  # fmt: skip

    @get("/_sim/confirm")
    async def confirm(token: FromQuery[str] = "") -> dict[str, str]:
        topic.confirmed += 1
        return {"SubscriptionArn": f"{settings.topic_arn}:{token[:8]}"}

    @post("/_sim/reset", status_code=204)
    async def reset() -> None:
        state["sent"].clear()
        state["refused"] = 0
        state["faults"] = Faults()

    async def ready() -> dict[str, str]:
        return {"moto": "ok" if "session" in upstream else "starting"}

    return Litestar(
        route_handlers=[
            forward, set_faults, sent, certificate, subscribe, confirm, reset, *ops_handlers(ready),
            double_metrics("ses_sim", lambda: {
                "accepted": len(state["sent"]), "refused": state["refused"],
                "notified": sum(topic.delivered.values()),
            }),
        ],
        lifespan=[lifespan], openapi_config=None, logging_config=None, request_max_body_size=20_000_000,
    )  # fmt: skip
