"""The mail relay double's settings section (`HERALD_MAIL_SIM_*`)."""

from __future__ import annotations

import msgspec


class MailSimSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8095
    """Its control endpoints (`/_sim/…`) and the page of the last mails received, over HTTP."""
    smtp_port: int = 2525
    """SMTP (RFC 5321), where Herald's workers hand mail over."""
    dns_port: int = 8053
    """DNS over UDP: the TXT records set through `/_sim/dns` (a tenant publishing its DKIM key)."""
    rate_per_second: int = 0
    """Mails per second across connections; beyond it, `451 4.7.1` (0: no limit)."""
    max_connections: int = 0
    """Connections open at once it takes from its clients; beyond it, `421 4.7.0` (0: no limit)."""
    report_host: str = "127.0.0.1"
    report_port: int = 0
    """Where delivery reports and complaints go by SMTP (the bounce domain's MX: Herald's inbound
    port); 0: none are sent."""
    report_delay_ms: int = 50
    """From a mail's acceptance to its report; a report answered 4xx is sent again this much later."""
    tls_cert_file: str = ""
    """Where the relay writes its self-signed certificate (for 127.0.0.1 and localhost) at start,
    for a client's CA bundle; STARTTLS is offered either way."""
    kept: int = 20_000
    """The last mails kept for `/_sim/mails` (the counts cover every one)."""
