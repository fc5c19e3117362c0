"""A simulated downstream carrier over HTTP.

`POST /v1/messages` accepts `{to, channel, body, metadata, verified_sender}` and answers
201 `{id}` after `latency_ms`; `receipt_delay_ms` later it POSTs a signed delivery receipt to
Herald's receipt endpoint about that id (`{provider_message_id, status, at_ms, error_code?,
callback_data}`), as Twilio's status callbacks name the MessageSid: Herald finds the message from
its own record of the send; `callback_data` echoes the `message_id` of the metadata, as WhatsApp
echoes `biz_opaque_callback_data`. Deterministic outcomes by recipient suffix, for tests and demos:

    ...0000  permanent `invalid_number` (400)       ...0001  permanent `opted_out` (400)
    ...0002  accepted, then a `failed` receipt       ...0003  `recipient_busy` (409, Retry-After: 1)
    ...0004  500 on every attempt (provider outage for that recipient)
    ...0005  accepted, and no receipt ever (a lost delivery report)
    ...0009  429 `quota_exhausted` with Retry-After until the next UTC midnight (daily quota)

And configurable, like the real thing under load (WhatsApp Cloud API, Twilio):
  * latency: log-normal around `latency_ms` (median) with `latency_p99_ms` as its 99th percentile;
  * throughput cap `max_per_second` (token bucket, 0 = none): beyond it, 429 `throttled`
    (Twilio's 20429 / WhatsApp's 130429), with `Retry-After` (the next token) unless
    `throttle_retry_after` is off;
  * outages: `POST /v1/sim/outage {"seconds": N}` answers 503 to every send for N seconds;
  * stalls: `POST /v1/sim/stall {"seconds": N}` answers nothing for N seconds, then processes
    every send that came meanwhile, as a frozen process (SIGSTOP, a long GC pause) does with the
    requests waiting in its sockets: a client that timed out never hears that its send was taken.

Its own metrics (not Herald's: a provider's view of the traffic) at `GET /v1/sim/metrics`:
`carrier_sim_requests{kind=<answer>}`, `carrier_sim_receipts{kind=delivered|gave_up}` and
`carrier_sim_stalled_requests`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import itertools
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import msgspec
from litestar import Litestar, Response, post
from litestar.params import JSONBody

from herald.ops import double_metrics, ops_handlers
from herald.settings import ProviderSettings
from herald_carrier_sim.settings import CarrierSimSettings

log = logging.getLogger(__name__)


def receipt_signature(secret: str, body: bytes, unix_seconds: int) -> str:
    """The carrier's receipt signature as docs/security.md specifies it for providers:
    `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`. Written here from that text,
    not imported from Herald: a double that borrowed Herald's signer would agree with any change
    to it, and its receipts would prove nothing about the verifier."""
    mac = hmac.new(secret.encode(), f"{unix_seconds}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={unix_seconds},v1={mac}"


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


class OutageIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    seconds: float


ANSWERS = ("accepted", "invalid_number", "opted_out", "recipient_busy", "error", "quota_exhausted", "throttled",
           "outage")  # fmt: skip
"""What the double answers a send: `accepted`, or the `error.code` of its refusal."""


class Latency:
    """Log-normal: median `median_ms`, 99th percentile `p99_ms` (the long tail real gateways have)."""

    def __init__(self, median_ms: float, p99_ms: float) -> None:
        self._mu = math.log(max(median_ms, 0.001))
        self._sigma = max(0.0, math.log(max(p99_ms, median_ms, 0.001) / max(median_ms, 0.001)) / 2.326)

    def sample_seconds(self) -> float:
        return random.lognormvariate(self._mu, self._sigma) / 1000


class Throughput:
    """Token bucket of `per_second` with one second of burst; `take` answers the wait if empty
    (the time to the next token, at least 50 ms: what the 429's Retry-After says)."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = per_second
        self._tokens = per_second
        self._clock = clock
        self._at = clock()

    def take(self) -> float | None:
        if self._rate <= 0:
            return None
        now = self._clock()
        self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        return max(0.05, (1 - self._tokens) / self._rate)


def _until_midnight_utc() -> int:
    now = datetime.now(UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, int((midnight - now).total_seconds()))


_PERMANENT = {"0000": "invalid_number", "0001": "opted_out"}
SENDS_KEPT = 1_000_000
RECEIPT_RETRY_SECONDS = 300.0


def create_app(settings: CarrierSimSettings, provider: ProviderSettings) -> Litestar:
    counter = itertools.count(1)
    # Accepted sends per Herald message id: lets tests count duplicate sends after crashes.
    # Bounded like log_sends: past SENDS_KEPT ids, the oldest is forgotten (dicts keep insertion order).
    sends: collections.Counter[str] = collections.Counter()
    # (monotonic time, tenant id) of every accepted send: lets tests measure paced rates.
    # Bounded: `make run` and the benchmarks keep the simulator up for millions of sends.
    log_sends: collections.deque[tuple[float, str]] = collections.deque(maxlen=100_000)
    answers: collections.Counter[str] = collections.Counter(dict.fromkeys(ANSWERS, 0))
    # Sends that reached the carrier, and those not yet answered: lets tests hit a client at a
    # moment its every call is here, and see whether it started another afterwards.
    calls: collections.Counter[str] = collections.Counter(arrived=0, unanswered=0)
    receipts: collections.Counter[str] = collections.Counter(delivered=0, gave_up=0)
    pending: set[asyncio.Task[None]] = set()
    clients: list[aiohttp.ClientSession] = []
    latency = Latency(settings.latency_ms, settings.latency_p99_ms or settings.latency_ms)
    throughput = Throughput(settings.max_per_second)
    outage_until = [0.0]
    stall_until = [0.0]
    stalled = [0]

    def client() -> aiohttp.ClientSession:
        if not clients:  # created lazily, inside the running loop
            clients.append(
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=5.0), connector=aiohttp.TCPConnector(limit=32)
                )
            )
        return clients[0]

    # Receipts become due `receipt_delay_ms` after the send and are POSTed in batches (as WhatsApp
    # webhooks carry several statuses): one timer per receipt, one request per batch.
    due: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    def receipt_due(payload: dict[str, object]) -> None:
        payload["at_ms"] = time.time_ns() // 1_000_000
        due.put_nowait(payload)

    async def flush_receipts() -> None:
        while True:
            batch = [await due.get()]
            deadline = time.monotonic() + settings.receipt_batch_ms / 1000
            while len(batch) < settings.receipt_batch_max and (left := deadline - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    batch.append(await asyncio.wait_for(due.get(), left))
            task = asyncio.create_task(post_receipts(batch))
            pending.add(task)
            task.add_done_callback(pending.discard)

    async def post_receipts(batch: list[dict[str, object]]) -> None:
        url = settings.receipt_url if len(batch) == 1 else settings.receipt_url + "/batch"
        body = msgspec.json.encode(batch[0] if len(batch) == 1 else {"receipts": batch})
        # Retried with backoff for minutes, as providers retry webhooks (Meta for days): a receipt
        # endpoint that is down for a few seconds (its database failing over) loses nothing.
        deadline, delay = time.monotonic() + RECEIPT_RETRY_SECONDS, 0.2
        while True:
            try:
                async with client().post(
                    url,
                    data=body,
                    headers={
                        "content-type": "application/json",
                        "x-provider-signature": receipt_signature(provider.receipt_secret, body, int(time.time())),
                    },
                ) as response:
                    if response.status < 500:
                        receipts["delivered"] += len(batch)
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() + delay > deadline:
                log.warning("receipt not delivered after retries")
                receipts["gave_up"] += len(batch)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    @post("/v1/messages", status_code=201)
    async def send(data: JSONBody[SendIn]) -> Response[SendOut | ErrorOut]:
        calls["arrived"] += 1
        calls["unanswered"] += 1
        try:
            answer = await answered(data)
        finally:
            calls["unanswered"] -= 1
        content = answer.content
        answers[content.error.code if isinstance(content, ErrorOut) else "accepted"] += 1
        return answer

    async def answered(data: SendIn) -> Response[SendOut | ErrorOut]:
        if (frozen := stall_until[0] - time.monotonic()) > 0:
            stalled[0] += 1
            try:
                await asyncio.sleep(frozen)
            finally:
                stalled[0] -= 1
        if settings.latency_ms:
            await asyncio.sleep(latency.sample_seconds())
        if time.monotonic() < outage_until[0]:
            return Response(ErrorOut(ErrorDetail("outage", "outage")), status_code=503)
        if (wait := throughput.take()) is not None:
            return Response(
                ErrorOut(ErrorDetail("throttled", "throughput cap")),
                status_code=429,
                headers={"retry-after": f"{wait:.3f}"} if settings.throttle_retry_after else None,
            )
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
            return Response(ErrorOut(ErrorDetail("error", "internal error")), status_code=500)
        if suffix == "0009":
            return Response(
                ErrorOut(ErrorDetail("quota_exhausted", "daily quota")),
                status_code=429,
                headers={"retry-after": str(_until_midnight_utc())},
            )
        provider_id = f"sim-{next(counter):012d}"
        sends[data.metadata.get("message_id", "")] += 1
        if len(sends) > SENDS_KEPT:
            del sends[next(iter(sends))]
        log_sends.append((time.monotonic(), data.metadata.get("tenant_id", "")))
        if suffix != "0005":
            receipt: dict[str, object] = {
                "provider_message_id": provider_id,
                # Echoed as sent, as WhatsApp echoes biz_opaque_callback_data (a hint to Herald).
                "callback_data": data.metadata.get("message_id"),
                "status": "failed" if suffix == "0002" else "delivered",
            }
            if suffix == "0002":
                receipt["error_code"] = "undeliverable"
            asyncio.get_running_loop().call_later(settings.receipt_delay_ms / 1000, receipt_due, receipt)
        return Response(SendOut(id=provider_id), status_code=201)

    @post("/v1/sim/outage", status_code=204)
    async def outage(data: JSONBody[OutageIn]) -> None:
        outage_until[0] = time.monotonic() + data.seconds

    @post("/v1/sim/stall", status_code=204)
    async def stall(data: JSONBody[OutageIn]) -> None:
        stall_until[0] = time.monotonic() + data.seconds

    own_metrics = double_metrics(
        "carrier_sim", lambda: {"requests": answers, "receipts": receipts, "stalled_requests": stalled[0]},
        path="/v1/sim/metrics",
    )  # fmt: skip

    async def ready() -> dict[str, str]:
        return {"self": "ok"}

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        flusher = asyncio.create_task(flush_receipts())
        try:
            yield
        finally:
            flusher.cancel()
            # Give in-flight receipts a moment, then drop them (a real carrier would retry later).
            if pending:
                await asyncio.wait(pending, timeout=5)
            for task in list(pending):
                task.cancel()
            for session in clients:
                await session.close()

    app = Litestar(
        route_handlers=[send, outage, stall, own_metrics, *ops_handlers(ready)],
        lifespan=[lifespan],
        openapi_config=None,
        logging_config=None,
    )
    app.state.sends = sends
    app.state.log_sends = log_sends
    app.state.answers = answers
    app.state.calls = calls
    return app
