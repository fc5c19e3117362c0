"""Where delivery reports and complaints come back by SMTP (the bounce domains' MX): an aiosmtpd
server in the API process, beside the HTTP receipts of the other channels.

A recipient must be a bounce address Herald minted (`herald.email.bounces`): any other is refused
`550 5.1.1` at RCPT, so a forged report cannot fail or suppress anything. A report is acted on
(`services.email.Email.reported`) before it is answered `250`; a database that does not answer,
or a report about a send not recorded yet, is answered `451 4.3.0` and the relay sends it again
later (SMTP's own retry). A message that is no report Herald reads is accepted and dropped (a
bounce processor never bounces).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import logging
import re

from aiosmtpd.smtp import SMTP, Envelope, Session

from herald import metrics
from herald.db.pool import DATABASE_ERRORS
from herald.email.bounces import BounceAddresses
from herald.email.reports import Kind, parse
from herald.errors import NotFound
from herald_api.services.email import Email

log = logging.getLogger(__name__)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{40,}")
MAX_REPORT_BYTES = 1_000_000


class InboundMail:
    """aiosmtpd's handler."""

    def __init__(self, bounces: BounceAddresses, email: Email, unsubscribe_mailbox: str) -> None:
        self._bounces = bounces
        self._email = email
        self._unsubscribe = unsubscribe_mailbox.lower()
        metrics.every_series(metrics.EMAIL_REPORTS, (*Kind, "hard_bounce", "refused", "unreadable"))

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() == self._unsubscribe:
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"
        if self._bounces.message_of(address) is None:
            metrics.EMAIL_REPORTS.labels("refused").inc()
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""  # at most MAX_REPORT_BYTES: the server refuses more
        if any(address.lower() == self._unsubscribe for address in envelope.rcpt_tos):
            return await self._unsubscribe_by_mail(raw)
        reports = parse(raw)
        if not reports:
            metrics.EMAIL_REPORTS.labels("unreadable").inc()
            return "250 2.0.0 OK"
        for address in envelope.rcpt_tos:
            named = self._bounces.message_of(address)
            assert named is not None  # checked at RCPT
            try:
                if not await self._email.reported(named[0], named[1], reports):
                    return "451 4.3.0 Not ready for this report, try again later"
            except DATABASE_ERRORS as exc:
                log.warning("a delivery report could not be recorded", extra={"error": type(exc).__name__})
                return "451 4.3.0 Try again later"
        return "250 2.0.0 OK"

    async def _unsubscribe_by_mail(self, raw: bytes) -> str:
        """The List-Unsubscribe mailto: its subject carries the same token as the URL (RFC 8058
        §3.1's mailto alternative). A mail without a token Herald minted is taken and ignored."""
        subject = str(email.message_from_bytes(raw, policy=email.policy.default).get("Subject", ""))
        for candidate in _TOKEN.findall(subject):
            try:
                await self._email.unsubscribe(candidate)
            except NotFound:
                continue
            except DATABASE_ERRORS as exc:
                log.warning("an unsubscribe by mail could not be recorded", extra={"error": type(exc).__name__})
                return "451 4.3.0 Try again later"
            return "250 2.0.0 Unsubscribed"
        metrics.EMAIL_REPORTS.labels("unreadable").inc()
        return "250 2.0.0 OK"


class _Connections:
    """The server's open connections, and an event set while there are none."""

    def __init__(self) -> None:
        self.open: set[SMTP] = set()
        self.none = asyncio.Event()
        self.none.set()

    def made(self, session: SMTP) -> None:
        self.open.add(session)
        self.none.clear()

    def lost(self, session: SMTP) -> None:
        self.open.discard(session)
        if not self.open:
            self.none.set()


class _Session(SMTP):
    """aiosmtpd's protocol for one connection, counted in `connections` while connected."""

    def __init__(self, handler: InboundMail, connections: _Connections) -> None:
        super().__init__(handler, hostname="inbound.herald.invalid", ident="Herald", data_size_limit=MAX_REPORT_BYTES)
        self._connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._connections.made(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.lost(self)
        super().connection_lost(exc)


class InboundServer:
    """The listening server and its open connections. `close()` ends both: Python 3.11's
    `Server.close()` stops listening but leaves accepted connections open, so a relay in the
    middle of a report would hold a stopped API's socket (and its transport is collected unclosed)."""

    def __init__(self, server: asyncio.AbstractServer, connections: _Connections) -> None:
        self._server = server
        self._connections = connections

    async def close(self, seconds: float = 2.0) -> None:
        """Stop listening, close every connection (a report cut off here is unanswered: the
        relay sends it again) and wait, up to `seconds`, until each is gone."""
        self._server.close()
        for session in list(self._connections.open):
            if session.transport is not None:
                session.transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connections.none.wait(), seconds)


async def serve(handler: InboundMail, host: str, port: int) -> InboundServer:
    # aiosmtpd logs every command and peer at INFO ("mail.log"): warnings only, like Herald's own
    # logs, which name no address.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    loop = asyncio.get_running_loop()
    connections = _Connections()
    server = await loop.create_server(
        lambda: _Session(handler, connections),
        # Every API process on a host listens on the port (uvicorn's workers, or tests' second
        # app): the kernel spreads connections between them, as for HTTP.
        host, port, reuse_port=True,
    )  # fmt: skip
    return InboundServer(server, connections)
