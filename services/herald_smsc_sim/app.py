"""A double of an operator's SMSC over SMPP 3.4: what Herald's SMPP binds talk to in `make run`
and the tests.

The SMPP side is `smpp34`'s server (a maintained SMPP 3.4 implementation, the library's own
codec and sessions), driven here as an operator would: it never imports Herald's code, so it
cannot agree with Herald by construction. Behaviour, from the SMPP 3.4 specification (sections
4.4, 5.2.17 esm_class, 5.3.2.12 receipted_message_id, Appendix B receipt text) and the vendor
receipts collected in `../shared/PROVIDERS.md`:

* `submit_sm` is answered with a message id, or `ESME_RTHROTTLED` (0x58) above `rate_per_second`.
  Concatenated parts (esm_class UDHI 0x40, a 0x00 information element) are counted as one
  message once the last part arrives. A receipt is sent only where `registered_delivery` asks.
* Receipts are `deliver_sm` with esm_class 0x04, the text `id:… sub:001 dlvrd:001 submit date:…
  done date:… stat:DELIVRD err:000 text:…` and the `receipted_message_id` and `message_state`
  TLVs, on a bound session of the account (queued while none is, as an SMSC retries them). By
  destination suffix, for tests and demos: `…0000` UNDELIV err:001 (absent subscriber),
  `…0001` REJECTD err:00B, `…0005` no receipt ever; anything else DELIVRD.
* Mobile-originated replies (`POST /_sim/mo`) are `deliver_sm` with esm_class 0.

Its own metrics (an operator's view of the traffic, not Herald's) at `GET /_sim/metrics`:
`smsc_sim_submits{kind=accepted|throttled|refused}` (submit_sm PDUs: parts) and
`smsc_sim_sessions` (bound ESME sessions).

Control endpoints: `/_sim/faults` (an outage: every session unbound and new binds refused, until
lifted; a rate limit), `/_sim/mo`, `/_sim/sent` (complete messages per destination, parts,
throttled submits) and `/_sim/reset`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import smpp34
from litestar import Litestar, get, post
from litestar.params import JSONBody

from herald.ops import double_metrics, ops_handlers
from herald_smsc_sim.settings import SmscSimSettings

log = logging.getLogger(__name__)

# From the SMPP 3.4 specification (5.1.3 command_status, 5.3.2 TLV tags).
ESME_RSYSERR = 0x08
ESME_RTHROTTLED = 0x58
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427

_FATES = {"0000": ("UNDELIV", "001", 5), "0001": ("REJECTD", "00B", 8)}
"""Destination suffix -> (receipt stat, err, message_state TLV value)."""
_SILENT = "0005"
RECEIPT_SENDERS = 8
_DELIVERED = ("DELIVRD", "000", 2)


class Faults(msgspec.Struct):
    outage: bool = False
    rate_per_second: int | None = None


class Mo(msgspec.Struct, frozen=True):
    source: str
    """The handset's number (E.164 digits)."""
    destination: str
    """The sender it replies to."""
    text: str


class Smsc:
    """The SMSC's state and its SMPP server (one per process)."""

    def __init__(self, settings: SmscSimSettings) -> None:
        self.settings = settings
        self.faults = Faults(rate_per_second=settings.rate_per_second or None)
        self.sessions: dict[str, smpp34.Esme] = {}
        self.server: smpp34.Server | None = None
        self._pump: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self.messages: Counter[str] = Counter()
        """Complete messages per destination."""
        self.parts = 0
        self.throttled = 0
        self.refused = 0
        self._partial: dict[tuple[str, int], set[int]] = {}
        self._receipts: asyncio.Queue[tuple[str, str, bytes, list[smpp34.Tlv]]] = asyncio.Queue()
        """Receipts to deliver: each is retried until an ESME acknowledges it, as an SMSC does."""
        self._senders: list[asyncio.Task[None]] = []
        self._tokens = 0.0
        self._tokens_at = time.monotonic()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = smpp34.Server(host=self.settings.host, port=self.settings.smpp_port, system_id="SMSCSIM")
        await self.server.start()
        self._pump = asyncio.create_task(self._serve(self.server))
        if not self._senders:
            self._senders = [asyncio.create_task(self._deliver_receipts(i)) for i in range(RECEIPT_SENDERS)]

    async def stop(self) -> None:
        """The listener first, so that no session binds while the others are unbound (an ESME
        binding again at once got a session nobody served, whose submits the library answered
        `ESME_RTHROTTLED`); the pump still runs meanwhile, and unbinds whoever bound just before."""
        async def unbind(session: smpp34.Esme) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.unbind(), 2)

        if self.server is not None:
            await self.server.stop()
        await asyncio.gather(*(unbind(s) for s in list(self.sessions.values())))
        self.sessions.clear()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(BaseException):
                await self._pump
            self._pump = None
        self.server = None

    async def close(self) -> None:
        """The process ends: the server, and the receipts' senders (an outage keeps those)."""
        await self.stop()
        for task in self._senders:
            task.cancel()
        await asyncio.gather(*self._senders, return_exceptions=True)

    async def _serve(self, server: smpp34.Server) -> None:
        while True:
            event = await server.next()
            if isinstance(event, smpp34.Esme):
                if event.system_id != self.settings.system_id or self.faults.outage:
                    self._spawn(event.unbind())
                    continue
                self.sessions[event.session_id] = event
            elif isinstance(event, smpp34.SubmitSmEvent):
                self._submitted(event)
            elif isinstance(event, smpp34.Unbound):
                self.sessions.pop(event.session_id, None)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take_token(self) -> bool:
        rate = self.faults.rate_per_second
        if not rate:
            return True
        now = time.monotonic()
        self._tokens = min(float(rate) / 10 + 1, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _submitted(self, event: smpp34.SubmitSmEvent) -> None:
        if self.faults.outage or event.session_id not in self.sessions:
            self.refused += 1
            event.reject(ESME_RSYSERR)
            return
        if not self._take_token():
            self.throttled += 1
            event.reject(ESME_RTHROTTLED)
            return
        message_id = f"{next(self._ids):010x}"
        event.accept(message_id=message_id)
        self.parts += 1
        destination, body = event.destination_addr, event.short_message
        if event.esm_class & 0x40 and len(body) >= 6 and body[1] == 0x00:
            reference, total, number = body[3], body[4], body[5]
            seen = self._partial.setdefault((destination, reference), set())
            seen.add(number)
            if len(seen) < total:
                if event.registered_delivery & 1:
                    self._spawn(self._receipt_later(message_id, destination, event.source_addr))
                return
            del self._partial[(destination, reference)]
        self.messages[destination] += 1
        if event.registered_delivery & 1:
            self._spawn(self._receipt_later(message_id, destination, event.source_addr))

    async def _receipt_later(self, message_id: str, destination: str, source: str) -> None:
        if destination.endswith(_SILENT):
            return
        await asyncio.sleep(self.settings.receipt_delay_ms / 1000)
        stat, err, state = _FATES.get(destination[-4:], _DELIVERED)
        stamp = datetime.now(UTC).strftime("%y%m%d%H%M")
        text = (f"id:{message_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} submit date:{stamp}"
                f" done date:{stamp} stat:{stat} err:{err} text:").encode()  # fmt: skip
        tlvs = [
            smpp34.Tlv(TLV_RECEIPTED_MESSAGE_ID, message_id.encode() + b"\0"),
            smpp34.Tlv(TLV_MESSAGE_STATE, bytes((state,))),
        ]
        self._receipts.put_nowait((source, destination, text, tlvs))

    async def _deliver_receipts(self, lane: int) -> None:
        """One of `RECEIPT_SENDERS`: takes a receipt and offers it to a bound session until one
        acknowledges it (a NAK, a session that went away or an outage: again shortly)."""
        while True:
            source, destination, text, tlvs = await self._receipts.get()
            while True:
                receivers = [s for s in self.sessions.values() if s.can_receive]
                if receivers and not self.faults.outage:
                    try:
                        answer = await receivers[lane % len(receivers)].deliver_sm(
                            source, text, source_addr=destination, esm_class=0x04, tlvs=tlvs
                        )
                        if answer.is_success:
                            break
                    except Exception:  # noqa: S110 - the session went away meanwhile: offered again
                        pass
                await asyncio.sleep(0.05)

    async def mo(self, reply: Mo) -> bool:
        receivers = [s for s in self.sessions.values() if s.can_receive]
        if not receivers:
            return False
        await receivers[0].deliver_sm(reply.destination, reply.text.encode(), source_addr=reply.source, esm_class=0)
        return True

    async def set_faults(self, faults: Faults) -> None:
        was_out = self.faults.outage
        self.faults = faults
        if faults.outage and not was_out:
            # What is in flight is answered ESME_RSYSERR (the pump still runs), then every session
            # is unbound and nothing listens: binds are refused.
            await asyncio.sleep(0.05)
            await self.stop()
        elif was_out and not faults.outage:
            await self.start()


def create_app(settings: SmscSimSettings) -> Litestar:
    smsc = Smsc(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await smsc.start()
        try:
            yield
        finally:
            await smsc.close()

    @post("/_sim/faults", status_code=204)
    async def faults(data: JSONBody[Faults]) -> None:
        await smsc.set_faults(data)

    @post("/_sim/mo", status_code=202)
    async def mobile_originated(data: JSONBody[Mo]) -> dict[str, bool]:
        return {"delivered": await smsc.mo(data)}

    @get("/_sim/sent")
    async def sent() -> dict[str, Any]:
        return {
            "per_destination": dict(smsc.messages), "parts": smsc.parts, "throttled": smsc.throttled,
            "refused": smsc.refused, "sessions": len(smsc.sessions),
        }  # fmt: skip

    own_metrics = double_metrics("smsc_sim", lambda: {
        "submits": {"accepted": smsc.parts, "throttled": smsc.throttled, "refused": smsc.refused},
        "sessions": len(smsc.sessions),
    })  # fmt: skip

    @post("/_sim/reset", status_code=204)
    async def reset() -> None:
        smsc.messages.clear()
        smsc.parts = smsc.throttled = smsc.refused = 0

    async def ready() -> dict[str, str]:
        return {"smpp": "ok" if smsc.server is not None or smsc.faults.outage else "down"}

    app = Litestar(
        route_handlers=[faults, mobile_originated, sent, own_metrics, reset, *ops_handlers(ready)],
        lifespan=[lifespan], openapi_config=None, logging_config=None,
    )  # fmt: skip
    app.state.smsc = smsc
    return app
