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
* Beyond `max_connections` open at once, a new connection is greeted `421 4.7.0` and closed, as
  Postfix does past `smtpd_client_connection_count_limit`; the stats count the peak and refusals.
* Delivery reports (RFC 3461/3464) go to the envelope sender through `report_host:port` once a
  mail is taken: `delivered` where RCPT asked `NOTIFY=SUCCESS`; by local part, `bounce…@` a
  failure (`5.1.1`, sent whatever NOTIFY said, as relays do), `softbounce…@` a `delayed` report
  (`4.2.2`) and then `delivered`, `complain…@` `delivered` and then an ARF abuse report (RFC
  5965, as a mailbox provider's feedback loop sends). A report answered 4xx is sent again later.
* Faults (`POST /_sim/faults`): `drop_before_data: n` closes the next n connections at RCPT
  (the relay has nothing); `drop_after_data: n` stores the next n mails and closes before
  answering DATA (the relay has them; the sender does not know); `outage` refuses connections.

STARTTLS is offered with a self-signed certificate for 127.0.0.1 and localhost (written to
`tls_cert_file`, and served at `/_sim/tls-cert.pem`); `tls` in the stats counts mails taken over it.

Control endpoints: `/_sim/faults`, `/_sim/mails` (the last mails, raw included, `?to=` filters),
`/_sim/stats`, `/_sim/dns` (PUT a TXT record), `/_sim/reset`; `/` is a page of the last mails.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import email.utils
import html
import ipaddress
import logging
import re
import ssl
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any, cast

import aiosmtplib
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import msgspec
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from litestar import Litestar, MediaType, Response, get, post, put
from litestar.params import FromQuery, JSONBody

from herald.ops import double_metrics, ops_handlers
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


REPORT_ATTEMPTS = 200
MAX_REPORT_BACKOFF_SECONDS = 2.0
"""A report refused 4xx is sent again with a doubling delay up to this (an MTA's queue, faster)."""
_DSN_PARAMS = re.compile(r"\s+(RET|ENVID|NOTIFY|ORCPT)=(\S+)", re.IGNORECASE)


class DsnSMTP(SMTP):
    """aiosmtpd's server with the DSN extension (RFC 3461): it takes `RET`, `ENVID`, `NOTIFY` and
    `ORCPT` (aiosmtpd refuses parameters it does not know) and keeps them for the reports; and
    with the relay's connection limit."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        cast(Relay, self.event_handler).sessions.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        cast(Relay, self.event_handler).sessions.discard(self)
        super().connection_lost(exc)

    async def _handle_client(self) -> None:
        relay = cast(Relay, self.event_handler)
        if not relay.connected():
            await self.push("421 4.7.0 Error: too many connections")
            assert self.transport is not None
            self.transport.close()
            return
        try:
            await super()._handle_client()
        finally:
            relay.disconnected()

    async def smtp_MAIL(self, arg: str) -> None:
        self.dsn_mail = {k.upper(): v for k, v in _DSN_PARAMS.findall(arg or "")}
        await super().smtp_MAIL(_DSN_PARAMS.sub("", arg or ""))

    async def smtp_RCPT(self, arg: str) -> None:
        params = {k.upper(): v for k, v in _DSN_PARAMS.findall(arg or "")}
        self.dsn_notify = params.get("NOTIFY", "").upper().split(",") if params.get("NOTIFY") else []
        await super().smtp_RCPT(_DSN_PARAMS.sub("", arg or ""))


class Relay:
    """The SMTP handler (aiosmtpd's hooks) and what it has received."""

    def __init__(self, settings: MailSimSettings) -> None:
        self.settings = settings
        self.notify: dict[int, dict[str, list[str]]] = {}
        self.reports_sent: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self.faults = Faults()
        self.mails: deque[Mail] = deque(maxlen=settings.kept)
        self.received = 0
        self.per_message_id: Counter[str] = Counter()
        self.refused = self.throttled = self.dropped = self.tls = 0
        self.connections = self.connections_peak = self.connections_refused = 0
        self.sessions: set[DsnSMTP] = set()
        """Open connections, closed when the double stops: Python 3.11's `Server.close()` leaves
        accepted ones open (a stopped relay that still holds its clients' connections)."""
        self._window_start = time.monotonic()
        self._window_count = 0

    def connected(self) -> bool:
        """A new connection is taken (True) or refused, over `max_connections`."""
        limit = self.settings.max_connections
        if limit and self.connections >= limit:
            self.connections_refused += 1
            return False
        self.connections += 1
        self.connections_peak = max(self.connections_peak, self.connections)
        return True

    def disconnected(self) -> None:
        self.connections -= 1

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

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-DSN", responses[-1]]

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
        self.notify.setdefault(id(envelope), {})[address] = list(getattr(server, "dsn_notify", []))
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        message_id = str(parsed.get("Message-ID", ""))
        self.received += 1
        self.tls += session.ssl is not None
        self.per_message_id[message_id] += 1
        self.mails.append(
            Mail(mail_from=str(envelope.mail_from), rcpt_to=list(envelope.rcpt_tos), message_id=message_id,
                 subject=str(parsed.get("Subject", "")), received_at=time.time(),
                 raw=content.decode("ascii", errors="replace"))
        )  # fmt: skip
        self._report(envelope, getattr(server, "dsn_mail", {}), parsed)
        if self.faults.drop_after_data > 0:
            self.faults.drop_after_data -= 1
            self.dropped += 1
            assert server.transport is not None
            server.transport.close()
        return "250 2.0.0 OK: queued"

    def _report(self, envelope: Envelope, mail_params: dict[str, str], parsed: Message) -> None:
        notify = self.notify.pop(id(envelope), {})
        sender = str(envelope.mail_from or "")
        if not self.settings.report_port or not sender:
            return
        headers = _returned_headers(parsed)
        for rcpt in envelope.rcpt_tos:
            local = rcpt.partition("@")[0].lower()
            asked = notify.get(rcpt, [])
            steps: list[tuple[str, str]] = []
            if local.startswith("bounce"):
                steps = [("failed", "5.1.1")]
            elif local.startswith("softbounce"):
                steps = [("delayed", "4.2.2"), ("delivered", "2.0.0")]
            elif "SUCCESS" in asked:
                steps = [("delivered", "2.0.0")]
            reports = [(action, _dsn(sender, rcpt, action, status, mail_params.get("ENVID"), headers))
                       for action, status in steps if action != "delayed" or "DELAY" in asked]  # fmt: skip
            if local.startswith("complain"):
                reports.append(("complained", _arf(sender, rcpt, parsed)))
            if reports:
                task = asyncio.get_running_loop().create_task(self._send_reports(sender, reports))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _send_reports(self, to: str, reports: list[tuple[str, bytes]]) -> None:
        """Each report in turn, as an MTA's queue sends them: again later while it is refused 4xx
        or cannot connect, dropped on 5xx (a bounce of a bounce is never sent)."""
        for kind, report in reports:
            for attempt in range(REPORT_ATTEMPTS):
                await asyncio.sleep(min(self.settings.report_delay_ms / 1000 * 2**attempt, MAX_REPORT_BACKOFF_SECONDS))
                try:
                    client = aiosmtplib.SMTP(hostname=self.settings.report_host, port=self.settings.report_port,
                                             timeout=10, start_tls=False)  # fmt: skip
                    async with client:
                        await client.mail("")  # the null reverse path: a report is never reported on
                        await client.rcpt(to)
                        await client.data(report)
                except aiosmtplib.SMTPResponseException as exc:
                    if exc.code >= 500:
                        self.reports_sent["refused"] += 1
                        break
                    continue
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    continue
                self.reports_sent[kind] += 1
                break

    def stats(self) -> dict[str, int]:
        return {
            "received": self.received, "unique": len(self.per_message_id),
            "duplicates": sum(n - 1 for n in self.per_message_id.values()), "refused": self.refused,
            "throttled": self.throttled, "dropped": self.dropped, "tls": self.tls,
            "connections": self.connections, "connections_peak": self.connections_peak,
            "connections_refused": self.connections_refused,
            **{f"reports_{kind}": n for kind, n in self.reports_sent.items()},
        }  # fmt: skip

    def reset(self) -> None:
        self.mails.clear()
        self.per_message_id.clear()
        self.received = self.refused = self.throttled = self.dropped = self.tls = 0
        self.connections_peak, self.connections_refused = self.connections, 0
        self.reports_sent.clear()


def _returned_headers(parsed: Message) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in parsed.items() if k.lower() in ("message-id", "from", "to", "subject"))


def _dsn(to: str, rcpt: str, action: str, status: str, envid: str | None, headers: str) -> bytes:
    """A delivery status notification (RFC 3464), as the relay's MTA writes it."""
    diagnostic = {"failed": f"smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
                  "delayed": "smtp; 452 4.2.2 Mailbox full", "delivered": "smtp; 250 2.0.0 OK"}[action]  # fmt: skip
    boundary = f"dsn-{uuid.uuid4().hex}"
    per_message = "Reporting-MTA: dns; relay.herald.invalid\r\n"
    if envid:
        per_message += f"Original-Envelope-Id: {envid}\r\n"
    return (
        f"From: Mail Delivery System <MAILER-DAEMON@relay.herald.invalid>\r\nTo: <{to}>\r\n"
        f"Subject: Delivery Status Notification ({action})\r\nMessage-ID: <{uuid.uuid4()}@relay.herald.invalid>\r\n"
        f"Date: {email.utils.formatdate(usegmt=True)}\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nYour message: {action}.\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n{per_message}\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: {diagnostic}\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--{boundary}--\r\n"
    ).encode()


def _arf(to: str, rcpt: str, parsed: Message) -> bytes:
    """An abuse feedback report (RFC 5965), as a mailbox provider's feedback loop sends it."""
    boundary = f"arf-{uuid.uuid4().hex}"
    original = _returned_headers(parsed)
    return (
        f"From: <fbl@isp.herald.invalid>\r\nTo: <{to}>\r\nSubject: Abuse report\r\n"
        f"Message-ID: <{uuid.uuid4()}@isp.herald.invalid>\r\nDate: {email.utils.formatdate(usegmt=True)}\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
        f"User-Agent: herald-mail-sim/1\r\nVersion: 1\r\nOriginal-Rcpt-To: <{rcpt}>\r\n\r\n"
        f"--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n{original}\r\n(body omitted)\r\n--{boundary}--\r\n"
    ).encode()


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


def _tls(settings: MailSimSettings) -> tuple[ssl.SSLContext, bytes]:
    """A server context with a new self-signed certificate for 127.0.0.1 and localhost."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.herald.invalid")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="herald-mail-sim-"))
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    if settings.tls_cert_file:
        Path(settings.tls_cert_file).write_bytes(cert_pem)
    return context, cert_pem


def create_app(settings: MailSimSettings) -> Litestar:
    relay = Relay(settings)
    tls_context, tls_cert = _tls(settings)
    zone = Zone()
    servers: dict[str, asyncio.AbstractServer | None] = {"smtp": None}

    async def listen() -> None:
        loop = asyncio.get_running_loop()
        servers["smtp"] = await loop.create_server(
            lambda: DsnSMTP(relay, hostname="relay.herald.invalid", ident="herald-mail-sim", tls_context=tls_context),
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
            for session in list(relay.sessions):
                if session.transport is not None:
                    session.transport.close()

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

    @get("/_sim/tls-cert.pem", media_type="application/x-pem-file")
    async def certificate() -> bytes:
        return tls_cert

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
        route_handlers=[
            faults, mails, stats, certificate, publish, reset, page, *ops_handlers(ready),
            double_metrics("mail_sim", relay.stats),
        ],
        lifespan=[lifespan], openapi_config=None, logging_config=None,
    )  # fmt: skip
    app.state.relay = relay
    return app
