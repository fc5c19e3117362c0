"""The platform as `make run` starts it, for a benchmark: one place that starts and stops it."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

from herald.embedded import free_port, wait_for_port
from herald.settings import EmailSettings, KafkaSettings
from herald_api.settings import ApiSettings
from herald_cli.dev import CHILDREN, DevStack
from herald_cli.settings import Settings
from herald_mail_sim.settings import MailSimSettings
from herald_ses_sim.settings import SesSimSettings
from herald_smsc_sim.settings import SmscSimSettings
from herald_twilio_sim.settings import TwilioSimSettings
from herald_whatsapp_sim.settings import WhatsAppSimSettings


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (Debian package 'wrk'; `make bench-…` installs it)")


@contextlib.contextmanager
def bench_stack(data_dir: Path, children: tuple[str, ...] = CHILDREN, bootstrap: str = "") -> Iterator[DevStack]:
    """Embedded Postgres and broker plus `children`, in `data_dir`; yielded once the API answers
    /readyz (and the carrier-sim accepts connections, when it runs); stopped on exit. With
    `bootstrap`, that broker instead of an embedded one (started and stopped by the caller)."""
    # Benchmarks measure capacity with one key: the per-key HTTP rate limit (2,000 req/s per API
    # process by default) would cap the figure instead. The children inherit the environment.
    os.environ.setdefault("HERALD_API_KEY_REQUESTS_PER_SECOND", "0")
    settings = Settings(
        data_dir=data_dir, api=ApiSettings(port=free_port(), admin_token="bench"), log_level="WARNING",
        whatsapp_sim=WhatsAppSimSettings(port=free_port()),
        smsc_sim=SmscSimSettings(port=free_port(), smpp_port=free_port()),
        twilio_sim=TwilioSimSettings(port=free_port()),
        mail_sim=MailSimSettings(port=free_port(), smtp_port=free_port(), dns_port=free_port(socket.SOCK_DGRAM)),
        email=EmailSettings(inbound_port=free_port()), ses_sim=SesSimSettings(port=free_port()),
        kafka=KafkaSettings(bootstrap=bootstrap),
    )  # fmt: skip
    stack = DevStack(settings, children=children)
    try:
        assert stack.start(), "platform did not become ready"
        if "carrier-sim" in children:
            wait_for_port(int(stack.sim_url.rsplit(":", 1)[1]), 30)
        if "whatsapp-sim" in children:
            wait_for_port(int(stack.whatsapp_url.rsplit(":", 1)[1]), 30)
        yield stack
    finally:
        stack.stop()
