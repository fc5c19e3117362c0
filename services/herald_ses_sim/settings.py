"""The SES double's settings section (`HERALD_SES_SIM_*`)."""

from __future__ import annotations

import msgspec


class SesSimSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8096
    """SES v2's API (`/v2/email/…`, forwarded to moto) and the controls (`/_sim/…`)."""
    kept: int = 10_000
    """The last mails sent kept for `/_sim/sent`."""
