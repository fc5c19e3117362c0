"""The SMSC double's settings section (`HERALD_SMSC_SIM_*`)."""

from __future__ import annotations

import msgspec


class SmscSimSettings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8093
    """Its control endpoints (`/_sim/…`), over HTTP."""
    smpp_port: int = 2775
    """SMPP 3.4, where an ESME binds."""
    system_id: str = "herald"
    """The account binds must name; another is answered with an unbind."""
    receipt_delay_ms: int = 50
    """From a submit's answer to its delivery receipt."""
    rate_per_second: int = 0
    """Submits per second across binds; beyond it, `ESME_RTHROTTLED` (0: no limit)."""
