"""The relay double itself (`herald_mail_sim`): how it stops."""

from __future__ import annotations

import asyncio
import socket

from herald.embedded import free_port
from herald_mail_sim.app import create_app
from herald_mail_sim.settings import MailSimSettings
from tests.integration.harness import Served


async def test_a_stopping_relay_closes_the_connections_it_holds() -> None:
    # A relay that stops drops its clients' connections. Python 3.11's server.close() alone left
    # accepted ones open, on this loop, until collected as unclosed transports: an error in
    # whichever test was running (seen in CI after an email test stopped mid-batch).
    settings = MailSimSettings(port=free_port(), smtp_port=free_port(), dns_port=free_port(socket.SOCK_DGRAM))
    served = Served(create_app(settings), settings.port)
    await served.start()
    reader, writer = await asyncio.open_connection(settings.host, settings.smtp_port)
    try:
        assert (await reader.readline()).startswith(b"220 ")  # the greeting (RFC 5321 4.2)
        await served.stop()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # end of stream: the relay closed it
    finally:
        writer.close()
