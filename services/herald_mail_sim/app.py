"""A double of an SMTP relay (a provider's submission host) and of the DNS zone its senders
publish their DKIM keys in: what Herald's workers and the API talk to in `make run` and the tests.

The SMTP side is `aiosmtpd`'s server (the library's own protocol state machine, RFC 5321),
the DNS side `dnspython`'s wire format over UDP; it never imports Herald's code, so it cannot
agree with Herald by construction. Behaviour, as relays answer (RFC 5321 §4.2, RFC 3463):

* Every mail is stored as received (raw bytes, envelope) and counted; the mailbox view counts a
  Message-ID once, as Gmail does for a message delivered twice.
* By recipient local part, for tests and demos: `nosuchuser…@` is refused `550 5.1.1`,
  `blocked…@` `554 5.7.1`, `busy…@` `450 4.2.1`; anything else is accepted.
* Above `rate_per_second` (or with the `throttle` fault) RCPT is answered `451 4.7.1`.
* Faults (`POST /_sim/faults`): `drop_before_data: n` closes the next n connections at RCPT
  (the relay has nothing); `drop_after_data: n` stores the next n mails and closes before
  answering DATA (the relay has them; the sender does not know); `outage` refuses connections.

Control endpoints: `/_sim/faults`, `/_sim/mails` (the last mails, raw included, `?to=` filters),
`/_sim/stats`, `/_sim/dns` (PUT a TXT record), `/_sim/reset`; `/` is a page of the last mails.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import html
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from typing import Any, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import msgspec
from aiosmtpd.smtp import SMTP, Envelope, Session
from litestar import Litestar, MediaType, Response, get, post, put
from litestar.params import FromQuery, JSONBody

from herald.ops import ops_handlers
from herald_mail_sim.settings import MailSimSettings

log = logging.getLogger(__name__)


class Faults(msgspec.Struct):
    drop_before_data: int = 0
    drop_after_data: int = 0
    throttle: bool = False
    outage: bool = False


class TxtRecord(msgspec.Struct, frozen=True):
    name: str
    value: str


class Mail(msgspec.Struct, frozen=True):
    mail_from: str
    rcpt_to: list[str]
    message_id: str
    subject: str
    received_at: float
    raw: str
    """The message as received (it is ASCII: 7-bit MIME, as SMTP without SMTPUTF8 carries)."""


class Relay:
    """The SMTP handler (aiosmtpd's hooks) and what it has received."""

    def __init__(self, settings: MailSimSettings) -> None:
        self.settings = settings
        self.faults = Faults()
        self.mails: deque[Mail] = deque(maxlen=settings.kept)
        self.received = 0
        self.per_message_id: Counter[str] = Counter()
        self.refused = self.throttled = self.dropped = 0
        self._window_start = time.monotonic()
        self._window_count = 0

    def _over_rate(self) -> bool:
        rate = self.settings.rate_per_second
        if self.faults.throttle:
            return True
        if rate <= 0:
            return False
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_count = now, 0
        self._window_count += 1
        return self._window_count > rate

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.faults.drop_before_data > 0:
            self.faults.drop_before_data -= 1
            self.dropped += 1
            assert server.transport is not None
            server.transport.close()
            return "421 4.4.2 connection dropped"  # never written: the transport is closed
        if self._over_rate():
            self.throttled += 1
            return "451 4.7.1 Rate limit exceeded, try again later"
        local = address.partition("@")[0].lower()
        for prefix, reply in (("nosuchuser", "550 5.1.1 No such user"), ("blocked", "554 5.7.1 Message refused"),
                              ("busy", "450 4.2.1 Mailbox busy, try again later")):  # fmt: skip
            if local.startswith(prefix):
                self.refused += 1
                return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        message_id = str(parsed.get("Message-ID", ""))
        self.received += 1
        self.per_message_id[message_id] += 1
        self.mails.append(
            Mail(mail_from=str(envelope.mail_from), rcpt_to=list(envelope.rcpt_tos), message_id=message_id,
                 subject=str(parsed.get("Subject", "")), received_at=time.time(),
                 raw=content.decode("ascii", errors="replace"))
        )  # fmt: skip
        if self.faults.drop_after_data > 0:
            self.faults.drop_after_data -= 1
            self.dropped += 1
            assert server.transport is not None
            server.transport.close()
        return "250 2.0.0 OK: queued"

    def stats(self) -> dict[str, int]:
        return {
            "received": self.received, "unique": len(self.per_message_id),
            "duplicates": sum(n - 1 for n in self.per_message_id.values()), "refused": self.refused,
            "throttled": self.throttled, "dropped": self.dropped,
        }  # fmt: skip

    def reset(self) -> None:
        self.mails.clear()
        self.per_message_id.clear()
        self.received = self.refused = self.throttled = self.dropped = 0


class Zone(asyncio.DatagramProtocol):
    """An authoritative DNS server for the TXT records set through `/_sim/dns`."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception:  # not DNS: a real server drops it too
            return
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0] if query.question else None
        if question is not None:
            name = question.name.to_text().rstrip(".").lower()
            values = self.records.get(name)
            if values is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif question.rdtype == dns.rdatatype.TXT:
                # A TXT string is at most 255 bytes: a 2048-bit key's record is split, as zones do.
                texts = [" ".join(f'"{v[i : i + 255]}"' for i in range(0, len(v), 255)) for v in values]
                response.answer.append(dns.rrset.from_text(question.name, 300, "IN", "TXT", *texts))
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)


def _page(mails: list[Mail]) -> str:
    rows = "".join(
        f"<tr><td>{time.strftime('%H:%M:%S', time.localtime(m.received_at))}</td><td>{html.escape(m.mail_from)}</td>"
        f"<td>{html.escape(', '.join(m.rcpt_to))}</td><td>{html.escape(m.subject)}</td>"
        f"<td>{html.escape(m.message_id)}</td></tr>"
        for m in reversed(mails)
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Mail relay double</title></head><body>"
        f"<h1>Last {len(mails)} mails</h1><table border='1'><tr><th>Received</th><th>From (envelope)</th>"
        f"<th>To</th><th>Subject</th><th>Message-ID</th></tr>{rows}</table></body></html>"
    )


def create_app(settings: MailSimSettings) -> Litestar:
    relay = Relay(settings)
    zone = Zone()
    servers: dict[str, asyncio.AbstractServer | None] = {"smtp": None}

    async def listen() -> None:
        loop = asyncio.get_running_loop()
        servers["smtp"] = await loop.create_server(
            lambda: SMTP(relay, hostname="relay.herald.invalid", ident="herald-mail-sim"),
            settings.host, settings.smtp_port,
        )  # fmt: skip

    async def unlisten() -> None:
        server, servers["smtp"] = servers["smtp"], None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    @contextlib.asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await listen()
        loop = asyncio.get_running_loop()
        udp, _zone = await loop.create_datagram_endpoint(lambda: zone, local_addr=(settings.host, settings.dns_port))
        try:
            yield
        finally:
            udp.close()
            await unlisten()

    @post("/_sim/faults", status_code=204)
    async def faults(data: JSONBody[Faults]) -> None:
        was_out = relay.faults.outage
        relay.faults = data
        if data.outage and not was_out:
            await unlisten()
        elif was_out and not data.outage:
            await listen()

    @get("/_sim/mails")
    async def mails(to: FromQuery[str | None] = None, limit: FromQuery[int] = 100) -> list[Mail]:
        found = [m for m in relay.mails if to is None or to in m.rcpt_to]
        return found[-limit:]

    @get("/_sim/stats")
    async def stats() -> dict[str, int]:
        return relay.stats()

    @put("/_sim/dns", status_code=204)
    async def publish(data: JSONBody[TxtRecord]) -> None:
        zone.records.setdefault(data.name.rstrip(".").lower(), []).append(data.value)

    @post("/_sim/reset", status_code=204)
    async def reset() -> None:
        relay.reset()
        relay.faults = Faults()

    @get("/", media_type=MediaType.HTML)
    async def page() -> Response[str]:
        return Response(_page(list(relay.mails)[-50:]), media_type=MediaType.HTML)

    async def ready() -> dict[str, str]:
        return {"smtp": "ok" if servers["smtp"] is not None or relay.faults.outage else "down"}

    app = Litestar(
        route_handlers=[faults, mails, stats, publish, reset, page, *ops_handlers(ready)],
        lifespan=[lifespan], openapi_config=None, logging_config=None,
    )  # fmt: skip
    app.state.relay = relay
    return app
