"""One provider account over SMPP 3.4 (`smpp34`): the binds a worker holds, and a send.

**Binds**: `binds` transceiver sessions per worker, each a `_Bind` whose lifetime is one TCP
session: it connects (a new client each time; `smpp34` keeps the session's `enquire_link` and
window of `window` outstanding submits), reads what the SMSC delivers (receipts, replies) into
`on_deliver`, and when the session ends it connects again after a backoff (0.5 s doubling to
5 s, with jitter), until closed.

**A send** goes to the next bound session. Its text is split as `herald.domain.segments` says
(the count billed at accept): GSM-7 or UCS-2 (`data_coding` 0 or 8), concatenated parts with a
UDH (esm_class 0x40) whose reference is derived from the message id, so a resend of the same
message carries the same reference and a handset can drop parts it already has. Only the last
part asks for a receipt: one receipt per message, bound by the last part's id.

Outcomes (`RetryableError.untaken` decides whether another provider may be tried):
* no session bound: retryable `provider_unavailable`, untaken (nothing was written);
* `ESME_RTHROTTLED` 0x58 / `ESME_RMSGQFUL` 0x14 on the first part: retryable `throttled`, untaken;
* `ESME_RSYSERR` 0x08 on the first part: retryable `provider_unavailable`, untaken;
* any other command_status on the first part: permanent (invalid destination 0x0B -> `invalid_number`);
* no answer within `submit_timeout`, or the session lost while waiting: retryable, *not* untaken
  (the SMSC may have taken it); and any failure after the first part was accepted likewise. A
  session that left a submit unanswered is dropped and bound again: an SMSC that stalls one
  submit stalls the rest, and each would otherwise wait out its own timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import zlib
from collections.abc import Awaitable, Callable

import smpp34

from herald import metrics
from herald.domain.reasons import Reason
from herald.domain.records import OutboundMessage
from herald.domain.segments import segment
from herald.domain.sms_routing import SmsProvider
from herald_worker.providers.base import Accepted, PermanentError, RetryableError

log = logging.getLogger(__name__)

ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
ESME_RINVDSTADR = 0x0B
ESME_RSYSERR = 0x08
_THROTTLED = frozenset({ESME_RMSGQFUL, ESME_RTHROTTLED})
_UNAVAILABLE = frozenset({ESME_RSYSERR})
"""Answered, so certainly not taken, and the SMSC's own trouble rather than the message's."""
_PERMANENT = {ESME_RINVDSTADR: Reason.INVALID_NUMBER}
TON_INTERNATIONAL, TON_ALPHANUMERIC, NPI_E164 = 1, 5, 1
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 5.0
INBOUND_CAPACITY = 10_000
"""Receipts and replies the session holds for its reader: a burst of receipts waits here rather
than being refused back to the SMSC (which retries them) while the worker is busy sending."""

Deliver = Callable[[str, smpp34.DeliverSmEvent], Awaitable[None]]
"""`(provider name, event)`: a receipt or a reply the SMSC delivered on one of the binds."""


def _source_ton(sender: str) -> tuple[int, int]:
    return (TON_INTERNATIONAL, NPI_E164) if sender.isdigit() else (TON_ALPHANUMERIC, 0)


async def _within(submit: Awaitable[smpp34.SubmitSmResp], seconds: float) -> smpp34.SubmitSmResp:
    """The submit's answer, or TimeoutError after `seconds`. Not `asyncio.wait_for`: the
    library's future finishes only at its own response timer (30 s) once cancelled, and
    `wait_for` would wait for that; the abandoned submit ends in the background instead."""
    task = asyncio.ensure_future(submit)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        raise TimeoutError
    return task.result()


async def _bound(client: smpp34.Client, seconds: float) -> smpp34.Smsc:
    """The bound session, or TimeoutError after `seconds`: an SMSC that takes the connection and
    never answers the bind (seen with the double's server restarted while an old listener lingered)
    would otherwise hold this bind's loop forever. The abandoned attempt is stopped in the
    background, as `_within` abandons a submit."""
    connecting = asyncio.ensure_future(client.connect())
    done, _ = await asyncio.wait({connecting}, timeout=seconds)
    if not done:
        connecting.add_done_callback(lambda t: t.cancelled() or t.exception())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop(), 2)
        raise TimeoutError
    return connecting.result()


class _Bind:
    """One transceiver session, reconnected until `close`."""

    def __init__(self, provider: SmppProvider, index: int) -> None:
        self._provider = provider
        self._index = index
        self.smsc: smpp34.Smsc | None = None
        self._task = asyncio.create_task(self._run(), name=f"smpp-bind-{provider.name}-{index}")

    async def _run(self) -> None:
        p = self._provider
        delay = BACKOFF_FIRST
        while True:
            client = smpp34.Client(
                host=p.host, port=p.port, system_id=p.config.account, password=p.password, bind_type="TRX",
                window_size=p.config.window, connect_timeout_ms=int(p.connect_timeout * 1000),
                inbound_capacity=INBOUND_CAPACITY,
            )  # fmt: skip
            try:
                # The connection and the bind_resp within three connect timeouts.
                smsc = self.smsc = await _bound(client, 3 * p.connect_timeout)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # refused, timed out, or the library's panic: bind again
                log.warning("smpp bind failed", extra={"provider": p.name, "error": type(exc).__name__})
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            delay = BACKOFF_FIRST
            p.bound_changed()
            try:
                # The session's own handle: `drop` may take `self.smsc` away meanwhile, and this
                # reader then sees the session end and binds again.
                while isinstance(event := await smsc.next(), smpp34.DeliverSmEvent):
                    try:
                        await p.on_deliver(p.name, event)
                    except Exception:
                        log.exception("smpp deliver_sm handling failed", extra={"provider": p.name})
            except (smpp34.SmppError, RuntimeError) as exc:
                log.warning("smpp session failed", extra={"provider": p.name, "error": type(exc).__name__})
            finally:
                if self.smsc is smsc:
                    self.smsc = None
                p.bound_changed()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.stop(), 2)
            if self._task is not asyncio.current_task():
                return  # dropped: the task that replaced this one binds anew
            log.warning("smpp session ended; binding again", extra={"provider": p.name})

    def drop(self, smsc: smpp34.Smsc) -> None:
        """Stop sending on `smsc` (it left a submit unanswered): the session is closed and a new
        one bound. Not left to the session's reader: a stalled SMSC may never end it."""
        if self.smsc is not smsc:
            return
        self.smsc = None
        self._provider.bound_changed()
        old = self._task
        self._task = asyncio.create_task(self._rebind(old, smsc), name=old.get_name())

    async def _rebind(self, old: asyncio.Task[None], smsc: smpp34.Smsc) -> None:
        """End the session: unbind, so that its reader takes what the session still holds
        (receipts it acknowledged) and sees it end; cancelled if it has not within a few seconds
        (a stalled SMSC answers nothing); then bind anew."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(smsc.unbind(), 2)
        await asyncio.wait({old}, timeout=2)
        if not old.done():
            old.cancel()  # its `finally` stops the client
            await asyncio.wait({old}, timeout=3)
        await self._run()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        if self.smsc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.smsc.unbind(), 2)
            self.smsc = None


class SmppProvider:
    def __init__(
        self, config: SmsProvider, password: str, on_deliver: Deliver, submit_timeout: float, connect_timeout: float
    ) -> None:
        self.config = config
        self.name = f"sms:{config.name}"
        """What its sends (and so its receipts) are recorded under."""
        self.password = password
        self.on_deliver = on_deliver
        self.submit_timeout = submit_timeout
        self.connect_timeout = connect_timeout
        host, _, port = config.endpoint.rpartition(":")
        self.host, self.port = host, int(port)
        self._binds = [_Bind(self, i) for i in range(config.binds)]
        self._next = itertools.cycle(range(config.binds))

    def bound_changed(self) -> None:
        metrics.SMPP_BINDS.labels(self.config.name).set(sum(b.smsc is not None for b in self._binds))

    def _bind(self) -> _Bind | None:
        for _ in self._binds:
            bind = self._binds[next(self._next)]
            if bind.smsc is not None:
                return bind
        return None

    async def send(self, message: OutboundMessage) -> Accepted:
        bind = self._bind()
        if bind is None or (smsc := bind.smsc) is None:
            raise RetryableError(Reason.PROVIDER_UNAVAILABLE, untaken=True)
        split = segment(message.body)
        parts = split.short_messages(reference=zlib.crc32(message.id.bytes))
        sender = message.sender or self.config.sender
        source_ton, source_npi = _source_ton(sender)
        last_id = ""
        for number, part in enumerate(parts):
            last = number == len(parts) - 1
            try:
                answer = await _within(
                    smsc.submit_sm(
                        message.to.lstrip("+"), part, source_addr=sender, source_addr_ton=source_ton,
                        source_addr_npi=source_npi, dest_addr_ton=TON_INTERNATIONAL, dest_addr_npi=NPI_E164,
                        esm_class=0x40 if len(parts) > 1 else 0, data_coding=int(split.coding),
                        registered_delivery=1 if last else 0,
                    ),
                    self.submit_timeout,
                )  # fmt: skip
            except (TimeoutError, smpp34.SmppError) as exc:
                # Written, and no answer: the SMSC may have it. Never another provider's to send.
                log.warning("smpp submit unanswered", extra={"provider": self.name, "error": type(exc).__name__,
                                                             "detail": str(exc)[:120]})  # fmt: skip
                bind.drop(smsc)
                raise RetryableError(Reason.PROVIDER_UNAVAILABLE, lost=True) from None
            if answer.is_success and answer.message_id:
                last_id = answer.message_id
                continue
            status = answer.command_status
            taken_before = number > 0  # earlier parts are the SMSC's already
            if status in _THROTTLED:
                raise RetryableError(Reason.THROTTLED, untaken=not taken_before)
            if status in _UNAVAILABLE:
                raise RetryableError(Reason.PROVIDER_UNAVAILABLE, untaken=not taken_before)
            if taken_before:
                raise RetryableError(Reason.PROVIDER_UNAVAILABLE)
            raise PermanentError(_PERMANENT.get(status, Reason.REJECTED))
        return Accepted(provider_message_id=last_id.lower(), provider=self.name)

    async def close(self) -> None:
        for bind in self._binds:
            await bind.close()
        metrics.SMPP_BINDS.labels(self.config.name).set(0)
